"""aotcheck's cache: whole reports keyed by their inputs, and compile sections keyed by the program.

Two levels. A report entry (`r-<key>.json`) is keyed by everything a report is a function
of before anything is traced (`_fingerprint.inputs_key`): a hit serves the whole report,
minus timings, without importing jax. A compile entry (`c-<key>.json`) is keyed by the
lowered program text, the tool versions, the target, the mesh plan and layout flag (the
lowered text does not record the device order), the compiler options and flags: a hit
skips XLA's compile, which is ~100x dearer than lowering. JAX's persistent compilation
cache does not serve deviceless TPU compiles. The directory (`_io.cache_dir`) also holds the
parsed YAML texts `_io.read_yaml` keeps (`y-<hash>.json`), counted and evicted here with the rest.

The cache is best effort and bounded: an entry that cannot be read is discarded, one that
cannot be written costs only a warning, and after each write the least recently used
entries (by mtime, which a hit refreshes) go until the directory is under
`$AOTCHECK_CACHE_MAX_MB` (default 512). Writes are atomic; eviction tolerates entries that
another process removed first.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pydantic

from aotcheck._io import atomic_write, cache_dir, cache_disabled
from aotcheck._report import SCHEMA, versions

Kind = Literal["c", "r"]  # compile section, whole report
R = TypeVar("R", bound=pydantic.BaseModel)
DEFAULT_MAX_MB = 512


def max_bytes() -> int:
    """The size cap: `$AOTCHECK_CACHE_MAX_MB` megabytes (default 512); an unreadable value means the default."""
    try:
        mb = float(os.environ.get("AOTCHECK_CACHE_MAX_MB", DEFAULT_MAX_MB))
    except ValueError:
        mb = DEFAULT_MAX_MB
    return max(0, int(mb * 1024 * 1024))


def compiler_flags() -> dict[str, str]:
    """The process-level compiler flags, which change a compile without changing the lowered text."""
    return {k: os.environ.get(k, "") for k in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")}


def key(
    lowered_text: str,
    target: str,
    backend: str,
    *,
    mesh: Mapping[str, Any],
    allow_split_physical_axes: bool,
    compiler_options: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
) -> str:
    """The compile entry's key.

    Arguments:
        lowered_text: the lowered program (`lowered.as_text()`).
        target, backend: the target's name and backend.
        mesh: the mesh plan (axis names, ICI and DCN sizes); with the layout flag and the
            versions it fixes the device order, which the lowered text does not hold.
        allow_split_physical_axes: the layout flag.
        compiler_options: what `compile(compiler_options=...)` gets (`--fast`).
        options: the settings that add to the compile section (drift, memory detail, activations).
    """
    h = hashlib.sha256()
    parts: dict[str, Any] = {
        "record": 3,  # the compile section's form: per-step counts, estimate, drift
        "options": options or {},
        "schema": SCHEMA,  # the cached record's form
        "versions": versions(),
        "target": target,
        "backend": backend,
        "mesh": dict(mesh),
        "allow_split_physical_axes": allow_split_physical_axes,
        "compiler_options": dict(compiler_options),
        "flags": compiler_flags(),
    }
    h.update(json.dumps(parts, sort_keys=True).encode())
    h.update(lowered_text.encode())
    return h.hexdigest()


def _path(kind: Kind, k: str) -> Path:
    return cache_dir() / f"{kind}-{k}.json"


def get(kind: Kind, k: str, model: type[R]) -> R | None:
    """The cached record, or None (a missing, unreadable or corrupt entry; corrupt ones are removed;
    or the cache is disabled)."""
    if cache_disabled():
        return None
    path = _path(kind, k)
    try:
        record = model.model_validate_json(path.read_bytes())
    except OSError:
        return None
    except ValueError:  # pydantic's ValidationError too: not JSON, or not this record
        path.unlink(missing_ok=True)
        return None
    try:
        os.utime(path)  # recently used: evicted last
    except OSError:
        pass
    return record


def put(kind: Kind, k: str, record: pydantic.BaseModel) -> str | None:
    """Store an entry, then evict down to the cap; a one-line warning if it could not be written."""
    try:
        atomic_write(_path(kind, k), record.model_dump_json(by_alias=True))  # insertion order kept: it is shown
    except OSError as exc:
        return f"cache not written ({exc.strerror or exc}: {cache_dir()}); the result is unaffected"
    evict(max_bytes())
    return None


def _entries() -> list[tuple[Path, os.stat_result]]:
    found = []
    try:
        paths = list(cache_dir().glob("*.json"))
    except OSError:
        return []
    for path in paths:
        try:
            found.append((path, path.stat()))
        except OSError:  # removed by another process meanwhile
            continue
    return found


def evict(cap: int) -> int:
    """Remove least recently used entries until the entries total at most `cap` bytes; the number removed."""
    entries = sorted(_entries(), key=lambda e: (e[1].st_mtime, e[0].name))
    total = sum(st.st_size for _, st in entries)
    removed = 0
    for path, st in entries:
        if total <= cap:
            break
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:  # another writer evicted it first: it no longer counts either
            pass
        except OSError:
            continue
        total -= st.st_size
    return removed


@dataclass(frozen=True)
class Info:
    """What the cache holds."""

    directory: Path
    reports: int
    compiles: int
    parsed_yaml: int  # YAML texts read before (`_io.read_yaml`)
    other: int  # entries of an older layout, evicted like the rest
    bytes: int
    max_bytes: int


def info() -> Info:
    """The cache's directory, entries per kind, bytes and cap."""
    entries = _entries()
    reports, compiles, parsed_yaml = (sum(p.name.startswith(f"{kind}-") for p, _ in entries) for kind in "rcy")
    return Info(cache_dir(), reports, compiles, parsed_yaml, len(entries) - reports - compiles - parsed_yaml,
                sum(st.st_size for _, st in entries), max_bytes())


def clear() -> int:
    """Remove every entry (and leftovers of interrupted writes); the number of entries removed."""
    removed = 0
    for path, _ in _entries():
        try:
            path.unlink()
            removed += 1
        except OSError:
            pass
    try:
        for tmp in cache_dir().glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
    except OSError:
        pass
    return removed
