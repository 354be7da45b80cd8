"""Compiler-aware gating and backends that never mix, through `aotcheck check` / `golden update`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app
from aotcheck._policy import compiler_change
from aotcheck._report import versions
from aotcheck._topology import libtpu_available

runner = CliRunner()
pytestmark = pytest.mark.skipif(not libtpu_available(), reason="the goldens under test are libtpu goldens")
COMMITTED = Path(__file__).resolve().parents[2] / "golden/tiny/v5p-8/linen"


def run(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def write_matrix(directory: Path, **case: Any) -> Path:
    path = directory / "matrix.yml"
    path.write_text(json.dumps({"golden_dir": "golden", "cases": [
        {"model": "tiny", "topology": "v5p-8", "paths": ["linen"], **case}]}))
    return path


def check(matrix: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run("check", "--matrix", matrix, "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def guarded(tmp_path: Path) -> Path:
    matrix = write_matrix(tmp_path)
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    return matrix


def compile_json(matrix: Path) -> Path:
    return matrix.parent / "golden/tiny/v5p-8/linen/compile.json"


def as_if_an_older_libtpu_wrote_it(matrix: Path) -> str:
    """The golden as an older compiler would have left it: other libtpu, other figures."""
    path = compile_json(matrix)
    data = json.loads(path.read_text())
    data["versions"]["libtpu"] = "0.0.1"
    data["per_step"]["flops"] = data["per_step"]["flops"] * 2
    data["collectives"]["all-gather"]["bytes"] = data["collectives"]["all-gather"]["bytes"] * 2
    path.write_text(json.dumps(data))
    return f"libtpu 0.0.1 -> {versions()['libtpu']}"


def test_a_compiler_change_is_its_own_category_and_its_policy_decides(guarded: Path) -> None:
    change = as_if_an_older_libtpu_wrote_it(guarded)
    code, data = check(guarded)
    outcome = data["outcomes"][0]
    assert code == 1 and outcome["status"] == "changed"  # default policy: fail
    assert outcome["findings"] == []  # nothing about the model changed
    assert outcome["compiler"]["change"] == change and outcome["compiler"]["policy"] == "fail"
    assert {f["category"] for f in outcome["compiler"]["findings"]} == {"FLOPs changed", "collectives changed"}
    accept = f"accept the new figures with: aotcheck golden update --matrix {guarded} --case 'tiny/v5p-8'"
    assert any(w.startswith(f"compiler changed ({change}): 2 compile figures moved, policy fail; {accept}")
               for w in outcome["warnings"])
    human = run("check", "--matrix", guarded)
    assert human.exit_code == 1 and f"2 compiler changed ({change})" in human.stdout  # the table's cell
    assert f"compiler changed ({change}): FLOPs changed" in human.stdout
    md = run("check", "--matrix", guarded, "--format", "markdown").stdout
    assert md.startswith(f"## aotcheck check: compiler changed ({change})") and accept in md

    # Policy warn: from the command line, the case, or the matrix: green, with the warning.
    code, data = check(guarded, "--compiler-changes", "warn")
    assert code == 0 and data["outcomes"][0]["status"] == "ok" and data["outcomes"][0]["compiler"]["policy"] == "warn"
    write_matrix(guarded.parent, compiler_changes="warn")
    assert check(guarded)[0] == 0
    assert check(guarded, "--compiler-changes", "fail")[0] == 1  # the command line wins

    # The accepting command mends it.
    assert run("golden", "update", "--matrix", guarded, "--case", "tiny/v5p-8").exit_code == 0
    code, data = check(guarded)
    assert code == 0 and data["outcomes"][0]["compiler"] is None


def test_sharding_changes_stay_regressions_under_a_compiler_change(guarded: Path) -> None:
    as_if_an_older_libtpu_wrote_it(guarded)
    shardings = guarded.parent / "golden/tiny/v5p-8/linen/named_shardings.json"
    data = json.loads(shardings.read_text())
    data["shardings"]["params/decoder/decoder_norm/scale"]["partition_spec"] = ["fsdp"]
    shardings.write_text(json.dumps(data))
    code, out = check(guarded, "--compiler-changes", "warn")
    assert code == 1 and [f["category"] for f in out["outcomes"][0]["findings"]] == ["PartitionSpec changed"]


def test_moved_figures_under_the_same_compiler_are_regressions(guarded: Path) -> None:
    path = compile_json(guarded)
    data = json.loads(path.read_text())
    data["per_step"]["flops"] = data["per_step"]["flops"] * 2
    path.write_text(json.dumps(data))
    code, out = check(guarded, "--compiler-changes", "warn")
    assert code == 1 and out["outcomes"][0]["compiler"] is None
    assert [f["category"] for f in out["outcomes"][0]["findings"]] == ["FLOPs changed"]


def test_a_mock_update_keeps_libtpu_figures_and_check_says_they_were_not_compared(
        guarded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = compile_json(guarded).read_text()
    monkeypatch.setattr("aotcheck._topology.libtpu_available", lambda: False)  # as on macOS or aarch64
    updated = run("golden", "update", "--matrix", guarded, "--format", "json")
    assert updated.exit_code == 0, updated.output
    assert compile_json(guarded).read_text() == before
    warnings = json.loads(updated.stdout)["outcomes"][0]["warnings"]
    assert warnings == ["kept the libtpu compile.json: this run is mock (libtpu is not installed here); "
                        "--force replaces it"]
    code, data = check(guarded)
    assert code == 0
    assert ("compile figures not compared: golden from libtpu; this run is mock: libtpu is not installed here"
            in data["outcomes"][0]["warnings"])
    human = run("check", "--matrix", guarded)
    assert "this run is mock: libtpu is not installed here" in human.stdout.replace("\n", "")

    forced = run("golden", "update", "--matrix", guarded, "--force")
    assert forced.exit_code == 0, forced.output
    assert json.loads(compile_json(guarded).read_text())["backend"] == "mock"


def test_goldens_an_older_stack_wrote_move_as_a_compiler_change_not_a_model_regression(tmp_path: Path) -> None:
    """The upgrade every team makes: golden/ was written by the oldest stack; check runs on a newer one."""
    recorded = json.loads((COMMITTED / "compile.json").read_text())["versions"]
    change = compiler_change(recorded, versions())
    if not change:
        pytest.skip(f"this stack's compiler wrote golden/ (libtpu {recorded['libtpu']}): nothing for a compiler to move")
    shutil.copytree(COMMITTED, tmp_path / "golden/tiny/v5p-8/linen")
    matrix = write_matrix(tmp_path)
    code, data = check(matrix)
    outcome = data["outcomes"][0]
    assert outcome["compiler"] is not None, f"no compile figure moved under {change}: {outcome}"
    assert f"libtpu {recorded['libtpu']} -> {versions()['libtpu']}" in change
    assert code == 1 and outcome["status"] == "changed" and outcome["findings"] == []  # policy fail; the model is the same
    assert outcome["compiler"]["change"] == change and outcome["compiler"]["policy"] == "fail"
    figures = {"memory per chip beyond tolerance", "FLOPs changed", "collectives changed"}
    assert {f["category"] for f in outcome["compiler"]["findings"]} <= figures
    assert any(w.startswith(f"compiler changed ({change}):") for w in outcome["warnings"])
    code, data = check(matrix, "--compiler-changes", "warn")
    assert code == 0 and data["outcomes"][0]["status"] == "ok"

    # Under the same upgrade, sharding and dtype findings stay regressions, whatever the policy.
    shardings = tmp_path / "golden/tiny/v5p-8/linen/named_shardings.json"
    data = json.loads(shardings.read_text())
    data["shardings"]["params/decoder/decoder_norm/scale"]["partition_spec"] = ["fsdp"]
    shardings.write_text(json.dumps(data))
    dtypes = tmp_path / "golden/tiny/v5p-8/linen/state_dtypes.json"
    data = json.loads(dtypes.read_text())
    data["leaves"]["params/decoder/decoder_norm/scale"]["dtype"] = "bfloat16"
    dtypes.write_text(json.dumps(data))
    code, data = check(matrix, "--compiler-changes", "warn")
    outcome = data["outcomes"][0]
    assert code == 1 and outcome["status"] == "changed" and outcome["compiler"]["change"] == change
    assert sorted(f["category"] for f in outcome["findings"]) == ["PartitionSpec changed", "dtype changed"]
