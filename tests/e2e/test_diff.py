"""`aotcheck diff`: Linen against NNX, saved reports, MaxText goldens; findings by leaf; exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn
from flax import nnx
from typer.testing import CliRunner

from aotcheck import _causes, _sides
from aotcheck import _compare as diff
from aotcheck._analysis import Compile, Memory
from aotcheck._cli import app
from aotcheck._model import ModelSpec
from aotcheck._pipeline import Request, build_report
from aotcheck._true_cost import XlaCost

runner = CliRunner()
V, D, F = 256, 128, 256  # D is sharded 64 ways (fsdp) on v5p-128
_INIT = jax.nn.initializers.normal(0.02)


def _forward(tokens: jax.Array, emb: jax.Array, w1: jax.Array, w2: jax.Array, extra: jax.Array | None = None) -> jax.Array:
    x = emb[tokens] if extra is None else emb[tokens] + extra
    return jax.nn.relu(x @ w1) @ w2.astype(jnp.float32) @ emb.T


class _LinenNet(nn.Module):
    """Three parameters at the root: `embedding`, `w1`, `w2`."""

    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        def param(name: str, axes: tuple[str, ...], shape: tuple[int, ...]) -> jax.Array:
            return self.param(name, nn.with_logical_partitioning(_INIT, axes), shape, jnp.float32)

        emb = param("embedding", ("vocab", "embed"), (V, D))
        return _forward(tokens, emb, param("w1", ("embed", "mlp"), (D, F)), param("w2", ("mlp", "embed"), (F, D)))


class _NnxNet(nnx.Module):
    """The Linen net in NNX; `divergent` changes one kernel's axis names, one dtype, and adds a parameter."""

    def __init__(self, rngs: nnx.Rngs, divergent: bool = False):
        self.embedding = nnx.Param(_INIT(rngs.params(), (V, D), jnp.float32), out_sharding=("vocab", "embed"))
        # embed_vocab shards like embed here (both on fsdp): only the names differ.
        self.w1 = nnx.Param(_INIT(rngs.params(), (D, F), jnp.float32), out_sharding=("embed_vocab" if divergent else "embed", "mlp"))
        self.w2 = nnx.Param(_INIT(rngs.params(), (F, D), jnp.bfloat16 if divergent else jnp.float32), out_sharding=("mlp", "embed"))
        if divergent:
            self.extra = nnx.Param(jnp.zeros((D,), jnp.float32), out_sharding=("embed",))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        extra = self.extra[...] if hasattr(self, "extra") else None
        return _forward(tokens, self.embedding[...], self.w1[...], self.w2[...], extra)


class _NnxWithRngs(_NnxNet):
    """Keeps its rng streams in the module: state that Linen's train state does not have."""

    def __init__(self, rngs: nnx.Rngs):
        super().__init__(rngs)
        self.rngs = rngs


class _NnxNested(nnx.Module):
    """The parameters one container deeper (`body/...`)."""

    def __init__(self, rngs: nnx.Rngs):
        self.body = _NnxNet(rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.body(tokens)


def _spec(name: str, nnx_factory: Any) -> ModelSpec:
    return ModelSpec(name=name, linen=lambda cfg: _LinenNet(), nnx=lambda cfg, rngs: nnx_factory(rngs), defaults={"max_target_length": 8})


MATCHING = _spec("matching", _NnxWithRngs)
# One kernel with a different logical axis, one parameter with a different dtype, one extra parameter.
DIVERGENT = _spec("divergent", lambda rngs: _NnxNet(rngs, divergent=True))
# The parameters one container deeper in NNX: a rewrite rule lines them up.
NESTED = _spec("nested", _NnxNested)


def model(name: str) -> str:
    return f"{__name__}:{name}"


def invoke(*args: str) -> Any:
    return runner.invoke(app, ["diff", *args])


def report_json(tmp_path: Path, name: str, **request: Any) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(build_report(Request(topology="v5p-128", compile=False, **request)).to_json())
    return path


def test_divergent_nnx_variant_gives_exactly_its_three_findings() -> None:
    # --names: logical names that differ under an equal PartitionSpec count too.
    result = invoke("linen", "nnx", "--model", model("DIVERGENT"), "--no-compile", "--format", "json", "--names")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    real = {(f["category"], f["leaf"]): f for f in out["findings"] if not f["explained"]}
    assert set(real) == {
        ("leaf added", "param/extra"),
        ("logical axes changed", "param/w1"),
        ("dtype changed", "param/w2"),
    }
    assert (real[("logical axes changed", "param/w1")]["before"], real[("logical axes changed", "param/w1")]["after"]) == (
        ["embed", "mlp"], ["embed_vocab", "mlp"])
    assert (real[("dtype changed", "param/w2")]["before"], real[("dtype changed", "param/w2")]["after"]) == ("float32", "bfloat16")
    # The Adam moments mirror each parameter's change; they are named on it, not counted again.
    for finding in real.values():
        assert "same in opt/0/mu, opt/0/nu" in finding["note"]
    assert out["differences"] == 3 and out["verdict"] == "3 differences"
    # Without it, the renamed axis is an explained note: the sharding is the same.
    plain = json.loads(invoke("linen", "nnx", "--model", model("DIVERGENT"), "--no-compile", "--format", "json").stdout)
    assert plain["differences"] == 2
    (renamed,) = [f for f in plain["findings"] if f["category"] == "logical axes changed"]
    assert renamed["explained"] and renamed["note"].startswith("only the names differ: the same PartitionSpec")


def test_matching_nnx_variant_is_clean_and_its_rng_state_is_only_a_note() -> None:
    result = invoke("linen", "nnx", "--model", model("MATCHING"), "--no-compile", "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["differences"] == 0
    notes = {(f["category"], f["leaf"]) for f in out["findings"]}
    assert ("dtype changed", "step") in notes
    rng = {leaf for category, leaf in notes if category == "leaf added"}
    assert rng and all(leaf.startswith("rng/rngs/") for leaf in rng), notes
    assert all(f["explained"] for f in out["findings"])


def test_tiny_linen_and_nnx_agree_including_the_compiled_step() -> None:
    result = invoke("linen", "nnx", "--topology", "v5p-128")
    assert result.exit_code == 0, result.output
    assert "verdict: identical (apart from 1 explained note)" in result.stdout
    assert "not compared" not in result.stdout  # both sides compiled: memory, FLOPs, collectives were compared
    assert "step  dtype changed: int32 -> uint32" in result.stdout


def test_two_saved_reports_weight_dtype_change(tmp_path: Path) -> None:
    before = report_json(tmp_path, "before")
    after = report_json(tmp_path, "after", overrides=("weight_dtype=bfloat16",))
    result = invoke(str(before), str(after), "--format", "json")
    assert result.exit_code == 1, result.output
    findings = json.loads(result.stdout)["findings"]
    params = sorted(p.replace("params/", "param/", 1) for p, leaf in _sides.load_side(before).items() if leaf.role == "param")
    assert [f["leaf"] for f in findings] == params
    assert {(f["category"], f["before"], f["after"]) for f in findings} == {("dtype changed", "float32", "bfloat16")}
    # The same report on both sides: identical, exit 0.
    same = invoke(str(before), str(before))
    assert same.exit_code == 0 and "verdict: identical\n" in same.stdout


def _maxtext(tmp_path: Path, w2_spec: list[Any]) -> Path:
    """MaxText's sharding goldens for the small net, as tests/utils/sharding_dump.py writes them."""
    mesh = {
        "axis_names": ["data", "stage", "fsdp", "fsdp_transpose", "sequence", "context", "tensor", "tensor_transpose", "expert"],
        "shape": {"data": 1, "stage": 1, "fsdp": 64, "fsdp_transpose": 1, "sequence": 1, "context": 1, "tensor": 1,
                  "tensor_transpose": 1, "expert": 1},
    }
    params = {
        "embedding": (["vocab", "embed"], [["tensor", "tensor_transpose"], ["fsdp", "sequence", "context", "expert"]], [V, D]),
        "w1": (["embed", "mlp"], [["fsdp", "sequence", "context", "expert"], ["fsdp_transpose", "tensor"]], [D, F]),
        "w2": (["mlp", "embed"], w2_spec, [F, D]),
    }
    entries = {".step": ([], [], []), ".opt_state/[0]/.count": ([], [], [])}
    for name, entry in params.items():
        entries[f".params/['params']/['{name}']"] = entry
        for slot in ("mu", "nu"):
            entries[f".opt_state/[0]/.{slot}/['params']/['{name}']"] = entry
    out = tmp_path / "maxtext"
    out.mkdir(parents=True)
    (out / "named_shardings.json").write_text(json.dumps(
        {p: {"mesh": mesh, "partition_spec": spec, "shape": shape} for p, (_, spec, shape) in entries.items()}, indent=2))
    (out / "logical_shardings.json").write_text(json.dumps(
        {p: {"partition_spec": axes, "shape": shape} for p, (axes, _, shape) in entries.items()}, indent=2))
    return out


def test_maxtext_goldens_against_a_report(tmp_path: Path) -> None:
    # Size-1 mesh axes (context, tensor_transpose, ...) are dropped before comparing, as in aotcheck's own specs.
    agreeing = _maxtext(tmp_path / "a", [["fsdp_transpose", "tensor"], ["fsdp", "context"]])
    result = invoke(str(agreeing), "linen", "--model", model("MATCHING"), "--no-compile")
    assert result.exit_code == 0, result.output
    assert "verdict: identical\n" in result.stdout
    assert "not compared: dtype (one side does not record them)" in result.stdout

    # w2 sharded on its first dimension in MaxText's file, on its second in aotcheck's report.
    differing = _maxtext(tmp_path / "b", [["fsdp", "sequence"], None])
    result = invoke(str(differing / "named_shardings.json"), "linen", "--model", model("MATCHING"), "--no-compile", "--format", "json")
    assert result.exit_code == 1, result.output
    [finding] = json.loads(result.stdout)["findings"]
    assert (finding["category"], finding["leaf"], finding["before"], finding["after"]) == (
        "PartitionSpec changed", "param/w2", ["fsdp"], [None, "fsdp"])
    assert "same in opt/0/mu, opt/0/nu" in finding["note"]


def test_rewrite_rules_line_up_containers_named_differently(tmp_path: Path) -> None:
    plain = invoke("linen", "nnx", "--model", model("NESTED"), "--no-compile", "--format", "json")
    assert plain.exit_code == 1
    categories = {f["category"] for f in json.loads(plain.stdout)["findings"] if not f["explained"]}
    assert categories == {"leaf added", "leaf removed"}

    rules = tmp_path / "rewrites.yml"
    rules.write_text("nnx:\n  - ['^(param|opt/\\d+/\\w+)/body/', '\\1/']\n")
    lined_up = invoke("linen", "nnx", "--model", model("NESTED"), "--no-compile", "--rewrites", str(rules))
    assert lined_up.exit_code == 0, lined_up.output


def _with_compile(report: Any, temp: int, flops: float = 1e9) -> Any:
    memory = Memory(argument=1 << 20, output=1 << 20, alias=1 << 20, temp=temp, generated_code=0)
    return report.model_copy(update={"compile": Compile(
        verdict="fits", capacity_bytes_per_device=1 << 36, memory_per_device=memory, needed_bytes_per_device=memory.peak,
        xla_cost=XlaCost(flops=flops))})


def test_unscanned_layer_order_is_named_as_the_cause_of_a_memory_difference() -> None:
    sets = ("scan_layers=false", "base_num_decoder_layers=11")
    linen = build_report(Request(topology="v5p-8", compile=False, overrides=sets, pure_nnx=False))
    nnx_ = build_report(Request(topology="v5p-8", compile=False, overrides=sets, pure_nnx=True))
    assert "params/decoder/layers_10/mlp/wo/kernel" in linen.leaves
    findings = diff.compare(_with_compile(linen, temp=100 << 20), _with_compile(nnx_, temp=102 << 20))
    real = diff.failing(findings)
    assert {f.category for f in real} == {"memory per chip beyond tolerance"}
    memory = {next(iter(f.before)): f for f in real if f.category == "memory per chip beyond tolerance"}
    assert set(memory) == {"temp", "peak"}
    assert _causes.ORDER_NOTE in memory["temp"].note and memory["temp"].note.startswith("+2.0% per chip")
    # Within tolerance, no finding; the leaves themselves line up (layers_3 == layers/3).
    assert diff.failing(diff.compare(_with_compile(linen, temp=100 << 20), _with_compile(nnx_, temp=100 << 20))) == []


def test_sharded_leaf_turned_replicated_is_flagged_when_large() -> None:
    base = build_report(Request(topology="v5p-8", compile=False))
    rules = ("logical_axis_rules=[[embed, []], [embed_vocab, []]]",)
    unsharded = build_report(Request(topology="v5p-8", compile=False, overrides=rules))
    wi_0 = "param/decoder/layers/mlp/wi_0/kernel"  # 2 MiB in all, 512 KiB per device when sharded 4 ways
    by_leaf = {f.leaf: f for f in diff.compare(base, unsharded)}
    assert by_leaf[wi_0].category == "newly replicated large leaf"
    assert by_leaf[wi_0].before == {"partition_spec": ["fsdp"], "logical_axes": ["embed", "layers", "mlp"]}
    assert by_leaf[wi_0].after["partition_spec"] == []
    small = {f.leaf: f for f in diff.compare(base, unsharded, large_leaf_bytes=64 << 20)}
    assert small[wi_0].category == "PartitionSpec changed"
    assert "same logical axes" in small[wi_0].note


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nothere.json", "nnx"), "error: nothere.json does not exist"),
        (("linen", "nnx", "--rewrites", "missing.yml"), "error: rewrites file missing.yml does not exist"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: tuple[str, ...], message: str) -> None:
    result = invoke(*args, "--no-compile")
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1


def test_bad_rewrite_rule_is_a_usage_error(tmp_path: Path) -> None:
    rules = tmp_path / "rewrites.yml"
    rules.write_text("nnx:\n  - ['(a)', '\\2']\n")
    result = invoke("linen", "nnx", "--no-compile", "--rewrites", str(rules))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {rules}: nnx rule 1: bad replacement '\\\\2': invalid group reference 2 at position 1"


def test_rewrites_that_put_two_leaves_on_one_path_name_the_side_and_the_fix(tmp_path: Path) -> None:
    saved = report_json(tmp_path, "linen", pure_nnx=False)
    rules = tmp_path / "rewrites.yml"
    rules.write_text("all:\n  - ['^param/.*', 'param/one']\n")
    result = invoke(str(saved), "nnx", "--no-compile", "--rewrites", str(rules))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {saved}: leaves params/")
    assert result.stderr.strip().endswith("both map to canonical path param/one; fix the model's rewrites or the --rewrites file")
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_golden_directory_stands_as_a_side(tmp_path: Path) -> None:
    from aotcheck import _golden as golden

    golden.write_golden(tmp_path / "golden", build_report(Request(topology="v5p-128", compile=False, pure_nnx=False)))
    result = invoke(str(tmp_path / "golden"), "nnx", "--no-compile", "--format", "json")
    assert result.exit_code == 0, result.output
    assert [(f["category"], f["leaf"]) for f in json.loads(result.stdout)["findings"]] == [("dtype changed", "step")]
    changed = invoke(str(tmp_path / "golden" / "named_shardings.json"), "linen", "--no-compile", "--set", "mu_dtype=bfloat16")
    assert changed.exit_code == 1
    # mu_dtype moves Adam's first moment of each of the 12 parameters; the parameters and nu keep float32.
    assert "dtype changed (12)" in changed.stdout
    assert changed.stdout.count("  opt/0/mu/") == 12 and "  param/" not in changed.stdout


def test_extra_nnx_temp_under_scan_names_graph_updates() -> None:
    linen = build_report(Request(topology="v5p-8", compile=False, pure_nnx=False))
    nnx_ = build_report(Request(topology="v5p-8", compile=False, pure_nnx=True))
    [temp] = [f for f in diff.compare(_with_compile(linen, temp=10 << 20), _with_compile(nnx_, temp=12 << 20))
              if f.leaf is None and "temp" in f.before]
    assert _causes.GRAPH_UPDATES_NOTE in temp.note and _causes.ORDER_NOTE not in temp.note
    # Less temp on the NNX side is not that cause.
    [less] = [f for f in diff.compare(_with_compile(linen, temp=12 << 20), _with_compile(nnx_, temp=10 << 20))
              if f.leaf is None and "temp" in f.before]
    assert _causes.GRAPH_UPDATES_NOTE not in less.note


def test_linen_and_nnx_built_in_two_processes_give_the_serial_output(tmp_path, monkeypatch) -> None:
    outputs = []
    for jobs in ("1", "2"):
        monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / jobs))  # both cold: two real builds each
        result = CliRunner().invoke(app, ["diff", "linen", "nnx", "--topology", "v5p-8", "--backend", "mock",
                                          "--format", "json", "--jobs", jobs])
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert list((tmp_path / "2").glob("r-*.json"))  # the workers wrote the cache the parent reads next time
