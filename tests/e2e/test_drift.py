"""Sharding drift: a train step that reshards its own state is reported; the built-in model's is not.

The planted model is a two-matrix net whose optimizer keeps a trace of the updates and
pins it, with `with_sharding_constraint`, to P('fsdp') on the first dimension: the
parameters it mirrors are sharded on their `embed` dimension, which is not always the
first, so those trace leaves come out of the step sharded differently from how they came in.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import linen as nn
from flax import nnx
from typer.testing import CliRunner

from aotcheck import ModelSpec
from aotcheck._cli import app
from aotcheck._compare import Category, compare
from aotcheck._pipeline import Request, build_report

V, D = 64, 32
_INIT = nn.initializers.normal(0.02)


class _Linen(nn.Module):
    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        emb = self.param("embedding", nn.with_logical_partitioning(_INIT, ("vocab", "embed")), (V, D))
        out = self.param("out", nn.with_logical_partitioning(_INIT, ("embed", "vocab")), (D, V))
        return emb[tokens] @ out


class _Nnx(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embedding = nnx.Param(_INIT(rngs.params(), (V, D), jnp.float32), out_sharding=("vocab", "embed"))
        self.out = nnx.Param(_INIT(rngs.params(), (D, V), jnp.float32), out_sharding=("embed", "vocab"))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        return self.embedding[...][tokens] @ self.out[...]


def _resharding_sgd(cfg: Any) -> optax.GradientTransformation:
    """SGD that keeps a trace of the updates, pinned to P('fsdp') on the first dimension."""
    from jax.sharding import PartitionSpec as P

    def init(params: Any) -> Any:
        return {"trace": jax.tree.map(jnp.zeros_like, params)}

    def update(updates: Any, state: Any, params: Any = None) -> tuple[Any, Any]:
        trace = jax.tree.map(lambda u: jax.lax.with_sharding_constraint(u, P("fsdp")), updates)
        return jax.tree.map(lambda u: -0.1 * u, updates), {"trace": trace}

    return optax.GradientTransformation(init, update)


RESHARDING = ModelSpec(name="resharding", linen=lambda cfg: _Linen(), nnx=lambda cfg, rngs: _Nnx(rngs),
                       optimizer=_resharding_sgd, defaults={"max_target_length": 8})


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_a_step_that_reshards_its_state_is_reported(path: str) -> None:
    report = build_report(Request(topology="v5p-8", model=RESHARDING, pure_nnx=path == "nnx", cache=False))
    assert report.compile is not None and report.compile.drift
    drifted = {d.leaf: d for d in report.compile.drift}
    # The embedding is sharded on its second dimension (embed -> fsdp); its trace is forced onto the first.
    (leaf,) = [p for p in drifted if "trace" in p and "embedding" in p]
    assert drifted[leaf].input == (None, "fsdp") and drifted[leaf].output == "P('fsdp')"
    assert all("trace" in p for p in drifted)  # the parameters themselves keep their sharding
    # Against a report without the drift (a golden written before it), it is a gate finding.
    clean = report.model_copy(update={"compile": report.compile.model_copy(update={"drift": ()})})
    findings = [f for f in compare(clean, report) if f.category == Category.SHARDING_DRIFT]
    assert {f.leaf for f in findings} == set(drifted)


def test_the_built_in_model_does_not_drift_and_the_cli_says_so() -> None:
    result = CliRunner().invoke(app, ["compile", "-t", "v5p-8", "--model", "tiny", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["compile"]["drift"] == []
    skipped = CliRunner().invoke(app, ["compile", "-t", "v5p-8", "--model", "tiny", "-f", "json", "--no-drift"])
    assert json.loads(skipped.stdout)["compile"]["drift"] is None
