"""Project settings: `[tool.aotcheck]` in the nearest `pyproject.toml`, found by walking up like ruff and pytest.

`[tool.aotcheck]` holds the run settings (`matrix`: a matrix file; `backend`; `jobs`) and
any of the matrix's own keys (`golden_dir`, `memory_tolerance`, `large_leaf_bytes`,
`compiler_changes`, `cases`). Without `cases` and `matrix`, the matrix is
`configs/matrix.yml` beside that pyproject.toml (or the nearest one above the working
directory). A command-line option wins over its `AOTCHECK_*` environment variable, which
wins over `[tool.aotcheck]`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aotcheck._errors import UsageError

RUN_KEYS = ("matrix", "backend", "jobs")  # the rest of [tool.aotcheck] is the matrix
DEFAULT_MATRIX = Path("configs/matrix.yml")


@dataclass(frozen=True)
class Settings:
    """`[tool.aotcheck]` of the nearest pyproject.toml that has one (empty if none)."""

    pyproject: Path | None = None
    table: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.table.get(key, default)

    @property
    def matrix_keys(self) -> dict[str, Any]:
        """The table's matrix keys, golden_dir made absolute (relative to the pyproject.toml)."""
        out = {k: v for k, v in self.table.items() if k not in RUN_KEYS}
        if "golden_dir" in out and self.pyproject is not None:
            out["golden_dir"] = str((self.pyproject.parent / out["golden_dir"]).resolve())
        return out


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def find(start: Path | None = None) -> Settings:
    """The settings of the nearest pyproject.toml with `[tool.aotcheck]`, from `start` (default: cwd) upwards.

    Example:
        >>> find(Path("/")).pyproject is None or True
        True
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            table = read_toml(candidate).get("tool", {}).get("aotcheck")
            if isinstance(table, dict):
                return Settings(candidate, table)
    return Settings()


def matrix_path(settings: Settings, start: Path | None = None) -> Path | None:
    """Where the matrix is: `matrix` of the settings, else `configs/matrix.yml` in the nearest directory
    upwards that has one (stopping at the settings' directory), else the pyproject.toml's own `cases`."""
    if settings.pyproject is not None and "matrix" in settings.table:
        return settings.pyproject.parent / str(settings.table["matrix"])
    here = (start or Path.cwd()).resolve()
    stop = settings.pyproject.parent if settings.pyproject is not None else None
    for directory in (here, *here.parents):
        if (directory / DEFAULT_MATRIX).is_file():
            return directory / DEFAULT_MATRIX
        if directory == stop:
            break
    if settings.pyproject is not None and "cases" in settings.table:
        return settings.pyproject
    return None


def choice(key: str, given: str | None, settings: Settings, default: str, allowed: tuple[str, ...]) -> str:
    """The option's value if given (command line or environment), else `[tool.aotcheck]`'s, else `default`."""
    if given is not None:
        return given
    value = settings.get(key, default)
    if value not in allowed:
        raise UsageError(f"{settings.pyproject}: [tool.aotcheck] {key} = {value!r}; choose one of {', '.join(allowed)}")
    return str(value)


def count(key: str, given: int | None, settings: Settings, default: int) -> int:
    """A positive integer setting, resolved like `choice`."""
    if given is not None:
        return given
    value = settings.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{settings.pyproject}: [tool.aotcheck] {key} = {value!r}; expected a positive integer")
    return value
