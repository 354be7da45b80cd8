"""Worker processes for builds (the gate's cases, fit's candidates): spawned fresh (jax is not
fork-safe), libtpu's environment first, as many mock CPU devices as asked, bound to their parent.

jax fixes the number of CPU devices when its backend starts, so a process that must build
cases on the mock backend sets it before anything touches jax. A worker ignores Ctrl-C (the
parent decides what an interrupt means) and exits when its parent dies (even by `kill -9`,
which runs no cleanup) instead of holding its memory.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_PR_SET_PDEATHSIG = 1


def available_cpus() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def idle_cores() -> int:
    """Cores not busy with other work: the available cores less the one-minute load average.

    On a busy machine a second process only shares the same cores and adds its own start-up
    (importing jax, loading libtpu: ~2 s of CPU): measured on 2 cores at load 11, tiny on
    v5p-128 took 28-29 s serially and 33-36 s in two processes.
    """
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform
        load = 0.0
    return idle(available_cpus(), load)


def idle(cpus: int, load: float) -> int:
    """`cpus` less `load`, rounded, at least 1."""
    return max(1, round(cpus - load))


def worker_count(builds: int, jobs: int | None, idle_now: Callable[[], int] = idle_cores) -> int:
    """Worker processes for `builds` builds still to do (cache hits are served without one).

    `jobs` given: at most that many; None: at most the idle cores. Fewer than two means no
    workers at all (the builds run in this process): one worker only adds its start-up.

    Example:
        >>> worker_count(2, None, lambda: 2), worker_count(2, None, lambda: 1), worker_count(0, 4), worker_count(5, 3)
        (2, 0, 0, 3)
    """
    workers = min(builds, idle_now() if jobs is None else jobs)
    return workers if workers >= 2 else 0


def reserve_mock_devices(count: int) -> bool:
    """Ask jax for at least `count` CPU devices; False if this process's jax already started with fewer."""
    import jax

    current = getattr(jax.config, "jax_num_cpu_devices", 1) or 1
    try:
        jax.config.update("jax_num_cpu_devices", max(count, current))
    except RuntimeError:  # the CPU backend has started: its device count is fixed
        return len(jax.devices("cpu")) >= count
    return True


def _die_with(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # the kernel signals us the moment the parent dies
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    def watch() -> None:  # everywhere else (and if the parent died before prctl): poll
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="aotcheck-parent-watch").start()


def _start(parent: int, mock_devices: int) -> None:
    """A worker's first act: die with the parent, leave Ctrl-C to it, set libtpu's environment and devices."""
    _die_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()
    if mock_devices:
        reserve_mock_devices(mock_devices)


def pool(jobs: int, mock_devices: int = 0) -> ProcessPoolExecutor:
    """`jobs` spawned workers, each with `mock_devices` CPU devices (0: as jax defaults) and bound to this process."""
    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(os.getpid(), mock_devices))


class Pool:
    """Runs batches of tasks in `jobs` spawned workers (or in this process), results in task order.

    Example:
        >>> with Pool(jobs=2) as workers:  # doctest: +SKIP
        ...     reports = workers.map(build_report, [Request(topology="v5p-8"), Request(topology="v5p-16")])
    """

    def __init__(self, jobs: int) -> None:
        self.jobs = max(1, jobs)
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)

    def map(self, fn: Callable[..., T], tasks: Sequence[Any]) -> list[T]:
        """`[fn(task) for task in tasks]`, in parallel when there are workers; the first error is raised."""
        if self.jobs == 1 or (len(tasks) <= 1 and self._executor is None):
            return [fn(task) for task in tasks]
        if self._executor is None:
            self._executor = pool(self.jobs)
        futures: list[Future[T]] = [self._executor.submit(fn, task) for task in tasks]
        return [f.result() for f in futures]

    def close(self, cancel: bool = False) -> None:
        """Stop the workers; with `cancel` (an interrupt or error), without waiting for running tasks."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if not cancel:
            executor.shutdown(wait=True)
            return
        # Only this pool's own children are ended, by their process ids; SIGKILL, because SIGTERM makes
        # jax's failure handler print a stack dump for a worker whose result nobody wants.
        processes = list(getattr(executor, "_processes", {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()
        for process in processes:
            process.join(timeout=5)
