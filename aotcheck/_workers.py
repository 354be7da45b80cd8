"""A small pool of spawned worker processes for builds: libtpu's environment first, gone with their parent.

jax is not fork-safe, so workers are spawned. Each one calls `setup_libtpu_env()` before
anything can import jax, ignores Ctrl-C (the parent decides what an interrupt means), and
exits when its parent dies, so an interrupted or killed run leaves no compiles behind.
With `jobs <= 1` tasks run in this process, in order, with no pool at all.
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


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)  # the parent is gone: nobody wants this worker's results


def _init_worker(parent: int) -> None:
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform == "linux":  # the kernel kills the worker with its parent; the watcher covers other systems
        import ctypes

        try:
            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class Pool:
    """Runs batches of tasks in `jobs` spawned workers (or in this process), results in task order.

    Example:
        >>> with Pool(jobs=2) as pool:  # doctest: +SKIP
        ...     reports = pool.map(build_report, [Request(topology="v5p-8"), Request(topology="v5p-16")])
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
        executor = self._start()
        futures: list[Future[T]] = [executor.submit(fn, task) for task in tasks]
        return [f.result() for f in futures]

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(os.getpid(),),
            )
        return self._executor

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
