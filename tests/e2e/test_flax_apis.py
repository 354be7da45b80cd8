"""Flax's own sharding APIs, honoured: activation constraints, mesh axis names, unknown and short specs."""

from __future__ import annotations

from pathlib import Path

import pytest

import aotcheck
from aotcheck._compare import Category
from aotcheck._pipeline import Request, build

FLAX_MODELS = '''
import jax
import jax.numpy as jnp
import pydantic
from flax import linen as nn
from flax import nnx

import aotcheck


class Fields(pydantic.BaseModel):
    dim: int = 512
    hidden: int = 2048
    replicate_activation: bool = False  # the only activation annotation
    kernel_axes: tuple = ("embed", "mlp")


def _out(cfg, y):
    if cfg.model.replicate_activation:
        y = nn.with_logical_constraint(y, (None, None))
    return jnp.tanh(y)


class Linen(nn.Module):
    cfg: aotcheck.RunConfig

    @nn.compact
    def __call__(self, x):
        m = self.cfg.model
        w = self.param("w", nn.with_logical_partitioning(nn.initializers.lecun_normal(), m.kernel_axes), (m.dim, m.hidden))
        return _out(self.cfg, x @ w)


class Nnx(nnx.Module):
    def __init__(self, cfg, rngs):
        m = cfg.model
        self.cfg = cfg
        self.w = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (m.dim, m.hidden)), out_sharding=m.kernel_axes)

    def __call__(self, x):
        return _out(self.cfg, x @ self.w[...])


class MeshNamedLinen(nn.Module):
    cfg: aotcheck.RunConfig

    @nn.compact
    def __call__(self, x):
        m = self.cfg.model
        w = self.param("w", nn.with_partitioning(nn.initializers.lecun_normal(), ("fsdp", "tensor")), (m.dim, m.hidden))
        b = self.param("b", nn.with_partitioning(nn.initializers.zeros, ("tensor",)), (m.hidden,))
        return jnp.tanh(x @ w + b)


class MeshNamedNnx(nnx.Module):
    def __init__(self, cfg, rngs):
        m = cfg.model
        self.w = nnx.Param(nnx.with_partitioning(jax.nn.initializers.lecun_normal(), ("fsdp", "tensor"))(rngs.params(), (m.dim, m.hidden)))
        self.b = nnx.Param(jnp.zeros((m.hidden,)), out_sharding=("tensor",))

    def __call__(self, x):
        return jnp.tanh(x @ self.w[...] + self.b[...])


class ShortSpecNnx(nnx.Module):
    def __init__(self, cfg, rngs):
        m = cfg.model
        self.w = nnx.Param(jax.nn.initializers.lecun_normal()(rngs.params(), (m.dim, m.hidden)), out_sharding=("fsdp",))

    def __call__(self, x):
        return x @ self.w[...]


class DropoutFields(Fields):
    rate: float = 0.5


class LinenDropout(nn.Module):
    cfg: aotcheck.RunConfig

    @nn.compact
    def __call__(self, x, train: bool = True):
        m = self.cfg.model
        w = self.param("w", nn.with_logical_partitioning(nn.initializers.lecun_normal(), ("embed", "mlp")), (m.dim, m.hidden))
        return nn.Dropout(m.rate, deterministic=not train)(x @ w)


def loss_with_config(apply, batch, cfg):
    """A loss that reads the run config: the model's own training setting reaches it."""
    return (apply(batch["x"], train=cfg.model.rate > 0) ** 2).mean()


def batch(cfg, n):
    return {"x": aotcheck.BatchField((n, cfg.model.dim), "float32", ("activation_batch", None))}


def loss(apply, batch):
    return (apply(batch["x"]) ** 2).mean()


ONE_MATMUL = aotcheck.ModelSpec(
    name="one-matmul", linen=Linen, nnx=Nnx, batch=batch, loss=loss, config=Fields,
    defaults={"ici_fsdp_parallelism": 2, "ici_tensor_parallelism": 2, "per_device_batch_size": 256},
)
MESH_NAMED = aotcheck.ModelSpec(name="mesh-named", linen=MeshNamedLinen, nnx=MeshNamedNnx, batch=batch, loss=loss,
                                config=Fields, defaults=ONE_MATMUL.defaults)
DROPOUT = aotcheck.ModelSpec(name="dropout", linen=LinenDropout, batch=batch, loss=loss_with_config,
                             config=DropoutFields, rngs=("dropout",), defaults=ONE_MATMUL.defaults)
class NetState(nnx.Module):
    """A team's NNX state that calls its model `net`, not `model`."""

    def __init__(self, net, tx):
        self.net = net
        self.optimizer = nnx.Optimizer(net, tx, wrt=nnx.Param)


def net_train_step(state, batch):
    loss_value, grads = nnx.value_and_grad(lambda net: loss(net, batch))(state.net)
    state.optimizer.update(state.net, grads)
    return state, {"loss": loss_value}


NET = aotcheck.ModelSpec(
    name="net", linen=Linen, nnx=Nnx, batch=batch, loss=loss, config=Fields, defaults=ONE_MATMUL.defaults,
    init_state={"nnx": lambda model, tx, cfg, batch: NetState(model, tx)}, train_step={"nnx": net_train_step},
    rewrites={"nnx": [["^net/", "param/", "param"]]},
)
SHORT_SPEC = aotcheck.ModelSpec(name="short-spec", nnx=ShortSpecNnx, batch=batch, loss=loss, config=Fields,
                                defaults=ONE_MATMUL.defaults)
'''


@pytest.fixture(autouse=True)
def flax_models(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path_factory.getbasetemp() / "flax_models"
    if not folder.exists():
        folder.mkdir()
        (folder / "flax_models.py").write_text(FLAX_MODELS)
    monkeypatch.syspath_prepend(str(folder))


def _built(model: str, path: str, *sets: str, compile: bool = True) -> tuple[aotcheck.Report, tuple[str, ...]]:
    built = build(Request(model=f"flax_models:{model}", topology="v5p-8", pure_nnx=path == "nnx",
                          overrides=sets, compile=compile, cache=False))
    return built.report, built.warnings


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_nn_with_logical_constraint_changes_the_compiled_program(path: str) -> None:
    free, _ = _built("ONE_MATMUL", path)
    forced, _ = _built("ONE_MATMUL", path, "replicate_activation=true")
    assert free.compile is not None and forced.compile is not None
    assert free.compile.memory_per_device is not None and forced.compile.memory_per_device is not None
    # The activation [1024, 2048] f32, forced onto every device, needs its full 8 MiB there.
    assert forced.compile.memory_per_device.temp >= free.compile.memory_per_device.temp + (4 << 20)
    assert free.leaves == forced.leaves


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_mesh_axis_names_shard_along_those_axes(path: str) -> None:
    report, warnings = _built("MESH_NAMED", path, compile=False)
    assert report.leaves["params/w" if path == "linen" else "model/w/value"].partition_spec == ("fsdp", "tensor")
    assert report.leaves["params/b" if path == "linen" else "model/b/value"].partition_spec == ("tensor",)
    assert report.unmatched_logical_axes == ()
    assert warnings == ()


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_an_unknown_logical_name_is_warned_listed_and_gated(path: str, tmp_path: Path) -> None:
    good, _ = _built("ONE_MATMUL", path, compile=False)
    bad, warnings = _built("ONE_MATMUL", path, "kernel_axes=[embed, mlpp]", compile=False)
    assert [u.name for u in bad.unmatched_logical_axes] == ["mlpp"]
    unmatched = bad.unmatched_logical_axes[0]
    assert len(unmatched.leaves) == 3  # the kernel and its two AdamW moments
    assert unmatched.bytes_per_device == 3 * 512 * 2048 * 4 // 2  # sharded over fsdp=2 only
    assert any("logical axis 'mlpp' matches no rule and is not a mesh axis" in w for w in warnings)
    findings = aotcheck.failing(aotcheck.compare(good, bad))
    assert Category.UNMATCHED_AXIS in {f.category for f in findings}
    assert not [f for f in aotcheck.compare(bad, bad) if f.category == Category.UNMATCHED_AXIS]


def test_a_spec_shorter_than_the_rank_is_padded_with_none_and_noted() -> None:
    report, warnings = _built("SHORT_SPEC", "nnx", compile=False)
    leaf = report.leaves["model/w/value"]
    assert leaf.logical_axes == ("fsdp", None)
    assert leaf.partition_spec == ("fsdp",)
    assert any("fewer logical axes than dimensions; padded with None as Flax does" in w for w in warnings)


def test_a_padded_spec_is_noted_again_when_the_report_comes_from_the_cache(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path))
    request = Request(model="flax_models:SHORT_SPEC", topology="v5p-8", pure_nnx=True, compile=False)
    first, again = build(request), build(request)
    assert again.report.timings == {"report_cache_hit": 1.0}
    assert again.report.padded_leaves == first.report.padded_leaves == (
        "model/w/value", "optimizer/opt_state/0/mu/w/value", "optimizer/opt_state/0/nu/w/value")
    assert again.warnings == first.warnings
    assert any("fewer logical axes than dimensions; padded with None as Flax does" in w for w in again.warnings)


def test_a_spec_longer_than_the_rank_is_an_error() -> None:
    with pytest.raises(aotcheck.UsageError) as err:
        _built("ONE_MATMUL", "linen", "kernel_axes=[embed, mlp, heads]", compile=False)
    assert str(err.value) == (
        "leaf params/w: 3 logical axes ['embed', 'mlp', 'heads'] for a rank-2 array; "
        "give at most one name (or None) per dimension"
    )


def test_aotcheck_constrain_is_flaxs_constraint() -> None:
    import jax.numpy as jnp

    x = jnp.ones((4, 4))
    assert aotcheck.constrain(x, ("batch", "embed")) is x  # no rules active: a no-op, as Flax's


def test_linen_dropout_draws_the_named_stream_in_the_default_step() -> None:
    import dataclasses

    import flax_models

    on, _ = _built("DROPOUT", "linen")
    assert on.leaves["rng"].dtype == "key<fry>" and on.leaves["rng"].role == "rng"
    off, _ = _built("DROPOUT", "linen", "rate=0")  # the loss reads the config: no dropout
    assert on.compile is not None and off.compile is not None
    assert on.compile.xla_cost != off.compile.xla_cost
    with pytest.raises(aotcheck.BuildError) as err:
        build(Request(model=dataclasses.replace(flax_models.DROPOUT, rngs=()), topology="v5p-8", cache=False))
    assert str(err.value).startswith(
        "model 'dropout' (linen): the model draws an RNG stream that ModelSpec(rngs=...) does not name (it names []); add it: "
    )


def test_a_train_step_that_returns_no_pair_is_named() -> None:
    import dataclasses

    import flax_models

    spec = dataclasses.replace(flax_models.ONE_MATMUL, train_step={"linen": lambda state, batch: state})
    with pytest.raises(aotcheck.BuildError) as err:
        build(Request(model=spec, topology="v5p-8", pure_nnx=False, cache=False))
    assert str(err.value) == "model 'one-matmul' (linen): train_step must return (state, metrics), got TrainState"


def test_the_models_own_rewrites_line_up_its_containers_in_diff_without_flags() -> None:
    import dataclasses

    from typer.testing import CliRunner

    from aotcheck._cli import app

    args = ["diff", "linen", "nnx", "--model", "flax_models:NET", "-t", "v5p-8", "--no-compile"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "verdict: identical" in result.output

    import flax_models

    bare = dataclasses.replace(flax_models.NET, rewrites={})
    findings = aotcheck.compare(*(build(Request(model=bare, topology="v5p-8", pure_nnx=p == "nnx", compile=False)).report
                                  for p in ("linen", "nnx")))
    assert {f.leaf for f in aotcheck.failing(findings) if f.category == Category.LEAF_ADDED} == {"net/w"}


def test_saved_reports_and_goldens_record_the_models_rewrites_so_their_diff_lines_up(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from aotcheck import _golden
    from aotcheck._cli import app

    runner = CliRunner()
    for path in ("linen", "nnx"):
        args = ["compile", "--model", "flax_models:NET", "-t", "v5p-8", "--no-compile", "--format", "json",
                "--out", str(tmp_path / f"{path}.json"), f"--{'pure-nnx' if path == 'nnx' else 'linen'}"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        _golden.write_golden(tmp_path / f"g-{path}", aotcheck.read_report(tmp_path / f"{path}.json"))
    header = json.loads((tmp_path / "nnx.json").read_text())["header"]
    assert header["rewrites"] == {"nnx": [["^net/", "param/", "param"]]}

    for a, b in (("linen.json", "nnx.json"), ("g-linen", "g-nnx"), ("g-linen", "nnx.json")):
        result = runner.invoke(app, ["diff", str(tmp_path / a), str(tmp_path / b)])
        assert result.exit_code == 0, result.output
        assert "verdict: identical" in result.output

    # A model without rewrites writes no such key: its reports are as they were.
    result = runner.invoke(app, ["compile", "--model", "flax_models:ONE_MATMUL", "-t", "v5p-8", "--no-compile",
                                 "--format", "json", "--linen"])
    assert result.exit_code == 0, result.output
    assert "rewrites" not in json.loads(result.output)["header"]


def _one_matmul_fails(error: type[Exception], compile: bool = False, **changes: object) -> str:
    import dataclasses

    import flax_models

    spec = dataclasses.replace(flax_models.ONE_MATMUL, **changes)
    with pytest.raises(error) as err:
        build(Request(model=spec, topology="v5p-8", pure_nnx=False, compile=compile, cache=False))
    return str(err.value)


def test_a_state_builder_that_raises_is_named() -> None:
    assert _one_matmul_fails(aotcheck.BuildError, init_state={"linen": lambda model, tx, cfg, batch: 1 / 0}) == (
        "model 'one-matmul' (linen): its init_state raised ZeroDivisionError: division by zero")


def test_a_default_state_that_cannot_be_built_is_named() -> None:
    # The optimizer is not an optax transformation, so Flax's TrainState cannot initialise it.
    assert _one_matmul_fails(aotcheck.BuildError, optimizer=lambda cfg: None) == (
        "model 'one-matmul' (linen): abstract init failed: AttributeError: 'NoneType' object has no attribute 'init'")


def test_a_train_step_that_fails_to_trace_is_named() -> None:
    assert _one_matmul_fails(aotcheck.BuildError, compile=True, train_step={"linen": lambda state, batch: (state, batch["y"])}) == (
        "model 'one-matmul' (linen): lowering train_step failed: KeyError: 'y'")
