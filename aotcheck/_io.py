"""Files in and out: JSON and YAML read with one-line errors; atomic writes, so a reader (or an
interrupted writer) only ever sees the old file or the new one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from aotcheck._errors import UsageError


def read_json(path: Path, what: str) -> Any:
    """Parsed JSON, or a one-line error naming `what` the file was meant to be."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None


def read_yaml(path: Path, what: str) -> Any:
    """Parsed YAML (an empty file is an empty mapping), or a one-line error naming `what` the file is.

    What shape the data must have is the caller's to check: it knows what to say."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(f"{what} {path}{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    return {} if data is None else data


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
