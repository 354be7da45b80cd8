"""Independent builds at once: `aotcheck diff linen nnx` builds its two paths in two processes.

The two paths of a configuration are independent programs, and XLA's compile of one keeps
about one core busy, so with two idle cores two spawned workers (jax is not fork-safe)
finish in about the time of the slower path instead of the sum. Reports already in the
cache are served here, without a worker; with fewer than two to build, or fewer than two
idle cores, the build runs in this process. The reports are the same either way: a worker runs the
same `build_report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from aotcheck._pipeline import Built, Progress, Request, build, cached
from aotcheck._workers import pool, worker_count


def build_all(requests: Sequence[Request], jobs: int | None = None, progress: Progress | None = None) -> list[Built]:
    """The builds of `requests` (reports and warnings), in order: cached ones served, the others
    built in up to `jobs` workers. No compiled executable comes back (it does not leave a worker).

    Arguments:
        requests: independent builds (e.g. one configuration's linen and nnx paths).
        jobs: worker processes; None: one per build to do, at most the idle cores.
        progress: called with a short message as stages start (in this process only).

    Returns:
        One build per request. A build's error is raised as it would be in this process,
        the first request's first.

    Example:
        >>> linen, nnx = build_all([request.with_path("linen"), request.with_path("nnx")])  # doctest: +SKIP
        >>> linen.report.header.path, nnx.warnings  # doctest: +SKIP
        ('linen', ())
    """
    builds: list[Built | None] = [cached(r) for r in requests]
    todo = [i for i, b in enumerate(builds) if b is None]
    workers = worker_count(len(todo), jobs)
    # A model given as a Python object may not survive pickling into a worker.
    if not workers or any(not (r.model is None or isinstance(r.model, str)) for r in requests):
        for i in todo:
            builds[i] = _without_executable(requests[i], progress)
        return [b for b in builds if b is not None]
    if progress is not None:
        progress(f"building {len(todo)} programs in {workers} processes")
    with pool(workers) as workers_pool:  # spawned, libtpu's environment set, bound to this process
        futures = {i: workers_pool.submit(_without_executable, requests[i]) for i in todo}
        for i in todo:
            builds[i] = futures[i].result()
    return [b for b in builds if b is not None]


def _without_executable(request: Request, progress: Progress | None = None) -> Built:
    return replace(build(request, progress), executable=None)
