"""The two sides of a comparison, read from files: a saved report, a golden directory, or
MaxText's sharding goldens (`named_shardings.json` / `logical_shardings.json`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pydantic

from aotcheck import _canonical
from aotcheck._errors import UsageError
from aotcheck._io import read_json, without_cycles
from aotcheck._report import (
    OLD_SCHEMAS,
    SCHEMA,
    Header,
    Leaf,
    MeshInfo,
    Report,
    parse_report,
    report_or_json,
    validation_message,
)
from aotcheck._sharding import spec_from_json

MAXTEXT_NAMED = "named_shardings.json"
MAXTEXT_LOGICAL = "logical_shardings.json"


@without_cycles
def load_side(path: Path) -> Report:
    """An aotcheck report JSON, a golden directory, or MaxText's sharding goldens (a file or their directory)."""
    # The golden file records load only where a golden may be read: two reports need none.
    if path.is_dir():
        from aotcheck import _golden

        if _golden.exists(path):
            return _golden.read_golden(path)
        named, logical = path / MAXTEXT_NAMED, path / MAXTEXT_LOGICAL
        if named.is_file() or logical.is_file():
            return read_maxtext(
                read_json(named, "MaxText file") if named.is_file() else None,
                read_json(logical, "MaxText file") if logical.is_file() else None,
                path,
            )
        raise UsageError(
            f"{path} is neither a golden directory ({', '.join(_golden.SHARDING_FILES)}) "
            f"nor a directory of MaxText goldens ({MAXTEXT_NAMED}, {MAXTEXT_LOGICAL})"
        )
    if not path.exists():
        raise UsageError(f"{path} does not exist (give linen, nnx, a report JSON, a golden directory or MaxText goldens)")
    data = report_or_json(path, "file")
    if isinstance(data, Report):
        return data
    if isinstance(data, dict) and data.get("schema") in (SCHEMA, *OLD_SCHEMAS):
        return parse_report(data, f"report {path}")
    if isinstance(data, dict) and "shardings" in data:
        from aotcheck import _golden

        if _golden.exists(path.parent):
            return _golden.read_golden(path.parent)  # one file of a golden directory stands for the directory
    if isinstance(data, dict) and path.name == MAXTEXT_LOGICAL:
        return read_maxtext(None, data, path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "mesh" in v for v in data.values()):
        return read_maxtext(data, None, path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "partition_spec" in v for v in data.values()):
        return read_maxtext(None, data, path)
    raise UsageError(f"{path} is not an aotcheck report, a golden file or a MaxText sharding file")


def read_maxtext(named: Mapping[str, Any] | None, logical: Mapping[str, Any] | None, source: Path) -> Report:
    """MaxText's `named_shardings.json` (path -> mesh, partition_spec, shape) and/or
    `logical_shardings.json` (path -> partition_spec of logical names, shape) as a report.

    MaxText records no dtypes, so only the fields its files hold are compared
    (`header.known_fields`); specs are normalised against each entry's mesh.
    """
    known = ["shape"] + (["partition_spec"] if named is not None else []) + (
        ["logical_axes"] if logical is not None else [])
    entries: dict[str, dict[str, Any]] = {}
    mesh = MeshInfo(axis_names=(), shape={})
    for name, table in ((MAXTEXT_NAMED, named), (MAXTEXT_LOGICAL, logical)):
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise UsageError(f"{source}: {name} is not a JSON object of path -> sharding")
        for path, entry in table.items():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("partition_spec"), list):
                raise UsageError(f"{source}: entry {path!r} of {name} has no partition_spec list")
            shape = entry.get("shape") or ()
            if not isinstance(shape, list | tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise UsageError(f"{source}: entry {path!r} of {name} has no usable shape ({shape!r})")
            slot = entries.setdefault(path, {"shape": tuple(shape)})
            if name == MAXTEXT_NAMED:
                try:
                    mesh = MeshInfo(axis_names=tuple(entry["mesh"]["axis_names"]), shape=dict(entry["mesh"]["shape"]))
                    slot["partition_spec"] = spec_from_json(entry["partition_spec"], mesh.shape)
                except (KeyError, TypeError, ValueError) as exc:
                    raise UsageError(f"{source}: entry {path!r} of {name} has no usable mesh ({exc})") from None
            else:
                axes = entry["partition_spec"]
                # An empty PartitionSpec of logical names is no annotation at all.
                slot["logical_axes"] = tuple(tuple(a) if isinstance(a, list) else a for a in axes) if axes else None
    try:
        return _maxtext_report(entries, mesh, known, source)
    except pydantic.ValidationError as exc:  # values of the right JSON type but no valid leaf (a bool for an axis)
        raise UsageError(f"{source}: not a usable MaxText sharding file: {validation_message(exc)}") from None


def _maxtext_report(entries: dict[str, dict[str, Any]], mesh: MeshInfo, known: list[str], source: Path) -> Report:
    rewrites = _canonical.defaults()
    leaves = {
        path: Leaf(
            role=_canonical.role_of(rewrites.canonical(path, "other", "maxtext")),
            shape=e["shape"], dtype="unknown", logical_axes=e.get("logical_axes"),
            partition_spec=e.get("partition_spec", ()), shard_shape=e["shape"], bytes=0, bytes_per_device=0,
        )
        for path, e in sorted(entries.items())
    }
    header = Header(model="MaxText goldens", model_source=f"MaxText goldens {source}", path="maxtext", mesh=mesh,
                    known_fields=tuple(known))
    return Report(header=header, leaves=leaves)


def describe(report: Report) -> str:
    """`tiny (nnx) on v5p-8`, or where MaxText goldens came from."""
    h = report.header
    if h.path == "maxtext":
        return h.model_source
    return f"{h.model} ({h.path}) on {h.topology.name if h.topology else '?'}"


def recorded_rewrites(report: Report, label: str) -> _canonical.Rewrites:
    """The model's own rewrites that a saved side recorded (none for MaxText's files, or a
    report written before reports recorded them)."""
    recorded = report.header.rewrites
    return _canonical.parse(recorded, f"{label}: the model's rewrites") if recorded else _canonical.Rewrites(())


def model_rewrites(request: Any) -> _canonical.Rewrites:
    """configs/canonical.yml, then the model's own `ModelSpec.rewrites` (sides built from a request)."""
    from aotcheck._pipeline import configure

    spec = configure(request)[1].spec
    if not spec.rewrites:
        return _canonical.defaults()
    return _canonical.defaults().then(_canonical.parse(dict(spec.rewrites), f"ModelSpec '{spec.name}' rewrites"))
