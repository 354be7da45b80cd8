"""aotcheck's compile cache: the compile section of a report, keyed by what determines it.

JAX's persistent compilation cache does not serve deviceless TPU compiles, and compiling
is ~100x dearer than lowering. The key is a hash of the lowered program text, the tool
versions, the target and the compiler's flags; the value is the compile section of the
report, which is a pure function of those.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aotcheck._io import atomic_write
from aotcheck.report import CompileReport, dumps, versions


def cache_dir() -> Path:
    explicit = os.environ.get("AOTCHECK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aotcheck"


def key(lowered_text: str, target: str, backend: str) -> str:
    h = hashlib.sha256()
    parts: dict[str, Any] = {
        "versions": versions(),
        "target": target,
        "backend": backend,
        "flags": {k: os.environ.get(k, "") for k in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")},
    }
    h.update(json.dumps(parts, sort_keys=True).encode())
    h.update(lowered_text.encode())
    return h.hexdigest()


def get(k: str) -> CompileReport | None:
    path = cache_dir() / f"{k}.json"
    try:
        return CompileReport.from_json(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        return None


def put(k: str, report: CompileReport) -> None:
    atomic_write(cache_dir() / f"{k}.json", dumps(report.to_json()))
