"""The first-level cache key: everything a report is a function of, known before anything is traced.

A report is a pure function of the validated config, the model's code, the target, the
compiler options and flags, and the versions of the stack. So the key hashes: the config
(every validated value, rules included), the model's name and where it came from, a hash
of the model's source files (the files of each package its spec's functions come from,
and always aotcheck's own files, which hold the built-in decoder and the step), the
topology row, the slice count, the resolved backend, whether it compiles, the compiler
options, `XLA_FLAGS`/`LIBTPU_INIT_ARGS`, the Python version and the versions of
aotcheck, jax, jaxlib, libtpu, flax and optax. Computing it imports neither jax nor the
model's framework beyond what loading the spec already did.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from aotcheck._cache import compiler_flags
from aotcheck._config import RunConfig
from aotcheck._model import ModelSpec
from aotcheck._report import SCHEMA, VERSIONED, versions
from aotcheck._topology import Topology

_SOURCE_SUFFIXES = (".py", ".csv", ".yml", ".yaml", ".json", ".toml")


def _package_files(module_name: str) -> list[Path]:
    """The source files of the top-level package of `module_name` (or the module's own file)."""
    top = sys.modules.get(module_name.partition(".")[0])
    if top is None:
        return []
    roots = [Path(p) for p in getattr(top, "__path__", ())]
    if not roots:
        file = getattr(top, "__file__", None)
        return [Path(file)] if file else []
    files: list[Path] = []
    for root in roots:
        files.extend(
            p for p in root.rglob("*")
            if p.suffix in _SOURCE_SUFFIXES and "__pycache__" not in p.parts and p.is_file()
        )
    return sorted(set(files))


def spec_modules(spec: ModelSpec) -> list[str]:
    """The modules the spec's functions and config class are defined in."""
    parts: Iterable[Any] = (getattr(spec, f.name) for f in dataclasses.fields(spec))
    return sorted({m for m in (getattr(p, "__module__", None) for p in parts) if isinstance(m, str)})


def _hash_files(files: tuple[Path, ...]) -> str:
    h = hashlib.sha256()
    for path in files:
        h.update(str(path).encode() + b"\0")
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


@functools.cache
def tool_hash() -> str:
    """A hash of aotcheck's own files: cached compile figures are aotcheck's analysis too."""
    return _hash_files(tuple(_package_files("aotcheck")))


def source_hash(spec: ModelSpec) -> str | None:
    """A hash of aotcheck's files and of the files of every package the spec's code comes from.

    None when some of that code has no file to hash (defined in an interactive session).
    """
    # The stack's own packages are keyed by their versions; hashing them would cost more than it tells.
    skip = set(sys.stdlib_module_names) | set(VERSIONED) | {"pydantic"}
    packages = {m.partition(".")[0] for m in spec_modules(spec)} - skip - {"aotcheck"}
    found = {p: _package_files(p) for p in packages}
    if not all(found.values()):
        return None
    return tool_hash() + _hash_files(tuple(sorted({f for files in found.values() for f in files})))


def inputs_key(
    cfg: RunConfig,
    model: str,
    model_source: str,
    spec: ModelSpec,
    topology: Topology,
    num_slices: int,
    backend: str,
    compile: bool,
    compiler_options: Mapping[str, Any],
    analysis: Mapping[str, Any] | None = None,
) -> str | None:
    """The report entry's key, or None if the model's code has no files to key it by.

    `analysis` holds the settings that add to the compile section (drift, memory detail, activations).

    `backend` must be resolved (`libtpu` or `mock`, not `auto`).

    Example:
        >>> inputs_key(cfg, "tiny", "built-in", spec, get_topology("v5p-128"), 1, "libtpu", True, {})  # doctest: +SKIP
        '3f1c...'
    """
    sources = source_hash(spec)
    if sources is None:
        return None
    parts = {
        "schema": SCHEMA,
        "config": cfg.as_dict(),
        "analysis": dict(analysis or {}),
        "model": [model, model_source],
        "sources": sources,
        "topology": dataclasses.asdict(topology),
        "num_slices": num_slices,
        "backend": backend,
        "compile": compile,
        "compiler_options": dict(compiler_options),
        "flags": compiler_flags(),
        "python": platform.python_version(),
        "versions": versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
