"""Golden files: a report split into the four files a reviewer reads in a pull request.

`golden/<model>/<topology>[-x<slices>]/<linen|nnx>/` holds

- `named_shardings.json`: the mesh (once) and each leaf's PartitionSpec and shape;
- `logical_annotations.json`: each leaf's logical axis names (null: unannotated) and the rules;
- `state_dtypes.json`: each leaf's dtype and role;
- `compile.json`: memory per device, fit verdict, FLOPs and collectives (absent for a
  sharding-only case), with the backend and versions that compiled it.

Everything is sorted and indented with a trailing newline, short lists (a PartitionSpec, a
shape) stay on one line so a change is one changed line, and nothing in them is noise (no
times), so a file changes exactly where the model did. Derived figures (per-device
shapes, bytes) are left out and recomputed on reading. A case directory is replaced as a
whole, under a lock, so an interrupted or concurrent update leaves it wholly old or wholly new.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final, Literal

import pydantic

from aotcheck import _sharding
from aotcheck._analysis import Compile
from aotcheck._errors import UsageError
from aotcheck._io import decode, parse_json, read_bytes, without_cycles
from aotcheck._record import Entry, Record, from_json_bytes, row
from aotcheck._report import (
    BatchInput,
    Header,
    Leaf,
    MeshInfo,
    Report,
    Rewritten,
    Role,
    TopologyInfo,
    validation_message,
)
from aotcheck._sharding import Spec

SCHEMA: Final = "aotcheck.golden/2"
SHARDINGS = "named_shardings.json"
ANNOTATIONS = "logical_annotations.json"
DTYPES = "state_dtypes.json"
COMPILE = "compile.json"
SHARDING_FILES = (SHARDINGS, ANNOTATIONS, DTYPES)
FILES = (*SHARDING_FILES, COMPILE)
OLD_FORMAT_NOTE = "written by an older aotcheck (golden format 1); `aotcheck golden update` rewrites it"


@row
class ShardingEntry:
    partition_spec: tuple[Entry, ...]
    shape: tuple[int, ...]


class ShardingsFile(Record):
    schema_: Literal["aotcheck.golden/2"] | None = pydantic.Field(None, alias="schema")  # None: format 1
    model: str
    path: Literal["linen", "nnx"]
    backend: Literal["libtpu", "mock"]
    versions: dict[str, str | None]
    topology: TopologyInfo
    mesh: MeshInfo
    batch: dict[str, BatchInput] = {}
    shardings: dict[str, ShardingEntry]
    rewrites: Rewritten = pydantic.Field(default_factory=dict, exclude_if=lambda v: not v)  # as the report's header


class AnnotationsFile(Record):
    rules: tuple[tuple[str, tuple[str, ...]], ...]
    leaves: dict[str, tuple[Entry, ...] | None]


@row
class DtypeEntry:
    dtype: str
    role: Role


class DtypesFile(Record):
    leaves: dict[str, DtypeEntry]


class CompileFile(Compile):
    backend: Literal["libtpu", "mock"]
    versions: dict[str, str | None]


GoldenFile = ShardingsFile | AnnotationsFile | DtypesFile | CompileFile
_MODELS: dict[str, type[Record]] = {SHARDINGS: ShardingsFile, ANNOTATIONS: AnnotationsFile, DTYPES: DtypesFile,
                                    COMPILE: CompileFile}


def _format1_upgraded(data: Any) -> Any:
    """A format-1 shardings file's data as format 2 has it: a batch input's PartitionSpec was `spec`."""
    if isinstance(data, dict) and "schema" not in data and isinstance(data.get("batch"), dict):
        data = {**data, "batch": {k: _spec_renamed(v) for k, v in data["batch"].items()}}
    return data


def _spec_renamed(entry: Any) -> Any:
    if isinstance(entry, dict) and "spec" in entry:
        return {("partition_spec" if k == "spec" else k): v for k, v in entry.items()}
    return entry


_INLINE = 100  # widest list kept on one line


def dumps(data: Any) -> str:
    """Deterministic JSON for review: sorted keys, indent 2, short dict-free lists inline, trailing newline."""
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump(mode="json", by_alias=True, exclude_none=False)
    return _encode(data, "") + "\n"


def _encode(value: Any, pad: str) -> str:
    inner = pad + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = (f"{inner}{json.dumps(k)}: {_encode(value[k], inner)}" for k in sorted(value))
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list | tuple):
        flat = json.dumps(value, allow_nan=False)
        if len(flat) <= _INLINE and "{" not in flat:
            return flat
        return "[\n" + ",\n".join(inner + _encode(v, inner) for v in value) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False)


def files_of(report: Report) -> dict[str, str]:
    """The golden files of a report, name -> text; no compile.json for a sharding-only report."""
    h = report.header
    assert h.path in ("linen", "nnx") and h.backend is not None and h.topology is not None
    out: dict[str, Record] = {
        SHARDINGS: ShardingsFile(
            schema_=SCHEMA, model=h.model, path=h.path, backend=h.backend, versions=h.versions,
            topology=h.topology, mesh=h.mesh, batch=report.batch, rewrites=h.rewrites,
            shardings={p: ShardingEntry(partition_spec=leaf.partition_spec, shape=leaf.shape)
                       for p, leaf in report.items()},
        ),
        ANNOTATIONS: AnnotationsFile(rules=h.rules, leaves={p: leaf.logical_axes for p, leaf in report.items()}),
        DTYPES: DtypesFile(leaves={p: DtypeEntry(dtype=leaf.dtype, role=leaf.role) for p, leaf in report.items()}),
    }
    if report.compile is not None:
        out[COMPILE] = CompileFile(backend=h.backend, versions=h.versions, **dict(report.compile))
    return {name: dumps(record) for name, record in out.items()}


def _lock(directory: Path) -> Any:
    """An inter-process lock for one case directory, kept outside the repository."""
    import hashlib

    from filelock import FileLock

    locks = Path(tempfile.gettempdir()) / "aotcheck-locks"
    locks.mkdir(exist_ok=True)
    name = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:32]
    return FileLock(str(locks / f"{name}.lock"))


def write_golden(directory: Path, report: Report) -> list[str]:
    """Replace the golden files of `directory` with those of `report`; the names of the files that changed.

    The directory is written beside the old one and swapped in as a whole, under a lock, so
    concurrent updates serialise. A sharding-only report keeps the old compile.json: a slow
    case that compiles the same model may own it.
    """
    with _lock(directory):
        _recover(directory)
        return _write(directory, report)


def _write(directory: Path, report: Report) -> list[str]:
    new = files_of(report)
    old = {name: (directory / name).read_text() for name in FILES if (directory / name).is_file()}
    if COMPILE not in new and COMPILE in old:
        new[COMPILE] = old[COMPILE]
    changed = [name for name, text in new.items() if old.get(name) != text]
    if not changed and set(old) == set(new):
        return []
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new.", dir=directory.parent))
    for name, text in new.items():
        with open(staging / name, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    backup = _backup(directory)
    if directory.exists():
        os.replace(directory, backup)
    os.replace(staging, directory)  # between the two, recover() restores the backup
    shutil.rmtree(backup, ignore_errors=True)
    return changed


def _backup(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.old"


def recover(directory: Path) -> None:
    """Finish what an interrupted update left: restore the old directory, drop staging copies."""
    if _backup(directory).is_dir() or any(directory.parent.glob(f".{directory.name}.new.*")):
        with _lock(directory):
            _recover(directory)


def _recover(directory: Path) -> None:
    backup = _backup(directory)
    if backup.is_dir():
        if directory.is_dir():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(backup, directory)
    if directory.parent.is_dir():
        for staging in directory.parent.glob(f".{directory.name}.new.*"):
            shutil.rmtree(staging, ignore_errors=True)


def _visible(directory: Path) -> Path:
    # A reader never moves anything: between an update's two renames the old files are in the backup.
    backup = _backup(directory)
    return backup if not directory.is_dir() and backup.is_dir() else directory


def exists(directory: Path) -> bool:
    found = _visible(directory)
    return all((found / name).is_file() for name in SHARDING_FILES)


def has_compile(directory: Path) -> bool:
    return (_visible(directory) / COMPILE).is_file()


def read_file(path: Path, name: str | None = None) -> Any:
    """One golden file as its typed record, or a one-line error naming the file and field.

    A file is validated straight from its bytes (`_record.from_json_bytes`), as a report is; one
    that does not validate so is parsed first, which upgrades format 1 or gives the one-line error.
    """
    model = _MODELS[name or path.name]
    data = read_bytes(path, "golden file")
    if (record := from_json_bytes(model, data)) is not None:
        return record
    parsed = parse_json(decode(data, path, "golden file"), path, "golden file")
    try:
        return model.model_validate(_format1_upgraded(parsed) if model is ShardingsFile else parsed)
    except pydantic.ValidationError as exc:
        raise UsageError(f"golden file {path}: {validation_message(exc)}; regenerate it") from None


def is_old_format(directory: Path) -> bool:
    return read_file(_visible(directory) / SHARDINGS).schema_ is None


@without_cycles
def read_golden(directory: Path) -> Report:
    """The report a golden directory records, so it can stand as either side of a comparison.

    The compile section carries its own backend (a slow case may have written it), which
    the header takes when it differs.
    """
    directory = _visible(directory)
    shardings: ShardingsFile = read_file(directory / SHARDINGS)
    annotations: AnnotationsFile = read_file(directory / ANNOTATIONS)
    dtypes: DtypesFile = read_file(directory / DTYPES)
    compiled: CompileFile | None = read_file(directory / COMPILE) if has_compile(directory) else None
    paths = set(shardings.shardings)
    for name, table in ((ANNOTATIONS, annotations.leaves), (DTYPES, dtypes.leaves)):
        if set(table) != paths:
            odd = sorted(set(table) ^ paths)[0]
            raise UsageError(f"golden directory {directory}: {name} and {SHARDINGS} disagree on leaf {odd}; regenerate it")
    mesh_shape = dict(shardings.mesh.shape)
    sizes: dict[tuple[Any, ...], tuple[Spec, tuple[int, ...], int, int]] = {}
    made: dict[tuple[Any, ...], Leaf] = {}
    leaves = {p: _leaf(e, annotations.leaves[p], dtypes.leaves[p], mesh_shape, directory, p, sizes, made)
              for p, e in sorted(shardings.shardings.items())}
    header = Header(
        model=shardings.model, model_source=f"golden {directory}", path=shardings.path,
        backend=compiled.backend if compiled is not None else shardings.backend,
        versions=shardings.versions, topology=shardings.topology, mesh=shardings.mesh, rules=annotations.rules,
        rewrites=shardings.rewrites,
    )
    compile_section = None if compiled is None else Compile(**{k: v for k, v in dict(compiled).items()
                                                               if k in Compile.model_fields})
    return Report(header=header, batch=shardings.batch, leaves=leaves, compile=compile_section)


def _leaf(entry: ShardingEntry, axes: tuple[Entry, ...] | None, state: DtypeEntry, mesh_shape: dict[str, int],
          directory: Path, path: str, sizes: dict[tuple[Any, ...], tuple[Spec, tuple[int, ...], int, int]],
          made: dict[tuple[Any, ...], Leaf]) -> Leaf:
    # Leaves repeat (every layer of an unscanned model, and the optimizer's copies of each
    # parameter): the spec, shard shape and bytes are worked out, and the (frozen) leaf built
    # and validated, once per distinct entry.
    leaf = made.get(whole := (entry.shape, entry.partition_spec, state.dtype, state.role, axes))
    if leaf is not None:
        return leaf
    key = (entry.shape, entry.partition_spec, state.dtype)
    if key not in sizes:
        spec = _sharding.spec_from_json(entry.partition_spec, mesh_shape)
        if len(spec) > len(entry.shape):
            raise UsageError(f"golden directory {directory}: leaf {path} has a PartitionSpec of {len(spec)} dimensions "
                             f"for a shape of {len(entry.shape)}; regenerate it")
        if any(a not in mesh_shape for e in spec for a in _sharding.as_axes(e)) or _sharding.indivisible(
                entry.shape, spec, mesh_shape):
            raise UsageError(f"golden directory {directory}: leaf {path} has a PartitionSpec its mesh cannot carry; "
                             "regenerate it")
        shard = _sharding.shard_shape(entry.shape, spec, mesh_shape)
        sizes[key] = (spec, shard, _sharding.nbytes(entry.shape, state.dtype), _sharding.nbytes(shard, state.dtype))
    spec, shard, nbytes, per_device = sizes[key]
    made[whole] = Leaf(role=state.role, shape=entry.shape, dtype=state.dtype, logical_axes=axes,
                       partition_spec=spec, shard_shape=shard, bytes=nbytes, bytes_per_device=per_device)
    return made[whole]


def find_dirs(root: Path) -> list[Path]:
    """Every golden directory under `root` (one holding named_shardings.json), sorted."""
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob(SHARDINGS) if not p.parent.name.startswith("."))
