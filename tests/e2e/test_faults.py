"""Faults cost nothing: kills of a golden update, concurrent updates, and a killed parallel check.

A golden case directory is replaced whole, so a kill at any point leaves it wholly old or wholly
new (after `recover`, which every reader and writer runs first); updates serialise on a lock;
workers of `check -j N` die with their parent.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aotcheck import _golden
from aotcheck._pipeline import Request, build_report

ENV = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_STEP_SUMMARY")}
CASES = ("tiny/v5p-8/linen", "tiny/v6e-8/linen", "tiny/v5e-16/linen")

# A plain Python process (no jax: fork is safe) that holds the new reports and forks one slowed
# writer per request; the test kills the writer at a random moment.
_ZYGOTE = r"""
import os, sys, time
from pathlib import Path
from aotcheck import _golden
new = Path(sys.argv[1])
cases = sys.argv[2:]
reports = {c: _golden.read_golden(new / c) for c in cases}
real_fsync = os.fsync
def slow_fsync(fd):  # a slow disk: the kill lands inside a case's write as often as between cases
    time.sleep(0.004)
    real_fsync(fd)
os.fsync = slow_fsync
print("ready", flush=True)
for line in sys.stdin:
    work = Path(line.strip())
    pid = os.fork()
    if pid == 0:
        for c in cases:
            _golden.write_golden(work / c, reports[c])
        os._exit(0)
    print(pid, flush=True)
    _, status = os.waitpid(pid, 0)
    print("killed" if os.WIFSIGNALED(status) else "finished", flush=True)
"""


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _cases(root: Path) -> dict[str, dict[str, str]]:
    return {c: {p.name: p.read_text() for p in sorted((root / c).iterdir())} for c in CASES}


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Goldens of three sharding-only cases, old and new differing in every file."""
    root = tmp_path_factory.mktemp("goldens")
    edited = ("weight_dtype=bfloat16", "logical_axis_rules=[[mlp, [fsdp]]]")
    for name, overrides in (("old", edited), ("new", ())):
        for case in CASES:
            model, topology, path = case.split("/")
            report = build_report(Request(model=model, topology=topology, overrides=overrides,
                                          pure_nnx=path == "nnx", compile=False, backend="mock"))
            _golden.write_golden(root / name / case, report)
    old, new = _cases(root / "old"), _cases(root / "new")
    assert all(old[c][f] != new[c][f] for c in CASES for f in old[c])
    return root / "old", root / "new"


def test_fifty_kills_at_random_points_leave_each_case_wholly_old_or_wholly_new(
        old_and_new: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    old_dir, new_dir = old_and_new
    old, new = _cases(old_dir), _cases(new_dir)
    zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(new_dir), *CASES], env=ENV, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert zygote.stdin is not None and zygote.stdout is not None
    rng = random.Random(9)
    outcomes = {"old": 0, "new": 0, "mixed across cases": 0}
    mid_write = 0
    try:
        assert zygote.stdout.readline().strip() == "ready"
        for i in range(50):
            work = tmp_path / f"work{i}"
            shutil.copytree(old_dir, work)
            zygote.stdin.write(f"{work}\n")
            zygote.stdin.flush()
            pid = int(zygote.stdout.readline())
            time.sleep(rng.uniform(0, 0.15))
            with contextlib.suppress(ProcessLookupError):  # it may have finished: a kill after the end
                os.kill(pid, signal.SIGKILL)
            assert zygote.stdout.readline().strip() in ("killed", "finished")
            mid_write += any(p.name.startswith(".") for p in work.rglob("*"))
            for case in CASES:
                _golden.recover(work / case)
            assert not any(p.name.startswith(".") for p in work.rglob("*")), "recover left staging or backup files"
            seen = _cases(work)
            for case in CASES:
                assert seen[case] in (old[case], new[case]), f"kill {i}: {case} is part old, part new"
                assert _golden.read_golden(work / case) is not None
            states = {"new" if seen[c] == new[c] else "old" for c in CASES}
            outcomes[states.pop() if len(states) == 1 else "mixed across cases"] += 1
            shutil.rmtree(work)
    finally:
        zygote.kill()
        zygote.communicate(timeout=60)  # reaps it and closes its pipes
    # The kills landed everywhere: before any case, between cases, inside a case's write, after the end.
    assert mid_write >= 5 and outcomes["old"] and outcomes["mixed across cases"], (mid_write, outcomes)


def _matrix(directory: Path) -> Path:
    path = directory / "matrix.yml"
    path.write_text(json.dumps({"golden_dir": "golden", "cases": [
        {"model": "tiny", "topology": t, "paths": ["linen"], "compile": False} for t in ("v5p-8", "v6e-8")]}))
    return path


def _aotcheck(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aotcheck", *map(str, args)], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_concurrent_golden_updates_both_succeed(tmp_path: Path) -> None:
    matrix = _matrix(tmp_path)
    runs = [_aotcheck("golden", "update", "--matrix", matrix, "--backend", "mock") for _ in range(2)]
    results = [p.communicate(timeout=600) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], results
    written = _tree(tmp_path / "golden")
    assert len(written) == 6 and not any(Path(k).name.startswith(".") for k in written)
    check = _aotcheck("check", "--matrix", matrix, "--backend", "mock")
    out, err = check.communicate(timeout=600)
    assert check.returncode == 0, out + err


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        out |= {int(c) for c in (task / "children").read_text().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_kill_9_of_a_parallel_check_leaves_no_workers(tmp_path: Path) -> None:
    matrix = _matrix(tmp_path)
    # --no-cache: an earlier test may have cached these cases, and cached cases need no worker.
    parent = _aotcheck("check", "--matrix", matrix, "-j", "2", "--backend", "mock", "--no-cache")
    try:
        deadline = time.monotonic() + 300
        workers: set[int] = set()
        while time.monotonic() < deadline and len(workers) < 2 and parent.poll() is None:
            workers = {c for c in _children(parent.pid) if b"multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes()}
            time.sleep(0.05)
        assert len(workers) >= 2, "the check never started its workers"
        parent.send_signal(signal.SIGKILL)
        parent.communicate(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not any(_alive(w) for w in workers), "workers outlived their parent"
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.communicate(timeout=60)  # closes the pipes, whatever happened
