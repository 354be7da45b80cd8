"""The conventions users already have: output that fits COLUMNS, -V, -q, python -m, --format, exit codes in --help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"\S+\s+\[[\d, ]*\]?.*?\s(u?int\d+|float\d+|bfloat16)\s+P\(.*\s(\d+ B|\d+\.\d\d [KMGT]iB)\s*$")


def aotcheck(*args: str, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run([sys.executable, "-m", "aotcheck", *args], capture_output=True, text=True, env=env,
                          cwd=REPO, check=False, timeout=600)


@pytest.mark.parametrize("leaves", [False, True])
def test_at_80_columns_every_row_shows_shape_dtype_spec_and_bytes(leaves: bool) -> None:
    args = ["compile", "--topology", "v5p-8", *(["--leaves"] if leaves else [])]
    out = aotcheck(*args, columns=80)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if ROW.match(line)]
    report = json.loads(aotcheck(*args, "--format", "json").stdout)
    assert len(rows) == (len(report["leaves"]) if leaves else 8)


def test_piped_output_is_plain_with_full_paths() -> None:
    out = aotcheck("compile", "--topology", "v5p-8", "--leaves")
    assert out.returncode == 0 and "\x1b[" not in out.stdout
    assert "opt_state/0/mu/decoder/layers/post_self_attention_layer_norm/scale" in out.stdout
    assert "logical axes" in out.stdout and "per device" in out.stdout


def test_python_m_and_short_version() -> None:
    out = aotcheck("-V")
    assert out.returncode == 0 and out.stdout.startswith("aotcheck ")
    assert runner.invoke(app, ["--version"]).stdout == out.stdout


@pytest.mark.parametrize("command", [["compile"], ["check"], ["diff"], ["golden", "update"], ["topologies"],
                                     ["models"], ["schema"]])
def test_every_help_lists_the_exit_codes(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Exit codes: 0 ok; 1 a regression or difference; 2 usage or configuration error; 3" in text


def test_completion_is_offered() -> None:
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_quiet_check_prints_only_the_verdict_and_format_json_replaces_json(tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.yml"
    matrix.write_text(json.dumps({"golden_dir": "g", "cases": [
        {"model": "tiny", "topology": "v5p-8", "paths": ["linen"], "compile": False}]}))
    env = {"CI": ""}
    assert runner.invoke(app, ["golden", "update", "--matrix", str(matrix)], env=env).exit_code == 0
    quiet = runner.invoke(app, ["-q", "check", "--matrix", str(matrix)], env=env)
    assert quiet.exit_code == 0 and quiet.stdout == "aotcheck check: passed (1 ok)\n"
    assert quiet.stderr == ""
    new = runner.invoke(app, ["check", "--matrix", str(matrix), "--format", "json"], env=env)
    old = runner.invoke(app, ["check", "--matrix", str(matrix), "--json"], env=env)
    assert json.loads(new.stdout) == json.loads(old.stdout) and json.loads(new.stdout)["exit_code"] == 0
    # -k expressions and AOTCHECK_* settings from the environment.
    nothing = runner.invoke(app, ["check", "--matrix", str(matrix), "-k", "tiny and not linen"], env=env)
    assert nothing.exit_code == 2 and "no case matches 'tiny and not linen'" in nothing.stderr
    bad = runner.invoke(app, ["check", "--matrix", str(matrix)], env={**env, "AOTCHECK_BACKEND": "gpu"})
    assert bad.exit_code == 2


def test_verbose_prints_each_stage_with_its_time_and_quiet_prints_none() -> None:
    # --no-cache: a report served whole from the cache has no stages to show.
    verbose = runner.invoke(app, ["-v", "compile", "--topology", "v5p-8", "--no-compile", "--no-cache"])
    assert verbose.exit_code == 0, verbose.stderr
    stages = [line for line in verbose.stderr.splitlines() if re.match(r"^\[\s*\d+\.\d\ds\] \S", line)]
    assert len(stages) >= 2 and stages[-1].endswith("] done")
    quiet = runner.invoke(app, ["-q", "compile", "--topology", "v5p-8", "--no-compile"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and "tiny (linen) on v5p-8" in quiet.stdout
