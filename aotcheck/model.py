"""The model protocol: what a model package gives aotcheck, and how aotcheck finds models.

A model is a `ModelSpec`. aotcheck does the rest (state, rules, mesh, lowering, compile,
report) the same way for every model; the built-in decoder is served through this same
protocol. Models are found three ways: the built-in presets in `configs/models/*.yml`,
installed packages' `aotcheck.models` entry points, and `package.module:attribute`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydantic

from aotcheck.config import CONFIG_DIR, NoModelFields, RunConfig
from aotcheck.errors import UsageError, close_matches, one_line

if TYPE_CHECKING:
    import optax

ENTRY_POINT_GROUP = "aotcheck.models"


@dataclass(frozen=True)
class BatchField:
    """One input of the training step: its global shape, dtype and logical axis names."""

    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[str | None, ...]


# `apply(*args)` runs the model's forward pass on the current parameters (Linen or NNX
# alike); a loss calls it on parts of the batch and returns a scalar.
LossFn = Callable[[Callable[..., Any], Mapping[str, Any]], Any]


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

    def __post_init__(self) -> None:
        if self.linen is None and self.nnx is None:
            raise ValueError(f"ModelSpec '{self.name}' gives neither linen nor nnx; give one factory or both")

    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, f in (("linen", self.linen), ("nnx", self.nnx)) if f is not None)


@dataclass(frozen=True)
class ModelEntry:
    """A model as the user names it: its spec, an optional preset file, and where it came from."""

    name: str
    spec: ModelSpec
    preset: Path | None
    source: str


def _builtin_entries() -> dict[str, ModelEntry]:
    from aotcheck.models.decoder import DECODER

    return {
        p.stem: ModelEntry(p.stem, DECODER, p, "built-in")
        for p in sorted((CONFIG_DIR / "models").glob("*.yml"))
    }


def _entry_point_entry(ep: importlib.metadata.EntryPoint) -> ModelEntry:
    dist = f"{ep.dist.name}: " if ep.dist is not None else ""
    return ModelEntry(ep.name, _LazySpec(ep.value).load(ep.name), None, f"entry point ({dist}{ep.value})")




@dataclass(frozen=True)
class _LazySpec:
    target: str

    def load(self, shown_as: str) -> ModelSpec:
        module_name, _, attr = self.target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import-time failure of user code is reported, not raised
            raise UsageError(f"model '{shown_as}': cannot import module '{module_name}': {one_line(exc)}") from None
        if not attr:
            raise UsageError(f"model '{shown_as}': give the attribute too, as {module_name}:NAME")
        try:
            spec = getattr(module, attr)
        except AttributeError:
            names = sorted(n for n, v in vars(module).items() if isinstance(v, ModelSpec))
            hint = close_matches(attr, names) or (f"; its ModelSpecs: {', '.join(names)}" if names else "")
            raise UsageError(f"model '{shown_as}': module '{module_name}' has no attribute '{attr}'{hint}") from None
        if not isinstance(spec, ModelSpec):
            raise UsageError(f"model '{shown_as}': {self.target} is not an aotcheck.ModelSpec (it is {type(spec).__name__})")
        return spec


def available_models() -> tuple[list[ModelEntry], dict[str, str]]:
    """Every model by name, and the installed ones that failed to load (name -> one-line error).

    One broken package must not hide the others, so its error is listed, not raised.
    """
    entries: dict[str, ModelEntry] = {}
    broken: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entries[ep.name] = _entry_point_entry(ep)
        except UsageError as exc:
            broken[ep.name] = str(exc)
    entries.update(_builtin_entries())
    return [entries[k] for k in sorted(entries)], dict(sorted(broken.items()))


def resolve_model(name: str) -> ModelEntry:
    """`tiny`, an installed entry point's name, or `package.module:attribute`."""
    if ":" in name:
        # As `python -m` would: a model module next to the user's files is found without
        # PYTHONPATH (the `aotcheck` script's own directory is what Python puts first).
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return ModelEntry(name, _LazySpec(name).load(name), None, name)
    builtin = _builtin_entries()
    if name in builtin:
        return builtin[name]
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _entry_point_entry(ep)
    known = list(builtin) + [ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
    raise UsageError(f"unknown model '{name}'{close_matches(name, known)} (`aotcheck models` lists them; or use package.module:attribute)")


def load_config(
    model: str | ModelSpec | None, config_file: Path | None, overrides: Mapping[str, Any]
) -> tuple[RunConfig, ModelEntry]:
    """Merge base.yml, the model's defaults and preset, `config_file` and `overrides`; validate."""
    from aotcheck.config import merge_layers, read_config, validate

    base = read_config(CONFIG_DIR / "base.yml")
    user = read_config(config_file) if config_file is not None else {}
    if isinstance(model, ModelSpec):
        entry = ModelEntry(model.name, model, None, "python object")
    else:
        name = model or overrides.get("model_name") or user.get("model_name") or base.get("model_name", "tiny")
        entry = resolve_model(str(name))
    # A model with only an NNX path runs on it unless the user asks for Linen (then: an error).
    only_nnx = {"pure_nnx": True} if entry.spec.paths() == ("nnx",) else {}
    layers: list[Mapping[str, Any]] = [
        base,
        {"logical_axis_rules": list(entry.spec.logical_axis_rules), **only_nnx, **entry.spec.defaults},
        read_config(entry.preset) if entry.preset else {},
        user,
        dict(overrides),
        {"model_name": entry.name},
    ]
    return validate(merge_layers(layers), entry.spec.config), entry
