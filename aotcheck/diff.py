"""Compare two states leaf by leaf, and two compiled programs figure by figure.

Either side is an aotcheck report (built now, or saved as JSON), a golden directory, or
MaxText's sharding goldens (`named_shardings.json` / `logical_shardings.json`). Leaves are
matched on canonical paths (`aotcheck.canonical`), so a Linen state compares to an NNX one.
DeepDiff finds the leaf-level differences; they become typed findings, with the changes an
optimizer slot merely mirrors from its parameter folded into the parameter's finding, and
with the expected, harmless ones (the NNX step's dtype, NNX-only rng state) marked explained.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aotcheck import canonical
from aotcheck._io import read_json
from aotcheck.errors import UsageError
from aotcheck.report import SCHEMA, LeafReport, Report, dumps, from_dict
from aotcheck.rules import spec_from_json, spec_to_json

CATEGORIES = (
    "leaf added",
    "leaf removed",
    "PartitionSpec changed",
    "logical axes changed",
    "dtype changed",
    "shape changed",
    "newly replicated large leaf",
    "memory per chip beyond tolerance",
    "fit verdict changed",
    "collectives changed",
    "FLOPs changed",
    "compile newly failing",
)
DIFF_SCHEMA = "aotcheck.diff/1"
LEAF_FIELDS = ("shape", "dtype", "logical_axes", "spec")
MAXTEXT_NAMED = "named_shardings.json"
MAXTEXT_LOGICAL = "logical_shardings.json"

STEP_NOTE = "NNX's optimizer counts steps in uint32, Linen's TrainState in int32; harmless"
RNG_NOTE = "NNX keeps rng state in the module; Linen's train state has none"
MIRROR_NOTE = "the optimizer state mirrors the parameter"
ORDER_NOTE = (
    "unscanned Linen layers are named layers_N and flatten in string order (layers_10 before layers_2), "
    "unlike NNX's numbered list, so the step's arguments come in a different order and XLA assigns buffers differently"
)
GRAPH_UPDATES_NOTE = (
    "the NNX side needs more temp: nnx.scan / nnx.remat / nnx.vmap with graph updates thread extra loop values; "
    "pass graph_updates=False"
)


@dataclass(frozen=True)
class Finding:
    category: str  # one of CATEGORIES
    leaf: str | None  # canonical leaf path, or None for program-level findings
    before: Any  # JSON-ready value on side A (None if absent)
    after: Any  # JSON-ready value on side B
    explained: bool = False  # expected and harmless: reported, never fails
    note: str = ""  # human explanation / likely cause

    def to_json(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "leaf": self.leaf,
            "before": self.before,
            "after": self.after,
            "explained": self.explained,
            "note": self.note,
        }


def failing(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if not f.explained]


# --- sides ---------------------------------------------------------------------------------


def load_side(path: Path) -> Report:
    """An aotcheck report JSON, a golden directory, or MaxText's sharding goldens (a file or their directory)."""
    from aotcheck import golden

    if path.is_dir():
        if golden.exists(path):
            return golden.read_golden(path)
        named, logical = path / MAXTEXT_NAMED, path / MAXTEXT_LOGICAL
        if named.is_file() or logical.is_file():
            return read_maxtext(
                read_json(named, "MaxText file") if named.is_file() else None,
                read_json(logical, "MaxText file") if logical.is_file() else None,
                path,
            )
        raise UsageError(
            f"{path} is neither a golden directory ({', '.join(golden.SHARDING_FILES)}) "
            f"nor a directory of MaxText goldens ({MAXTEXT_NAMED}, {MAXTEXT_LOGICAL})"
        )
    if not path.exists():
        raise UsageError(f"{path} does not exist (give linen, nnx, a report JSON, a golden directory or MaxText goldens)")
    data = read_json(path, "file")
    if isinstance(data, dict) and data.get("schema") == SCHEMA:
        return from_dict(data)
    if isinstance(data, dict) and "shardings" in data and golden.exists(path.parent):
        return golden.read_golden(path.parent)  # one file of a golden directory stands for the directory
    if isinstance(data, dict) and path.name == MAXTEXT_LOGICAL:
        return read_maxtext(None, data, path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "mesh" in v for v in data.values()):
        return read_maxtext(data, None, path)
    if isinstance(data, dict) and data and all(isinstance(v, dict) and "partition_spec" in v for v in data.values()):
        return read_maxtext(None, data, path)
    raise UsageError(f"{path} is not an aotcheck report, a golden file or a MaxText sharding file")


def read_maxtext(named: Mapping[str, Any] | None, logical: Mapping[str, Any] | None, source: Path) -> Report:
    """MaxText's `named_shardings.json` (path -> mesh, partition_spec, shape) and/or
    `logical_shardings.json` (path -> partition_spec of logical names, shape) as a report.

    MaxText records no dtypes, so only the fields its files hold are compared
    (`header["known_fields"]`); specs are normalised against each entry's mesh.
    """
    known = ["shape"] + (["spec"] if named is not None else []) + (["logical_axes"] if logical is not None else [])
    entries: dict[str, dict[str, Any]] = {}
    mesh: dict[str, Any] = {"axis_names": [], "shape": {}}
    for name, table in ((MAXTEXT_NAMED, named), (MAXTEXT_LOGICAL, logical)):
        if table is None:
            continue
        if not isinstance(table, Mapping):
            raise UsageError(f"{source}: {name} is not a JSON object of path -> sharding")
        for path, entry in table.items():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("partition_spec"), list):
                raise UsageError(f"{source}: entry {path!r} of {name} has no partition_spec list")
            slot = entries.setdefault(path, {"shape": tuple(entry.get("shape") or ())})
            if name == MAXTEXT_NAMED:
                try:
                    mesh = {"axis_names": list(entry["mesh"]["axis_names"]), "shape": dict(entry["mesh"]["shape"])}
                    slot["spec"] = spec_from_json(entry["partition_spec"], mesh["shape"])
                except (KeyError, TypeError) as exc:
                    raise UsageError(f"{source}: entry {path!r} of {name} has no usable mesh ({exc})") from None
            else:
                axes = entry["partition_spec"]
                # An empty PartitionSpec of logical names is no annotation at all.
                slot["logical_axes"] = tuple(tuple(a) if isinstance(a, list) else a for a in axes) if axes else None
    leaves = tuple(
        LeafReport(
            path=path,
            role=canonical.role_of(canonical.defaults().canonical(path, "other", "maxtext")),
            shape=e["shape"],
            dtype="unknown",
            logical_axes=e.get("logical_axes"),
            spec=e.get("spec", ()),
            shard_shape=e["shape"],
            bytes=0,
            bytes_per_device=0,
        )
        for path, e in sorted(entries.items())
    )
    header = {
        "model": "MaxText goldens",
        "model_source": f"MaxText goldens {source}",
        "path": "maxtext",
        "mesh": mesh,
        "known_fields": known,
    }
    return Report(header=header, batch={}, leaves=leaves)


def describe(report: Report) -> str:
    h = report.header
    if h.get("path") == "maxtext":
        return h["model_source"]
    topology = h.get("topology", {}).get("name", "?")
    return f"{h.get('model', '?')} ({h.get('path', '?')}) on {topology}"


# --- comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Side:
    kind: str
    leaves: dict[str, LeafReport]  # canonical path -> leaf
    raw: dict[str, str]  # canonical path -> path as the source names it
    fields: frozenset[str]


def _side(report: Report, rewrites: canonical.Rewrites, label: str) -> _Side:
    kind = report.header.get("path")
    if kind not in canonical.KINDS:
        raise UsageError(f"side {label}: unknown state kind {kind!r} (one of {', '.join(canonical.KINDS)})")
    leaves: dict[str, LeafReport] = {}
    raw: dict[str, str] = {}
    for leaf in report.leaves:
        path = rewrites.canonical(leaf.path, leaf.role, kind)
        if path in raw:
            raise UsageError(f"side {label}: leaves {raw[path]} and {leaf.path} both map to canonical path {path}")
        leaves[path], raw[path] = leaf, leaf.path
    return _Side(kind, leaves, raw, frozenset(report.header.get("known_fields", LEAF_FIELDS)))


def _fields(leaf: LeafReport, fields: frozenset[str]) -> dict[str, Any]:
    out = {
        "shape": list(leaf.shape),
        "dtype": leaf.dtype,
        "logical_axes": None if leaf.logical_axes is None else [list(a) if isinstance(a, tuple) else a for a in leaf.logical_axes],
        "spec": spec_to_json(leaf.spec),
    }
    return {k: v for k, v in out.items() if k in fields}


def compare(
    a: Report,
    b: Report,
    *,
    memory_tolerance: float = 0.01,
    large_leaf_bytes: int = 1 << 20,
    rewrites: canonical.Rewrites | None = None,
) -> list[Finding]:
    """Every difference between side A and side B, sorted by category then leaf.

    `memory_tolerance` is the relative change of a per-chip memory figure (argument, temp,
    peak) or of the FLOPs that counts as a difference; `rewrites` defaults to
    `configs/canonical.yml`.
    """
    from deepdiff import DeepDiff

    rules = rewrites or canonical.defaults()
    sa, sb = _side(a, rules, "A"), _side(b, rules, "B")
    fields = sa.fields & sb.fields
    ta = {p: _fields(leaf, fields) for p, leaf in sa.leaves.items()}
    tb = {p: _fields(leaf, fields) for p, leaf in sb.leaves.items()}
    # threshold_to_diff_deeper=0: always report per leaf and field, never "the whole tree changed".
    tree = DeepDiff(ta, tb, view="tree", threshold_to_diff_deeper=0)
    added: set[str] = set()
    removed: set[str] = set()
    changed: dict[str, set[str]] = {}
    for kind, levels in tree.items():
        for level in levels:
            keys = level.path(output_format="list")
            if len(keys) == 1 and kind == "dictionary_item_added":
                added.add(keys[0])
            elif len(keys) == 1 and kind == "dictionary_item_removed":
                removed.add(keys[0])
            else:
                changed.setdefault(keys[0], set()).add(keys[1])

    findings: list[Finding] = []
    for path in sorted(added):
        findings.append(_presence("leaf added", path, None, tb[path]))
    for path in sorted(removed):
        findings.append(_presence("leaf removed", path, ta[path], None))
    for path in sorted(changed):
        findings.extend(_changes(path, changed[path], ta[path], tb[path], sb.leaves[path], large_leaf_bytes))
    findings = _fold_mirrors(findings)
    findings.extend(_program_findings(a, b, sa, sb, findings, memory_tolerance))
    return sorted(findings, key=_order)


def _order(f: Finding) -> tuple[Any, ...]:
    return (CATEGORIES.index(f.category), f.leaf or "", dumps(f.before), dumps(f.after))


def _presence(category: str, path: str, before: Any, after: Any) -> Finding:
    if canonical.role_of(path) == "rng":
        return Finding(category, path, before, after, explained=True, note=RNG_NOTE)
    return Finding(category, path, before, after)


def _changes(path: str, keys: set[str], va: dict[str, Any], vb: dict[str, Any], leaf_b: LeafReport, large: int) -> list[Finding]:
    out = []
    axes_a, axes_b = va.get("logical_axes"), vb.get("logical_axes")
    spec_a, spec_b = va.get("spec"), vb.get("spec")
    sharded_before = bool(spec_a) or ("spec" not in va and axes_a is not None)
    lost = ("spec" in keys and not spec_b) or ("logical_axes" in keys and axes_b is None)
    if lost and sharded_before and leaf_b.bytes_per_device >= large:
        sharding = [k for k in ("spec", "logical_axes") if k in va]
        out.append(Finding(
            "newly replicated large leaf", path, {k: va[k] for k in sharding}, {k: vb[k] for k in sharding},
            note=_join(
                f"{_human(leaf_b.bytes_per_device)} per device on side B",
                _axes_note(axes_a, axes_b) if "logical_axes" in keys else "",
            ),
        ))
    elif "logical_axes" in keys:
        spec_note = f"PartitionSpec {_spec(spec_a)} -> {_spec(spec_b)} follows" if "spec" in keys else ""
        out.append(Finding("logical axes changed", path, axes_a, axes_b, note=_join(_axes_note(axes_a, axes_b), spec_note)))
    elif "spec" in keys:
        same_axes = "logical_axes" in va and axes_a is not None
        out.append(Finding(
            "PartitionSpec changed", path, spec_a, spec_b,
            note=f"same logical axes {_axes(axes_a)}: the rules or the mesh differ" if same_axes else "",
        ))
    if "dtype" in keys:
        step = path == "step" and {va["dtype"], vb["dtype"]} == {"int32", "uint32"}
        out.append(Finding("dtype changed", path, va["dtype"], vb["dtype"], explained=step, note=STEP_NOTE if step else ""))
    if "shape" in keys:
        out.append(Finding("shape changed", path, va["shape"], vb["shape"]))
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
        same = param is not None and (f.category in ("leaf added", "leaf removed") or (param.before, param.after) == (f.before, f.after))
        if m and param is not None and same:
            mirrors.setdefault((param.category, param.leaf), []).append(f"opt/{m.group(1)}/{m.group(2)}")
        else:
            kept.append(f)
    out = []
    for f in kept:
        slots = mirrors.get((f.category, f.leaf))
        if slots:
            f = replace(f, note=_join(f.note, f"same in {', '.join(sorted(slots))}: {MIRROR_NOTE}"))
        out.append(f)
    return out


def _program_findings(a: Report, b: Report, sa: _Side, sb: _Side, leaf_findings: list[Finding], tol: float) -> list[Finding]:
    ca, cb = a.compile, b.compile
    if ca is None or cb is None:
        return []
    if ca.memory is not None and cb.memory is None:
        return [Finding(
            "compile newly failing", None, ca.needed_bytes, cb.needed_bytes,
            note=f"the TPU compiler ran out of HBM on side B: needs {_human(cb.needed_bytes)} of {_human(cb.capacity_bytes)} per chip",
        )]
    causes = _causes(a, b, sa, sb, leaf_findings)
    out = []
    if ca.fits != cb.fits:
        verdict = {True: "fits", False: "does not fit"}
        out.append(Finding("fit verdict changed", None, verdict[ca.fits], verdict[cb.fits], note=_join(*causes.values())))
    figures = {"peak": (ca.needed_bytes, cb.needed_bytes)}
    if ca.memory is not None and cb.memory is not None:
        figures["argument"] = (ca.memory.argument, cb.memory.argument)
        figures["temp"] = (ca.memory.temp, cb.memory.temp)
    for name, (x, y) in figures.items():
        change = _relative(x, y)
        if abs(change) > tol:
            extra = [causes.get("order", ""), causes.get("annotation", "")]
            if name in ("temp", "peak"):
                extra.append(_graph_updates(a, b, sa, sb, name))
            out.append(Finding(
                "memory per chip beyond tolerance", None, {name: x}, {name: y},
                note=_join(f"{_pct(change)} per chip", *extra),
            ))
    if ca.collectives != cb.collectives:
        kinds = sorted(set(ca.collectives) | set(cb.collectives))
        moved = ", ".join(
            f"{k} {ca.collectives.get(k, 0)} -> {cb.collectives.get(k, 0)}" for k in kinds
            if ca.collectives.get(k, 0) != cb.collectives.get(k, 0)
        )
        out.append(Finding("collectives changed", None, dict(ca.collectives), dict(cb.collectives), note=_join(moved, *causes.values())))
    if ca.flops is not None and cb.flops is not None:
        change = _relative(ca.flops, cb.flops)
        if abs(change) > tol:
            out.append(Finding("FLOPs changed", None, ca.flops, cb.flops, note=_join(_pct(change), *causes.values())))
    return out


def _causes(a: Report, b: Report, sa: _Side, sb: _Side, leaf_findings: list[Finding]) -> dict[str, str]:
    """Known reasons two programs of the same model differ, that the states themselves show."""
    out = {}
    if sa.kind != sb.kind and any(re.search(r"(^|/)layers_\d{2,}(/|$)", p) for s in (sa, sb) for p in s.raw.values()):
        out["order"] = ORDER_NOTE
    one_sided = [f.leaf for f in leaf_findings if f.category in ("logical axes changed", "newly replicated large leaf") and _axes_note(
        *(_leaf_axes(s, f.leaf) for s in (sa, sb)))]
    if one_sided:
        out["annotation"] = f"annotated on one side only: {', '.join(str(p) for p in one_sided[:3])}" + (
            f" and {len(one_sided) - 3} more" if len(one_sided) > 3 else "")
    return out


def _leaf_axes(side: _Side, path: str | None) -> Any:
    leaf = side.leaves.get(path or "")
    return None if leaf is None else leaf.logical_axes


def _graph_updates(a: Report, b: Report, sa: _Side, sb: _Side, figure: str) -> str:
    if {sa.kind, sb.kind} != {"linen", "nnx"}:
        return ""
    nnx_report, linen_report = (a, b) if sa.kind == "nnx" else (b, a)
    assert nnx_report.compile is not None and linen_report.compile is not None
    cfg = nnx_report.header.get("config", {})
    transformed = cfg.get("scan_layers", False) or cfg.get("remat_policy", "none") != "none"
    more = nnx_report.compile.needed_bytes > linen_report.compile.needed_bytes if figure == "peak" else (
        nnx_report.compile.memory is not None and linen_report.compile.memory is not None
        and nnx_report.compile.memory.temp > linen_report.compile.memory.temp
    )
    return GRAPH_UPDATES_NOTE if transformed and more else ""


def _relative(x: float, y: float) -> float:
    if x == y:
        return 0.0
    return math.inf if x == 0 else (y - x) / x


def _pct(change: float) -> str:
    return "new" if math.isinf(change) else f"{change:+.1%}"


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _human(n: float) -> str:
    from aotcheck.render import human_bytes

    return human_bytes(n)


def _spec(spec: Any) -> str:
    from aotcheck.render import spec_text

    return "-" if spec is None else spec_text(spec)


def _axes(axes: Any) -> str:
    from aotcheck.render import axes_text

    return axes_text(axes)


# --- output --------------------------------------------------------------------------------


def verdict(findings: list[Finding]) -> str:
    real = failing(findings)
    if real:
        return f"{len(real)} difference{'s' if len(real) != 1 else ''}"
    notes = len(findings)
    return "identical" + (f" (apart from {notes} explained note{'s' if notes != 1 else ''})" if notes else "")


def _heading(category: str, a_label: str, b_label: str) -> str:
    return {"leaf added": f"only in {b_label}", "leaf removed": f"only in {a_label}"}.get(category, category)


def _value(category: str, value: Any) -> str:
    if value is None and category != "logical axes changed":
        return "-"
    if category in ("leaf added", "leaf removed", "newly replicated large leaf"):
        return "  ".join(f"{k}={_value_field(k, v)}" for k, v in value.items())
    if category == "PartitionSpec changed":
        return _spec(value)
    if category == "logical axes changed":
        return _axes(value)
    if category == "memory per chip beyond tolerance":
        return _human(next(iter(value.values())))
    if category == "collectives changed":
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    if category == "FLOPs changed":
        return f"{value:,.0f}"
    return str(value)


def _value_field(name: str, value: Any) -> str:
    if name == "spec":
        return _spec(value)
    if name == "logical_axes":
        return _axes(value)
    return str(value)


def _where(f: Finding) -> str:
    if f.leaf is not None:
        return f.leaf
    if f.category == "memory per chip beyond tolerance":
        return f"{next(iter(f.before))} bytes per chip"
    return ""


def _rows(findings: list[Finding], a_label: str, b_label: str) -> Iterable[tuple[str, list[Finding]]]:
    for category in CATEGORIES:
        group = [f for f in findings if f.category == category]
        if group:
            yield _heading(category, a_label, b_label), group


def to_text(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    lines = [f"A: {a_label} = {describe(a)}", f"B: {b_label} = {describe(b)}", f"verdict: {verdict(findings)}"]
    lines += [f"  {n}" for n in _not_compared(a, b)]
    real, notes = failing(findings), [f for f in findings if f.explained]
    for heading, group in _rows(real, a_label, b_label):
        lines.append(f"\n{heading} ({len(group)})")
        for f in group:
            where = _where(f)
            if f.category in ("leaf added", "leaf removed"):
                lines.append(f"  {where}  {_value(f.category, f.before if f.after is None else f.after)}")
            else:
                lines.append(f"  {where + '  ' if where else ''}{_value(f.category, f.before)} -> {_value(f.category, f.after)}")
            if f.note:
                lines.append(f"      {f.note}")
    if notes:
        lines.append(f"\nexplained notes ({len(notes)}, expected and harmless; they do not fail)")
        for f in notes:
            if f.category in ("leaf added", "leaf removed"):
                change = f"{_heading(f.category, a_label, b_label)}: {_value(f.category, f.before or f.after)}"
            else:
                change = f"{f.category}: {_value(f.category, f.before)} -> {_value(f.category, f.after)}"
            lines.append(f"  {_where(f)}  {change}  ({f.note})")
    return "\n".join(lines) + "\n"


def to_markdown(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    out = [
        f"## aotcheck diff: {a_label} vs {b_label}",
        "",
        f"- A: `{a_label}` = {describe(a)}",
        f"- B: `{b_label}` = {describe(b)}",
        f"- **verdict: {verdict(findings)}**",
        *[f"- {n}" for n in _not_compared(a, b)],
    ]
    real, notes = failing(findings), [f for f in findings if f.explained]
    for heading, group in _rows(real, a_label, b_label):
        out += ["", f"### {heading} ({len(group)})", "", "| leaf | A | B | note |", "|---|---|---|---|"]
        out += [
            f"| {_md(_where(f) or '(program)')} | {_md(_value(f.category, f.before))} | {_md(_value(f.category, f.after))} | {_md(f.note)} |"
            for f in group
        ]
    if notes:
        out += ["", f"### explained notes ({len(notes)})", "", "| leaf | difference | A | B | why harmless |", "|---|---|---|---|---|"]
        out += [
            f"| {_md(f.leaf or '(program)')} | {f.category} | {_md(_value(f.category, f.before))} | "
            f"{_md(_value(f.category, f.after))} | {_md(f.note)} |"
            for f in notes
        ]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_json(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    return dumps({
        "schema": DIFF_SCHEMA,
        "a": {"label": a_label, "source": describe(a)},
        "b": {"label": b_label, "source": describe(b)},
        "verdict": verdict(findings),
        "differences": len(failing(findings)),
        "not_compared": _not_compared(a, b),
        "findings": [f.to_json() for f in findings],
    })


def _not_compared(a: Report, b: Report) -> list[str]:
    out = []
    known = set(a.header.get("known_fields", LEAF_FIELDS)) & set(b.header.get("known_fields", LEAF_FIELDS))
    missing = [f for f in LEAF_FIELDS if f not in known]
    if missing:
        out.append(f"not compared: {', '.join(missing)} (one side does not record them)")
    if a.compile is None or b.compile is None:
        which = [s for s, r in (("A", a), ("B", b)) if r.compile is None]
        out.append(f"not compared: compile figures ({' and '.join(which)} {'has' if len(which) == 1 else 'have'} no compile section)")
    return out
