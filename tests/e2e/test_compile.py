"""`aotcheck compile`: the report's content is right, complete and deterministic, on both paths."""

from __future__ import annotations

import json

import jax
import pytest
from typer.testing import CliRunner

from aotcheck._cli import app
from aotcheck._io import cache_dir
from aotcheck._pipeline import Request, build, build_report
from aotcheck._sharding import as_axes, normalise
from aotcheck._state import path_str
from aotcheck._topology import libtpu_available

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("path", ["linen", "nnx"])
@pytest.mark.parametrize("topology", ["v5p-8", "v5p-128"])
def test_report_shardings_are_the_compiled_executables(path: str, topology: str) -> None:
    # The report must tell the truth: every leaf's spec is the one XLA compiled the step with.
    built = build(Request(topology=topology, pure_nnx=path == "nnx", cache=False))
    assert built.executable is not None
    state_shardings = built.executable.input_shardings[0][0]
    flat = jax.tree_util.tree_flatten_with_path(state_shardings)[0]
    report = built.report.leaves
    assert len(flat) == len(report)
    mesh_shape = built.report.mesh_shape
    for keys, sharding in flat:
        assert normalise([as_axes(e) for e in sharding.spec], mesh_shape) == report[path_str(keys)].partition_spec, path_str(keys)


def test_linen_and_nnx_compile_to_the_same_program_figures() -> None:
    linen = build_report(Request(topology="v5p-128", pure_nnx=False)).compile
    nnx = build_report(Request(topology="v5p-128", pure_nnx=True)).compile
    assert linen is not None and nnx is not None
    assert linen.memory_per_device == nnx.memory_per_device
    assert (linen.per_step, linen.xla_cost, linen.collectives) == (nnx.per_step, nnx.xla_cost, nnx.collectives)


def test_json_report_schema_and_content() -> None:
    code, out, _ = run("compile", "--topology", "v5p-128", "--pure-nnx", "--format", "json", "--no-cache")
    assert code == 0
    data = json.loads(out)
    assert data["schema"] == "aotcheck.report/2"
    header = data["header"]
    assert header["path"] == "nnx" and header["backend"] == "libtpu"
    expected = {"name": "v5p-128", "libtpu_topology": "v5:4x4x4", "chips": 64, "devices": 64}
    assert {k: header["topology"][k] for k in expected} == expected
    assert header["mesh"]["shape"]["fsdp"] == 64
    assert set(header["versions"]) == {"aotcheck", "jax", "jaxlib", "libtpu", "flax", "optax"}
    assert list(data["leaves"]) == sorted(data["leaves"])
    wi0 = data["leaves"]["model/decoder/layers/mlp/wi_0/kernel/value"]
    assert wi0 == {
        "role": "param",
        "shape": [256, 4, 512],
        "dtype": "float32",
        "logical_axes": ["embed", "layers", "mlp"],
        "partition_spec": ["fsdp"],
        "shard_shape": [4, 4, 512],
        "bytes": 256 * 4 * 512 * 4,
        "bytes_per_device": 4 * 4 * 512 * 4,
    }
    comp = data["compile"]
    mem = comp["memory_per_device"]
    assert mem["peak"] == mem["argument"] + mem["output"] + mem["temp"] - mem["alias"]
    # Usable HBM (the compiler's limit on v5p) decides; the spec sheet's figure stands beside it.
    assert comp["verdict"] == "fits" and comp["capacity_bytes_per_device"] == int(95.74 * 1024**3)
    assert comp["hbm_spec_bytes_per_device"] == 95 * 1024**3
    assert comp["per_step"]["flops"] > 3 * comp["xla_cost"]["flops"] > 0  # 4 scanned layers, counted once by XLA
    assert set(comp["collectives"]) >= {"all-gather", "all-reduce"}
    assert comp["collectives"]["all-gather"]["by_axis"].keys() == {"fsdp"}
    assert comp["estimate"]["step_seconds"] > 0 and 0 < comp["estimate"]["mfu"] < 1
    assert comp["drift"] == []
    assert data["totals"]["parameters"] == 2_885_888
    assert set(data["timings"]) >= {"lower_seconds", "compile_cache_hit"}


def test_reports_are_byte_identical_apart_from_timings() -> None:
    def stable() -> str:
        code, out, _ = run("compile", "--topology", "v5p-8", "--format", "json")
        assert code == 0
        data = json.loads(out)
        del data["timings"]
        return json.dumps(data, sort_keys=True)

    assert stable() == stable()


def test_summary_names_topology_mesh_memory_and_largest_leaves() -> None:
    code, out, _ = run("compile", "--topology", "v5p-128")
    assert code == 0
    assert "tiny (linen) on v5p-128: 64 chips, 64 devices, v5:4x4x4" in out
    assert "mesh: fsdp=64" in out
    assert "fits:" in out and "of 95.74 GiB per device" in out  # the compiler's usable HBM on v5p
    assert "largest 8 leaves per device" in out and "params/decoder/layers/mlp/wi_0/kernel" in out


def test_no_compile_gives_the_sharding_report_alone() -> None:
    code, out, _ = run("compile", "--no-compile", "--format", "json", "--topology", "v5p-128")
    assert code == 0
    data = json.loads(out)
    assert data["compile"] is None and "compile_seconds" not in data["timings"]
    assert data["leaves"]["params/decoder/layers/mlp/wi_0/kernel"]["partition_spec"] == ["fsdp"]


def test_a_setting_nothing_reads_is_a_warning_and_the_header_shows_what_was_read() -> None:
    # With the model named, `model_name` chooses nothing.
    code, out, err = run("compile", "--no-compile", "--model", "tiny", "--set", "model_name=llama2-7b",
                         "--set", "scan_layers=false")
    assert code == 0
    assert err.splitlines() == ["warning: --set model_name=llama2-7b: nothing read 'model_name' in this run "
                                "(model 'tiny', linen path); it changes nothing"]
    assert "model settings: base_emb_dim=256," in out and ", scan_layers=false," in out
    code, out, err = run("compile", "--no-compile", "--format", "json", "--set", "model_name=tiny")
    assert code == 0 and "warning" not in err
    header = json.loads(out)["header"]
    assert header["config"]["model_name"] == "tiny" and header["config"]["scan_layers"] is True
    assert header["own_config"]["base_num_decoder_layers"] == 4 and "base_num_decoder_layers" not in header["config"]


def test_mock_backend_says_so_everywhere() -> None:
    code, out, _ = run("compile", "--backend", "mock", "--topology", "v5p-8")
    assert code == 0
    assert "mock (CPU devices)" in out
    code, out, _ = run("compile", "--backend", "mock", "--topology", "v5p-128", "--pure-nnx", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["header"]["backend"] == "mock" and data["header"]["topology"]["device_kind"] == "mock (CPU devices)"
    assert any("mock backend" in n for n in data["compile"]["notes"])


def test_multi_slice_puts_dcn_parallelism_on_the_data_axis() -> None:
    code, out, _ = run("compile", "--topology", "v5p-8", "--num-slices", "2", "--format", "json")
    assert code == 0
    header = json.loads(out)["header"]
    assert header["topology"]["name"] == "v5p-8-x2" and header["topology"]["devices"] == 8
    assert header["mesh"]["dcn"]["data"] == 2 and header["mesh"]["ici"]["fsdp"] == 4


def test_out_of_hbm_is_a_verdict_with_its_own_exit_code() -> None:
    code, out, err = run(
        "compile", "--topology", "v5e-1", "--set", "per_device_batch_size=64", "--set", "max_target_length=4096"
    )
    assert code == 4, err
    assert "does not fit: needs" in out and "GiB per device" in out
    assert "Traceback" not in out + err


def test_out_file_is_written(tmp_path) -> None:
    target = tmp_path / "report.json"
    code, _, err = run("compile", "--no-compile", "--format", "json", "--out", str(target))
    assert code == 0 and f"wrote {target}" in err
    assert json.loads(target.read_text())["schema"] == "aotcheck.report/2"


def test_topologies_lists_every_public_slice_and_shows_one() -> None:
    code, out, _ = run("topologies")
    assert code == 0 and "223 TPU slices" in out and "tpu7x-16" in out and "v6e-256" in out
    code, out, _ = run("topologies", "v5p-128")
    assert code == 0 and "v5:4x4x4" in out and "95 GiB" in out and "64" in out


def test_compile_cache_serves_the_same_report() -> None:
    request = Request(topology="v5e-16", overrides=("max_target_length=96",))
    first = build_report(request)
    again = build_report(request)  # unchanged inputs: the whole report, nothing traced
    assert again.timings == {"report_cache_hit": 1.0}
    for entry in cache_dir().glob("r-*.json"):
        entry.unlink()
    second = build_report(request)  # traced and lowered again, the compile served
    assert first.timings["compile_cache_hit"] == 0.0 and second.timings["compile_cache_hit"] == 1.0
    assert "compile_seconds" not in second.timings
    strip = lambda r: {k: v for k, v in r.model_dump().items() if k != "timings"}  # noqa: E731
    assert strip(first) == strip(second) == strip(again)
    assert first.to_json().split('"timings"')[0] == again.to_json().split('"timings"')[0]
    # A different program (another batch size) is a miss, not a stale hit.
    other = build_report(Request(topology="v5e-16", overrides=("max_target_length=96", "per_device_batch_size=4")))
    assert other.timings["compile_cache_hit"] == 0.0
    assert other.compile.memory_per_device != first.compile.memory_per_device


def test_version_names_the_whole_stack() -> None:
    code, out, _ = run("--version")
    assert code == 0
    assert out.startswith("aotcheck ") and " jax " in out and " flax " in out and " optax " in out


def test_the_published_report_schema_validates_a_fresh_report() -> None:
    import jsonschema

    from aotcheck._schemas import schema_of

    code, out, _ = run("compile", "--topology", "v5p-8", "--pure-nnx", "--format", "json")
    assert code == 0
    validator = jsonschema.Draft202012Validator(schema_of("report"))
    assert list(validator.iter_errors(json.loads(out))) == []
    broken = json.loads(out)
    broken["leaves"]["optimizer/step/value"]["bytes"] = -1
    assert list(validator.iter_errors(broken))  # the schema is not vacuous


def test_fast_is_a_labelled_low_effort_compile_with_its_own_cache_entry() -> None:
    mock = ("compile", "--topology", "v5e-16", "--set", "max_target_length=96", "--backend", "mock")
    result = runner.invoke(app, [*mock, "--format", "json", "--fast"])
    assert result.exit_code == 0 and "compiler_options" not in json.loads(result.stdout)["header"]
    assert "the mock backend's CPU compile is unchanged" in result.stderr
    if not libtpu_available():
        return
    args = ("compile", "--topology", "v5e-16", "--set", "max_target_length=96")
    code, default, _ = run(*args, "--format", "json")
    code_fast, fast, err = run(*args, "--format", "json", "--fast")
    assert code == code_fast == 0, err
    assert "compiler_options" not in json.loads(default)["header"]
    data = json.loads(fast)
    assert data["header"]["compiler_options"] == {"optimization_level": 19}
    assert data["timings"]["compile_cache_hit"] == 0.0  # not the default compile's entry
    code, table, _ = run(*args, "--fast")
    assert code == 0 and "low-effort compile (optimization_level=19)" in table


def test_cache_info_shows_and_clear_empties(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path))
    assert run("compile", "--topology", "v5p-8", "--no-compile", "--backend", "mock")[0] == 0
    code, out, _ = run("cache", "info")
    # The report, and the YAML configs it parsed (none if this process had read them already).
    yaml_files = len(list(tmp_path.glob("y-*.json")))
    assert code == 0 and f"directory: {tmp_path}" in out
    assert f"entries: {1 + yaml_files} (1 reports, 0 compiles, {yaml_files} parsed YAML files)" in out
    code, out, _ = run("cache", "clear")
    assert code == 0 and out.startswith(f"removed {1 + yaml_files} entries")
    assert "entries: 0 " in run("cache", "info")[1]
    # AOTCHECK_NO_CACHE=1 (what --no-cache sets for the gate's workers) neither reads nor writes any
    # of it: not even the parsed form of a config file never read before.
    (tmp_path / "run.yml").write_text("ici_fsdp_parallelism: -1\n")
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("AOTCHECK_NO_CACHE", "1")
    args = ("compile", "--topology", "v5p-8", "--no-compile", "--backend", "mock", "--config", str(tmp_path / "run.yml"))
    assert run(*args)[0] == 0
    assert not (tmp_path / "off").exists()
