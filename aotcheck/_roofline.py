"""A roofline estimate of one training step from its true cost (`aotcheck._cost`).

Everything here is an **estimate**: peak rates from public chip figures
(`data/tpu_chips.csv`, with sources), costs counted from the HLO text, and the ring
models of the jax-ml scaling book for communication:

- all-gather / reduce-scatter over an axis: V / W, where V is the bytes the device moves
  (our wire bytes, ~ the gathered array) and W its bidirectional ICI bandwidth on that
  axis; all-reduce moves twice as much (our wire bytes already carry the factor 2);
  all-to-all is cheaper on a torus (~ V / 4 per device for a bidirectional ring), so its
  wire bytes are divided by 4; collective-permute V / W.
- W for an axis = bidirectional link bandwidth x physical links the axis spans
  (`links`, default 1), halved when the axis has no wraparound (a line, not a ring).
  A label over several axes ("data+fsdp") adds their bandwidths.
- DCN bytes (multi-slice send/recv) go at the chip's DCN bandwidth. A collective whose
  groups cross slices inside one program (the mock backend) is charged on both its axis'
  ICI and on DCN: an overestimate, as ICI-only would be an underestimate.

Overlap model: XLA's TPU scheduler overlaps async collectives with compute and the
compute/memory pipes overlap each other, so the estimate is `max(compute, memory, ICI,
DCN)`: a lower bound on the step time, the roofline itself. The sum of all four is also
given as a no-overlap upper bound. MFU uses 6·N·T (the model FLOPs convention, no remat).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aotcheck._cost import CostSummary

_UNITS = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class Chip:
    """Public figures for one TPU family (per chip unless said otherwise)."""

    family: str
    devices_per_chip: int
    peak_bf16_flops: float
    hbm_bytes_per_s: float
    ici_link_bidi_bytes_per_s: float
    ici_links_per_chip: int
    torus_dims: int
    dcn_bytes_per_s: float
    usable_hbm_per_device: int  # what the compiler states in its out-of-HBM message
    source: str


def _size(text: str) -> int:
    unit = text[-1].upper()
    return int(float(text[:-1]) * _UNITS[unit]) if unit in _UNITS else int(float(text))


def load_chips() -> dict[str, Chip]:
    """Every family in `data/tpu_chips.csv`, by family name (v4, v5e, v5p, v6e, tpu7x)."""
    text = resources.files("aotcheck").joinpath("data/tpu_chips.csv").read_text()
    out = {}
    for row in csv.DictReader(text.splitlines()):
        out[row["family"]] = Chip(
            family=row["family"],
            devices_per_chip=int(row["devices_per_chip"]),
            peak_bf16_flops=float(row["peak_bf16_flops_per_chip"]),
            hbm_bytes_per_s=float(row["hbm_bytes_per_s_per_chip"]),
            ici_link_bidi_bytes_per_s=float(row["ici_link_bidi_bytes_per_s"]),
            ici_links_per_chip=int(row["ici_links_per_chip"]),
            torus_dims=int(row["torus_dims"]),
            dcn_bytes_per_s=float(row["dcn_bytes_per_s_per_chip"]),
            usable_hbm_per_device=_size(row["usable_hbm_per_device"]),
            source=row["source"],
        )
    return out


@dataclass(frozen=True)
class Estimate:
    """Seconds per step (estimates) and what follows from them."""

    compute_s: float
    memory_s: float
    ici_s: Mapping[str, float]
    dcn_s: float
    bound: str  # "compute", "memory", "ici:<axis>" or "dcn"
    step_s: float  # max of all terms: the roofline (lower bound)
    step_s_no_overlap: float  # sum of all terms (upper bound)
    tokens_per_s_per_chip: float | None = None
    mfu: float | None = None
    notes: tuple[str, ...] = field(default=("estimate: roofline from public peak figures and the HLO's counted cost",))


def axis_bandwidth(chip: Chip, label: str, links: Mapping[str, int] | None = None,
                   wraparound: Mapping[str, bool] | None = None) -> float:
    """Bidirectional ICI bytes/s one device has for a collective along `label`.

    Arguments:
        chip: the chip family.
        label: an axis label from the cost walk ("fsdp", "data+fsdp").
        links: physical links per device each axis spans (default 1 per axis).
        wraparound: whether each axis closes into a ring (default True).
    Returns:
        Bytes per second per device; the chip's links are shared by its devices.
    """
    total = 0.0
    for axis in label.split("+"):
        w = chip.ici_link_bidi_bytes_per_s * (links or {}).get(axis, 1)
        if not (wraparound or {}).get(axis, True):
            w /= 2
        total += w
    return total / chip.devices_per_chip


def estimate(
    cost: CostSummary,
    chip: Chip,
    *,
    params: int | None = None,
    tokens_per_step: int | None = None,
    chips: int | None = None,
    links: Mapping[str, int] | None = None,
    wraparound: Mapping[str, bool] | None = None,
) -> Estimate:
    """Estimate the step time of one device's program.

    Arguments:
        cost: per-step, per-device cost from `aotcheck._cost.step_cost`.
        chip: the chip family (`load_chips()[family]`).
        params: N, model parameters, for MFU.
        tokens_per_step: T, tokens in the global batch of one step, for MFU and tokens/s.
        chips: chips running the step (all slices), for MFU and tokens/s/chip.
        links: physical links per device per mesh axis (default 1).
        wraparound: whether each mesh axis is a ring (default yes).
    Returns:
        The estimate; MFU = 6·N·T / (step_s x peak x chips) when N, T and chips are given.
    """
    peak_device = chip.peak_bf16_flops / chip.devices_per_chip
    hbm_device = chip.hbm_bytes_per_s / chip.devices_per_chip
    compute = cost.flops / peak_device
    memory = cost.bytes_accessed / hbm_device
    ici: dict[str, float] = {}
    dcn_bytes = 0.0
    for kind, totals in cost.collectives.items():
        dcn_bytes += totals.dcn_bytes if kind != "recv" else 0.0  # a transfer is one send + one recv
        if kind in ("send", "recv"):
            continue
        scale = 0.25 if kind == "all-to-all" else 1.0
        for label, nbytes in totals.by_axis.items():
            if label in ("none", "unknown"):
                continue
            ici[label] = ici.get(label, 0.0) + scale * nbytes / axis_bandwidth(chip, label, links, wraparound)
    dcn = dcn_bytes / (chip.dcn_bytes_per_s / chip.devices_per_chip)
    terms = {"compute": compute, "memory": memory, "dcn": dcn} | {f"ici:{k}": v for k, v in ici.items()}
    bound = max(terms, key=lambda k: terms[k])
    step = terms[bound]
    tokens = mfu = None
    if tokens_per_step and chips and step > 0:
        tokens = tokens_per_step / step / chips
        if params:
            mfu = 6.0 * params * tokens_per_step / (step * chip.peak_bf16_flops * chips)
    return Estimate(compute, memory, ici, dcn, bound, step, sum(terms.values()), tokens, mfu)
