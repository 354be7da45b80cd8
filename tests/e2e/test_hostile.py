"""Issue 9's reproducers: each hostile or broken input gives its documented exit code and one line.

No traceback, no exit 1 unless a comparison found a difference, nothing written outside its place.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "golden/tiny/v5p-8/linen"



def run(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def fails(*args: str | Path, code: int = 2) -> str:
    result = run(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in result.stdout + result.stderr
    return err


COMPILE = ("compile", "--no-compile", "--topology", "v5p-8")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--set", "logical_axis_rules=5"),
         "error: config: logical_axis_rules must be a list of [logical_name, mesh_axes] pairs (got 5)"),
        (("--set", "per_device_batch_size=.inf"),
         "error: --set per_device_batch_size: per_device_batch_size is inf; numbers must be finite"),
        (("--set", "learning_rate=.nan", "--format", "json"),
         "error: --set learning_rate: learning_rate is nan; numbers must be finite"),
        (("--set", "logical_axis_rules=[[embed, [fsdp, fsdp]]]"),
         "error: config: rule for 'embed' names a mesh axis twice (fsdp, fsdp); name each once"),
        (("--set", "logical_axis_rules=[[embed, [1]]]"),
         "error: config: logical_axis_rules: rule for 'embed': mesh axes are a name or a list of names; got [1]"),
        (("--set", "ici_fsdp_parallelism=2147483648"),
         "error: config: ici_fsdp_parallelism: a parallelism is -1 (fill from the devices) or 1..65536"),
        (("--set", "max_target_length=99999999999"),
         "error: config: max_target_length: Input should be less than or equal to 16777216 (got 99999999999)"),
        (("--set", "x=&a [*a, *a]"),
         "error: --set x: value '&a [*a, *a]' is refused: YAML aliases (*name) are not allowed; write the value out"),
        (("--set", "{1: 2}=3"), "error: config: unknown key '{1: 2}'"),
        (("--model", ""),
         "error: --model is empty; give a model name (`aotcheck models` lists them) or package.module:attribute"),
        (("--num-slices", "2147483648"), "error: --num-slices must be 1..4096, got 2147483648"),
    ],
)
def test_bad_values_are_one_line_usage_errors(args: tuple[str, ...], message: str) -> None:
    assert fails(*COMPILE, *args) == message


def test_an_alias_bomb_is_refused_at_once() -> None:
    bomb = "a: &a [x, x]\n" + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(9))
    err = fails(*COMPILE, "--set", f"x={bomb}")
    assert "YAML aliases (*name) are not allowed" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: \xff\n", "is not UTF-8 text (byte 3); save it as UTF-8"),
        (b"1: 2\n", ": key 1 is not a string; quote it"),
        (b"per_device_batch_size: .inf\n", ": per_device_batch_size is inf; numbers must be finite"),
        (b"base: &b {x: 1}\nother: *b\n", "line 2 is not valid YAML: YAML aliases (*name) are not allowed; write the value out"),
        (b"- 1\n", " must hold a mapping of keys to values"),
        (b"[" * 5000, "is nested too deeply"),
    ],
)
def test_bad_config_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "c.yml"
    path.write_bytes(content)
    err = fails(*COMPILE, "--config", path)
    assert err.startswith(f"error: config file {path}") and err.endswith(message), err


def test_an_oversized_config_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.yml"
    path.write_bytes(b"#" * (17 << 20))
    assert fails(*COMPILE, "--config", path) == f"error: config file {path} is over 16 MiB; is it the right file?"


@pytest.mark.parametrize("value", ["inf", "nan", "-inf"])
def test_non_finite_tolerances_are_refused(value: str) -> None:
    for command in (("check",), ("diff", str(GOLDEN), str(GOLDEN))):
        result = run(*command, "--memory-tolerance", value)
        assert result.exit_code == 2 and "Invalid value for '--memory-tolerance'" in result.stderr  # typer's usage box
        assert "Traceback" not in result.stderr


# ---- the matrix


def write_matrix(directory: Path, *cases: dict[str, Any], **settings: Any) -> Path:
    path = directory / "matrix.yml"
    path.write_text(json.dumps({"golden_dir": "golden", **settings, "cases": list(cases)}))
    return path


def tiny(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "topology": "v5p-8", "paths": ["linen"], "compile": False, **fields}


@pytest.mark.parametrize(
    ("settings", "cases", "message"),
    [
        ({}, [], "cases: Tuple should have at least 1 item after validation, not 0"),
        ({"memory_tolerance": "inf"}, [tiny()], "memory_tolerance: Input should be a finite number"),
        ({}, [tiny(golden="../../x")], "cases.0.golden: golden '../../x' must stay inside the golden directory; drop the '..'"),
        ({}, [tiny(num_slices=2147483648)], "cases.0.num_slices: Input should be less than or equal to 4096"),
    ],
)
def test_bad_matrices(tmp_path: Path, settings: dict[str, Any], cases: list[Any], message: str) -> None:
    matrix = write_matrix(tmp_path, *cases, **settings)
    for command in (("check",), ("golden", "update")):
        assert fails(*command, "--matrix", matrix) == f"error: matrix {matrix}: {message}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.yml"]


def test_a_model_path_cannot_climb_out_of_the_golden_root(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, tiny(model="../../evil:M"))
    err = fails("golden", "update", "--matrix", matrix)
    assert err.endswith("would write goldens outside the golden directory; give it a plain `golden` subdirectory")


EXITS_ON_IMPORT = "import sys\nsys.exit(0)\n"


@pytest.fixture
def user_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "exits_on_import.py").write_text(EXITS_ON_IMPORT)
    (tmp_path / "interrupts_on_import.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    for name in ("exits_on_import", "interrupts_on_import"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(("module", "raised"), [("exits_on_import", "SystemExit: 0"),
                                                 ("interrupts_on_import", "KeyboardInterrupt")])
def test_user_code_that_exits_on_import_is_a_build_failure(user_dir: Path, module: str, raised: str) -> None:
    err = fails("compile", "--no-compile", "-t", "v5p-8", "--model", f"{module}:M", code=3)
    assert err == f"error: model '{module}:M': cannot import module '{module}': {raised}"


def test_a_case_that_cannot_be_imported_is_exit_3_in_its_row_and_the_others_run(user_dir: Path) -> None:
    matrix = write_matrix(user_dir, tiny(model="exits_on_import:M"), tiny())
    assert run("golden", "update", "--matrix", matrix).exit_code == 3
    result = run("check", "--matrix", matrix, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 3 and [o["status"] for o in data["outcomes"]] == ["error", "ok"]
    assert data["outcomes"][0]["error"] == "model 'exits_on_import:M': cannot import module 'exits_on_import': SystemExit: 0"


def test_the_working_directory_goes_after_the_standard_library(user_dir: Path) -> None:
    (user_dir / "json.py").write_text("raise RuntimeError('shadowed')\n")
    fails("compile", "--no-compile", "-t", "v5p-8", "--model", "exits_on_import:M", code=3)
    assert sys.path.index(str(user_dir)) > sys.path.index(os.path.dirname(os.__file__))


# ---- goldens, reports and the cache


@pytest.fixture
def guarded(tmp_path: Path) -> Path:
    """Two sharding-only cases with their goldens written."""
    matrix = write_matrix(tmp_path, tiny(), tiny(topology="v6e-8"))
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    return matrix


def _edit(path: Path, **fields: Any) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def test_one_malformed_golden_is_a_finding_for_its_case_not_an_abort(guarded: Path) -> None:
    bad = guarded.parent / "golden/tiny/v5p-8/linen/named_shardings.json"
    _edit(bad, versions=["x"])
    result = run("check", "--matrix", guarded, "--json")
    data = json.loads(result.stdout)
    assert result.exit_code == 2 and [o["status"] for o in data["outcomes"]] == ["error", "ok"]
    assert data["outcomes"][0]["error"] == f"golden file {bad}: versions: Input should be a valid dictionary; regenerate it"
    assert run("golden", "update", "--matrix", guarded).exit_code == 0  # an update replaces it
    assert run("check", "--matrix", guarded).exit_code == 0


def test_a_30_digit_number_in_a_golden_is_one_line(tmp_path: Path) -> None:
    golden = tmp_path / "g"
    shutil.copytree(GOLDEN, golden)
    text = (golden / "named_shardings.json").read_text()
    (golden / "named_shardings.json").write_text(text.replace('"shape": [', '"shape": [123456789012345678901234567890, ', 1))
    err = fails("diff", golden, GOLDEN)
    assert err.startswith(f"error: golden file {golden / 'named_shardings.json'} is not valid: the number 12345678901234567890")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_in_a_golden_compile_json_are_refused(tmp_path: Path, value: str) -> None:
    golden = tmp_path / "g"
    shutil.copytree(GOLDEN, golden)
    path = golden / "compile.json"
    text = path.read_text()
    key = '"flops": '
    start = text.index(key) + len(key)
    path.write_text(text[:start] + value + text[text.index(",", start):])
    err = fails("diff", golden, GOLDEN)
    assert err == f"error: golden file {path} is not valid: {value} is not JSON (numbers must be finite); regenerate or fix it"


def test_a_report_with_infinity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text('{"header": {"model": "x"}, "leaves": {}, "x": Infinity}')
    assert "Infinity is not JSON (numbers must be finite)" in fails("diff", path, GOLDEN)


def test_a_report_whose_recorded_rewrites_are_not_rules_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report = json.loads(run(*COMPILE, "--format", "json").output)
    report["header"]["rewrites"] = {"nnx": [["(", "x"]]}
    path.write_text(json.dumps(report))
    assert fails("diff", path, GOLDEN) == (
        f"error: {path}: the model's rewrites: nnx rule 1: bad pattern '(': missing ), unterminated subpattern at position 0")


# ---- output files


def test_out_refuses_directories_fifos_and_devices(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for target, kind in ((tmp_path, "a directory"), (fifo, "not a regular file (a device, FIFO or socket)"),
                         (Path("/dev/null"), "not a regular file (a device, FIFO or socket)")):
        assert fails(*COMPILE, "--format", "json", "--out", target) == f"error: --out {target} is {kind}; give a file path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo"]  # no temporary file left, nothing named .tmp


def test_out_follows_a_symlink_to_a_regular_file(tmp_path: Path) -> None:
    real, link = tmp_path / "real.json", tmp_path / "link.json"
    real.write_text("old")
    link.symlink_to(real)
    assert run(*COMPILE, "--format", "json", "--out", link).exit_code == 0
    assert link.is_symlink() and json.loads(real.read_text())["header"]["model"] == "tiny"


def test_check_outputs_refuse_directories(guarded: Path) -> None:
    for option in ("--junit", "--markdown"):
        err = fails("check", "--matrix", guarded, option, guarded.parent)
        assert err == f"error: {option} {guarded.parent} is a directory; give a file path"


# ---- the error boundary


def test_an_internal_error_is_exit_5_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from aotcheck import _pipeline

    def broken(*_a: Any, **_k: Any) -> Any:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(_pipeline, "build", broken)
    err = fails(*COMPILE, code=5)
    assert err == "error: internal error: ZeroDivisionError: division by zero; rerun with --debug for the traceback and report it"
    result = run("--debug", *COMPILE)
    assert result.exit_code == 5 and "Traceback" in result.stderr and "ZeroDivisionError" in result.stderr
    monkeypatch.setenv("AOTCHECK_DEBUG", "1")
    assert "Traceback" in run(*COMPILE).stderr


def test_the_libtpu_lockfile_hint_never_suggests_sudo() -> None:
    from aotcheck._topology import libtpu_message

    raw = "TPU in use by another process; run `sudo rm /tmp/libtpu_lockfile` and try again"
    message = libtpu_message(RuntimeError(raw))
    assert "sudo" not in message and "rm " not in message
    assert message == ("another process holds libtpu's lock file (/tmp/libtpu_lockfile); let it finish, "
                       "or set ALLOW_MULTIPLE_LIBTPU_LOAD=1 (aotcheck sets it unless you override it)")


# ---- the compile cache is best effort


def test_an_unwritable_cache_is_a_warning_and_the_report_is_still_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", "/proc/x")
    result = run("compile", "--topology", "v5p-8", "--backend", "mock", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["compile"]["needed_bytes_per_device"] > 0
    assert result.stderr.startswith("warning: cache not written (") and result.stderr.count("\n") == 1
    assert result.stderr.strip().endswith("/proc/x); the result is unaffected")


def test_a_garbage_cache_entry_is_discarded_and_recompiled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path))
    args = ("compile", "--topology", "v5p-8", "--backend", "mock", "--format", "json")
    first = run(*args)
    assert first.exit_code == 0
    entries = sorted(tmp_path.glob("[cr]-*.json"))  # the report (r-) and its compile section (c-)
    assert [e.name[:2] for e in entries] == ["c-", "r-"]
    for entry in entries:
        entry.write_text('{"garbage": NaN')
    again = run(*args)
    assert again.exit_code == 0 and "Traceback" not in again.stderr
    assert json.loads(again.stdout)["compile"] == json.loads(first.stdout)["compile"]
    assert json.loads(entries[0].read_text())["needed_bytes_per_device"] > 0  # rewritten by the recompile


def test_a_golden_partition_spec_longer_than_its_shape_is_one_line(tmp_path: Path) -> None:
    # Found by the fuzzer: an IndexError (exit 5) before.
    golden = tmp_path / "g"
    shutil.copytree(GOLDEN, golden)
    path = golden / "named_shardings.json"
    data = json.loads(path.read_text())
    leaf = "params/decoder/layers/mlp/wi_0/kernel"
    data["shardings"][leaf]["shape"] = []
    path.write_text(json.dumps(data))
    assert fails("diff", golden, GOLDEN) == (
        f"error: golden directory {golden}: leaf {leaf} has a PartitionSpec of "
        f"{len(json.loads((GOLDEN / 'named_shardings.json').read_text())['shardings'][leaf]['partition_spec'])} "
        "dimensions for a shape of 0; regenerate it")
