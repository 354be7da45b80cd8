"""The gate's result for people and for CI: the terminal table and details, Markdown, JUnit XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from aotcheck._compare import Finding
from aotcheck._errors import EXIT_BUILD, EXIT_INTERNAL, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE
from aotcheck._gate import FAILING, Outcome, Result
from aotcheck.render._common import md
from aotcheck.render._findings import finding_line, value_text, where


def change_summary(outcome: Outcome) -> str:
    """The 'what changed' cell: counts per category, the missing-golden hint, or the error."""
    if outcome.status == "error":
        return outcome.error or "error"
    if outcome.hint:
        return outcome.hint
    counts = Counter(str(f.category) + (" (explained)" if f.explained else "") for f in outcome.findings)
    if outcome.compiler:
        counts[f"compiler changed ({outcome.compiler_change})"] = len(outcome.compiler)
    if counts:
        return ", ".join(f"{n} {cat}" for cat, n in counts.items())
    # An update that changed no finding may still rewrite files (new versions, a batch shape).
    return f"wrote {', '.join(outcome.written)}" if outcome.written else "-"


def gate_details(result: Result) -> list[str]:
    """The precise account after the table: each change, leaf by leaf."""
    lines = []
    for o in result.outcomes:
        if not o.findings and not o.warnings and not o.compiler:
            continue
        lines.append(f"{o.name} ({o.golden_dir}):")
        lines += [f"  {finding_line(f)}" for f in o.findings]
        lines += [f"  {compiler_line(o, f)}" for f in o.compiler]
        lines += [f"  warning: {w}" for w in o.warnings]
    lines += [f"warning: {u}" for u in result.unused]
    return lines


def compiler_line(outcome: Outcome, f: Finding) -> str:
    """A compile figure a compiler change moved: `compiler changed (libtpu X -> Y): <finding>`."""
    return f"compiler changed ({outcome.compiler_change}): {finding_line(f)}"


def gate_table(result: Result) -> Any:
    from rich.table import Table

    styles = {"ok": "green", "unchanged": "green", "created": "cyan", "updated": "cyan", "changed": "red",
              "missing": "red", "error": "bold red"}
    n = len(result.outcomes)
    t = Table(title=f"aotcheck {'golden update' if result.update else 'check'}: {n} case{'s' * (n != 1)}",
              title_justify="left")
    for col in ("case", "path", "status", "what changed"):
        t.add_column(col, overflow="fold")
    for o in result.outcomes:
        t.add_row(o.case, o.path, f"[{styles[o.status]}]{o.status}[/]", change_summary(o))
    return t


def _verdict(result: Result) -> str:
    verdict = {EXIT_OK: "passed", EXIT_REGRESSION: "sharding changed", EXIT_USAGE: "configuration error",
               EXIT_BUILD: "a case could not be built", EXIT_INTERNAL: "internal error in aotcheck"}[result.exit_code]
    failed = [o for o in result.outcomes if o.status in FAILING]
    if failed and all(o.compiler and all(f.explained for f in o.findings) for o in failed):
        verdict = f"compiler changed ({failed[0].compiler_change})"
    return verdict


def gate_verdict(result: Result) -> str:
    """One line: `aotcheck check: passed (2 ok)`; what `-q` prints."""
    counts = Counter(o.status for o in result.outcomes)
    return (f"aotcheck {'golden update' if result.update else 'check'}: {_verdict(result)} "
            f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")


def gate_markdown(result: Result) -> str:
    counts = Counter(o.status for o in result.outcomes)
    lines = [f"## aotcheck {'golden update' if result.update else 'check'}: {_verdict(result)}", "",
             ", ".join(f"{n} {s}" for s, n in sorted(counts.items())), "",
             "| case | path | status | what changed |", "|---|---|---|---|"]
    for o in result.outcomes:
        lines.append(f"| `{o.case}` | {o.path} | {o.status} | {md(change_summary(o))} |")
    for o in result.outcomes:
        if o.findings or o.compiler:
            lines += ["", f"### `{o.name}`", "", "| category | leaf | before | after | note |", "|---|---|---|---|---|"]
            for f, label in [(f, str(f.category)) for f in o.findings] + [
                    (f, f"compiler changed ({o.compiler_change}): {f.category}") for f in o.compiler]:
                note = md(f.note) + (" (explained: not a failure)" if f.explained else "")
                lines.append(f"| {md(label)} | `{md(where(f))}` | `{md(value_text(f.category, f.before))}` | "
                             f"`{md(value_text(f.category, f.after))}` | {note} |")
    warnings = [f"`{o.name}`: {w}" for o in result.outcomes for w in o.warnings] + list(result.unused)
    if warnings:
        lines += ["", "**Warnings**", ""] + [f"- {md(w)}" for w in warnings]
    return "\n".join(lines) + "\n"


def gate_junit(result: Result) -> str:
    """JUnit XML in pytest's layout: one testcase per case and path; failures carry the findings."""
    failures = sum(o.status in FAILING for o in result.outcomes)
    errors = sum(o.status == "error" for o in result.outcomes)
    total = sum(o.seconds for o in result.outcomes)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", {
        "name": "aotcheck", "errors": str(errors), "failures": str(failures), "skipped": "0",
        "tests": str(len(result.outcomes)), "time": f"{total:.3f}",
    })
    for o in result.outcomes:
        case = ET.SubElement(suite, "testcase", {"classname": "aotcheck.check", "name": o.name, "time": f"{o.seconds:.3f}"})
        if o.status in FAILING:
            body = [finding_line(f) for f in o.findings] + [compiler_line(o, f) for f in o.compiler] or [
                o.hint or o.status]
            failure = ET.SubElement(case, "failure", {"message": f"{o.name}: {change_summary(o)}"})
            failure.text = "\n".join(body)
        elif o.status == "error":
            error = ET.SubElement(case, "error", {"message": o.error or "error"})
            error.text = "\n".join([o.error or ""] + [finding_line(f) for f in o.findings])
        if o.warnings:
            ET.SubElement(case, "system-out").text = "\n".join(f"warning: {w}" for w in o.warnings)
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
