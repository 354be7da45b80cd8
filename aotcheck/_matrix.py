"""The matrix of cases `aotcheck check` guards: loading it, selecting cases, and sharding them across runners.

The matrix is the user's configuration, in `configs/matrix.yml` or `[tool.aotcheck]` of
`pyproject.toml`. Relative paths in it (the golden directory) are relative to the file
that declares them, so the check gives the same answer from any working directory.
"""

from __future__ import annotations

import fnmatch
import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pydantic

from aotcheck._errors import UsageError, close_matches
from aotcheck._io import read_yaml

PathName = Literal["linen", "nnx"]
DEFAULT_MATRIX = Path("configs/matrix.yml")
DEFAULT_TOLERANCE = 0.01


class CaseFile(pydantic.BaseModel):
    """One case of the matrix, as written."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = None
    model: str = "tiny"
    topology: str
    num_slices: int = pydantic.Field(1, ge=1)
    paths: tuple[PathName, ...] = ("linen", "nnx")
    overrides: tuple[str, ...] | dict[str, Any] = ()
    compile: bool = True
    slow: bool = False
    golden: str | None = None  # golden subdirectory; default <model>/<topology>[-x<slices>]
    activations: bool = False  # record the step's sharding constraints in compile.json

    @pydantic.field_validator("paths")
    @classmethod
    def _paths(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v or len(set(v)) != len(v):
            raise ValueError("paths must be a non-empty list of distinct paths (linen, nnx)")
        return v


class MatrixFile(pydantic.BaseModel):
    """The matrix as written (`configs/matrix.yml` or `[tool.aotcheck]`)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    golden_dir: str = "golden"
    memory_tolerance: float = pydantic.Field(DEFAULT_TOLERANCE, ge=0)
    large_leaf_bytes: int = pydantic.Field(1 << 20, ge=0)
    cases: tuple[CaseFile, ...] = pydantic.Field(min_length=1)


@dataclass(frozen=True)
class Case:
    """One guarded configuration: a model on a slice, checked on one or both paths."""

    name: str
    model: str
    topology: str
    num_slices: int
    paths: tuple[str, ...]
    overrides: tuple[str, ...]
    compile: bool
    slow: bool
    golden: str
    activations: bool = False


@dataclass(frozen=True)
class Unit:
    """A case on one path: the unit the gate builds, compares, shards and reports."""

    case: Case
    path: str

    @property
    def name(self) -> str:
        return f"{self.case.name}/{self.path}"

    def golden_dir(self, root: Path) -> Path:
        return root / self.case.golden / self.path


@dataclass(frozen=True)
class Matrix:
    source: Path
    golden_dir: Path
    memory_tolerance: float
    large_leaf_bytes: int
    cases: tuple[Case, ...]

    def units(self, cases: Iterable[Case] | None = None) -> list[Unit]:
        return [Unit(c, p) for c in (self.cases if cases is None else cases) for p in c.paths]


def default_name(model: str, topology: str, num_slices: int) -> str:
    return f"{model}/{topology}" + (f"-x{num_slices}" if num_slices > 1 else "")


def _overrides(value: tuple[str, ...] | dict[str, Any]) -> tuple[str, ...]:
    if isinstance(value, dict):
        # JSON is YAML, so `--set` parses each value back to what the matrix said.
        return tuple(f"{k}={json.dumps(v)}" for k, v in value.items())
    for item in value:
        if "=" not in item:
            raise UsageError(f"matrix: override '{item}' is not key=value")
    return tuple(value)


def _error(source: Path, exc: pydantic.ValidationError) -> UsageError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return UsageError(f"matrix {source}: {where}: {err['msg']}")


def parse(data: Any, source: Path) -> Matrix:
    """A validated matrix from its parsed YAML/TOML; `source` anchors relative paths."""
    if not isinstance(data, dict):
        raise UsageError(f"matrix {source}: expected a mapping with a 'cases' list")
    try:
        fields = MatrixFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _error(source, exc) from None
    cases: list[Case] = []
    for raw in fields.cases:
        golden = raw.golden or default_name(raw.model, raw.topology, raw.num_slices)
        cases.append(Case(
            name=raw.name or default_name(raw.model, raw.topology, raw.num_slices), model=raw.model,
            topology=raw.topology, num_slices=raw.num_slices, paths=raw.paths, overrides=_overrides(raw.overrides),
            compile=raw.compile, slow=raw.slow, golden=golden.strip("/"), activations=raw.activations,
        ))
    _check_unique(cases, source)
    return Matrix(
        source=source, golden_dir=(source.parent / fields.golden_dir).resolve(),
        memory_tolerance=fields.memory_tolerance, large_leaf_bytes=fields.large_leaf_bytes, cases=tuple(cases),
    )


def _check_unique(cases: Sequence[Case], source: Path) -> None:
    seen: dict[str, Case] = {}
    for case in cases:
        if case.name in seen:
            raise UsageError(f"matrix {source}: two cases are named '{case.name}'; give one a distinct `name`")
        seen[case.name] = case
    # Cases may share a golden directory (a sharding-only case and the slow case that also
    # compiles it) only when they build the same model the same way.
    by_dir: dict[str, Case] = {}
    for case in cases:
        other = by_dir.setdefault(case.golden, case)
        same = (other.model, other.topology, other.num_slices, other.overrides) == (
            case.model, case.topology, case.num_slices, case.overrides)
        if not same:
            raise UsageError(
                f"matrix {source}: cases '{other.name}' and '{case.name}' differ but share the golden directory "
                f"'{case.golden}'; give one a distinct `golden`"
            )


def load(path: Path | None = None) -> Matrix:
    """The matrix from `path`, else `configs/matrix.yml`, else `[tool.aotcheck]` in `pyproject.toml`."""
    if path is None:
        if DEFAULT_MATRIX.is_file():
            path = DEFAULT_MATRIX
        elif Path("pyproject.toml").is_file() and "aotcheck" in _toml(Path("pyproject.toml")).get("tool", {}):
            path = Path("pyproject.toml")
        else:
            raise UsageError(f"no matrix: create {DEFAULT_MATRIX} or [tool.aotcheck] in pyproject.toml, or pass --matrix")
    if not path.is_file():
        raise UsageError(f"matrix {path} does not exist")
    if path.suffix == ".toml":
        table = _toml(path).get("tool", {}).get("aotcheck")
        if table is None:
            raise UsageError(f"matrix {path}: no [tool.aotcheck] table")
        return parse(table, path.resolve())
    return parse(read_yaml(path, "matrix"), path.resolve())


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None


def select(matrix: Matrix, names: Sequence[str] = (), pattern: str | None = None, slow: bool = False) -> list[Unit]:
    """Units of the cases named exactly (`--case`, slow or not), else of every case (slow ones only if
    asked), narrowed to those whose `case/path` name matches `pattern` (a substring or a glob)."""
    if names:
        known = {c.name: c for c in matrix.cases}
        for name in names:
            if name not in known:
                raise UsageError(f"no case named '{name}' in {matrix.source}{close_matches(name, known)}")
        chosen = [c for c in matrix.cases if c.name in names]
    else:
        chosen = [c for c in matrix.cases if slow or not c.slow]
    units = matrix.units(chosen)
    if pattern:
        glob = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
        units = [u for u in units if fnmatch.fnmatchcase(u.name, glob) or fnmatch.fnmatchcase(u.case.name, glob)]
        if not units:
            raise UsageError(f"no case matches '{pattern}' in {matrix.source}")
    return units


def parse_shard(text: str) -> tuple[int, int]:
    """`i/n` (1-based) -> (i, n)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard expects i/n such as 1/4, got '{text}'") from None
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"--shard {text}: need 1 <= i <= n")
    return i, n


def shard(units: Sequence[Unit], i: int, n: int) -> list[Unit]:
    """Runner i of n takes every n-th unit in matrix order: deterministic, disjoint, and together complete."""
    return [u for k, u in enumerate(units) if k % n == i - 1]
