"""What the compiled program says: memory per device, the fit verdict, cost and collectives.

The fit verdict has one home, `Compile.assess`: needed bytes against the memory the
compiler can allocate per device (the usable HBM, below the spec sheet's figure).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

import pydantic

from aotcheck._activations import Activation
from aotcheck._buffers import MemoryDetail
from aotcheck._drift import Drift
from aotcheck._errors import BuildError
from aotcheck._record import Record
from aotcheck._true_cost import PerStep, StepEstimate, Traffic, XlaCost, true_cost

if TYPE_CHECKING:  # reading a report needs the records here, not the modules that build programs
    from aotcheck._program import Compiled
    from aotcheck._true_cost import CostContext

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
# An HLO instruction of one of those kinds, sync or async-start (`-done` halves are not counted).
_COLLECTIVE_RE = re.compile(r"=\s*[^=]*?\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
# The TPU compiler words an HBM overflow in (at least) these two ways; both give needed, available.
_OOM_RES = (
    re.compile(r"Used ([\d.]+[KMGT]?) of ([\d.]+[KMGT]?) hbm", re.IGNORECASE),
    re.compile(r"required for HLO temporaries \(([\d.]+[KMGT]?)\) exceeds available HBM \(([\d.]+[KMGT]?)\)"),
)
PER_STEP_NOTE = ("per_step and collectives count every loop iteration (walked from the compiled HLO); "
                 "xla_cost is XLA's cost analysis, which counts a while-loop body once")
MOCK_NOTE = "mock backend: memory and cost are from a CPU compile, not a TPU compile"
OOM_NOTE = "the TPU compiler ran out of HBM; figures are from its message"

Verdict = Literal["fits", "does not fit"]


class Memory(Record):
    """Bytes per device, from the compiled program's memory analysis."""

    argument: int
    output: int
    alias: int
    temp: int
    generated_code: int

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def peak(self) -> int:
        return self.argument + self.output + self.temp - self.alias


class Compile(Record):
    """The compile section of a report: memory against usable HBM, cost and collectives, per device and step."""

    verdict: Verdict
    capacity_bytes_per_device: int  # usable HBM: what the compiler can allocate
    hbm_spec_bytes_per_device: int | None = None  # the spec sheet's figure
    needed_bytes_per_device: int  # the peak, or the compiler's "used" figure when it ran out of HBM
    memory_per_device: Memory | None  # None when the compiler itself ran out of HBM
    per_step: PerStep | None = None
    xla_cost: XlaCost | None = None
    collectives: dict[str, Traffic] = {}  # by kind; kinds that never run are left out
    estimate: StepEstimate | None = None
    memory_detail: MemoryDetail | None = None  # --memory-detail N
    drift: tuple[Drift, ...] | None = None  # None: not checked (--no-drift)
    activations: tuple[Activation, ...] | None = None  # --activations
    notes: tuple[str, ...] = ()

    @pydantic.model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if isinstance(data, dict):  # derived on reading, so a file cannot contradict itself
            data = {k: v for k, v in data.items() if k != "headroom_bytes_per_device"}
            if isinstance(data.get("memory_per_device"), dict):
                data["memory_per_device"] = {k: v for k, v in data["memory_per_device"].items() if k != "peak"}
            data = _upgraded(data)
        return data

    @pydantic.computed_field  # type: ignore[prop-decorator]
    @property
    def headroom_bytes_per_device(self) -> int:
        return self.capacity_bytes_per_device - self.needed_bytes_per_device

    @property
    def fits(self) -> bool:
        return self.verdict == "fits"

    @staticmethod
    def assess(needed: int, capacity: int) -> Verdict:
        """The fit verdict: needed bytes per device within the device's capacity."""
        return "fits" if needed <= capacity else "does not fit"


def _upgraded(data: dict[str, Any]) -> dict[str, Any]:
    """A compile section written before per-step counts (XLA's figures at the top, collectives as
    static counts): XLA's figures move to `xla_cost`, the counts, which cannot be converted, are dropped."""
    old = {k: data.pop(k) for k in ("flops", "bytes_accessed", "transcendentals") if k in data}
    if old and "xla_cost" not in data:
        data["xla_cost"] = old
    if isinstance(data.get("collectives"), dict) and any(isinstance(v, int) for v in data["collectives"].values()):
        data["collectives"] = {}
    return data


def analyse(compiled: Compiled, capacity: int, backend: str, ctx: CostContext | None = None,
            spec_capacity: int | None = None) -> Compile:
    """The compile section of a compiled (or out-of-HBM) step.

    Arguments:
        compiled: the compile result.
        capacity: usable HBM per device (the compiler's own limit).
        backend: libtpu or mock.
        ctx: mesh, chip and model figures for the per-step counts and the estimate (None: no counts).
        spec_capacity: the spec sheet's HBM per device, shown beside the usable figure.
    """
    notes = [PER_STEP_NOTE] + ([MOCK_NOTE] if backend == "mock" else [])
    if compiled.executable is None:
        needed, available = out_of_memory(compiled.out_of_memory or "")
        return Compile(verdict="does not fit", capacity_bytes_per_device=available or capacity,
                       hbm_spec_bytes_per_device=spec_capacity,
                       needed_bytes_per_device=needed, memory_per_device=None, notes=tuple(notes + [OOM_NOTE]))
    ex = compiled.executable
    m = ex.memory_analysis()
    memory = Memory(
        argument=m.argument_size_in_bytes,
        output=m.output_size_in_bytes,
        alias=m.alias_size_in_bytes,
        temp=m.temp_size_in_bytes,
        generated_code=m.generated_code_size_in_bytes,
    )
    cost = ex.cost_analysis() or {}
    if isinstance(cost, list):  # older jax returned one dict per program
        cost = cost[0] if cost else {}
    per_step, traffic, estimate = true_cost(ex.as_text(), ctx) if ctx is not None else (None, {}, None)
    return Compile(
        verdict=Compile.assess(memory.peak, capacity),
        capacity_bytes_per_device=capacity,
        hbm_spec_bytes_per_device=spec_capacity,
        needed_bytes_per_device=memory.peak,
        memory_per_device=memory,
        per_step=per_step,
        xla_cost=XlaCost(flops=cost.get("flops"), bytes_accessed=cost.get("bytes accessed"),
                         transcendentals=cost.get("transcendentals")),
        collectives=traffic,
        estimate=estimate,
        notes=tuple(notes),
    )


def collectives(hlo_text: str) -> dict[str, int]:
    """Collective instructions per kind in compiled HLO text (an async pair counts once).

    Example:
        >>> collectives("%ag = f32[8] all-gather-start(%p)\\n%d = f32[8] all-gather-done(%ag)")["all-gather"]
        1
    """
    counts = dict.fromkeys(COLLECTIVES, 0)
    for match in _COLLECTIVE_RE.finditer(hlo_text):
        counts[match.group(1)] += 1
    return counts


def out_of_memory(message: str) -> tuple[int, int]:
    """(bytes needed, bytes available) from the TPU compiler's out-of-HBM message.

    Example:
        >>> out_of_memory("RESOURCE_EXHAUSTED: ... Used 49.30G of 15.75G hbm")
        (52935471923, 16911433728)
    """
    found = next((m for r in _OOM_RES if (m := r.search(message))), None)
    if found is None:
        first = message.strip().splitlines()[0] if message.strip() else "no message"
        raise BuildError(f"the compiler ran out of memory but its message names no figures: {first}")
    return _bytes(found.group(1)), _bytes(found.group(2))


def _bytes(text: str) -> int:
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    unit = text[-1].upper()
    return int(float(text[:-1]) * scale[unit]) if unit in scale else int(float(text))
