"""aotcheck's compile cache: the compile section of a report, keyed by what determines it.

JAX's persistent compilation cache does not serve deviceless TPU compiles, and compiling
is ~100x dearer than lowering. The key is a hash of the lowered program text, the tool
versions, the target and the compiler's flags; the value is the compile section of the
report, which is a pure function of those. The cache is best effort: an entry that
cannot be read is discarded, one that cannot be written costs only a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aotcheck._analysis import Compile
from aotcheck._io import atomic_write
from aotcheck._record import dumps
from aotcheck._report import SCHEMA, versions


def cache_dir() -> Path:
    """`$AOTCHECK_CACHE_DIR`, else `$XDG_CACHE_HOME/aotcheck`, else `~/.cache/aotcheck`."""
    explicit = os.environ.get("AOTCHECK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aotcheck"


def key(lowered_text: str, target: str, backend: str, options: dict[str, Any] | None = None) -> str:
    """The entry's key; `options` are the settings that add to the compile section (drift, memory detail)."""
    h = hashlib.sha256()
    parts: dict[str, Any] = {
        "record": 3,  # the compile section's form: per-step counts, estimate, drift
        "options": options or {},
        "schema": SCHEMA,  # the cached record's form
        "versions": versions(),
        "target": target,
        "backend": backend,
        "flags": {k: os.environ.get(k, "") for k in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")},
    }
    h.update(json.dumps(parts, sort_keys=True).encode())
    h.update(lowered_text.encode())
    return h.hexdigest()


def get(k: str) -> Compile | None:
    """The cached compile section, or None (a missing, unreadable or corrupt entry; corrupt ones are removed)."""
    path = cache_dir() / f"{k}.json"
    try:
        return Compile.model_validate_json(path.read_bytes())
    except OSError:
        return None
    except ValueError:  # pydantic's ValidationError too: not JSON, or not a compile section
        path.unlink(missing_ok=True)
        return None


def put(k: str, compiled: Compile) -> str | None:
    """Store an entry; a one-line warning if it could not be written (the result stands regardless)."""
    try:
        atomic_write(cache_dir() / f"{k}.json", dumps(compiled))
    except OSError as exc:
        return f"compile cache not written ({exc.strerror or exc}: {cache_dir()}); the result is unaffected"
    return None
