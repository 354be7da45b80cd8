"""Golden files: a report split into the four files a reviewer reads in a pull request.

`golden/<model>/<topology>[-x<slices>]/<linen|nnx>/` holds

- `named_shardings.json`: the mesh (once) and each leaf's PartitionSpec and shape;
- `logical_annotations.json`: each leaf's logical axis names (null: unannotated) and the rules;
- `state_dtypes.json`: each leaf's dtype and role;
- `compile.json`: memory per device, fit verdict, FLOPs and collectives (absent for a
  sharding-only case).

Everything is sorted and indented with a trailing newline, short lists (a PartitionSpec, a
shape) stay on one line so a change is one changed line, and nothing in them is noise (no
times), so a file changes exactly where the model did. Derived figures (per-device
shapes, bytes) are left out and recomputed on reading. Each file is replaced atomically,
so an interrupted update leaves every file either old or new.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aotcheck._io import atomic_write, read_json
from aotcheck.errors import UsageError
from aotcheck.report import CompileReport, LeafReport, Report
from aotcheck.rules import shard_shape, spec_from_json, spec_to_json

SHARDINGS = "named_shardings.json"
ANNOTATIONS = "logical_annotations.json"
DTYPES = "state_dtypes.json"
COMPILE = "compile.json"
SHARDING_FILES = (SHARDINGS, ANNOTATIONS, DTYPES)
FILES = (*SHARDING_FILES, COMPILE)


_INLINE = 100  # widest list kept on one line


def dumps(data: Any) -> str:
    """Deterministic JSON for review: sorted keys, indent 2, short dict-free lists inline, trailing newline."""
    return _encode(data, "") + "\n"


def _encode(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{inner}{json.dumps(k)}: {_encode(value[k], inner)}" for k in sorted(value))
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list | tuple):
        flat = json.dumps(value)
        if len(flat) <= _INLINE and "{" not in flat:
            return flat
        return "[\n" + ",\n".join(inner + _encode(v, inner) for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def files_of(report: Report) -> dict[str, str]:
    """The golden files of a report, name -> text; no compile.json for a sharding-only report."""
    h = report.header
    leaves = report.leaves
    out = {
        SHARDINGS: {
            "model": h["model"],
            "path": h["path"],
            "backend": h["backend"],
            "versions": h["versions"],
            "topology": h["topology"],
            "mesh": h["mesh"],
            "batch": report.batch,
            "shardings": {
                leaf.path: {"partition_spec": spec_to_json(leaf.spec), "shape": list(leaf.shape)} for leaf in leaves
            },
        },
        ANNOTATIONS: {
            "rules": h["rules"],
            "leaves": {leaf.path: None if leaf.logical_axes is None else list(leaf.logical_axes) for leaf in leaves},
        },
        DTYPES: {"leaves": {leaf.path: {"dtype": leaf.dtype, "role": leaf.role} for leaf in leaves}},
    }
    if report.compile is not None:
        out[COMPILE] = {"backend": h["backend"], "versions": h["versions"], **report.compile.to_json()}
    return {name: dumps(data) for name, data in out.items()}


def write_golden(directory: Path, report: Report) -> list[str]:
    """Replace the golden files of `directory` with those of `report`; the names of the files that changed.

    A sharding-only report leaves compile.json alone: a slow case that compiles the same
    model may own it.
    """
    _remove_stale_temporaries(directory)
    changed = []
    for name, text in files_of(report).items():
        target = directory / name
        if not target.is_file() or target.read_text() != text:
            atomic_write(target, text)
            changed.append(name)
    return changed


def _remove_stale_temporaries(directory: Path) -> None:
    # `atomic_write`'s temporaries (`.<name>.<random>.tmp`) outlive only a killed update.
    if directory.is_dir():
        for name in FILES:
            for tmp in directory.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)


def exists(directory: Path) -> bool:
    return all((directory / name).is_file() for name in SHARDING_FILES)


def has_compile(directory: Path) -> bool:
    return (directory / COMPILE).is_file()


def _read(path: Path) -> dict[str, Any]:
    data = read_json(path, "golden file")
    if not isinstance(data, dict):
        raise UsageError(f"golden file {path} is not a JSON object")
    return data


def versions_of(directory: Path) -> dict[str, dict[str, str | None]]:
    """File name -> the tool versions it was written with."""
    return {name: _read(directory / name).get("versions", {}) for name in (SHARDINGS, COMPILE) if (directory / name).is_file()}


def read_golden(directory: Path) -> Report:
    """The report a golden directory records, so it can stand as either side of a comparison."""
    shardings = _read(directory / SHARDINGS)
    annotations = _read(directory / ANNOTATIONS)
    dtypes = _read(directory / DTYPES)
    compile_json = _read(directory / COMPILE) if has_compile(directory) else None
    try:
        mesh_shape = dict(shardings["mesh"]["shape"])
        leaves = tuple(
            _leaf(path, entry, annotations["leaves"][path], dtypes["leaves"][path], mesh_shape)
            for path, entry in sorted(shardings["shardings"].items())
        )
        missing = (set(annotations["leaves"]) | set(dtypes["leaves"])) - set(shardings["shardings"])
        if missing:
            raise KeyError(sorted(missing)[0])
        header = {
            "model": shardings["model"],
            "model_source": f"golden {directory}",
            "path": shardings["path"],
            "backend": shardings["backend"],
            "versions": shardings["versions"],
            "topology": shardings["topology"],
            "mesh": shardings["mesh"],
            "rules": annotations["rules"],
            "config": {},
        }
        compiled = None if compile_json is None else CompileReport.from_json(compile_json)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"golden directory {directory} is inconsistent or malformed (at {exc}); regenerate it") from None
    return Report(header=header, batch=shardings.get("batch", {}), leaves=leaves, compile=compiled, timings={})


def _leaf(path: str, entry: dict[str, Any], axes: list[str | None] | None, state: dict[str, str],
          mesh_shape: dict[str, int]) -> LeafReport:
    import ml_dtypes  # registers bfloat16 & co. with numpy
    import numpy as np

    spec = spec_from_json(entry["partition_spec"], mesh_shape)
    shape = tuple(entry["shape"])
    shard = shard_shape(shape, spec, mesh_shape)
    itemsize = np.dtype(getattr(ml_dtypes, state["dtype"], state["dtype"])).itemsize
    return LeafReport(
        path=path,
        role=state["role"],
        shape=shape,
        dtype=state["dtype"],
        logical_axes=None if axes is None else tuple(axes),
        spec=spec,
        shard_shape=shard,
        bytes=int(np.prod(shape, dtype=np.int64)) * itemsize,
        bytes_per_device=int(np.prod(shard, dtype=np.int64)) * itemsize,
    )


def find_dirs(root: Path) -> list[Path]:
    """Every golden directory under `root` (one holding named_shardings.json), sorted."""
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob(SHARDINGS))
