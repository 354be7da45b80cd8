"""Findings for people: one way to write a finding's values, and `aotcheck diff` as text, Markdown and JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aotcheck._compare import ORDER, Category, Finding, failing
from aotcheck._record import dumps
from aotcheck._report import LEAF_FIELDS, Report
from aotcheck._sides import describe
from aotcheck._text import axes_text, human_bytes, spec_text
from aotcheck.render._common import md

DIFF_SCHEMA = "aotcheck.diff/1"
PROGRAM = "(program)"  # where findings about the compiled program, not one leaf, are shown
_PRESENCE = (Category.LEAF_ADDED, Category.LEAF_REMOVED)


def value_text(category: Category, value: Any) -> str:
    """One side of a finding, as people read it: specs as P(...), bytes in units, counts with separators."""
    if value is None and category != Category.LOGICAL_AXES:
        return "-"
    if isinstance(value, dict) and category in (*_PRESENCE, Category.NEWLY_REPLICATED):
        return "  ".join(f"{k}={_field_text(k, v)}" for k, v in value.items())
    if category == Category.PARTITION_SPEC:
        return spec_text(value)
    if category == Category.LOGICAL_AXES:
        return axes_text(value)
    if category == Category.MEMORY and isinstance(value, dict):
        return human_bytes(next(iter(value.values())))
    if category == Category.COLLECTIVES and isinstance(value, dict):
        return ", ".join(f"{k}={human_bytes(v)}" for k, v in sorted(value.items()))
    if category == Category.FLOPS and isinstance(value, int | float):
        return f"{value:,.0f}"
    return str(value)


def _field_text(name: str, value: Any) -> str:
    if name == "partition_spec":
        return spec_text(value)
    if name == "logical_axes":
        return axes_text(value)
    return str(value)


def where(f: Finding) -> str:
    """The leaf a finding is about, or which program figure."""
    if f.leaf is not None:
        return f.leaf
    if f.category == Category.MEMORY and isinstance(f.before, dict):
        return f"{next(iter(f.before))} bytes per chip"
    return PROGRAM


def change_text(f: Finding) -> str:
    """`before -> after`, or the one side a leaf has."""
    if f.category in _PRESENCE:
        return value_text(f.category, f.before if f.after is None else f.after)
    return f"{value_text(f.category, f.before)} -> {value_text(f.category, f.after)}"


def finding_line(f: Finding) -> str:
    """One finding on one line: `category: where: before -> after (note)`."""
    line = f"{f.category}: {where(f)}: {change_text(f)}"
    if f.note:
        line += f" ({f.note})"
    if f.explained:
        line += " [explained: expected, not a failure]"
    return line


def verdict(findings: list[Finding]) -> str:
    real = failing(findings)
    if real:
        return f"{len(real)} difference{'s' if len(real) != 1 else ''}"
    notes = len(findings)
    return "identical" + (f" (apart from {notes} explained note{'s' if notes != 1 else ''})" if notes else "")


def _heading(category: Category, a_label: str, b_label: str) -> str:
    return {Category.LEAF_ADDED: f"only in {b_label}", Category.LEAF_REMOVED: f"only in {a_label}"}.get(category, category)


def _groups(findings: list[Finding], a_label: str, b_label: str) -> Iterable[tuple[str, list[Finding]]]:
    for category in ORDER:
        group = [f for f in findings if f.category == category]
        if group:
            yield _heading(category, a_label, b_label), group


def not_compared(a: Report, b: Report) -> list[str]:
    """What the two sides could not be compared on, and why."""
    out = []
    known = set(a.header.known_fields) & set(b.header.known_fields)
    missing = [f for f in LEAF_FIELDS if f not in known]
    if missing:
        out.append(f"not compared: {', '.join(missing)} (one side does not record them)")
    if a.compile is None or b.compile is None:
        which = [s for s, r in (("A", a), ("B", b)) if r.compile is None]
        out.append(f"not compared: compile figures ({' and '.join(which)} {'has' if len(which) == 1 else 'have'} no compile section)")
    return out


def diff_text(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    lines = [f"A: {a_label} = {describe(a)}", f"B: {b_label} = {describe(b)}", f"verdict: {verdict(findings)}"]
    lines += [f"  {n}" for n in not_compared(a, b)]
    real, notes = failing(findings), [f for f in findings if f.explained]
    for heading, group in _groups(real, a_label, b_label):
        lines.append(f"\n{heading} ({len(group)})")
        for f in group:
            place = where(f)
            lines.append(f"  {place + '  ' if place != PROGRAM else ''}{change_text(f)}")
            if f.note:
                lines.append(f"      {f.note}")
    if notes:
        lines.append(f"\nexplained notes ({len(notes)}, expected and harmless; they do not fail)")
        for f in notes:
            label = _heading(f.category, a_label, b_label)
            lines.append(f"  {where(f)}  {label}: {change_text(f)}  ({f.note})")
    return "\n".join(lines) + "\n"


def diff_markdown(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    out = [
        f"## aotcheck diff: {a_label} vs {b_label}",
        "",
        f"- A: `{a_label}` = {describe(a)}",
        f"- B: `{b_label}` = {describe(b)}",
        f"- **verdict: {verdict(findings)}**",
        *[f"- {n}" for n in not_compared(a, b)],
    ]
    real, notes = failing(findings), [f for f in findings if f.explained]
    for heading, group in _groups(real, a_label, b_label):
        out += ["", f"### {heading} ({len(group)})", "", "| leaf | A | B | note |", "|---|---|---|---|"]
        out += [f"| {md(where(f))} | {md(value_text(f.category, f.before))} | {md(value_text(f.category, f.after))} "
                f"| {md(f.note)} |" for f in group]
    if notes:
        out += ["", f"### explained notes ({len(notes)})", "", "| leaf | difference | A | B | why harmless |",
                "|---|---|---|---|---|"]
        out += [f"| {md(where(f))} | {f.category} | {md(value_text(f.category, f.before))} | "
                f"{md(value_text(f.category, f.after))} | {md(f.note)} |" for f in notes]
    return "\n".join(out) + "\n"


def diff_json(findings: list[Finding], a: Report, b: Report, a_label: str, b_label: str) -> str:
    return dumps({
        "schema": DIFF_SCHEMA,
        "a": {"label": a_label, "source": describe(a)},
        "b": {"label": b_label, "source": describe(b)},
        "verdict": verdict(findings),
        "differences": len(failing(findings)),
        "not_compared": not_compared(a, b),
        "findings": [f.to_json() for f in findings],
    })
