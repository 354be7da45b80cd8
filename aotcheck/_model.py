"""The model protocol: what a model package gives aotcheck.

A model is a `ModelSpec`. aotcheck does the rest (state, rules, mesh, lowering, compile,
report) the same way for every model; the built-in decoder is served through this same
protocol. How aotcheck finds models by name is `aotcheck._registry`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pydantic

from aotcheck._config import CoreConfig, NoModelFields, RunConfig

if TYPE_CHECKING:
    import optax

@dataclass(frozen=True)
class BatchField:
    """One input of the training step: its global shape, dtype and logical axis names."""

    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[str | None, ...]


# `apply(*args)` runs the model's forward pass on the current parameters (Linen or NNX
# alike); a loss calls it on parts of the batch (and may take the run config as a third
# argument) and returns a scalar.
LossFn = Callable[..., Any]


def next_token_loss(apply: Callable[..., Any], batch: Mapping[str, Any]) -> Any:
    """Mean next-token cross entropy of `apply(batch["inputs"])` against `batch["targets"]`."""
    import jax.numpy as jnp
    import optax

    logits = apply(batch["inputs"]).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["targets"]).mean()


def token_batch(cfg: RunConfig, global_batch: int) -> dict[str, BatchField]:
    """`inputs` and `targets` token ids of shape (global batch, max_target_length)."""
    shape = (global_batch, cfg.core.max_target_length)
    axes = ("activation_embed_and_logits_batch", "activation_length")
    return {"inputs": BatchField(shape, "int32", axes), "targets": BatchField(shape, "int32", axes)}


@dataclass(frozen=True)
class ModelSpec:
    """What a model package provides. Give `linen`, `nnx`, or both.

    - `linen(cfg)` returns a `flax.linen.Module`; `nnx(cfg, rngs)` returns an `nnx.Module`.
      Both must declare the same parameters with the same logical axis names
      (Linen: `nn.with_logical_partitioning`; NNX: `out_sharding=` metadata).
    - `batch(cfg, global_batch)` describes the step's inputs without data.
    - `loss(apply, batch)` returns the scalar loss; the default is next-token cross entropy.
    - `optimizer(cfg)` returns an optax transformation; the default is AdamW from the config.
    - `rngs` names the RNG streams the forward pass draws (`("dropout",)`): Linen gets
      `rngs=` per step, folded from a key held in the train state; NNX gets `nnx.Rngs`
      with these streams.
    - `init_state` / `train_step` map a path (`"linen"`, `"nnx"`) to the team's own state
      builder `init_state(model, tx, cfg, batch) -> state` and step
      `train_step(state, batch[, cfg]) -> (state, metrics)`; aotcheck compiles exactly that
      step. A path not given uses aotcheck's defaults.
    - `ignores` names aotcheck settings the model does not read (`("scan_layers",
      "remat_policy")` for a model without scan or remat): the report does not show them
      and a `--set` of one is a warning.
    - `rewrites` are canonical-path rewrite rules, laid out like `configs/canonical.yml`
      (`{"nnx": [["^net/", "param/", "param"]]}`), that `diff` applies after the defaults,
      so the model's own container names line up without a `--rewrites` file.
    - `config` is a pydantic model of the model's own settings (unknown keys are errors);
      `defaults` are values for any config key; `logical_axis_rules` go in front of the
      base rules.
    """

    name: str
    batch: Callable[[RunConfig, int], Mapping[str, BatchField]] = token_batch
    linen: Callable[[RunConfig], Any] | None = None
    nnx: Callable[[RunConfig, Any], Any] | None = None
    loss: LossFn = next_token_loss
    optimizer: Callable[[RunConfig], optax.GradientTransformation] | None = None
    config: type[pydantic.BaseModel] = NoModelFields
    defaults: Mapping[str, Any] = field(default_factory=dict)
    logical_axis_rules: tuple[tuple[str, Any], ...] = ()
    description: str = ""
    rngs: tuple[str, ...] = ()
    init_state: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    train_step: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    ignores: tuple[str, ...] = ()
    rewrites: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.linen is None and self.nnx is None:
            raise ValueError(f"ModelSpec '{self.name}' gives neither linen nor nnx; give one factory or both")
        for what in ("init_state", "train_step"):
            for key in getattr(self, what):
                if key not in self.paths():
                    raise ValueError(f"ModelSpec '{self.name}': {what} is keyed by path; '{key}' is not one of {list(self.paths())}")
        for key in self.ignores:
            if key not in CoreConfig.model_fields:
                raise ValueError(f"ModelSpec '{self.name}': ignores names '{key}', which is not one of aotcheck's settings")
        if "params" in self.rngs:
            raise ValueError(f"ModelSpec '{self.name}': rngs names the streams the step draws; 'params' is init's, drop it")

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, f in (("linen", self.linen), ("nnx", self.nnx)) if f is not None)
