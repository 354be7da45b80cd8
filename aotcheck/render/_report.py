"""A report for people: the terminal summary, the leaf table, and Markdown."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from aotcheck._report import Leaf, Report
from aotcheck._text import axes_text, human_bytes, spec_text
from aotcheck._topology import MOCK_LABEL
from aotcheck.render._common import fit_text, md
from aotcheck.render._cost import activation_rows, cost_lines, hbm_line, peak_rows
from aotcheck.render._width import fitted_table

_BAR = 40


def title(report: Report) -> str:
    h = report.header
    t = h.topology
    assert t is not None
    backend = MOCK_LABEL if h.backend == "mock" else "libtpu"
    return (f"{h.model} ({h.path}) on {t.name}: {t.chips} chips, {t.devices} devices, "
            f"{t.libtpu_topology}, {t.device_kind} [{backend}]")


def _mesh_line(report: Report) -> str:
    shape = report.mesh_shape
    used = " x ".join(f"{a}={s}" for a, s in shape.items() if s > 1) or "1 device"
    return f"mesh: {used}  (axes {', '.join(shape)})"


# Shown by the title and the mesh line already.
_SHOWN_ELSEWHERE = ("model_name", "pure_nnx", "mesh_axes")


def settings_lines(report: Report) -> list[str]:
    """The model's own settings and aotcheck's that the run read (a setting nothing read is not shown)."""
    def listed(values: dict[str, Any]) -> str:
        return ", ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in sorted(values.items()))

    h = report.header
    core = {k: v for k, v in h.config.items() if k not in _SHOWN_ELSEWHERE and not k.endswith("_parallelism")}
    return ([f"model settings: {listed(h.own_config)}"] if h.own_config else []) + (
        [f"aotcheck settings used: {listed(core)}"] if core else [])


def memory_bar(report: Report) -> Text:
    c = report.compile
    assert c is not None
    frac = c.needed_bytes_per_device / c.capacity_bytes_per_device if c.capacity_bytes_per_device else 0.0
    colour = "green" if frac <= 0.8 else "yellow" if frac <= 1.0 else "red"
    filled = min(_BAR, round(frac * _BAR))
    bar = Text("[", style="bold")
    bar.append("#" * filled, style=colour)
    bar.append("." * (_BAR - filled))
    bar.append("] ", style="bold")
    bar.append(fit_text(c), style=colour)
    return bar


def _largest(report: Report, limit: int) -> list[tuple[str, Leaf]]:
    return sorted(report.items(), key=lambda item: (-item[1].bytes_per_device, item[0]))[:limit]


def summary(report: Report, largest: int = 8, width: int | None = None) -> Group:
    """The terminal summary: target, mesh, state, memory, cost, collectives, timings, largest leaves."""
    t = report.totals
    parts: list[Any] = [Text(title(report), style="bold"), Text(_mesh_line(report))]
    parts.extend(Text(line, style="dim") for line in settings_lines(report))
    parts.append(Text(f"state: {t.leaves} leaves, {t.parameters:,} parameters, "
                      f"{human_bytes(t.state_bytes)} in all, {human_bytes(t.state_bytes_per_device)} per device"))
    if t.unannotated.leaves:
        parts.append(Text(
            f"unannotated (replicated on every device): {len(t.unannotated.leaves)} leaves, "
            f"{human_bytes(t.unannotated.bytes_per_device)} per device: " + ", ".join(t.unannotated.leaves[:5]),
            style="yellow",
        ))
    c = report.compile
    if c is not None:
        parts.append(memory_bar(report))
        if (m := c.memory_per_device) is not None:
            parts.append(Text(f"argument {human_bytes(m.argument)}, output {human_bytes(m.output)}, "
                              f"alias {human_bytes(m.alias)}, temp {human_bytes(m.temp)}, "
                              f"code {human_bytes(m.generated_code)}"))
        if c.memory_per_device is not None:
            parts.append(Text(hbm_line(c)))
        parts.extend(Text(line, style="yellow" if line.startswith("drift: ") and c.drift else "")
                     for line in cost_lines(c))
        if rows := peak_rows(c):
            parts.append(_table(f"largest at the peak ({human_bytes(c.memory_detail.peak_bytes if c.memory_detail else 0)} "
                                "live), by name stack", ("source", "buffers", "bytes", "share"), rows))
        if rows := activation_rows(c):
            parts.append(_table(f"activations: {len(rows)} sharding constraints", ("name stack", "shape", "dtype", "spec"), rows))
        if report.header.backend == "mock":
            parts.append(Text("mock (CPU devices): memory figures are not TPU figures", style="yellow"))
        if options := report.header.compiler_options:
            chosen = ", ".join(f"{k}={v:g}" for k, v in sorted(options.items()))
            parts.append(Text(f"low-effort compile ({chosen}): temp, code, bytes accessed and collectives "
                              "differ from a default compile's", style="yellow"))
    if report.timings:
        times = ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}s" for k, v in report.timings.items() if k.endswith("_seconds"))
        cached = " (compile served from aotcheck's cache)" if report.timings.get("compile_cache_hit") else ""
        if report.timings.get("report_cache_hit"):
            cached = "report served from aotcheck's cache (inputs unchanged)"
        parts.append(Text(f"time: {times}{cached}", style="dim"))
    if largest:
        parts.append(leaf_table(report, limit=largest, title=f"largest {largest} leaves per device", width=width))
    return Group(*parts)


def _table(title_: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> Table:
    table = Table(title=title_, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, no_wrap=i == 0, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def leaf_table(report: Report, limit: int | None = None, title: str | None = None, width: int | None = None) -> Table:
    """Leaves with shape, dtype, logical axes, spec and bytes per device (the largest `limit`, or all).

    `width` fits the table to a terminal (paths shortened in the middle); None keeps full paths.
    """
    leaves = list(report.items()) if limit is None else _largest(report, limit)
    rows = [(path, str(list(leaf.shape)), leaf.dtype, axes_text(leaf.logical_axes), spec_text(leaf.partition_spec),
             str(list(leaf.shard_shape)), human_bytes(leaf.bytes_per_device)) for path, leaf in leaves]
    headers = ("path", "shape", "dtype", "logical axes", "spec", "per device", "bytes/device")
    return fitted_table(title, headers, rows, width, optional=("logical axes", "per device"))


def markdown(report: Report, all_leaves: bool = False) -> str:
    """The report as Markdown: a heading, the figures, and a leaf table."""
    t = report.totals
    lines = [f"## {title(report)}", "", _mesh_line(report), ""]
    lines.extend(f"- {md(line)}" for line in settings_lines(report))
    lines.append(f"- parameters: {t.parameters:,}")
    lines.append(f"- state per device: {human_bytes(t.state_bytes_per_device)}")
    c = report.compile
    if c is not None:
        lines.append(f"- HBM per device: {fit_text(c)}" if c.fits else f"- HBM per device: **{fit_text(c)}**")
        if c.memory_per_device is not None:
            lines.append(f"- HBM by kind: `{hbm_line(c)}`")
        lines.extend(f"- {line}" for line in cost_lines(c))
        for title_, cols, rows in (("largest at the peak, by name stack", ("source", "buffers", "bytes", "share"),
                                    peak_rows(c)),
                                   ("activations", ("name stack", "shape", "dtype", "spec"), activation_rows(c))):
            if rows:
                lines += ["", f"{title_}:", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                lines += ["| " + " | ".join(f"`{md(r[0])}`" if i == 0 else md(v) for i, v in enumerate(r)) + " |"
                          for r in rows]
    lines += ["", "| path | shape | dtype | logical axes | spec | bytes/device |", "|---|---|---|---|---|---|"]
    leaves = list(report.items()) if all_leaves else _largest(report, 8)
    for path, leaf in leaves:
        lines.append(f"| `{md(path)}` | {list(leaf.shape)} | {leaf.dtype} | {md(axes_text(leaf.logical_axes))} | "
                     f"`{spec_text(leaf.partition_spec)}` | {human_bytes(leaf.bytes_per_device)} |")
    return "\n".join(lines) + "\n"
