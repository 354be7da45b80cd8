"""Worker processes for the gate: spawned fresh (jax is not fork-safe), with as many mock CPU
devices as the largest case needs, and bound to their parent's life.

jax fixes the number of CPU devices when its backend starts, so a process that must
build cases on the mock backend sets it before anything touches jax. A worker whose parent
dies (even by `kill -9`, which runs no cleanup) exits within a second instead of holding
its memory.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


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
        import signal

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
    """A worker's first act: die with the parent, set libtpu's environment and the mock device count."""
    _die_with(parent)
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()
    if mock_devices:
        reserve_mock_devices(mock_devices)


def pool(jobs: int, mock_devices: int) -> ProcessPoolExecutor:
    """`jobs` spawned workers, each with `mock_devices` CPU devices (0: as jax defaults) and bound to this process."""
    import multiprocessing

    return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start, initargs=(os.getpid(), mock_devices))
