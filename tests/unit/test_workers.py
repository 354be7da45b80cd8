"""When builds go to worker processes: only where two or more can run at once on idle cores."""

from __future__ import annotations

import pytest

from aotcheck import _gate, _workers
from aotcheck._errors import EXIT_OK
from aotcheck._matrix import Case, Unit

from ._reports import nnx_report, report


@pytest.mark.parametrize(("builds", "jobs", "idle", "workers"), [
    (2, None, 2, 2),  # linen and nnx on two idle cores: one worker each
    (2, None, 1, 0),  # one idle core: both in this process, no worker start-up
    (0, None, 8, 0),  # everything was a cache hit
    (1, None, 8, 0),  # one build: a worker only adds its start-up
    (5, 3, 1, 3),  # -j 3 asks for three, whatever the load
    (2, 4, 1, 2),  # never more workers than builds
    (4, 1, 8, 0),  # -j 1: serial
])
def test_worker_count(builds, jobs, idle, workers):
    assert _workers.worker_count(builds, jobs, lambda: idle) == workers


@pytest.mark.parametrize(("cpus", "load", "idle"), [(2, 0.0, 2), (2, 0.6, 1), (2, 11.0, 1), (8, 2.4, 6)])
def test_idle_cores_are_the_cpus_less_the_load(cpus, load, idle):
    assert _workers.idle(cpus, load) == idle


def _units(n: int) -> list[Unit]:
    case = Case(name="c", model="tiny", topology="v5p-8", num_slices=1, paths=("linen", "nnx"), overrides=(),
                compile=True, slow=False, golden="c")
    return [Unit(case, path) for path in ("linen", "nnx")][:n]


def test_the_gate_serves_cache_hits_without_starting_workers(monkeypatch):
    hits = {"linen": report(), "nnx": nnx_report()}
    monkeypatch.setattr(_gate, "_cached", lambda unit, backend: _gate.Built(hits[unit.path], None, EXIT_OK, 0.0))
    monkeypatch.setattr(_workers, "pool", lambda *a: pytest.fail("a worker started for cached reports"))
    monkeypatch.setattr(_gate, "build", lambda *a: pytest.fail("a cached unit was built"))
    built = list(_gate._builds(_units(2), "mock", jobs=2))
    assert [b.report for b in built] == [hits["linen"], hits["nnx"]]


def test_the_gate_builds_a_single_miss_in_this_process(monkeypatch):
    monkeypatch.setattr(_gate, "_cached", lambda unit, backend: (
        _gate.Built(report(), None, EXIT_OK, 0.0) if unit.path == "linen" else None))
    monkeypatch.setattr(_workers, "pool", lambda *a: pytest.fail("a worker started for one build"))
    monkeypatch.setattr(_gate, "build", lambda case, path, backend: _gate.Built(nnx_report(), None, EXIT_OK, 1.0))
    built = list(_gate._builds(_units(2), "libtpu", jobs=2))
    assert [b.report.header.path for b in built] == ["linen", "nnx"] and built[1].seconds == 1.0
