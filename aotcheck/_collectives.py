"""Collective traffic per kind, per mesh axis and over DCN, in bytes per device per step.

Bytes are "on the wire per device" under the ring model (what one device sends, which is
also what it receives), for a group of n devices and an operand of V bytes per device:

- all-gather: V x (n - 1)  (the gathered result minus the device's own shard);
- reduce-scatter: V x (n - 1) / n;
- all-reduce: 2 x V x (n - 1) / n  (a reduce-scatter then an all-gather);
- all-to-all: V x (n - 1) / n  (every device keeps 1/n of its buffer);
- collective-permute: V  (each device sends its buffer once);
- send / recv with `is_host_transfer=true`: the payload (the first array of the
  operand). On multi-slice TPU programs this is how DCN traffic appears: libtpu's
  megascale runtime moves it between slices, so these bytes are all DCN bytes.

Async pairs count once, at `-start`; the `-done` half is skipped. `count` is executions
per step (loop-multiplied), not instructions in the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aotcheck._hlo import Computation, Instruction
from aotcheck._replica_groups import MeshLayout, attribute, dcn_axes, parse_replica_groups

KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute", "send", "recv")
_SYNC = {k: k for k in KINDS[:5]} | {k + "-start": k for k in KINDS[:5]}


@dataclass(frozen=True)
class CollectiveTotals:
    """One kind's totals: executions, bytes per device, bytes by mesh-axis label, DCN bytes."""

    count: float = 0
    bytes: float = 0.0
    by_axis: Mapping[str, float] = field(default_factory=dict)
    dcn_bytes: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "bytes": self.bytes, "by_axis": dict(sorted(self.by_axis.items())),
                "dcn_bytes": self.dcn_bytes}


class _Running:
    """Mutable accumulator behind CollectiveTotals (the walk adds, then freezes)."""

    def __init__(self) -> None:
        self.count = 0.0
        self.bytes = 0.0
        self.by_axis: dict[str, float] = {}
        self.dcn = 0.0

    def add(self, mult: float, nbytes: float, label: str, dcn: bool) -> None:
        self.count += mult
        self.bytes += mult * nbytes
        self.by_axis[label] = self.by_axis.get(label, 0.0) + mult * nbytes
        if dcn:
            self.dcn += mult * nbytes

    def merge(self, other: _Running) -> None:
        self.count += other.count
        self.bytes += other.bytes
        self.dcn += other.dcn
        for k, v in other.by_axis.items():
            self.by_axis[k] = self.by_axis.get(k, 0.0) + v

    def freeze(self) -> CollectiveTotals:
        return CollectiveTotals(self.count, self.bytes, dict(self.by_axis), self.dcn)


def empty_collectives() -> dict[str, _Running]:
    return {k: _Running() for k in KINDS}


def _operand_bytes(comp: Computation, instr: Instruction) -> float:
    total = 0.0
    for name in instr.operands:
        src = comp.by_name.get(name)
        if src is not None:
            total += src.bytes
    return total


def wire_bytes(kind: str, operand_bytes: float, group_size: int) -> float:
    """Bytes one device sends for one collective under the ring model (see module doc).

    Arguments:
        kind: a KINDS entry.
        operand_bytes: V, the operand's bytes on one device.
        group_size: n, devices per replica group.
    Returns:
        Bytes on the wire per device.
    """
    n = max(group_size, 1)
    if kind == "all-gather":
        return operand_bytes * (n - 1)
    if kind == "all-reduce":
        return 2.0 * operand_bytes * (n - 1) / n
    if kind in ("reduce-scatter", "all-to-all"):
        return operand_bytes * (n - 1) / n
    return operand_bytes


def collective_record(comp: Computation, instr: Instruction, layout: MeshLayout | None) -> tuple[str, float, str, bool] | None:
    """Kind, wire bytes per device, mesh-axis label and DCN flag of one instruction.

    Arguments:
        comp: the computation holding it (operand shapes).
        instr: any instruction.
        layout: the mesh, or None (label "unknown").
    Returns:
        None for an instruction that is not a counted collective.
    """
    op = instr.opcode
    if op in ("send", "recv"):
        if instr.attributes.get("is_host_transfer") != "true":
            return None
        src = instr if op == "recv" else comp.by_name.get(instr.operands[0]) if instr.operands else None
        payload = src.arrays[0].bytes if src is not None and src.arrays else 0.0
        label = "+".join(dcn_axes(layout)) or "dcn" if layout is not None else "dcn"
        return op, payload, label, True
    kind = _SYNC.get(op)
    if kind is None:
        return None
    operand = _operand_bytes(comp, instr)
    if kind == "collective-permute":
        label, dcn = _permute_label(instr, layout)
        return kind, operand, label, dcn
    if layout is None:
        groups = _groups(instr, 0)
        return kind, wire_bytes(kind, operand, len(groups[0]) if groups else 1), "unknown", False
    groups = _groups(instr, layout.num_devices)
    size = len(groups[0]) if groups else layout.num_devices
    label, dcn = attribute(groups, layout) if groups else ("all", False)
    return kind, wire_bytes(kind, operand, size), label, dcn


def _groups(instr: Instruction, num_devices: int) -> list[list[int]]:
    text = instr.attributes.get("replica_groups")
    if text is None:
        return [list(range(num_devices))] if num_devices else []
    return parse_replica_groups(text, num_devices)


def _permute_label(instr: Instruction, layout: MeshLayout | None) -> tuple[str, bool]:
    """Axes a collective-permute's source->target pairs move along (union over pairs)."""
    pairs = instr.attributes.get("source_target_pairs", "")
    if layout is None or not pairs:
        return "unknown", False
    labels: set[str] = set()
    dcn = False
    for pair in parse_replica_groups(pairs, layout.num_devices):
        label, crosses = attribute([pair], layout)
        labels.add(label)
        dcn = dcn or crosses
    return "+".join(sorted(labels)) or "none", dcn
