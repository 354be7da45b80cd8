"""The true cost of one step in the report: per-step counts, collective traffic, a roofline estimate.

The counts come from walking the compiled HLO (`aotcheck._cost.step_cost`, loops
multiplied by their trip counts), the estimate from public chip figures
(`aotcheck._roofline`). This module turns them into the report's records and decides,
from the slice's torus and the mesh plan, how many ICI links each mesh axis runs over
and whether it closes into a ring. See docs/cost.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

import pydantic

from aotcheck._record import Record, number

if TYPE_CHECKING:  # the HLO walk, numpy and the chip table load only when a step is costed, not when a report is read
    from aotcheck._cost import CostSummary
    from aotcheck._replica_groups import MeshLayout
    from aotcheck._roofline import Chip
    from aotcheck._topology import Topology

ESTIMATE_NOTE = "estimate: roofline max(compute, memory, ICI per axis, DCN) from public chip figures; see docs/cost.md"


def _n(x: float) -> float | int:
    out = number(x)
    assert out is not None
    return out


class PerStep(Record):
    """Per device, per step, every loop iteration counted (from the compiled HLO)."""

    flops: float
    matmul_flops: float = 0.0  # the dot/convolution part of `flops` (MXU work)
    bytes_accessed: float
    transcendentals: float
    uncosted_ops: dict[str, int] = {}  # custom-call target -> executions per step, no cost model
    unknown_trip_counts: tuple[str, ...] = ()  # while loops counted once: trip count unreadable

    @pydantic.field_serializer("flops", "matmul_flops", "bytes_accessed", "transcendentals")
    def _numbers(self, x: float) -> float | int:
        return _n(x)


class XlaCost(Record):
    """XLA's own `cost_analysis()` figures (a while-loop body counts once)."""

    flops: float | None = None
    bytes_accessed: float | None = None
    transcendentals: float | None = None

    @pydantic.field_serializer("flops", "bytes_accessed", "transcendentals")
    def _numbers(self, x: float | None) -> float | int | None:
        return number(x)


class Traffic(Record):
    """One collective kind per device per step: executions, wire bytes, bytes by mesh axis, DCN bytes."""

    count: float
    bytes: float
    by_axis: dict[str, float] = {}
    dcn_bytes: float = 0.0

    @pydantic.field_serializer("count", "bytes", "dcn_bytes")
    def _numbers(self, x: float) -> float | int:
        return _n(x)

    @pydantic.field_serializer("by_axis")
    def _axes(self, x: dict[str, float]) -> dict[str, float | int]:
        return {k: _n(v) for k, v in sorted(x.items())}


class StepEstimate(Record):
    """A roofline estimate of one step (seconds), labelled as such."""

    step_seconds: float
    compute_seconds: float
    memory_seconds: float
    communication_seconds: dict[str, float]  # mesh-axis label (or "dcn") -> seconds
    bound: str  # "compute", "memory", "ici:<axis>" or "dcn"
    no_overlap_seconds: float  # the sum of all terms: an upper bound
    tokens_per_second_per_chip: float | None = None
    mfu: float | None = None
    chip: str
    note: str = ESTIMATE_NOTE


def significant(x: float, digits: int = 6) -> float:
    """`x` to `digits` significant digits: an estimate's last bits are noise, and JSON must be stable.

    Example:
        >>> significant(8.007938999999999e-05)
        8.00794e-05
    """
    return float(f"{x:.{digits}g}")


def axis_links(
    physical: Sequence[int], wrap: Sequence[bool], devices_per_chip: int, axis_names: Sequence[str], ici: Sequence[int]
) -> tuple[dict[str, int], dict[str, bool]]:
    """ICI links and ring closure per mesh axis, from the slice's torus and the mesh plan.

    The mesh axes are laid on the torus dimensions greedily, last mesh axis first (as
    `mesh_utils.create_device_mesh` gives the innermost axis the nearest devices); the two
    devices of a dual-core chip count as a first dimension of their own. An axis that
    covers whole dimensions runs over one link per dimension and is a ring when every
    one of them wraps; one that splits a dimension gets one link and no wraparound
    (the conservative reading).

    Arguments:
        physical: the slice's torus shape in chips (e.g. (4, 4, 4)).
        wrap: whether each torus dimension wraps around.
        devices_per_chip: JAX devices per chip (2 on tpu7x).
        axis_names: mesh axes.
        ici: their sizes inside a slice.
    Returns:
        (links per axis, wraparound per axis), for axes of ICI size > 1.

    Example:
        >>> axis_links((4, 4, 4), (True,) * 3, 1, ("data", "fsdp"), (1, 64))
        ({'fsdp': 3}, {'fsdp': True})
    """
    dims = ([devices_per_chip] if devices_per_chip > 1 else []) + list(physical)
    wraps = ([True] if devices_per_chip > 1 else []) + list(wrap)
    links: dict[str, int] = {}
    rings: dict[str, bool] = {}
    at = 0
    for name, size in reversed(list(zip(axis_names, ici, strict=True))):
        if size <= 1:
            continue
        end, covered = at, 1
        while end < len(dims) and covered < size:
            covered *= dims[end]
            end += 1
        if covered == size and end > at:
            links[name], rings[name] = end - at, all(wraps[at:end])
            at = end
        else:  # the axis splits a torus dimension: one link, a line
            links[name], rings[name] = 1, False
            at = len(dims)
    return dict(sorted(links.items())), dict(sorted(rings.items()))


def chip_of(family: str) -> Chip | None:
    """The public figures of a TPU family, or None for a family the table lacks."""
    from aotcheck._roofline import load_chips

    return load_chips().get(family)


def usable_hbm(topology: Topology) -> int:
    """Bytes of HBM one device can really use: the compiler's own limit, else the spec sheet's."""
    chip = chip_of(topology.family)
    return chip.usable_hbm_per_device if chip is not None else topology.hbm_bytes_per_device


@dataclass(frozen=True)
class CostContext:
    """What the cost walk and the estimate need besides the HLO: the mesh, the chip, the model's size.

    `params` is N and `tokens_per_step` T for MFU (6·N·T); `chips` runs the step (all
    slices); `links` and `wraparound` per mesh axis come from `axis_links`.
    """

    layout: MeshLayout
    chip: Chip | None
    params: int | None
    tokens_per_step: int | None
    chips: int
    links: Mapping[str, int]
    wraparound: Mapping[str, bool]


def true_cost(hlo_text: str, ctx: CostContext) -> tuple[PerStep, dict[str, Traffic], StepEstimate | None]:
    """Per-step counts, collective traffic per kind and the roofline estimate of a compiled step.

    Arguments:
        hlo_text: `compiled.as_text()`.
        ctx: the mesh, chip and model figures.
    Returns:
        (per_step, collectives by kind (kinds that never run left out), estimate or None
        when the chip family has no figures).
    """
    from aotcheck._cost import step_cost

    cost = step_cost(hlo_text, ctx.layout)
    per_step = PerStep(flops=cost.flops, matmul_flops=cost.matmul_flops, bytes_accessed=cost.bytes_accessed, transcendentals=cost.transcendentals,
                       uncosted_ops=dict(cost.uncosted_ops), unknown_trip_counts=cost.unknown_trip_counts)
    traffic = {k: Traffic(count=v.count, bytes=v.bytes, by_axis=dict(v.by_axis), dcn_bytes=v.dcn_bytes)
               for k, v in sorted(cost.collectives.items()) if v.count}
    return per_step, traffic, None if ctx.chip is None else _estimate(cost, ctx)


def _estimate(cost: CostSummary, ctx: CostContext) -> StepEstimate:
    from aotcheck._roofline import estimate

    chip = ctx.chip
    assert chip is not None
    e = estimate(cost, chip, params=ctx.params, tokens_per_step=ctx.tokens_per_step, chips=ctx.chips,
                 links=ctx.links, wraparound=ctx.wraparound)
    comm = dict(sorted(e.ici_s.items())) | ({"dcn": e.dcn_s} if e.dcn_s else {})
    # Rounded here, not on writing: a fresh report and one read back from the cache print alike.
    return StepEstimate(
        step_seconds=significant(e.step_s), compute_seconds=significant(e.compute_s),
        memory_seconds=significant(e.memory_s), communication_seconds={k: significant(v) for k, v in comm.items()},
        bound=e.bound, no_overlap_seconds=significant(e.step_s_no_overlap),
        tokens_per_second_per_chip=None if e.tokens_per_s_per_chip is None else significant(e.tokens_per_s_per_chip),
        mfu=None if e.mfu is None else significant(e.mfu), chip=chip.family,
    )


def tokens_per_step(batch_shapes: Mapping[str, tuple[int, ...]], sequence: int) -> int | None:
    """Tokens in one step's global batch: B x S of the first (B, S) field; None when there is none.

    Example:
        >>> tokens_per_step({"inputs": (8, 128), "targets": (8, 128)}, 128)
        1024
    """
    for shape in batch_shapes.values():
        if len(shape) == 2 and shape[1] == sequence:
            return prod(shape)
    return None

