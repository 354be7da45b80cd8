"""The report: the typed record of one run, its versioned JSON form, and reading it back.

Everything but `timings` is a pure function of the inputs and the tool versions, so the
same inputs give byte-identical JSON (sorted keys, fixed indentation, trailing newline).
Schema 2 names a leaf's sharding `partition_spec`, as the golden files do; files of
schema 1 (which said `spec`) are still read, and say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import pydantic

from aotcheck._analysis import Compile
from aotcheck._errors import UsageError
from aotcheck._io import decode, parse_json, read_bytes, without_cycles
from aotcheck._record import Entry, Record, dumps, from_json_bytes, row

SCHEMA: Final = "aotcheck.report/2"
OLD_SCHEMAS = ("aotcheck.report/1",)
LEAF_FIELDS = ("shape", "dtype", "logical_axes", "partition_spec")
VERSIONED = ("aotcheck", "jax", "jaxlib", "libtpu", "flax", "optax")

Kind = Literal["linen", "nnx", "maxtext"]
Role = Literal["param", "optimizer", "step", "rng", "other"]
# Canonical-path rewrite rules as `configs/canonical.yml` lays them out: kind -> [pattern, replacement(, role)].
Rewritten = dict[str, tuple[tuple[str, ...], ...]]
# A key a file may hold that is read and dropped.
_Dropped = Annotated[None, pydantic.BeforeValidator(lambda _: None)]


def versions() -> dict[str, str | None]:
    """The installed versions of aotcheck and the stack whose compile it reports."""
    import importlib.metadata  # ~50 ms of imports that reading a report does not need

    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in VERSIONED}


class TopologyInfo(Record):
    name: str  # with `-x<slices>` for several slices
    slice: str
    libtpu_topology: str
    num_slices: int = pydantic.Field(ge=1)
    devices: int = pydantic.Field(ge=1)
    chips: int = pydantic.Field(ge=1)
    device_kind: str
    hbm_bytes_per_device: int = pydantic.Field(ge=0)


class MeshInfo(Record):
    axis_names: tuple[str, ...]
    shape: dict[str, int]
    ici: dict[str, int] = {}
    dcn: dict[str, int] = {}


class Header(Record):
    """What was built, for which target, with which stack and settings."""

    model: str
    model_source: str
    path: Kind
    backend: Literal["libtpu", "mock"] | None = None
    versions: dict[str, str | None] = {}
    topology: TopologyInfo | None = None
    mesh: MeshInfo
    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # The settings this run read (a setting nothing reads changes nothing, so it is not shown):
    # aotcheck's own (`configs/base.yml`'s keys, rules aside) and the model's own config fields.
    # Reports written before both were split hold every setting in `config`.
    config: dict[str, Any] = {}
    own_config: dict[str, Any] = {}
    # The model's own canonical-path rewrites (`ModelSpec.rewrites`, as validated), so that a
    # `diff` of saved reports lines up two paths' leaves as `diff linen nnx` does. Written only
    # when there are any, so other reports are unchanged.
    rewrites: Rewritten = pydantic.Field(default_factory=dict, exclude_if=lambda v: not v)
    # jax's compiler_options when not the default (`--fast`): the compile figures are then a
    # low-effort compile's. Written only when set, so default reports are unchanged.
    compiler_options: dict[str, float] = pydantic.Field(default_factory=dict, exclude_if=lambda v: not v)
    # The leaf fields the source records (MaxText's files hold no dtypes); never written.
    known_fields: tuple[str, ...] = pydantic.Field(LEAF_FIELDS, exclude=True)

    @pydantic.field_validator("config", "own_config")
    @classmethod
    def _finite(cls, settings: dict[str, Any]) -> dict[str, Any]:
        """Free-form settings hold numbers JSON can write: the record's own float fields refuse
        NaN and Infinity, these must be checked (1e400 reads as Infinity)."""
        values: list[tuple[str, Any]] = list(settings.items())
        while values:
            where, value = values.pop()
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{where} is {value}, not a finite number")
            if isinstance(value, dict | list):
                values.extend((f"{where}.{k}", v) for k, v in (value.items() if isinstance(value, dict) else enumerate(value)))
        return settings


class BatchInput(Record):
    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[Entry, ...]
    partition_spec: tuple[Entry, ...]


@row
class Leaf:
    """One array of the train state and how it is sharded."""

    role: Role
    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[Entry, ...] | None  # None: the model gave no annotation (replicated)
    partition_spec: tuple[Entry, ...]  # normalised: size-1 mesh axes and trailing None dropped
    shard_shape: tuple[int, ...]
    bytes: int = pydantic.Field(ge=0)
    bytes_per_device: int = pydantic.Field(ge=0)

    @property
    def replicated(self) -> bool:
        return not self.partition_spec


class Unannotated(Record):
    leaves: tuple[str, ...]
    bytes_per_device: int


class UnmatchedAxis(Record):
    """A logical axis name that neither a rule nor the mesh knows: its dimensions are replicated."""

    name: str
    leaves: tuple[str, ...]
    bytes_per_device: int


class Totals(Record):
    leaves: int
    parameters: int
    parameter_bytes: int
    state_bytes: int
    state_bytes_per_device: int
    unannotated: Unannotated


class Report(Record):
    """One model on one path and target: every state leaf, and the compiled step's figures.

    Example:
        >>> report = aotcheck.build_report(aotcheck.Request(topology="v5p-8"))  # doctest: +SKIP
        >>> report.totals.parameters  # doctest: +SKIP
        2885888
    """

    schema_: Literal["aotcheck.report/2"] = pydantic.Field(SCHEMA, alias="schema")
    header: Header
    batch: dict[str, BatchInput] = {}
    leaves: dict[str, Leaf]  # by path, sorted
    compile: Compile | None = None
    # Leaves annotated with fewer logical axes than dimensions, which Flax pads with None (the
    # other dimensions replicated). Written only when there are any.
    padded_leaves: tuple[str, ...] = pydantic.Field((), exclude_if=lambda v: not v)
    timings: dict[str, float] = {}
    # Set when the file was of an older schema; never written.
    read_from_schema: str | None = pydantic.Field(None, exclude=True)
    # What a file holds besides, derived from the rest: read and dropped (recomputed, never
    # trusted). Fields rather than a before-validator, which would make pydantic turn the whole
    # file into Python objects first: validating straight from the JSON text takes 0.7x the time.
    written_totals: _Dropped = pydantic.Field(None, validation_alias="totals", exclude=True, repr=False)
    written_unmatched: _Dropped = pydantic.Field(None, validation_alias="unmatched_logical_axes", exclude=True,
                                                 repr=False)

    @pydantic.field_validator("leaves")
    @classmethod
    def _sorted(cls, leaves: dict[str, Leaf]) -> dict[str, Leaf]:
        paths = list(leaves)
        return leaves if paths == sorted(paths) else dict(sorted(leaves.items()))

    @pydantic.field_serializer("timings")
    def _rounded(self, timings: dict[str, float]) -> dict[str, float]:
        return {k: round(v, 3) for k, v in timings.items()}

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> Totals:
        params = [leaf for leaf in self.leaves.values() if leaf.role == "param"]
        unannotated = [(p, leaf) for p, leaf in self.leaves.items() if leaf.logical_axes is None and leaf.shape]
        return Totals(
            leaves=len(self.leaves),
            parameters=sum(math.prod(leaf.shape) for leaf in params),
            parameter_bytes=sum(leaf.bytes for leaf in params),
            state_bytes=sum(leaf.bytes for leaf in self.leaves.values()),
            state_bytes_per_device=sum(leaf.bytes_per_device for leaf in self.leaves.values()),
            unannotated=Unannotated(
                leaves=tuple(p for p, _ in unannotated),
                bytes_per_device=sum(leaf.bytes_per_device for _, leaf in unannotated),
            ),
        )

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def unmatched_logical_axes(self) -> tuple[UnmatchedAxis, ...]:
        """Names on leaves that no rule and no mesh axis knows (Flax replicates them silently), by name."""
        known = {name for name, _ in self.header.rules} | set(self.header.mesh.axis_names)
        # Leaves share a few axis tuples: the names are looked up once per tuple, not per leaf.
        tuples = {leaf.logical_axes for leaf in self.leaves.values()}
        unknown = {axes for axes in tuples if any(isinstance(n, str) and n not in known for n in axes or ())}
        found: dict[str, list[str]] = {}
        for path, leaf in self.leaves.items() if unknown else ():
            if leaf.logical_axes not in unknown:
                continue
            for name in leaf.logical_axes or ():
                if isinstance(name, str) and name not in known:
                    found.setdefault(name, []).append(path)
        return tuple(
            UnmatchedAxis(name=name, leaves=tuple(paths),
                          bytes_per_device=sum(self.leaves[p].bytes_per_device for p in paths))
            for name, paths in sorted(found.items())
        )

    @property
    def mesh_shape(self) -> dict[str, int]:
        return dict(self.header.mesh.shape)

    @property
    def path(self) -> str:
        return self.header.path

    def items(self) -> Iterator[tuple[str, Leaf]]:
        return iter(self.leaves.items())

    def to_json(self) -> str:
        """The report's JSON text (schema `aotcheck.report/2`)."""
        return dumps(self)


def _renamed(entry: Any) -> Any:
    if isinstance(entry, dict) and "spec" in entry:
        entry = {("partition_spec" if k == "spec" else k): v for k, v in entry.items()}
    return entry


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A report of an older schema in the current one, saying which it was read from."""
    data = {**data, "schema": SCHEMA, "read_from_schema": data["schema"]}
    for table in ("leaves", "batch"):
        data[table] = {p: _renamed(e) for p, e in (data.get(table) or {}).items()}
    return data


def parse_report(data: Any, source: str) -> Report:
    """A report from parsed JSON, or a one-line error naming the first bad field."""
    if not isinstance(data, dict) or data.get("schema") not in (SCHEMA, *OLD_SCHEMAS):
        schema = data.get("schema") if isinstance(data, dict) else None
        raise UsageError(f"{source} is not an aotcheck report (schema {schema!r}, expected {SCHEMA!r})")
    if data["schema"] in OLD_SCHEMAS:
        data = _upgraded(data)
    try:
        return Report.model_validate(data)
    except pydantic.ValidationError as exc:
        raise UsageError(f"{source}: {validation_message(exc)}; regenerate it") from None


def report_from_json(data: bytes) -> Report | None:
    """The report in a JSON file's bytes, of the current schema, validated straight from them
    (`_record.from_json_bytes`); None where parsing first (`parse_report`) must decide: another
    kind of file among them."""
    # rfind: a report written by aotcheck has its (sorted) `schema` key near the end.
    return None if data.rfind(f'"{SCHEMA}"'.encode()) < 0 else from_json_bytes(Report, data)


def report_or_json(path: Path, what: str) -> Report | Any:
    """The file as a report validated straight from its bytes (`report_from_json`), else its
    parsed JSON for the caller to tell what it is; a one-line error naming `what` if it is not JSON."""
    data = read_bytes(path, what)
    report = report_from_json(data)
    return report if report is not None else parse_json(decode(data, path, what), path, what)


@without_cycles
def read_report(path: Path) -> Report:
    """A saved report (schema 2, or 1 upgraded on reading)."""
    read = report_or_json(path, "report")
    return read if isinstance(read, Report) else parse_report(read, f"report {path}")


# A `row` record (a dataclass) words a key it does not know, or lacks, as a call would.
_AS_A_FILE = {"unexpected_keyword_argument": "Extra inputs are not permitted", "missing_argument": "Field required"}


def validation_message(exc: pydantic.ValidationError) -> str:
    """The first error of a validation, as `field.path: message`, worded alike for every record."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "value"
    return f"{where}: {_AS_A_FILE.get(err['type'], err['msg'].removeprefix('Value error, '))}"
