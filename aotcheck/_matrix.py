"""The matrix of cases `aotcheck check` guards: loading it, selecting cases, and sharding them across runners.

The matrix is the user's configuration, in `configs/matrix.yml` or `[tool.aotcheck]` of
`pyproject.toml`. Relative paths in it (the golden directory) are relative to the file
that declares them, so the check gives the same answer from any working directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

import pydantic

from aotcheck import _canonical
from aotcheck._errors import UsageError, close_matches
from aotcheck._io import read_yaml
from aotcheck._portable import is_portable, portable_path

PathName = Literal["linen", "nnx"]
DEFAULT_MATRIX = Path("configs/matrix.yml")
DEFAULT_TOLERANCE = 0.01
MAX_SLICES = 4096
# A case's `rewrites`: rules laid out like configs/canonical.yml, or the path of a YAML file of them.
_RULE = {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3}
REWRITES_SCHEMA = {"anyOf": [
    {"type": "object", "propertyNames": {"enum": [*_canonical.KINDS, "all"]},
     "additionalProperties": {"type": "array", "items": _RULE}},
    {"type": "string", "description": "a YAML file of rewrite rules, relative to the matrix file"},
    {"type": "null"},
]}


class CaseFile(pydantic.BaseModel):
    """One case of the matrix, as written."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str | None = None
    model: str = "tiny"
    topology: str
    num_slices: int = pydantic.Field(1, ge=1, le=MAX_SLICES)
    paths: tuple[PathName, ...] = ("linen", "nnx")
    overrides: tuple[str, ...] | dict[str, Any] = ()
    compile: bool = True
    slow: bool = False
    golden: str | None = None  # golden subdirectory; default <model>/<topology>[-x<slices>]
    memory_tolerance: float | None = pydantic.Field(None, ge=0)  # default: the matrix's
    compiler_changes: Literal["fail", "warn"] | None = None  # default: the matrix's
    activations: bool = False  # record the step's sharding constraints in compile.json
    # Canonical-path rewrites applied after the defaults and the model's own when the gate matches
    # this case's leaves: validated below, where the matrix file's directory is known.
    rewrites: Annotated[Any, pydantic.WithJsonSchema(REWRITES_SCHEMA)] = None
    _rules: _canonical.Rewrites | None = pydantic.PrivateAttr(None)

    @pydantic.model_validator(mode="after")
    def _read_rewrites(self, info: pydantic.ValidationInfo) -> CaseFile:
        if self.rewrites is None:
            return self
        where = f"case '{self.name or default_name(self.model, self.topology, self.num_slices)}' rewrites"
        try:
            if isinstance(self.rewrites, str):
                self._rules = _canonical.read(Path((info.context or {}).get("directory", ".")) / self.rewrites)
            else:
                self._rules = _canonical.parse(self.rewrites, where)
        except UsageError as exc:
            raise ValueError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        return self

    @pydantic.field_validator("golden")
    @classmethod
    def _inside_the_golden_root(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip("/") or ".." in PurePosixPath(v).parts or "\\" in v):
            raise ValueError(f"golden '{v}' must stay inside the golden directory; drop the '..'")
        return v

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
    compiler_changes: Literal["fail", "warn"] = "fail"  # see aotcheck._policy
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
    memory_tolerance: float | None = None
    compiler_changes: str | None = None
    activations: bool = False
    rewrites: _canonical.Rewrites | None = field(default=None, compare=False)  # the case's own, after the model's


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
    compiler_changes: str = "fail"

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
    return UsageError(f"matrix {source}: {where}: {err['msg'].removeprefix('Value error, ')}")


def parse(data: Any, source: Path) -> Matrix:
    """A validated matrix from its parsed YAML/TOML; `source` anchors relative paths."""
    if not isinstance(data, dict):
        raise UsageError(f"matrix {source}: expected a mapping with a 'cases' list")
    try:
        fields = MatrixFile.model_validate(data, context={"directory": source.parent})
    except pydantic.ValidationError as exc:
        raise _error(source, exc) from None
    cases: list[Case] = []
    for raw in fields.cases:
        # A model named package.module:attr must not put a `:` in a path (Windows, upload-artifact).
        golden = raw.golden or portable_path(default_name(raw.model, raw.topology, raw.num_slices))
        if not is_portable(golden):
            raise UsageError(f"matrix {source}: golden '{golden}' is not a portable path (no : < > | ? * \" \\, "
                             f"no trailing dot or space); use '{portable_path(golden)}'")
        if ".." in PurePosixPath(golden).parts:
            raise UsageError(f"matrix {source}: case '{raw.name or golden}' would write goldens outside the golden "
                             "directory; give it a plain `golden` subdirectory")
        cases.append(Case(
            name=raw.name or default_name(raw.model, raw.topology, raw.num_slices), model=raw.model,
            topology=raw.topology, num_slices=raw.num_slices, paths=raw.paths, overrides=_overrides(raw.overrides),
            compile=raw.compile, slow=raw.slow, golden=golden.strip("/"), memory_tolerance=raw.memory_tolerance,
            compiler_changes=raw.compiler_changes, activations=raw.activations, rewrites=raw._rules,
        ))
    _check_unique(cases, source)
    return Matrix(
        source=source, golden_dir=(source.parent / fields.golden_dir).resolve(),
        memory_tolerance=fields.memory_tolerance, large_leaf_bytes=fields.large_leaf_bytes, cases=tuple(cases),
        compiler_changes=fields.compiler_changes,
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
    """The matrix from `path`, else where `[tool.aotcheck]` of the nearest pyproject.toml (or the nearest
    `configs/matrix.yml`) says; see `aotcheck._settings`."""
    from aotcheck import _settings

    settings = _settings.find()
    found = path is None
    if path is None:
        path = _settings.matrix_path(settings)
        if path is None:
            raise UsageError(f"no matrix: create {DEFAULT_MATRIX} or [tool.aotcheck] in pyproject.toml, or pass --matrix")
    if not path.is_file():
        raise UsageError(f"matrix {path} does not exist")
    if path.suffix == ".toml":
        table = _settings.read_toml(path).get("tool", {}).get("aotcheck")
        if table is None:
            raise UsageError(f"matrix {path}: no [tool.aotcheck] table")
        return parse({k: v for k, v in table.items() if k not in _settings.RUN_KEYS}, path.resolve())
    data = read_yaml(path, "matrix")
    if found and isinstance(data, dict):  # the project's [tool.aotcheck] refines its own matrix file
        data = {**data, **settings.matrix_keys}
    return parse(data, path.resolve())


def select(matrix: Matrix, names: Sequence[str] = (), pattern: str | None = None, slow: bool = False) -> list[Unit]:
    """Units of the cases named exactly (`--case`, slow or not), else of every case (slow ones only if
    asked), narrowed to those whose `case/path` name matches `pattern` (a pytest-style `-k` expression)."""
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
        from aotcheck._select import compile_expression

        matches = compile_expression(pattern)
        units = [u for u in units if matches((u.name, u.case.name))]
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
    """Runner i of n's units: deterministic, disjoint, and together complete.

    Cases are dealt whole, in matrix order, each to the runner with the fewest units so far (the
    lowest-numbered on a tie), so both paths of a case land on one runner and `diff` between them
    needs no second machine.
    """
    owner: dict[str, int] = {}
    load = [0] * n
    for u in units:
        if u.case.name not in owner:
            owner[u.case.name] = load.index(min(load))
        load[owner[u.case.name]] += 1
    return [u for u in units if owner[u.case.name] == i - 1]
