"""Independent reports built at once: `aotcheck diff linen nnx` builds its two paths in two processes.

The two paths of a configuration are independent programs, and XLA's compile of one keeps
about one core busy, so with two idle cores two spawned workers (jax is not fork-safe)
finish in about the time of the slower path instead of the sum. Reports already in the
cache are served here, without a worker; with fewer than two to build, or fewer than two
idle cores, the build runs in this process. The reports are the same either way: a worker runs the
same `build_report`.
"""

from __future__ import annotations

from collections.abc import Sequence

from aotcheck._pipeline import Progress, Request, build_report, cached
from aotcheck._report import Report
from aotcheck._workers import pool, worker_count


def build_reports(requests: Sequence[Request], jobs: int | None = None, progress: Progress | None = None) -> list[Report]:
    """The reports of `requests`, in order: cached ones served, the others built in up to `jobs` workers.

    Arguments:
        requests: independent builds (e.g. one configuration's linen and nnx paths).
        jobs: worker processes; None: one per build to do, at most the idle cores.
        progress: called with a short message as stages start (in this process only).

    Returns:
        One report per request. A build's error is raised as it would be in this process,
        the first request's first.

    Example:
        >>> linen, nnx = build_reports([request.with_path("linen"), request.with_path("nnx")])  # doctest: +SKIP
    """
    reports: list[Report | None] = [hit.report if (hit := cached(r)) else None for r in requests]
    todo = [i for i, r in enumerate(reports) if r is None]
    workers = worker_count(len(todo), jobs)
    # A model given as a Python object may not survive pickling into a worker.
    if not workers or any(not (r.model is None or isinstance(r.model, str)) for r in requests):
        for i in todo:
            reports[i] = build_report(requests[i], progress)
        return [r for r in reports if r is not None]
    if progress is not None:
        progress(f"building {len(todo)} programs in {workers} processes")
    with pool(workers) as workers_pool:  # spawned, libtpu's environment set, bound to this process
        futures = {i: workers_pool.submit(build_report, requests[i]) for i in todo}
        for i in todo:
            reports[i] = futures[i].result()
    return [r for r in reports if r is not None]
