"""`aotcheck fit`'s result for people and machines: the table, Markdown, and JSON."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from aotcheck._fit import FitResult, FitRow
from aotcheck._record import dumps
from aotcheck._text import human_bytes
from aotcheck.render._common import md

PARETO_NOTE = "* Pareto-best: no other row carries more batch per chip with no more peak HBM per device"
_COLUMNS = ("", "topology", "mesh", "remat", "batch/device", "peak/device", "usable", "headroom", "TFLOPs/step",
            "comm/step", "step s (est.)", "tok/s/chip", "MFU", "note")
_NUMERIC = ("batch/device", "peak/device", "usable", "headroom", "TFLOPs/step", "comm/step", "step s (est.)",
            "tok/s/chip", "MFU")


def _cells(row: FitRow) -> list[str]:
    def size(n: int | None) -> str:
        return "-" if n is None else human_bytes(n)

    batch = "-" if row.max_per_device_batch_size is None else str(row.max_per_device_batch_size)
    return [
        "*" if row.pareto else "",
        row.topology + (f" x{row.num_slices}" if row.num_slices > 1 else ""),
        row.mesh,
        row.remat_policy,
        batch,
        size(row.peak_bytes_per_device),
        size(row.usable_bytes_per_device),
        size(row.headroom_bytes_per_device),
        "-" if row.flops is None else f"{row.flops / 1e12:.3g}",
        "-" if row.collective_bytes is None else human_bytes(row.collective_bytes),
        "-" if row.step_seconds is None else f"{row.step_seconds:.3g}",
        "-" if row.tokens_per_second_per_chip is None else f"{row.tokens_per_second_per_chip:,.0f}",
        "-" if row.mfu is None else f"{row.mfu:.0%}",
        row.reason or "",
    ]


def _closing(result: FitResult) -> list[str]:
    lines = [PARETO_NOTE]
    if result.stopped:
        lines.append(f"search {result.stopped}")
    rec = result.recommendation
    none = "none found before the search stopped" if result.stopped else "nothing fits; see each row's note"
    lines.append(f"recommended: {rec.text}" if rec else f"recommended: {none}")
    if rec:  # the mesh's axes of size 1 are in the JSON's overrides; here they would bury the answer
        shown = [o for o in rec.overrides if not (o.startswith("ici_") and o.endswith("=1"))]
        rest = " (other ici_*_parallelism=1)" if len(shown) < len(rec.overrides) else ""
        lines.append("  --set " + " --set ".join(shown) + rest)
    return lines


def fit_table(result: FitResult) -> Group:
    """The terminal table: one row per (topology, mesh, remat), the Pareto note and the recommendation."""
    table = Table(title="largest per-device batch that fits, by compiling")
    for col in _COLUMNS:
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    for row in result.rows:
        table.add_row(*_cells(row), style=None if row.max_per_device_batch_size is not None else "dim")
    return Group(table, *(Text(line, no_wrap=True, overflow="ignore") for line in _closing(result)))


def fit_markdown(result: FitResult) -> str:
    """A Markdown table for a pull request, with the same rows, note and recommendation."""
    lines = ["| " + " | ".join(c or "pareto" for c in _COLUMNS) + " |",
             "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(md(c) for c in _cells(row)) + " |" for row in result.rows]
    closing = _closing(result)
    lines += ["", closing[0], ""] + [f"**{line}**" if line.startswith("recommended") else f"`{line.strip()}`"
                                      if line.startswith("  --set") else line for line in closing[1:]]
    return "\n".join(lines) + "\n"


def fit_json(result: FitResult) -> str:
    """`{"rows": [...], "recommendation": ..., "stopped": ..., "builds": ...}`, deterministic."""
    return dumps(result)
