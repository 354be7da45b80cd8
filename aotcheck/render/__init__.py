"""Every output format of aotcheck, one formatter per record: reports, findings (diff), and the gate's result.

Each formatter loads its module on first use: rendering a diff does not import the fit or report tables."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aotcheck._lazy import Exports

if TYPE_CHECKING:
    from aotcheck.render._findings import diff_json, diff_markdown, diff_text, finding_line
    from aotcheck.render._fit import fit_json, fit_markdown, fit_table
    from aotcheck.render._gate import change_summary, gate_details, gate_junit, gate_markdown, gate_table, gate_verdict
    from aotcheck.render._report import leaf_table, markdown, summary

_EXPORTS = Exports(__name__, {
    "_findings": ("diff_json", "diff_markdown", "diff_text", "finding_line"),
    "_fit": ("fit_json", "fit_markdown", "fit_table"),
    "_gate": ("change_summary", "gate_details", "gate_junit", "gate_markdown", "gate_table", "gate_verdict"),
    "_report": ("leaf_table", "markdown", "summary"),
})

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


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
