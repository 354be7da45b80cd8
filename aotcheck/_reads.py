"""Which settings a run read: the config handed to model code and to aotcheck's own stages records each key read.

A setting matters to a run only if something reads it. `recording(cfg)` gives a config
whose `core` and `model` parts are instances of subclasses of their own pydantic classes
(same name, same values: model code, `isinstance`, `==` and `model_dump` work as before)
that note the name of every field read; a read of the whole object (`model_dump`,
`dict(cfg.model)`, `vars`, a copy) notes every field, and comparing or hashing notes none.
The record is what the run's code did, so it is deterministic: a setting read only by the
train step is not read by a `--no-compile` run, which never traces the step. The report
header shows what was read, and a `--set` or `--config` key that nothing read is a warning
(`aotcheck._pipeline`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import pydantic

from aotcheck._config import RunConfig
from aotcheck._report import Header

# Attribute reads that take the whole object's values at once.
_WHOLE = frozenset({"__dict__", "model_dump", "model_dump_json", "model_copy", "__copy__", "__deepcopy__",
                    "__reduce__", "__reduce_ex__", "__getstate__"})


def _note(obj: Any, names: Any) -> None:
    reads = object.__getattribute__(obj, "__pydantic_private__")["_aotcheck_reads"]
    if reads is not None:
        reads.update(names)


@functools.cache
def _recording_class(cls: type[pydantic.BaseModel]) -> type[pydantic.BaseModel]:
    """A subclass of `cls` whose instances note the fields read into a shared set."""
    fields = frozenset(cls.model_fields)

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if name in fields:
            _note(self, (name,))
        elif name in _WHOLE:
            _note(self, fields)
        return super(sub, self).__getattribute__(name)

    def __iter__(self: Any) -> Iterator[tuple[str, Any]]:  # noqa: N807  (special methods bypass __getattribute__)
        _note(self, fields)
        return super(sub, self).__iter__()

    # Comparing or hashing a config (a cache key, Flax's module bookkeeping) is not a use of its values.
    def __eq__(self: Any, other: object) -> bool:  # noqa: N807
        return bool(_plain(self) == _plain(other))

    def __hash__(self: Any) -> int:  # noqa: N807
        return hash(_plain(self))

    namespace = {"__getattribute__": __getattribute__, "__iter__": __iter__, "__eq__": __eq__, "__hash__": __hash__,
                 "__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__,
                 "__annotations__": {"_aotcheck_reads": Any, "_aotcheck_plain": Any},
                 "_aotcheck_reads": pydantic.PrivateAttr(None), "_aotcheck_plain": pydantic.PrivateAttr(None)}
    metaclass: Any = type(cls)  # pydantic's: it builds the subclass's schema from `cls`'s
    sub = metaclass(cls.__name__, (cls,), namespace)
    return sub


def _recorded(instance: pydantic.BaseModel, reads: set[str]) -> pydantic.BaseModel:
    sub = _recording_class(type(instance))
    copy = sub.model_construct(_fields_set=instance.model_fields_set, **instance.__dict__)
    object.__getattribute__(copy, "__pydantic_private__").update(_aotcheck_reads=reads, _aotcheck_plain=instance)
    return copy


def _plain(instance: Any) -> Any:
    private = getattr(type(instance), "__private_attributes__", {}) and object.__getattribute__(instance, "__pydantic_private__")
    return (private or {}).get("_aotcheck_plain") or instance


def recording(cfg: RunConfig, read: Iterable[str] = ()) -> RunConfig:
    """`cfg`, noting every key read (through `cfg.core`, `cfg.model` or the parallelism lookups) in `cfg.reads`.

    `read` names keys already read before recording began.
    """
    reads: set[str] = set(read)
    return replace(cfg, core=_recorded(cfg.core, reads), model=_recorded(cfg.model, reads), reads=reads)


def plain(cfg: RunConfig) -> RunConfig:
    """The config `recording` was given: reading it (for the report, for a cache key) notes nothing."""
    return replace(cfg, core=_plain(cfg.core), model=_plain(cfg.model), reads=None)


def settings_read(cfg: RunConfig, ignores: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(aotcheck's settings, the model's own fields) that a recording config was read for, JSON-ready.

    Rules are left out (the header has them as `rules`), and so are the settings the model's
    spec says it ignores: the header shows only what mattered.
    """
    reads = cfg.reads or set()
    base = plain(cfg)
    core = base.core.model_dump(mode="json")
    model = base.model.model_dump(mode="json")
    # The parallelism of the user's own mesh axes: set (in `parallelism`) or 1, as `RunConfig.ici` reads it.
    extra = core.pop("parallelism")
    core.update({k: extra.get(k, 1) for k in reads if k not in core and k not in model})
    core.pop("logical_axis_rules")
    return ({k: core[k] for k in sorted(core) if k in reads and k not in ignores},
            {k: model[k] for k in sorted(model) if k in reads})


def unread_warnings(header: Header, given: Mapping[str, str], ignores: tuple[str, ...]) -> list[str]:
    """One line per key the user set (`given`: key -> where, `--set k=v` or `--config FILE`) that nothing read.

    Derived from the report's header alone, so a report served from the cache warns as a fresh build does.
    """
    read = set(header.config) | set(header.own_config) | {"logical_axis_rules"}
    out = []
    for key, where in given.items():
        if key in ignores:
            out.append(f"{where}: model '{header.model}' does not read this setting (its ModelSpec ignores it), "
                       "so it changes nothing")
        elif key not in read:
            out.append(f"{where}: nothing read '{key}' in this run (model '{header.model}', {header.path} path); "
                       "it changes nothing")
    return out
