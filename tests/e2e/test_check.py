"""`aotcheck check` / `golden update`: real regressions through the gate, exit codes, and CI outputs."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pydantic
import pytest
from flax import linen as nn
from typer.testing import CliRunner

from aotcheck._cli import app
from aotcheck._model import ModelSpec
from aotcheck._topology import libtpu_available

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
KERNELS = {f"param/decoder/layers/mlp/{k}/kernel" for k in ("wi_0", "wi_1", "wo")}



def write_matrix(directory: Path, *cases: dict[str, Any], **settings: Any) -> Path:
    path = directory / "matrix.yml"
    path.write_text(json.dumps({"golden_dir": "golden", **settings, "cases": list(cases)}))
    return path


def tiny(overrides: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "topology": "v5p-8", "paths": ["linen"], "overrides": overrides or [], **fields}


def run(*args: str | Path) -> Any:
    return runner.invoke(app, [str(a) for a in args])


def check(matrix: Path, *args: str | Path) -> tuple[int, dict[str, Any]]:
    result = run("check", "--matrix", matrix, "--json", *args)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def guarded(tmp_path: Path) -> Path:
    """A one-case matrix (tiny on v5p-8, Linen) with its goldens written."""
    matrix = write_matrix(tmp_path, tiny())
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    return matrix


def test_missing_golden_fails_with_the_command_that_creates_it(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, tiny(paths=["linen", "nnx"]))
    code, data = check(matrix)
    assert code == 1 and [o["status"] for o in data["outcomes"]] == ["missing", "missing"]
    hint = data["outcomes"][0]["hint"]
    command = hint.split("create them with: ")[1]
    assert command == f"aotcheck golden update --matrix {matrix} --case 'tiny/v5p-8'"
    created = run(*shlex.split(command)[1:])
    assert created.exit_code == 0, created.output
    assert "created" in created.stdout
    assert sorted(p.name for p in (tmp_path / "golden/tiny/v5p-8/nnx").iterdir()) == [
        "compile.json", "logical_annotations.json", "named_shardings.json", "state_dtypes.json"]
    code, data = check(matrix)
    assert code == 0 and [o["status"] for o in data["outcomes"]] == ["ok", "ok"]


def _regression(matrix: Path, case: dict[str, Any]) -> list[dict[str, Any]]:
    """Edit the case as a pull request would, check (must fail), update, and check again (must pass)."""
    write_matrix(matrix.parent, case)
    code, data = check(matrix)
    assert code == 1 and data["outcomes"][0]["status"] == "changed"
    human = run("check", "--matrix", matrix)
    assert human.exit_code == 1
    for f in data["outcomes"][0]["findings"]:
        memory = f["category"] == "memory per chip beyond tolerance"
        where = f["leaf"] or (f"{next(iter(f['before']))} bytes per chip" if memory else "(program)")
        assert f"{f['category']}: {where}: " in human.stdout
    updated = run("check", "--update", "--matrix", matrix)
    assert updated.exit_code == 0 and "updated" in updated.stdout
    assert data["outcomes"][0]["findings"][0]["category"] in updated.stdout  # what the update changed
    assert check(matrix)[0] == 0
    return data["outcomes"][0]["findings"]


def test_edited_logical_rule_is_a_partitionspec_change_on_the_named_leaves(guarded: Path) -> None:
    findings = _regression(guarded, tiny(["logical_axis_rules=[[mlp, [fsdp]]]"]))
    specs = {f["leaf"]: (f["before"], f["after"]) for f in findings if f["category"] == "PartitionSpec changed"}
    assert specs == {
        "param/decoder/layers/mlp/wi_0/kernel": (["fsdp"], [None, None, "fsdp"]),
        "param/decoder/layers/mlp/wi_1/kernel": (["fsdp"], [None, None, "fsdp"]),
        "param/decoder/layers/mlp/wo/kernel": ([None, None, "fsdp"], ["fsdp"]),
    }
    # No other leaf moved; the optimizer moments are named on their parameter's finding.
    assert {f["leaf"] for f in findings if f["leaf"] is not None} == KERNELS
    assert all("same in opt/0/mu, opt/0/nu" in f["note"] for f in findings if f["leaf"])


def test_weight_dtype_flip_is_a_dtype_change_on_every_parameter(guarded: Path) -> None:
    params = {k for k, v in json.loads((guarded.parent / "golden/tiny/v5p-8/linen/state_dtypes.json").read_text())["leaves"].items()
              if v["role"] == "param"}
    findings = _regression(guarded, tiny(["weight_dtype=bfloat16"]))
    dtypes = [f for f in findings if f["category"] == "dtype changed"]
    assert {f["leaf"] for f in dtypes} == {"param/" + p.removeprefix("params/") for p in params}
    assert all((f["before"], f["after"]) == ("float32", "bfloat16") for f in dtypes)
    # bf16 weights halve what FSDP gathers: the collective bytes per step change with them.
    assert {f["category"] for f in findings} == {"dtype changed", "memory per chip beyond tolerance", "collectives changed"}


def test_removed_annotation_is_a_newly_replicated_large_leaf(guarded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jax.numpy as jnp

    from aotcheck.models.decoder import linen

    annotated = linen._Layer._param

    def forgetful(self: Any, name: str, shape: tuple[int, ...], axes: Any, init: Any = linen._INIT) -> Any:
        if name == "embedding":  # as if someone dropped nn.with_logical_partitioning from the embedder
            return self.param(name, init, shape, jnp.dtype(self.cfg.core.weight_dtype))
        return annotated(self, name, shape, axes, init)

    monkeypatch.setattr(linen._Layer, "_param", forgetful)
    # A change made in this process, not in a file: the report cache cannot see it.
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(guarded.parent / "empty-cache"))
    code, data = check(guarded)
    assert code == 1
    findings = data["outcomes"][0]["findings"]
    replicated = [f for f in findings if f["leaf"] is not None]
    assert [(f["category"], f["leaf"]) for f in replicated] == [("newly replicated large leaf", "param/token_embedder/embedding")]
    assert replicated[0]["before"] == {"partition_spec": [None, "fsdp"], "logical_axes": ["vocab", "embed_vocab"]}
    assert replicated[0]["after"] == {"partition_spec": [], "logical_axes": None}
    assert "1.00 MiB per device" in replicated[0]["note"]
    assert run("check", "--update", "--matrix", guarded).exit_code == 0
    assert check(guarded)[0] == 0


def test_bigger_batch_is_memory_beyond_tolerance_and_the_tolerance_is_configurable(guarded: Path) -> None:
    bigger = tiny(["per_device_batch_size=8"])
    write_matrix(guarded.parent, bigger)
    code, data = check(guarded)
    findings = data["outcomes"][0]["findings"]
    assert code == 1 and all(f["leaf"] is None for f in findings)
    memory = {k: (f["before"][k], f["after"][k]) for f in findings if f["category"] == "memory per chip beyond tolerance"
              for k in f["before"]}
    assert set(memory) == {"peak", "temp"} and all(after > before for before, after in memory.values())
    # peak grows ~36% and temp ~73%: a 50% tolerance keeps only temp, in the matrix or on the command line.
    write_matrix(guarded.parent, bigger, memory_tolerance=0.5)
    kinds = lambda d: [(f["category"], list(f["before"]) if isinstance(f["before"], dict) else None)  # noqa: E731
                       for f in d["outcomes"][0]["findings"]]
    assert kinds(check(guarded)[1]) == [("memory per chip beyond tolerance", ["temp"]),
                                        ("collectives changed", ["all-gather", "all-reduce", "all-to-all"]),
                                        ("FLOPs changed", None)]
    assert kinds(check(guarded, "--memory-tolerance", "5")[1]) == []
    assert _regression(guarded, bigger)[0]["category"] == "memory per chip beyond tolerance"


def test_a_compile_that_now_fails_exits_3_with_the_finding(guarded: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aotcheck import _program as step
    from aotcheck._errors import BuildError

    def broken(lowered: Any, label: str, options: Any = None) -> Any:
        raise BuildError(f"{label}: compile failed: RESOURCE_EXHAUSTED: out of vmem")

    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(step, "compile_lowered", broken)
    code, data = check(guarded)
    outcome = data["outcomes"][0]
    assert code == 3 and outcome["status"] == "error" and "out of vmem" in outcome["error"]
    assert [(f["category"], f["before"]) for f in outcome["findings"]] == [("compile newly failing", "fits")]
    result = run("check", "--matrix", guarded)
    assert result.exit_code == 3 and "compile newly failing: (program): fits -> " in result.stdout
    assert run("golden", "update", "--matrix", guarded).exit_code == 3  # nothing is written from a failed build


def test_usage_and_configuration_errors_exit_2(tmp_path: Path, guarded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("cases: [{topology: v5p-8, modle: tiny}]")
    result = run("check", "--matrix", bad)
    assert result.exit_code == 2 and result.stderr == f"error: matrix {bad}: cases.0.modle: Extra inputs are not permitted\n"
    assert run("check", "--matrix", guarded, "--shard", "3/2").exit_code == 2
    assert run("check", "--matrix", guarded, "--case", "nope").stderr.startswith("error: no case named 'nope'")
    # A case the matrix cannot build as written (an unknown slice) is a configuration error too.
    write_matrix(tmp_path, tiny(topology="v5p-9"))
    code, data = check(guarded)
    assert code == 2 and "v5p-9" in data["outcomes"][0]["error"]


def test_updates_are_refused_in_ci_unless_forced(guarded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    for args in (("golden", "update"), ("check", "--update")):
        result = run(*args, "--matrix", guarded)
        assert result.exit_code == 2 and "refusing to update goldens in CI" in result.stderr
    assert run("golden", "update", "--force", "--matrix", guarded).exit_code == 0
    assert run("check", "--matrix", guarded).exit_code == 0  # checking is what CI is for


def _pytest_junit(tmp_path: Path) -> ET.Element:
    """pytest's own JUnit XML for one passing and one failing test: the reference format."""
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref/test_ref.py").write_text("def test_ok():\n    pass\n\ndef test_bad():\n    assert 0, 'boom'\n")
    out = tmp_path / "ref.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", "/dev/null",
                    f"--junitxml={out}", str(tmp_path / "ref/test_ref.py")], capture_output=True, check=False)
    return ET.parse(out).getroot()


def test_junit_markdown_json_and_the_github_step_summary(guarded: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_matrix(guarded.parent, tiny(["weight_dtype=bfloat16"]), tiny(topology="v6e-8", compile=False))
    assert run("golden", "update", "--matrix", guarded, "--case", "tiny/v6e-8").exit_code == 0
    summary = tmp_path / "step-summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    junit, markdown = tmp_path / "out/junit.xml", tmp_path / "out/summary.md"
    result = run("check", "--matrix", guarded, "--junit", junit, "--markdown", markdown)
    assert result.exit_code == 1

    ours, ref = ET.parse(junit).getroot(), _pytest_junit(tmp_path)
    assert ours.tag == ref.tag == "testsuites"
    (suite,), (ref_suite,) = list(ours), list(ref)
    assert suite.tag == ref_suite.tag == "testsuite" and set(suite.attrib) <= set(ref_suite.attrib)
    assert {k: suite.get(k) for k in ("name", "tests", "failures", "errors", "skipped")} == {
        "name": "aotcheck", "tests": "2", "failures": "1", "errors": "0", "skipped": "0"}
    ref_failed = next(c for c in ref_suite if c.find("failure") is not None)
    failed, passed = list(suite)
    assert set(failed.attrib) == set(passed.attrib) == set(ref_failed.attrib) == {"classname", "name", "time"}
    assert (failed.get("name"), passed.get("name")) == ("tiny/v5p-8/linen", "tiny/v6e-8/linen")
    failure = failed.find("failure")
    assert failure is not None and set(failure.attrib) == set(ref_failed.find("failure").attrib) == {"message"}
    assert "dtype changed: param/token_embedder/embedding: float32 -> bfloat16" in failure.text
    assert passed.find("failure") is None and float(passed.get("time")) > 0

    md = markdown.read_text()
    assert summary.read_text() == "earlier step\n" + md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert rows[:4] == [
        "| case | path | status | what changed |",
        "|---|---|---|---|",
        "| `tiny/v5p-8` | linen | changed | 12 dtype changed, 3 memory per chip beyond tolerance, 1 collectives changed |",
        "| `tiny/v6e-8` | linen | ok | - |",
    ]
    assert all(line.replace("\\|", "").count("|") == 5 for line in rows[:4])
    assert all(line.replace("\\|", "").count("|") == 6 for line in rows[4:])
    assert ("| dtype changed | `param/token_embedder/embedding` | `float32` | `bfloat16` | "
            "same in opt/0/mu, opt/0/nu: the optimizer state mirrors the parameter |") in md

    code, data = check(guarded)
    assert code == 1 and data["exit_code"] == 1 and data["counts"] == {"changed": 1, "ok": 1}
    assert [(o["case"], o["path"], o["status"]) for o in data["outcomes"]] == [
        ("tiny/v5p-8", "linen", "changed"), ("tiny/v6e-8", "linen", "ok")]


def test_shards_split_the_matrix_and_parallel_jobs_agree_with_sequential(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, tiny(compile=False), tiny(topology="v6e-8", compile=False, paths=["linen", "nnx"]))
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    code, whole = check(matrix)
    assert code == 0 and len(whole["outcomes"]) == 3
    parts = [check(matrix, "--shard", f"{i}/2")[1]["outcomes"] for i in (1, 2)]
    # Whole cases are dealt: the one-path case to shard 1, both paths of the v6e-8 case to shard 2.
    assert len(parts[0]) == 1 and [(o["case"], o["path"]) for o in parts[1]] == [(parts[1][0]["case"], p) for p in ("linen", "nnx")]
    assert sorted(map(json.dumps, parts[0] + parts[1])) == sorted(map(json.dumps, whole["outcomes"]))
    write_matrix(tmp_path, tiny(["weight_dtype=bfloat16"], compile=False),
                 tiny(topology="v6e-8", compile=False, paths=["linen", "nnx"]))
    sequential = run("check", "--matrix", matrix, "--json")
    parallel = run("check", "--matrix", matrix, "--json", "-j", "2")
    assert sequential.exit_code == parallel.exit_code == 1
    assert parallel.stdout == sequential.stdout


def test_warnings_unused_goldens_versions_and_backend_never_fail(guarded: Path) -> None:
    root = guarded.parent / "golden"
    stale = root / "old-model/v5p-8/linen"
    stale.mkdir(parents=True)
    (stale / "named_shardings.json").write_text("{}\n")
    compile_json = root / "tiny/v5p-8/linen/compile.json"
    data = json.loads(compile_json.read_text())
    data["versions"]["jax"] = "0.0.1"
    compile_json.write_text(json.dumps(data))
    code, result = check(guarded)
    assert code == 0
    assert result["unused_goldens"] == [f"{stale}: no case uses this golden directory"]
    (warning,) = result["outcomes"][0]["warnings"]
    assert warning.startswith("compile.json was written with other versions (jax 0.0.1 -> ") and "not a failure" in warning
    human = run("check", "--matrix", guarded)
    assert human.exit_code == 0 and "no case uses this golden directory" in human.stdout
    if libtpu_available():
        mock = check(guarded, "--backend", "mock")
        assert mock[0] == 0
        assert ("compile figures not compared: golden from libtpu; this run is mock: --backend mock was asked"
                in mock[1]["outcomes"][0]["warnings"])


def test_an_override_nothing_reads_is_the_cases_warning_in_check_and_update(tmp_path: Path) -> None:
    # model_name only chooses the model when the case names none; here it changes nothing.
    matrix = write_matrix(tmp_path, tiny(["model_name=llama2-7b"], compile=False))
    expected = ("--set model_name=llama2-7b: nothing read 'model_name' in this run (model 'tiny', linen path); "
                "it changes nothing")
    update = run("golden", "update", "--matrix", matrix, "--json")
    assert update.exit_code == 0 and json.loads(update.stdout)["outcomes"][0]["warnings"] == [expected]
    code, result = check(matrix)
    assert code == 0 and result["outcomes"][0]["warnings"] == [expected]


def test_a_sharding_only_case_and_its_slow_compile_share_one_golden_directory(tmp_path: Path) -> None:
    fast, slow = tiny(compile=False), tiny(name="tiny/v5p-8/compile", slow=True)
    matrix = write_matrix(tmp_path, fast, slow)
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    directory = tmp_path / "golden/tiny/v5p-8/linen"
    assert not (directory / "compile.json").exists()
    assert check(matrix)[0] == 0
    code, data = check(matrix, "--slow")
    assert code == 1 and [o["status"] for o in data["outcomes"]] == ["ok", "missing"]
    assert "golden update --matrix" in data["outcomes"][1]["hint"] and "--case 'tiny/v5p-8/compile'" in data["outcomes"][1]["hint"]
    assert run("golden", "update", "--matrix", matrix, "--case", "tiny/v5p-8/compile").exit_code == 0
    assert (directory / "compile.json").is_file()
    assert check(matrix, "--all")[0] == 0
    write_matrix(tmp_path, fast)
    assert check(matrix)[1]["unused_goldens"] == [f"{directory / 'compile.json'}: no case compiles this model"]


def test_the_committed_goldens_pass_on_a_fresh_clone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default matrix (all but the slow cases) against golden/: what CI runs."""
    monkeypatch.chdir(REPO)
    code, data = check(Path("configs/matrix.yml"))
    assert code == 0, [o for o in data["outcomes"] if o["status"] != "ok"]
    assert len(data["outcomes"]) == 16 and data["unused_goldens"] == []
    if libtpu_available():  # elsewhere the compile figures are skipped, with a warning
        assert all(not o["warnings"] for o in data["outcomes"])


class _Named(nn.Module):
    """An embedding and one kernel whose first logical name and dtype come from the model's config."""

    axis: str
    dtype: str

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        init = jax.nn.initializers.normal(0.02)
        emb = self.param("embedding", nn.with_logical_partitioning(init, ("vocab", "embed")), (256, 64), jnp.float32)
        w = self.param("w", nn.with_logical_partitioning(init, (self.axis, "mlp")), (64, 64), jnp.dtype(self.dtype))
        return (emb[tokens] @ w.astype(jnp.float32)) @ emb.T


class _NamedFields(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")
    axis: str = "embed"
    w_dtype: str = "float32"


# Its own rewrites name the kernel `param/kernel` wherever two of its states are matched.
NAMED = ModelSpec(name="named", linen=lambda cfg: _Named(cfg.model.axis, cfg.model.w_dtype), config=_NamedFields,
                  defaults={"max_target_length": 8}, rewrites={"linen": [["^(param|opt/\\d+/\\w+)/w$", "\\1/kernel"]]})


def named(overrides: list[str] | None = None, **fields: Any) -> dict[str, Any]:
    return tiny(overrides, name="named", model=f"{__name__}:NAMED", compile=False, golden="named", **fields)


def test_a_renamed_logical_axis_under_the_same_spec_is_a_note_unless_check_names(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, named())
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    # embed_vocab resolves to embed's mesh axes: only the name differs.
    write_matrix(tmp_path, named(["axis=embed_vocab"]))
    code, data = check(matrix)
    assert code == 0 and data["outcomes"][0]["status"] == "ok"
    (note,) = data["outcomes"][0]["findings"]
    assert (note["category"], note["leaf"], note["explained"]) == ("logical axes changed", "param/kernel", True)
    assert note["note"].startswith("only the names differ: the same PartitionSpec P('fsdp')")
    code, data = check(matrix, "--names")
    assert code == 1 and data["outcomes"][0]["status"] == "changed"
    assert [(f["category"], f["explained"]) for f in data["outcomes"][0]["findings"]] == [("logical axes changed", False)]


def test_case_rewrites_apply_after_the_models_own_and_a_collision_is_the_cases_usage_error(tmp_path: Path) -> None:
    matrix = write_matrix(tmp_path, named(), tiny(compile=False))
    assert run("golden", "update", "--matrix", matrix).exit_code == 0
    (tmp_path / "rewrites.yml").write_text("linen:\n  - ['^(param|opt/\\d+/\\w+)/kernel$', '\\1/mixer']\n")
    write_matrix(tmp_path, named(["w_dtype=bfloat16"], rewrites="rewrites.yml"), tiny(compile=False))
    code, data = check(matrix)
    assert code == 1
    # The model's rule (w -> kernel), then the case's (kernel -> mixer); the Adam moments fold into it.
    (finding,) = data["outcomes"][0]["findings"]
    assert (finding["category"], finding["leaf"], finding["before"], finding["after"]) == (
        "dtype changed", "param/mixer", "float32", "bfloat16")
    # With -j 2 both reports come from the cache in this process: the model's rules still apply.
    code, served = check(matrix, "-j", "2")
    assert code == 1 and served["outcomes"][0]["findings"] == data["outcomes"][0]["findings"]
    # Two leaves on one canonical path: this case's configuration error, exit 2, nothing written.
    write_matrix(tmp_path, named(["w_dtype=bfloat16"], rewrites={"linen": [["^param/kernel$", "param/embedding"]]}))
    code, data = check(matrix)
    assert code == 2 and data["outcomes"][0]["error"] == (
        "case 'named': the golden: leaves params/embedding and params/w both map to canonical path param/embedding; "
        "fix the case's or the model's rewrites")
    before = (tmp_path / "golden/named/linen/state_dtypes.json").read_text()
    assert run("golden", "update", "--matrix", matrix).exit_code == 2
    assert (tmp_path / "golden/named/linen/state_dtypes.json").read_text() == before
