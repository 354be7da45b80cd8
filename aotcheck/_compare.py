"""Findings between two reports: leaf by leaf on canonical paths, then the compiled programs figure by figure.

Leaves are matched on canonical paths (`aotcheck._canonical`), so a Linen state compares
to an NNX one or to MaxText's goldens. The keyed leaf tables are compared directly; the
differences become typed findings, with the changes an optimizer slot merely mirrors from
its parameter folded into the parameter's finding, and with the expected, harmless ones
(the NNX step's dtype, NNX-only rng state, logical names that differ under an equal
PartitionSpec) marked explained. Cause notes are attached only where `aotcheck._causes`
finds their premise in the two reports.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from operator import attrgetter
from typing import Any

from aotcheck import _canonical, _causes
from aotcheck._analysis import Compile
from aotcheck._errors import UsageError
from aotcheck._io import without_cycles
from aotcheck._record import number
from aotcheck._report import Leaf, Report
from aotcheck._text import axes_text, human_bytes, join, percent, spec_text


class Category(StrEnum):
    """What kind of difference a finding is; the order is the order findings are shown in, what matters first.

    A leaf on one side only comes first: the two states do not even hold the same arrays.
    Then what the compiler is given for each leaf: its resolved sharding (a large leaf that
    lost it before any other PartitionSpec change), dtype and shape. Logical names follow:
    they matter through the PartitionSpec they resolve to, which a finding above already
    shows when it changed. Then the compiled program, from a compile that no longer succeeds
    or fits down to the per-step counts.
    """

    LEAF_ADDED = "leaf added"
    LEAF_REMOVED = "leaf removed"
    NEWLY_REPLICATED = "newly replicated large leaf"
    PARTITION_SPEC = "PartitionSpec changed"
    DTYPE = "dtype changed"
    SHAPE = "shape changed"
    LOGICAL_AXES = "logical axes changed"
    UNMATCHED_AXIS = "logical axis newly unmatched"
    COMPILE_FAILING = "compile newly failing"
    FIT_VERDICT = "fit verdict changed"
    MEMORY = "memory per chip beyond tolerance"
    COLLECTIVES = "collectives changed"
    FLOPS = "FLOPs changed"
    SHARDING_DRIFT = "state resharded by the step"

    @property
    def about_program(self) -> bool:
        """Whether a finding of this kind is about the compiled program (a failing compile and
        every category after it) rather than the state the program is given."""
        return ORDER.index(self) >= ORDER.index(Category.COMPILE_FAILING)


ORDER = tuple(Category)
_ROLE = attrgetter("role")
MIRROR_NOTE = "the optimizer state mirrors the parameter"
DRIFT_NOTE = (
    "compiled with its outputs left to XLA, the step hands this leaf back sharded differently: "
    "it reshards its own state every step (look for a sharding constraint or optimizer transformation on it)"
)


@dataclass(frozen=True)
class Finding:
    """One difference between side A and side B."""

    category: Category
    leaf: str | None  # canonical leaf path, or None for program-level findings
    before: Any  # JSON-ready value on side A (None if absent)
    after: Any  # JSON-ready value on side B
    explained: bool = False  # expected and harmless: reported, never fails
    note: str = ""  # human explanation / likely cause

    def to_json(self) -> dict[str, Any]:
        return {"category": str(self.category), "leaf": self.leaf, "before": self.before, "after": self.after,
                "explained": self.explained, "note": self.note}


def failing(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that are real differences (not explained notes)."""
    return [f for f in findings if not f.explained]


@dataclass(frozen=True)
class _Side:
    kind: str
    leaves: dict[str, Leaf]  # canonical path -> leaf
    raw: dict[str, str]  # canonical path -> path as the source names it
    fields: frozenset[str]
    rng: bool  # holds rng state (NNX streams, a Linen step key)


def _side(report: Report, rewrites: _canonical.Rewrites, label: str) -> _Side:
    paths = rewrites.canonical_all(zip(report.leaves, map(_ROLE, report.leaves.values()), strict=True), report.path)
    leaves = dict(zip(paths, report.leaves.values(), strict=True))
    raw = dict(zip(paths, report.leaves, strict=True))
    if len(raw) < len(paths):  # two leaves on one canonical path: name the first such pair
        seen: dict[str, str] = {}
        path, source = next((p, s) for p, s in zip(paths, report.leaves, strict=True) if seen.setdefault(p, s) != s)
        raise UsageError(f"{label}: leaves {seen[path]} and {source} both map to canonical path {path}")
    return _Side(report.path, leaves, raw, frozenset(report.header.known_fields), "rng" in map(_ROLE, leaves.values()))


def _fields(leaf: Leaf, fields: frozenset[str]) -> dict[str, Any]:
    out = {
        "shape": list(leaf.shape),
        "dtype": leaf.dtype,
        "logical_axes": None if leaf.logical_axes is None else [list(a) if isinstance(a, tuple) else a
                                                                 for a in leaf.logical_axes],
        "partition_spec": [list(e) if isinstance(e, tuple) else e for e in leaf.partition_spec],
    }
    return {k: v for k, v in out.items() if k in fields}


@without_cycles
def compare(
    a: Report,
    b: Report,
    *,
    memory_tolerance: float = 0.01,
    large_leaf_bytes: int = 1 << 20,
    rewrites: _canonical.Rewrites | None = None,
    names_are_notes: bool = True,
    labels: tuple[str, str] = ("side A", "side B"),
) -> list[Finding]:
    """Every difference between side A and side B, sorted by category then leaf.

    Arguments:
        a, b: the two reports (built, saved, golden or MaxText).
        memory_tolerance: the relative change of a per-chip memory figure (argument, temp,
            peak) or of the FLOPs that counts as a difference.
        large_leaf_bytes: a leaf this large per device that loses its sharding is its own finding.
        rewrites: canonical path rules; default `configs/canonical.yml`.
        names_are_notes: logical names that differ while the PartitionSpec stays equal are
            explained notes, not findings (the default of `diff` and `check`, whose `--names`
            turns it off: two paths, or a renaming, may name the same sharding differently).
        labels: what the sides are called in an error (two leaves on one canonical path).

    Returns:
        The findings, explained notes included (see `failing`).

    Example:
        >>> failing(compare(report, report))  # doctest: +SKIP
        []
    """
    rules = rewrites or _canonical.defaults()
    sa, sb = _side(a, rules, labels[0]), _side(b, rules, labels[1])
    fields = sa.fields & sb.fields
    findings: list[Finding] = []
    for path in sorted(sb.leaves.keys() - sa.leaves.keys()):
        findings.append(_presence(Category.LEAF_ADDED, path, None, _fields(sb.leaves[path], fields), sb, sa.kind, sa.rng))
    for path in sorted(sa.leaves.keys() - sb.leaves.keys()):
        findings.append(_presence(Category.LEAF_REMOVED, path, _fields(sa.leaves[path], fields), None, sa, sb.kind, sb.rng))
    resolution = _causes.resolution_change(a.header, b.header)
    for path, la in sa.leaves.items():  # in any order: the findings are sorted at the end
        lb = sb.leaves.get(path)
        if lb is None or la == lb:
            continue
        va, vb = _fields(la, fields), _fields(lb, fields)
        keys = {k for k in va if va[k] != vb[k]}
        if keys:
            step = "dtype" in keys and _causes.step_dtype_explained(path, (sa.kind, va["dtype"]), (sb.kind, vb["dtype"]))
            findings.extend(_changes(path, keys, va, vb, lb, large_leaf_bytes, names_are_notes, resolution, step))
    findings = _fold_mirrors(findings)
    if "logical_axes" in fields:
        findings.extend(_unmatched(a, b))
    findings.extend(_program_findings(a, b, sa, sb, findings, memory_tolerance))
    return sorted(findings, key=_order)


def _order(f: Finding) -> tuple[Any, ...]:
    return (ORDER.index(f.category), f.leaf or "", json.dumps(f.before, sort_keys=True), json.dumps(f.after, sort_keys=True))


def _presence(category: Category, path: str, before: Any, after: Any, holder: _Side, other: str,
              other_rng: bool) -> Finding:
    """A leaf on one side only; rng state that only the two paths' designs put on one side is explained."""
    if holder.leaves[path].role == "rng":
        note = _causes.rng_note(holder.kind, other, other_rng)
        if note:
            return Finding(category, path, before, after, explained=True, note=note)
    return Finding(category, path, before, after)


def _changes(path: str, keys: set[str], va: dict[str, Any], vb: dict[str, Any], leaf_b: Leaf, large: int,
             names_are_notes: bool = False, resolution: str = "", step_explained: bool = False) -> list[Finding]:
    """The findings of one leaf present on both sides: its sharding (one finding), dtype and shape.

    A sharding change is a PartitionSpec finding whenever the resolved spec differs (the logical
    names that caused it in its note); a logical-axes finding only when the spec is equal or
    unknown, and, names differing under an equal spec, an explained note if `names_are_notes`.
    """
    out = []
    axes_a, axes_b = va.get("logical_axes"), vb.get("logical_axes")
    spec_a, spec_b = va.get("partition_spec"), vb.get("partition_spec")
    sharded_before = bool(spec_a) or ("partition_spec" not in va and axes_a is not None)
    lost = ("partition_spec" in keys and not spec_b) or ("logical_axes" in keys and axes_b is None)
    names = f"logical axes {axes_text(axes_a)} -> {axes_text(axes_b)}" if "logical_axes" in keys else ""
    if lost and sharded_before and leaf_b.bytes_per_device >= large:
        sharding = [k for k in ("partition_spec", "logical_axes") if k in va]
        out.append(Finding(
            Category.NEWLY_REPLICATED, path, {k: va[k] for k in sharding}, {k: vb[k] for k in sharding},
            note=join(
                f"{human_bytes(leaf_b.bytes_per_device)} per device on side B",
                _axes_note(axes_a, axes_b) if "logical_axes" in keys else "",
            ),
        ))
    elif "partition_spec" in keys:
        same_axes = "logical_axes" in va and axes_a is not None and "logical_axes" not in keys
        note = f"same logical axes {axes_text(axes_a)}" + (f": {resolution}" if resolution else "") if same_axes else (
            _axes_note(axes_a, axes_b) or names)
        out.append(Finding(Category.PARTITION_SPEC, path, spec_a, spec_b, note=note))
    elif "logical_axes" in keys and "partition_spec" in va and axes_a is not None and axes_b is not None:
        out.append(Finding(Category.LOGICAL_AXES, path, axes_a, axes_b, explained=names_are_notes,
                           note=f"only the names differ: the same PartitionSpec {spec_text(spec_a)}"))
    elif "logical_axes" in keys:
        out.append(Finding(Category.LOGICAL_AXES, path, axes_a, axes_b, note=_axes_note(axes_a, axes_b)))
    if "dtype" in keys:
        out.append(Finding(Category.DTYPE, path, va["dtype"], vb["dtype"], explained=step_explained,
                           note=_causes.STEP_NOTE if step_explained else ""))
    if "shape" in keys:
        out.append(Finding(Category.SHAPE, path, va["shape"], vb["shape"]))
    return out


def _axes_note(axes_a: Any, axes_b: Any) -> str:
    if (axes_a is None) == (axes_b is None):
        return ""
    side = "A" if axes_b is None else "B"
    return (
        f"annotated on side {side} only: the other path gives this leaf no logical axes "
        "(Linen: nn.with_logical_partitioning; NNX: out_sharding= metadata)"
    )


_SLOT = re.compile(r"^opt/(\d+)/([^/]+)/(.+)$")


def _fold_mirrors(findings: list[Finding]) -> list[Finding]:
    """Drop optimizer-slot findings that repeat their parameter's exactly; name the slots on the parameter's."""
    index = {(f.category, f.leaf): f for f in findings}
    mirrors: dict[tuple[str, str | None], list[str]] = {}
    kept = []
    for f in findings:
        m = _SLOT.match(f.leaf or "")
        param = index.get((f.category, f"param/{m.group(3)}")) if m else None
        same = param is not None and (f.category in (Category.LEAF_ADDED, Category.LEAF_REMOVED) or (param.before, param.after) == (f.before, f.after))
        if m and param is not None and same:
            mirrors.setdefault((param.category, param.leaf), []).append(f"opt/{m.group(1)}/{m.group(2)}")
        else:
            kept.append(f)
    out = []
    for f in kept:
        slots = mirrors.get((f.category, f.leaf))
        if slots:
            f = replace(f, note=join(f.note, f"same in {', '.join(sorted(slots))}: {MIRROR_NOTE}"))
        out.append(f)
    return out


def _unmatched(a: Report, b: Report) -> list[Finding]:
    """A logical name that neither a rule nor the mesh knows on side B, but did not on side A: silently replicated."""
    before = {u.name for u in a.unmatched_logical_axes}
    return [
        Finding(Category.UNMATCHED_AXIS, None, None, {"name": u.name, "leaves": len(u.leaves), "bytes_per_device": u.bytes_per_device},
                note=f"'{u.name}' matches no rule and is not a mesh axis, so {len(u.leaves)} leaves "
                     f"({human_bytes(u.bytes_per_device)} per device) are replicated along it; add a rule for it")
        for u in b.unmatched_logical_axes if u.name not in before
    ]


def _program_findings(a: Report, b: Report, sa: _Side, sb: _Side, leaf_findings: list[Finding], tol: float) -> list[Finding]:
    ca, cb = a.compile, b.compile
    if ca is None or cb is None:
        return []
    if ca.memory_per_device is not None and cb.memory_per_device is None:
        return [Finding(
            Category.COMPILE_FAILING, None, ca.needed_bytes_per_device, cb.needed_bytes_per_device,
            note=f"the TPU compiler ran out of HBM on side B: needs {human_bytes(cb.needed_bytes_per_device)} of {human_bytes(cb.capacity_bytes_per_device)} per chip",
        )]
    annotation = _annotation_cause(sa, sb, leaf_findings)
    figures = {"peak": (ca.needed_bytes_per_device, cb.needed_bytes_per_device)}
    if ca.memory_per_device is not None and cb.memory_per_device is not None:
        figures["argument"] = (ca.memory_per_device.argument, cb.memory_per_device.argument)
        figures["temp"] = (ca.memory_per_device.temp, cb.memory_per_device.temp)
    moved = {name: (x, y) for name, (x, y) in figures.items() if abs(_relative(x, y)) > tol}
    # The arguments' order moves memory only: looked for only when memory or the fit moved.
    order = _causes.ORDER_NOTE if (moved or ca.fits != cb.fits) and _layers_misordered(sa, sb) else ""
    out = []
    if ca.fits != cb.fits:
        verdict = {True: "fits", False: "does not fit"}
        out.append(Finding(Category.FIT_VERDICT, None, verdict[ca.fits], verdict[cb.fits], note=join(order, annotation)))
    nnx_side = _graph_updates_premise(a, b, leaf_findings) if moved else None
    for name, (x, y) in moved.items():
        # The NNX side needs more of it: side B when B is NNX.
        more = nnx_side is not None and name in ("temp", "peak") and (y > x) == (nnx_side == "B")
        out.append(Finding(
            Category.MEMORY, None, {name: x}, {name: y},
            note=join(f"{percent(_relative(x, y))} per chip", order, annotation, _causes.GRAPH_UPDATES_NOTE if more else ""),
        ))
    out.extend(_cost_findings(ca, cb, tol, annotation))
    return out


def _cost_findings(ca: Compile, cb: Compile, tol: float, cause: str) -> list[Finding]:
    """Per-step FLOPs and collective bytes per kind (relative changes beyond `tol`), and drift new on side B.

    A side written before per-step counts (no `per_step`) compares XLA's FLOPs only.
    """
    out = []
    flops: tuple[float | None, float | None]
    if ca.per_step is not None and cb.per_step is not None:
        flops = (ca.per_step.flops, cb.per_step.flops)
        moved = []
        for kind in sorted(set(ca.collectives) | set(cb.collectives)):
            x = ca.collectives[kind].bytes if kind in ca.collectives else 0.0
            y = cb.collectives[kind].bytes if kind in cb.collectives else 0.0
            if abs(_relative(x, y)) > tol:
                moved.append(f"{kind} {human_bytes(x)} -> {human_bytes(y)} per device per step ({percent(_relative(x, y))})")
        if moved:
            out.append(Finding(Category.COLLECTIVES, None, _bytes_by_kind(ca), _bytes_by_kind(cb),
                               note=join(*moved, cause)))
    else:
        flops = (ca.xla_cost.flops if ca.xla_cost else None, cb.xla_cost.flops if cb.xla_cost else None)
    if flops[0] is not None and flops[1] is not None:
        change = _relative(flops[0], flops[1])
        if abs(change) > tol:
            out.append(Finding(Category.FLOPS, None, number(flops[0]), number(flops[1]),
                               note=join(f"{percent(change)} per device per step", cause)))
    before = {d.leaf: d for d in ca.drift or ()}
    for d in cb.drift or ():
        if before.get(d.leaf) != d:
            out.append(Finding(Category.SHARDING_DRIFT, d.leaf, spec_text(d.input), d.output, note=DRIFT_NOTE))
    return out


def _bytes_by_kind(c: Compile) -> dict[str, float | int | None]:
    return {k: number(v.bytes) for k, v in sorted(c.collectives.items())}


_STATE = (Category.LEAF_ADDED, Category.LEAF_REMOVED, Category.NEWLY_REPLICATED, Category.PARTITION_SPEC,
          Category.DTYPE, Category.SHAPE)


def _annotation_cause(sa: _Side, sb: _Side, leaf_findings: list[Finding]) -> str:
    """Leaves annotated on one side only whose sharding differs for it: a cause of any program difference."""
    one_sided = [f.leaf for f in leaf_findings if f.category in (Category.PARTITION_SPEC, Category.NEWLY_REPLICATED)
                 and _axes_note(*(_leaf_axes(s, f.leaf) for s in (sa, sb)))]
    if not one_sided:
        return ""
    return f"annotated on one side only: {', '.join(str(p) for p in one_sided[:3])}" + (
        f" and {len(one_sided) - 3} more" if len(one_sided) > 3 else "")


def _leaf_axes(side: _Side, path: str | None) -> Any:
    leaf = side.leaves.get(path or "")
    return None if leaf is None else leaf.logical_axes


def _layers_misordered(sa: _Side, sb: _Side) -> bool:
    """A Linen side and an NNX side whose layers flatten in different orders (`_causes.misordered_layers`)."""
    by_kind = {sa.kind: sa, sb.kind: sb}
    if set(by_kind) != {"linen", "nnx"}:
        return False
    # The parameters show the layers; optimizer slots repeat them.
    return _causes.misordered_layers((raw for path, raw in by_kind["linen"].raw.items() if path.startswith("param/")),
                                     by_kind["nnx"].raw.values())


def _graph_updates_premise(a: Report, b: Report, leaf_findings: list[Finding]) -> str | None:
    """Which side ("A" or "B") is the NNX path when the graph-updates note may apply; None when it may not.

    It may when the two are one model's Linen and NNX paths, run with the same scan/remat settings
    that transform the layers (`_causes.graph_updates_premise`), and their states agree: a
    real leaf difference is the likelier cause of a memory difference.
    """
    if any(f.category in _STATE and not f.explained for f in leaf_findings):
        return None
    if _causes.graph_updates_premise(a.header, b.header):
        return "A"
    if _causes.graph_updates_premise(b.header, a.header):
        return "B"
    return None


def _relative(x: float, y: float) -> float:
    if x == y:
        return 0.0
    return math.inf if x == 0 else (y - x) / x
