"""Golden files and the matrix: layout, exact round trip, atomic updates that survive SIGKILL, case selection."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aotcheck import _golden as golden
from aotcheck import _matrix as matrix
from aotcheck._compare import compare
from aotcheck._errors import UsageError
from aotcheck._pipeline import Request, build_report


@pytest.fixture(scope="module")
def reports() -> dict[str, object]:
    return {p: build_report(Request(topology="v5p-8", pure_nnx=p == "nnx")) for p in ("linen", "nnx")}


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_read_golden_rebuilds_the_report_exactly(tmp_path: Path, reports: dict, path: str) -> None:
    report = reports[path]
    assert golden.write_golden(tmp_path, report) == list(golden.FILES)
    back = golden.read_golden(tmp_path)
    assert compare(back, report) == [] and compare(report, back) == []
    # Per-device shapes and bytes are not stored: they are recomputed from the mesh.
    assert back.leaves == report.leaves
    assert back.compile == report.compile and back.batch == report.batch
    assert back.mesh_shape == report.mesh_shape and back.path == path


def test_golden_files_are_sorted_indented_and_free_of_noise(tmp_path: Path, reports: dict) -> None:
    golden.write_golden(tmp_path, reports["linen"])
    for name in golden.FILES:
        text = (tmp_path / name).read_text()
        data = json.loads(text)
        assert text.endswith("}\n") and text.startswith("{\n  ")
        assert list(data) == sorted(data)
        assert "timings" not in text and "compile_seconds" not in text and "lower_seconds" not in text
    shardings = json.loads((tmp_path / golden.SHARDINGS).read_text())
    # The mesh once per file, never per leaf; a PartitionSpec is one line, so a change is one changed line.
    assert (tmp_path / golden.SHARDINGS).read_text().count('"mesh"') == 1
    assert shardings["mesh"]["shape"]["fsdp"] == 4
    kernel = shardings["shardings"]["params/decoder/layers/mlp/wi_0/kernel"]
    assert kernel == {"partition_spec": ["fsdp"], "shape": [256, 4, 512]}
    assert '"partition_spec": ["fsdp"],' in (tmp_path / golden.SHARDINGS).read_text()
    annotations = json.loads((tmp_path / golden.ANNOTATIONS).read_text())
    assert annotations["leaves"]["params/decoder/layers/mlp/wi_0/kernel"] == ["embed", "layers", "mlp"]
    assert annotations["leaves"]["step"] is None
    dtypes = json.loads((tmp_path / golden.DTYPES).read_text())
    assert dtypes["leaves"]["opt_state/0/count"] == {"dtype": "int32", "role": "optimizer"}
    compiled = json.loads((tmp_path / golden.COMPILE).read_text())
    assert compiled["verdict"] == "fits" and compiled["backend"] == "libtpu"
    assert set(compiled["versions"]) >= {"jax", "libtpu", "flax"}


def test_rewriting_an_unchanged_report_touches_nothing(tmp_path: Path, reports: dict) -> None:
    golden.write_golden(tmp_path, reports["nnx"])
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
    assert golden.write_golden(tmp_path, reports["nnx"]) == []
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == before


def test_a_sharding_only_report_leaves_compile_json_to_the_case_that_compiles(tmp_path: Path, reports: dict) -> None:
    golden.write_golden(tmp_path, reports["linen"])
    compiled = (tmp_path / golden.COMPILE).read_text()
    sharding_only = build_report(Request(topology="v5p-8", pure_nnx=False, compile=False))
    assert golden.write_golden(tmp_path, sharding_only) == []
    assert (tmp_path / golden.COMPILE).read_text() == compiled


def test_malformed_golden_is_a_one_line_usage_error(tmp_path: Path, reports: dict) -> None:
    golden.write_golden(tmp_path, reports["linen"])
    (tmp_path / golden.DTYPES).write_text('{"leaves": {}}\n')
    with pytest.raises(UsageError, match="disagree on leaf|not valid JSON"):
        golden.read_golden(tmp_path)
    (tmp_path / golden.ANNOTATIONS).write_text("{not json")
    with pytest.raises(UsageError, match="logical_annotations.json is not valid JSON"):
        golden.read_golden(tmp_path)


# ------------------------------------------------------------------ an update killed at any moment

_SLOW_WRITES = """
import os, sys, time
real = os.fsync
def slow(fd):
    time.sleep(0.4)  # widen each file's write so the test can kill the update inside it
    real(fd)
os.fsync = slow
sys.argv = ["aotcheck", "golden", "update", "--matrix", sys.argv[1]]
from aotcheck._cli import main
main()
"""


def _matrix(directory: Path, overrides: list[str]) -> Path:
    path = directory / "matrix.yml"
    path.write_text(json.dumps({"golden_dir": "golden", "cases": [
        {"model": "tiny", "topology": "v5p-8", "overrides": overrides},
        {"model": "tiny", "topology": "v6e-8", "overrides": overrides, "compile": False},
    ]}))
    return path


def _snapshot(root: Path) -> dict[str, str]:
    while True:  # the update renames directories under our feet: read again until one pass sees a still tree
        try:
            return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
        except FileNotFoundError:
            continue


def test_an_update_killed_midway_leaves_every_golden_file_old_or_new(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aotcheck._cli import app

    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_STEP_SUMMARY")}
    runner = CliRunner()
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    # The old goldens differ from the new in every file: rules (specs, annotations), dtypes, memory.
    edited = ["weight_dtype=bfloat16", "logical_axis_rules=[[mlp, [fsdp]]]"]
    for directory, overrides in ((old_dir, edited), (new_dir, [])):
        directory.mkdir()
        result = runner.invoke(app, ["golden", "update", "--force", "--matrix", str(_matrix(directory, overrides))])
        assert result.exit_code == 0, result.output
    old, new = _snapshot(old_dir / "golden"), _snapshot(new_dir / "golden")
    assert set(old) == set(new) and len(old) == 14 and all(old[k] != new[k] for k in old)

    # Kill points: inside the first case's write, and with some cases replaced and one half-written.
    def hidden(k: str) -> bool:
        return any(part.startswith(".") for part in Path(k).parts)

    def cases(files: dict[str, str]) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for k, v in files.items():
            if not hidden(k):
                out.setdefault(str(Path(k).parent), {})[Path(k).name] = v
        return out

    old_cases, new_cases = cases(old), cases(new)
    for replaced_before_kill in (0, 2):
        work = tmp_path / f"work{replaced_before_kill}"
        shutil.copytree(old_dir / "golden", work / "golden")
        script = _matrix(work, [])
        proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITES, str(script)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                files = _snapshot(work / "golden")
                mid_write = any(hidden(k) for k in files)
                done = sum(cases(files).get(c) == new_cases[c] for c in new_cases)
                if mid_write and done >= replaced_before_kill:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.02)
        finally:
            if proc.poll() is None:  # the test itself failed or timed out: leave no update running
                proc.kill()
            proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL, "the update finished before the test could kill it"
        for case in new_cases:  # what the next reader or writer does first
            golden.recover(work / "golden" / case)
        after = _snapshot(work / "golden")
        assert not any(hidden(k) for k in after)
        seen = cases(after)
        assert set(seen) == set(old_cases)
        for case, files in seen.items():
            assert files in (old_cases[case], new_cases[case]), case  # wholly old or wholly new
        assert sum(seen[c] == new_cases[c] for c in new_cases) >= replaced_before_kill
        # The next update completes the job.
        result = runner.invoke(app, ["golden", "update", "--force", "--matrix", str(script)])
        assert result.exit_code == 0, result.output
        assert _snapshot(work / "golden") == new


# ------------------------------------------------------------------ the matrix


def _load(tmp_path: Path, text: str, name: str = "matrix.yml") -> matrix.Matrix:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return matrix.load(path)


def test_matrix_defaults_names_and_golden_directories(tmp_path: Path) -> None:
    m = _load(tmp_path, """
        golden_dir: ../golden
        cases:
          - {model: tiny, topology: v5p-8}
          - {model: tiny, topology: v5p-8, num_slices: 2, paths: [nnx], overrides: {weight_dtype: bfloat16, scan_layers: false}}
          - {name: big, model: llama2-7b, topology: v5p-128, compile: false, slow: true}
    """)
    assert m.golden_dir == tmp_path.parent / "golden" and m.memory_tolerance == 0.01
    first, second, big = m.cases
    assert (first.name, first.paths, first.compile, first.slow) == ("tiny/v5p-8", ("linen", "nnx"), True, False)
    assert second.name == "tiny/v5p-8-x2" and second.overrides == ("weight_dtype=\"bfloat16\"", "scan_layers=false")
    assert [u.name for u in m.units()] == ["tiny/v5p-8/linen", "tiny/v5p-8/nnx", "tiny/v5p-8-x2/nnx", "big/linen", "big/nnx"]
    assert m.units()[2].golden_dir(Path("g")) == Path("g/tiny/v5p-8-x2/nnx")
    assert big.golden == "llama2-7b/v5p-128"


def test_matrix_from_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(textwrap.dedent("""
        [project]
        name = "x"
        [tool.aotcheck]
        memory_tolerance = 0.05
        [[tool.aotcheck.cases]]
        model = "tiny"
        topology = "v6e-8"
        paths = ["linen"]
    """))
    monkeypatch.chdir(tmp_path)
    m = matrix.load()
    assert m.memory_tolerance == 0.05 and m.golden_dir == tmp_path / "golden"
    assert [u.name for u in m.units()] == ["tiny/v6e-8/linen"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cases: [{model: tiny}]", "matrix .*: cases.0.topology: Field required"),
        ("cases: [{topology: v5p-8, pathz: [linen]}]", "cases.0.pathz: Extra inputs are not permitted"),
        ("cases: [{topology: v5p-8, paths: [jax]}]", "cases.0.paths.0: Input should be 'linen' or 'nnx'"),
        ("cases: [{topology: v5p-8}, {topology: v5p-8}]", "two cases are named 'tiny/v5p-8'"),
        ("cases: [{topology: v5p-8}, {name: b, topology: v5p-8, overrides: [scan_layers=false]}]",
         "cases 'tiny/v5p-8' and 'b' differ but share the golden directory 'tiny/v5p-8'"),
        ("cases: [{topology: v5p-8, overrides: [scan_layers]}]", "override 'scan_layers' is not key=value"),
        ("cases: [{topology: v5p-8]", "is not valid YAML"),
        ("- a list", "expected a mapping with a 'cases' list"),
    ],
)
def test_bad_matrices_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        _load(tmp_path, text)
    assert "\n" not in str(info.value)


def test_selection_by_name_pattern_and_slowness(tmp_path: Path) -> None:
    m = _load(tmp_path, """
        cases:
          - {topology: v5p-8}
          - {topology: v6e-8}
          - {name: tiny/v6e-8/compile, topology: v6e-8, slow: true, golden: other}
    """)
    names = lambda units: [u.name for u in units]  # noqa: E731
    assert names(matrix.select(m)) == ["tiny/v5p-8/linen", "tiny/v5p-8/nnx", "tiny/v6e-8/linen", "tiny/v6e-8/nnx"]
    assert len(matrix.select(m, slow=True)) == 6
    assert names(matrix.select(m, ["tiny/v6e-8/compile"])) == ["tiny/v6e-8/compile/linen", "tiny/v6e-8/compile/nnx"]
    assert names(matrix.select(m, pattern="nnx")) == ["tiny/v5p-8/nnx", "tiny/v6e-8/nnx"]
    assert names(matrix.select(m, pattern="*v6e*/linen", slow=True)) == ["tiny/v6e-8/linen", "tiny/v6e-8/compile/linen"]
    with pytest.raises(UsageError, match="no case named 'tiny/v6e8' in .*; did you mean tiny/v6e-8, "):
        matrix.select(m, ["tiny/v6e8"])
    with pytest.raises(UsageError, match="no case matches 'v4'"):
        matrix.select(m, pattern="v4")


def test_shards_are_disjoint_complete_and_deterministic(tmp_path: Path) -> None:
    m = _load(tmp_path, "cases: [" + ", ".join(f"{{topology: {t}}}" for t in ("v5p-8", "v6e-8", "v5e-16", "tpu7x-16", "v5p-128")) + "]")
    units = matrix.select(m)
    parts = [matrix.shard(units, i, 3) for i in (1, 2, 3)]
    assert sorted(u.name for part in parts for u in part) == sorted(u.name for u in units)
    assert [len(p) for p in parts] == [4, 4, 2]
    assert parts == [matrix.shard(units, i, 3) for i in (1, 2, 3)]
    # Both paths of a case land on one shard: shard 1/2 is not every Linen case, 2/2 every NNX case.
    for part in matrix.shard(units, 1, 2), matrix.shard(units, 2, 2):
        assert {u.path for u in part} == {"linen", "nnx"}
        assert all({u.case.name for u in part if u.path == p} == {u.case.name for u in part} for p in ("linen", "nnx"))
    assert matrix.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(UsageError, match="--shard"):
            matrix.parse_shard(bad)
