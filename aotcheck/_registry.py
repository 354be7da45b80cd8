"""Models by name: the built-in presets, installed packages' entry points, `package.module:attribute`;
and the layered config of a run of one of them.

The built-in presets (`configs/models/*.yml`) all run the built-in decoder, which is found
by its import string like any other model, so the decoder depends on the protocol
(`aotcheck._model`) and nothing here depends on the decoder.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aotcheck._config import RunConfig
from aotcheck._errors import USER_CODE_FAILURES, BuildError, UsageError, close_matches, one_line
from aotcheck._io import config_dir
from aotcheck._model import ModelSpec

ENTRY_POINT_GROUP = "aotcheck.models"
BUILTIN_SPEC = "aotcheck.models.decoder:DECODER"


@dataclass(frozen=True)
class ModelEntry:
    """A model as the user names it: its spec, an optional preset file, and where it came from."""

    name: str
    spec: ModelSpec
    preset: Path | None
    source: str


def _builtin_entries() -> dict[str, ModelEntry]:
    presets = sorted((config_dir() / "models").glob("*.yml"))
    if not presets:
        return {}
    spec = _LazySpec(BUILTIN_SPEC).load("built-in decoder")
    return {p.stem: ModelEntry(p.stem, spec, p, "built-in") for p in presets}


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
        except ModuleNotFoundError as exc:
            error = UsageError if module_name == exc.name or module_name.startswith(f"{exc.name}.") else BuildError
            raise error(f"model '{shown_as}': cannot import module '{module_name}': {one_line(exc)}") from None
        except USER_CODE_FAILURES as exc:  # the module's own code failed (even by sys.exit): the model's failure
            raise BuildError(f"model '{shown_as}': cannot import module '{module_name}': {one_line(exc)}") from None
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
        # A model module next to the user's files is found without PYTHONPATH; appended, so
        # a stray `numpy.py` in the working directory cannot replace an installed module.
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.append(os.getcwd())
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
    from aotcheck._config import merge_layers, read_config, validate

    base = read_config(config_dir() / "base.yml")
    user = read_config(config_file) if config_file is not None else {}
    if isinstance(model, str) and not model.strip():
        raise UsageError("--model is empty; give a model name (`aotcheck models` lists them) or package.module:attribute")
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
