"""`aotcheck fit` on libtpu: the search's answer holds when compiled, infeasible rows do not stop it, -j is invisible."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app
from aotcheck._fit import search
from aotcheck._pipeline import Request, build_report

DOC = Path(__file__).resolve().parents[2] / "docs" / "fit.md"
# Two meshes (one the 4 devices of v5p-8 cannot carry), two remat policies, two batches: 8 cheap builds.
SMALL = ["fit", "--model", "tiny", "--topology", "v5p-8", "--mesh", "tensor=3", "--mesh", "fsdp=4",
         "--remat", "full,none", "--batch", "1,2"]


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_infeasible_combinations_are_rows_with_their_reason_and_the_search_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "recommended.json"
    code, stdout, stderr = run(*SMALL, "-j", "1", "--format", "json", "--out", str(out))
    assert code == 0, stderr
    rows = {(r["mesh"], r["remat_policy"]): r for r in json.loads(stdout)["rows"]}
    assert list(rows) == [("tensor=3", "full"), ("tensor=3", "none"), ("fsdp=4", "full"), ("fsdp=4", "none")]
    for remat in ("full", "none"):
        bad = rows[("tensor=3", remat)]
        assert bad["max_per_device_batch_size"] is None and not bad["pareto"]
        assert bad["reason"].startswith("mesh: ICI parallelism tensor=3 = 3 does not divide the 4 devices")
        good = rows[("fsdp=4", remat)]
        assert good["max_per_device_batch_size"] == 2 and good["peak_bytes_per_device"] > 0
        assert good["headroom_bytes_per_device"] == good["usable_bytes_per_device"] - good["peak_bytes_per_device"]
    # --out: the recommended configuration's report, as `compile --format json` writes it.
    recommended = json.loads(stdout)["recommendation"]
    report = json.loads(out.read_text())
    assert report["header"]["config"]["per_device_batch_size"] == recommended["per_device_batch_size"] == 2
    assert report["header"]["config"]["remat_policy"] == recommended["remat_policy"]
    assert report["header"]["mesh"]["shape"]["fsdp"] == 4 and report["compile"]["verdict"] == "fits"


def test_jobs_2_gives_the_same_table_as_jobs_1() -> None:
    # -j 2 first: its builds run in spawned workers (libtpu's environment, a fresh jax each).
    code2, table2, err2 = run(*SMALL, "-j", "2")
    code1, table1, err1 = run(*SMALL, "-j", "1")
    assert (code2, code1) == (0, 0), err2 + err1
    assert table2 == table1
    # The reason wraps inside its column: its first words are enough to find it.
    assert "recommended: v5p-8, mesh fsdp=4" in table1 and "mesh: ICI" in table1 and "tensor=3 =" in table1


@pytest.mark.parametrize(("args", "words"), [
    (["--topology", "v5p-100"], "unknown topology 'v5p-100'"),
    (["--mesh", "fsdb=4"], "did you mean fsdp"),
    (["--remat", "fulll"], "unknown policy 'fulll'"),
    (["--batch", "1,x"], "--batch expects positive integers"),
    (["--format", "yaml"], "choose table, json or markdown"),
])
def test_bad_options_are_one_line_errors_with_exit_2(args: list[str], words: str) -> None:
    code, _, stderr = run("fit", "--model", "tiny", *args)
    assert code == 2 and stderr.startswith("error: ") and words in stderr and "Traceback" not in stderr


@pytest.mark.slow
def test_the_answer_b_fits_and_b_plus_one_does_not_when_compiled() -> None:
    # The case: tiny at sequence 8192 on one v5e chip (15.75 GiB usable). Minutes under load.
    request = Request(model="tiny", topology="v5e-1", overrides=("max_target_length=8192",))
    result = search(request, jobs=1)[0]
    b = result.rows[0].max_per_device_batch_size
    assert b is not None and result.recommendation is not None
    fits, misses = ([build_report(Request(model="tiny", topology="v5e-1", cache=False,
                                          overrides=("max_target_length=8192", f"per_device_batch_size={n}"))).compile
                     for n in (b, b + 1)])
    assert fits is not None and misses is not None
    assert fits.fits and not misses.fits
    assert result.rows[0].peak_bytes_per_device == fits.needed_bytes_per_device


def examples() -> list[object]:
    """Each `$ aotcheck fit` line of docs/fit.md with its shown output; a search without --batch is slow."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found and line.strip() and not line.startswith(("┏", "┃", "┡", "└", "...")):
                found[-1][1].append(line.strip())
    return [pytest.param(c, e, id=c, marks=() if "--batch" in c else pytest.mark.slow) for c, e in found]


@pytest.mark.parametrize(("command", "expected"), examples())
def test_docs_example(command: str, expected: list[str]) -> None:
    argv = shlex.split(command)
    assert argv[0] == "aotcheck"
    code, stdout, stderr = run(*argv[1:])
    assert code == 0, stderr
    shown = [line.strip() for line in stdout.splitlines()]
    for line in expected:
        assert line in shown, f"docs/fit.md shows {line!r}; the command printed:\n{stdout}"


def test_docs_python_example(capsys: pytest.CaptureFixture[str]) -> None:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert code is not None
    exec(compile(code.group(1), str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out == ["v5p-8 fsdp=4 full 2 True", "v5p-8 fsdp=4 none 2 False",
                   "v5p-8, mesh fsdp=4, remat full: per-device batch 2 (peak 20.74 MiB of 95.74 GiB per device, "
                   "headroom 95.72 GiB)"]
