"""The report: records, a versioned JSON form, and reading it back.

Everything but `timings` is a pure function of the inputs and the tool versions, so the
same inputs give byte-identical JSON (sorted keys, fixed indentation, trailing newline).
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aotcheck.errors import UsageError
from aotcheck.rules import Spec, spec_from_json, spec_to_json

SCHEMA = "aotcheck.report/1"
SCAN_NOTE = "XLA's cost analysis counts a scanned (while-loop) body once, not once per layer"
COLLECTIVES_NOTE = "static count of collective instructions in the compiled program; a scanned body appears once"
MOCK_NOTE = "mock backend: memory and cost are from a CPU compile, not a TPU compile"


def versions() -> dict[str, str | None]:
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {name: version(name) for name in ("aotcheck", "jax", "jaxlib", "libtpu", "flax", "optax")}


@dataclass(frozen=True)
class LeafReport:
    path: str
    role: str
    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[str | None, ...] | None
    spec: Spec
    shard_shape: tuple[int, ...]
    bytes: int
    bytes_per_device: int

    @property
    def replicated(self) -> bool:
        return not self.spec

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        del out["path"]
        out["shape"] = list(self.shape)
        out["shard_shape"] = list(self.shard_shape)
        out["logical_axes"] = None if self.logical_axes is None else list(self.logical_axes)
        out["spec"] = spec_to_json(self.spec)
        return out

    @classmethod
    def from_json(cls, path: str, d: dict[str, Any]) -> LeafReport:
        axes = d.get("logical_axes")
        return cls(
            path=path,
            role=d.get("role", "param"),
            shape=tuple(d["shape"]),
            dtype=d["dtype"],
            logical_axes=None if axes is None else tuple(axes),
            spec=spec_from_json(d["spec"]),
            shard_shape=tuple(d.get("shard_shape", d["shape"])),
            bytes=int(d.get("bytes", 0)),
            bytes_per_device=int(d.get("bytes_per_device", 0)),
        )


@dataclass(frozen=True)
class Memory:
    """Bytes per device, from the compiled program's memory analysis."""

    argument: int
    output: int
    alias: int
    temp: int
    generated_code: int

    @property
    def peak(self) -> int:
        return self.argument + self.output + self.temp - self.alias


@dataclass(frozen=True)
class CompileReport:
    fits: bool
    capacity_bytes: int
    memory: Memory | None  # None when the compiler itself ran out of HBM
    needed_bytes: int  # peak estimate, or the compiler's "used" figure on OOM
    flops: float | None
    bytes_accessed: float | None
    transcendentals: float | None
    collectives: dict[str, int]
    notes: tuple[str, ...] = ()

    @property
    def headroom_bytes(self) -> int:
        return self.capacity_bytes - self.needed_bytes

    def to_json(self) -> dict[str, Any]:
        mem = None
        if self.memory is not None:
            mem = {**asdict(self.memory), "peak": self.memory.peak}
        return {
            "verdict": "fits" if self.fits else "does not fit",
            "capacity_bytes_per_device": self.capacity_bytes,
            "needed_bytes_per_device": self.needed_bytes,
            "headroom_bytes_per_device": self.headroom_bytes,
            "memory_per_device": mem,
            "flops": _number(self.flops),
            "bytes_accessed": _number(self.bytes_accessed),
            "transcendentals": _number(self.transcendentals),
            "collectives": dict(self.collectives),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CompileReport:
        mem = d.get("memory_per_device")
        return cls(
            fits=d["verdict"] == "fits",
            capacity_bytes=d["capacity_bytes_per_device"],
            memory=None if mem is None else Memory(**{k: v for k, v in mem.items() if k != "peak"}),
            needed_bytes=d["needed_bytes_per_device"],
            flops=d.get("flops"),
            bytes_accessed=d.get("bytes_accessed"),
            transcendentals=d.get("transcendentals"),
            collectives=dict(d.get("collectives", {})),
            notes=tuple(d.get("notes", ())),
        )


def _number(x: float | None) -> float | int | None:
    # Integral floats are written as integers so the JSON does not depend on float printing.
    if x is None:
        return None
    return int(x) if float(x).is_integer() else x


@dataclass(frozen=True)
class Report:
    header: dict[str, Any]
    batch: dict[str, dict[str, Any]]
    leaves: tuple[LeafReport, ...]
    compile: CompileReport | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mesh_shape(self) -> dict[str, int]:
        return dict(self.header["mesh"]["shape"])

    @property
    def path(self) -> str:
        return self.header["path"]

    @property
    def by_path(self) -> dict[str, LeafReport]:
        return {leaf.path: leaf for leaf in self.leaves}

    def totals(self) -> dict[str, Any]:
        params = [leaf for leaf in self.leaves if leaf.role == "param"]
        unannotated = [leaf for leaf in self.leaves if leaf.logical_axes is None and leaf.shape]
        return {
            "leaves": len(self.leaves),
            "parameters": sum(_size(leaf.shape) for leaf in params),
            "parameter_bytes": sum(leaf.bytes for leaf in params),
            "state_bytes": sum(leaf.bytes for leaf in self.leaves),
            "state_bytes_per_device": sum(leaf.bytes_per_device for leaf in self.leaves),
            "unannotated": {
                "leaves": [leaf.path for leaf in unannotated],
                "bytes_per_device": sum(leaf.bytes_per_device for leaf in unannotated),
            },
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "header": self.header,
            "batch": self.batch,
            "leaves": {leaf.path: leaf.to_json() for leaf in self.leaves},
            "totals": self.totals(),
            "compile": None if self.compile is None else self.compile.to_json(),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }

    def to_json(self) -> str:
        return dumps(self.to_dict())


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def from_dict(d: dict[str, Any]) -> Report:
    if d.get("schema") != SCHEMA:
        raise UsageError(f"not an aotcheck report (schema {d.get('schema')!r}, expected {SCHEMA!r})")
    leaves = tuple(LeafReport.from_json(p, v) for p, v in sorted(d["leaves"].items()))
    comp = d.get("compile")
    return Report(
        header=d["header"],
        batch=d.get("batch", {}),
        leaves=leaves,
        compile=None if comp is None else CompileReport.from_json(comp),
        timings=d.get("timings", {}),
    )


def load(path: Path) -> Report:
    from aotcheck._io import read_json

    return from_dict(read_json(path, "report"))
