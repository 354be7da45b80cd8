"""Every output format of aotcheck, one formatter per record: reports, findings (diff), and the gate's result."""

from aotcheck.render._findings import diff_json, diff_markdown, diff_text, finding_line
from aotcheck.render._fit import fit_json, fit_markdown, fit_table
from aotcheck.render._gate import change_summary, gate_details, gate_junit, gate_markdown, gate_table, gate_verdict
from aotcheck.render._report import leaf_table, markdown, summary

__all__ = [
    "change_summary",
    "diff_json",
    "diff_markdown",
    "diff_text",
    "finding_line",
    "fit_json",
    "fit_markdown",
    "fit_table",
    "gate_details",
    "gate_junit",
    "gate_markdown",
    "gate_table",
    "gate_verdict",
    "leaf_table",
    "markdown",
    "summary",
]
