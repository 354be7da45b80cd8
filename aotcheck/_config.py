"""Configuration: `configs/base.yml`, a model's defaults and preset, `--config FILE`, `--set k=v`.

Layers merge in that order, later keys winning, except `logical_axis_rules`: each layer's
rules are put in front of the rules so far (first match wins, so they take precedence and
the base rules stay as fallbacks), as MaxText's model files do. Keys follow MaxText's names
where the concept is the same, so MaxText settings carry over.

The result has two validated parts: `core` (what aotcheck itself reads: mesh, rules,
dtypes, optimizer, batch) and `model` (the fields the model declares in its own pydantic
class). An unknown key or bad value is a one-line error naming the key.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from aotcheck._errors import UsageError, close_matches
from aotcheck._io import loads_yaml, read_yaml

# The default mesh axes, and the MaxText parallelism key of each (MaxText calls the `stage`
# axis's parallelism `pipeline`). `mesh_axes` may name any other axes: each gets its own
# `ici_<axis>_parallelism` / `dcn_<axis>_parallelism` keys (1 unless set), so a model's own
# mesh and rules (MaxText's twelve axes) pass through as they are.
PARALLELISM_KEYS: dict[str, str] = {
    "data": "data",
    "stage": "pipeline",
    "fsdp": "fsdp",
    "fsdp_transpose": "fsdp_transpose",
    "sequence": "sequence",
    "tensor": "tensor",
    "expert": "expert",
}

DType = Literal["float32", "bfloat16", "float16"]
RematPolicy = Literal["none", "full", "minimal"]


_AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARALLELISM = re.compile(r"(ici|dcn)_([A-Za-z_][A-Za-z0-9_]*)_parallelism")


def parallelism_key(kind: str, axis: str) -> str:
    """`ici_fsdp_parallelism`, `dcn_pipeline_parallelism` (the `stage` axis), `ici_context_parallelism`."""
    return f"{kind}_{PARALLELISM_KEYS.get(axis, axis)}_parallelism"


# Logical axis rules, in order: (logical name, mesh axes).
Rules = tuple[tuple[str, tuple[str, ...]], ...]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)


MAX_PARALLELISM = 65536  # more chips than any TPU pod has


def _parallelism(value: int) -> int:
    if value != -1 and not 1 <= value <= MAX_PARALLELISM:
        raise ValueError(f"a parallelism is -1 (fill from the devices) or 1..{MAX_PARALLELISM}")
    return value


Parallelism = Annotated[int, pydantic.AfterValidator(_parallelism)]


def _parallelism_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in PARALLELISM_KEYS.values():
        fields[f"ici_{key}_parallelism"] = (Parallelism, 1)
        fields[f"dcn_{key}_parallelism"] = (Parallelism, 1)
    return fields


class _CoreFields(_Strict):
    model_name: str = "tiny"
    pure_nnx: bool = False
    mesh_axes: tuple[str, ...] = tuple(PARALLELISM_KEYS)
    allow_split_physical_axes: bool = False
    logical_axis_rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    weight_dtype: DType = "float32"
    dtype: DType = "bfloat16"
    mu_dtype: DType | None = None
    opt_type: Literal["adamw"] = "adamw"
    learning_rate: float = pydantic.Field(3e-5, gt=0)
    adam_b1: float = pydantic.Field(0.9, ge=0, lt=1)
    adam_b2: float = pydantic.Field(0.95, ge=0, lt=1)
    adam_eps: float = pydantic.Field(1e-8, gt=0)
    adam_eps_root: float = pydantic.Field(0.0, ge=0)
    adam_weight_decay: float = pydantic.Field(0.1, ge=0)
    per_device_batch_size: float = pydantic.Field(1.0, gt=0, le=1 << 20)
    max_target_length: int = pydantic.Field(2048, gt=0, le=1 << 24)
    scan_layers: bool = True
    remat_policy: RematPolicy = "full"
    # `ici_/dcn_<axis>_parallelism` of the axes beyond the default seven, by key.
    parallelism: dict[str, Parallelism] = {}

    @pydantic.field_validator("logical_axis_rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> Any:
        return normalise_rules(value)

    @pydantic.field_validator("mesh_axes")
    @classmethod
    def _axes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for axis in value:
            if not _AXIS.fullmatch(axis):
                raise ValueError(f"mesh axis '{axis}' is not a name (letters, digits, underscores)")
        if len(set(value)) != len(value):
            raise ValueError("mesh axes repeat")
        return value

    @pydantic.model_validator(mode="after")
    def _parallelism_names_mesh_axes(self) -> _CoreFields:
        for key in self.parallelism:
            axis = _PARALLELISM.fullmatch(key).group(2)  # type: ignore[union-attr]
            if axis not in self.mesh_axes:
                raise ValueError(f"{key} sets mesh axis '{axis}', which is not in mesh_axes{close_matches(axis, self.mesh_axes)}")
        return self

    @pydantic.model_validator(mode="after")
    def _rules_name_mesh_axes(self) -> _CoreFields:
        for name, axes in self.logical_axis_rules:
            if len(set(axes)) != len(axes):
                raise ValueError(f"rule for '{name}' names a mesh axis twice ({', '.join(axes)}); name each once")
            for axis in axes:
                if axis not in self.mesh_axes:
                    raise ValueError(
                        f"rule for '{name}' names mesh axis '{axis}', which is not in mesh_axes"
                        f"{close_matches(axis, self.mesh_axes)}"
                    )
        return self


CoreConfig = pydantic.create_model(
    "CoreConfig", __base__=_CoreFields, __doc__="What aotcheck itself reads from the config.", **_parallelism_fields()
)


class NoModelFields(_Strict):
    """For models that take no settings of their own."""


def normalise_rules(value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """MaxText writes a rule's mesh axes as a name, a list, or an empty list; make them tuples."""
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)):
        raise ValueError("logical_axis_rules must be a list of [logical_name, mesh_axes] pairs")
    out = []
    for rule in value:
        if not isinstance(rule, (list, tuple)) or len(rule) != 2 or not isinstance(rule[0], str):
            raise ValueError(f"each logical axis rule is [name, mesh_axes]; got {rule!r}")
        name, axes = rule
        if axes is None:
            axes = ()
        elif isinstance(axes, str):
            axes = (axes,)
        if not isinstance(axes, (list, tuple)) or not all(isinstance(a, str) for a in axes):
            raise ValueError(f"rule for '{name}': mesh axes are a name or a list of names; got {axes!r}")
        out.append((name, tuple(axes)))
    return tuple(out)


@dataclass(frozen=True)
class RunConfig:
    """A validated configuration: aotcheck's fields and the model's own."""

    core: Any  # CoreConfig
    model: Any  # the model's own pydantic fields (its `config` class)
    # The keys read so far, when the config records them (`aotcheck._reads.recording`).
    reads: set[str] | None = field(default=None, compare=False, repr=False)

    @property
    def rules(self) -> Rules:
        return self.core.logical_axis_rules

    def ici(self, axis: str) -> int:
        return self._parallelism(parallelism_key("ici", axis), axis)

    def dcn(self, axis: str) -> int:
        return self._parallelism(parallelism_key("dcn", axis), axis)

    def _parallelism(self, key: str, axis: str) -> int:
        if axis in PARALLELISM_KEYS:
            return int(getattr(self.core, key))
        if self.reads is not None:
            self.reads.add(key)
        # The key itself is what was read, not the `parallelism` table that holds it.
        return int(object.__getattribute__(self.core, "parallelism").get(key, 1))

    def as_dict(self) -> dict[str, Any]:
        """Every setting, JSON-ready, for the report header."""
        core = self.core.model_dump(mode="json")
        extra = core.pop("parallelism")
        merged = {**core, **extra, **self.model.model_dump(mode="json")}
        merged["logical_axis_rules"] = [[n, list(a)] for n, a in self.core.logical_axis_rules]
        return dict(sorted(merged.items()))


def read_config(path: Path) -> dict[str, Any]:
    """A config file's mapping (a copy: the caller may change it)."""
    try:
        stat = path.stat()
    except OSError:
        return copy.deepcopy(_read_config(path, 0, -1))  # read_yaml says what is wrong with it
    # Parsed once per process and file version: the gate and `fit` read base.yml for every build.
    return copy.deepcopy(_read_config(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _read_config(path: Path, _mtime_ns: int, _size: int) -> dict[str, Any]:
    data = read_yaml(path, "config file")
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of keys to values")
    _check_plain(data, f"config file {path}")
    return data


def _check_plain(value: Any, where: str, key: str = "") -> None:
    """String keys and finite numbers all the way down (YAML allows neither limit)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise UsageError(f"{where}: key {k!r} is not a string; quote it")
            _check_plain(v, where, k)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_plain(v, where, key)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UsageError(f"{where}: {key or 'a value'} is {value}; numbers must be finite")


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects key=value, got '{item}'")
        try:
            value = loads_yaml(raw) if raw.strip() else ""
        except (yaml.YAMLError, RecursionError) as exc:
            why = getattr(exc, "problem", None) or "it is not valid YAML"
            raise UsageError(f"--set {key.strip()}: value {raw[:60]!r} is refused: {why}") from None
        _check_plain(value, f"--set {key.strip()}", key.strip())
        out[key.strip()] = value
    return out


def merge_layers(layers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    rules: list[Any] = []
    for layer in layers:
        for key, value in layer.items():
            if key == "logical_axis_rules":
                if value is not None and not isinstance(value, (list, tuple)):
                    raise UsageError(
                        f"config: logical_axis_rules must be a list of [logical_name, mesh_axes] pairs (got {value!r:.60})")
                rules = list(value or []) + rules
            else:
                merged[key] = value
    merged["logical_axis_rules"] = rules
    return merged


def validate(values: Mapping[str, Any], model_fields: type[pydantic.BaseModel]) -> RunConfig:
    core_keys = set(CoreConfig.model_fields)
    model_keys = set(model_fields.model_fields)
    core_vals = {k: v for k, v in values.items() if k in core_keys and k != "parallelism"}
    # The parallelism of the user's own mesh axes (the default seven have fields of their own).
    extra = {k: v for k, v in values.items() if k not in core_keys and k not in model_keys and _PARALLELISM.fullmatch(k)}
    if extra:
        core_vals["parallelism"] = extra
    # A model may read a key aotcheck reads too (`dtype`, `max_target_length`): both get its value.
    model_vals = {k: v for k, v in values.items() if k in model_keys}
    for key in values:
        if key not in core_keys and key not in model_keys and key not in extra or key == "parallelism":
            raise UsageError(f"config: unknown key '{key}'{close_matches(key, core_keys | model_keys)}")
    return RunConfig(core=_build(CoreConfig, core_vals), model=_build(model_fields, model_vals))


def _build(cls: type[pydantic.BaseModel], values: Mapping[str, Any]) -> Any:
    try:
        return cls(**values)
    except pydantic.ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not key:  # a check across several keys: its message names them
            raise UsageError(f"config: {msg}") from None
        shown = values.get(str(err["loc"][0]), err.get("input"))
        got = f" (got {shown!r})" if err["type"] != "value_error" and shown is not None else ""
        raise UsageError(f"config: {key}: {msg}{got}") from None
