"""Reports for people: a rich terminal summary, the full leaf table, and Markdown."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from aotcheck.report import Report
from aotcheck.topology import MOCK_LABEL

_BAR = 40


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def spec_text(spec: Any) -> str:
    def entry(e: Any) -> str:
        if e is None:
            return "None"
        return repr(e) if isinstance(e, str) else "(" + ", ".join(repr(a) for a in e) + ")"

    return "P(" + ", ".join(entry(e) for e in spec) + ")"


def axes_text(axes: Any) -> str:
    return "-" if axes is None else "(" + ", ".join("None" if a is None else a for a in axes) + ")"


def collectives_text(counts: dict[str, int]) -> str:
    # Sorted: a fresh compile and one read back from JSON (sorted keys) print alike.
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _title(report: Report) -> str:
    h = report.header
    t = h["topology"]
    backend = MOCK_LABEL if h["backend"] == "mock" else "libtpu"
    return (
        f"{h['model']} ({h['path']}) on {t['name']}: {t['chips']} chips, {t['devices']} devices, "
        f"{t['libtpu_topology']}, {t['device_kind']} [{backend}]"
    )


def _mesh_line(report: Report) -> str:
    shape = report.mesh_shape
    used = " x ".join(f"{a}={s}" for a, s in shape.items() if s > 1) or "1 device"
    return f"mesh: {used}  (axes {', '.join(shape)})"


def memory_bar(report: Report) -> Text:
    c = report.compile
    assert c is not None
    frac = c.needed_bytes / c.capacity_bytes if c.capacity_bytes else 0.0
    filled = min(_BAR, round(frac * _BAR))
    colour = "green" if frac <= 0.8 else "yellow" if frac <= 1.0 else "red"
    bar = Text("[", style="bold")
    bar.append("#" * filled, style=colour)
    bar.append("." * (_BAR - filled))
    bar.append("] ", style="bold")
    need = f"{human_bytes(c.needed_bytes)} of {human_bytes(c.capacity_bytes)} per device"
    verdict = f"fits: {need} ({frac:.1%}), headroom {human_bytes(c.headroom_bytes)}" if c.fits else f"does not fit: needs {need}"
    bar.append(verdict, style=colour)
    return bar


def summary(report: Report, largest: int = 8) -> Group:
    t = report.totals()
    parts: list[Any] = [Text(_title(report), style="bold"), Text(_mesh_line(report))]
    parts.append(
        Text(
            f"state: {t['leaves']} leaves, {t['parameters']:,} parameters, "
            f"{human_bytes(t['state_bytes'])} in all, {human_bytes(t['state_bytes_per_device'])} per device"
        )
    )
    if t["unannotated"]["leaves"]:
        parts.append(
            Text(
                f"unannotated (replicated on every device): {len(t['unannotated']['leaves'])} leaves, "
                f"{human_bytes(t['unannotated']['bytes_per_device'])} per device: "
                + ", ".join(t["unannotated"]["leaves"][:5]),
                style="yellow",
            )
        )
    c = report.compile
    if c is not None:
        parts.append(memory_bar(report))
        if c.memory is not None:
            m = c.memory
            parts.append(
                Text(
                    f"argument {human_bytes(m.argument)}, output {human_bytes(m.output)}, "
                    f"alias {human_bytes(m.alias)}, temp {human_bytes(m.temp)}, code {human_bytes(m.generated_code)}"
                )
            )
        if c.flops is not None:
            parts.append(Text(f"FLOPs {c.flops:.4g}, bytes accessed {c.bytes_accessed or 0:.4g} (scanned bodies count once)"))
        if c.collectives:
            parts.append(Text(f"collectives: {collectives_text(c.collectives)}"))
        if report.header["backend"] == "mock":
            parts.append(Text("mock (CPU devices): memory figures are not TPU figures", style="yellow"))
    if report.timings:
        times = ", ".join(f"{k.removesuffix('_seconds')} {v:.2f}s" for k, v in report.timings.items() if k.endswith("_seconds"))
        cached = " (compile served from aotcheck's cache)" if report.timings.get("compile_cache_hit") else ""
        parts.append(Text(f"time: {times}{cached}", style="dim"))
    if largest:
        parts.append(leaf_table(report, limit=largest, title=f"largest {largest} leaves per device"))
    return Group(*parts)


def leaf_table(report: Report, limit: int | None = None, title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False)
    leaves = list(report.leaves)
    if limit is not None:
        leaves = sorted(leaves, key=lambda leaf: (-leaf.bytes_per_device, leaf.path))[:limit]
    # Paths are what a reader searches for: keep each on one line, let other columns wrap.
    table.add_column("path", no_wrap=True, min_width=min(90, max((len(leaf.path) for leaf in leaves), default=4)))
    for col in ("shape", "dtype", "logical axes", "spec", "per device", "bytes/device"):
        table.add_column(col, overflow="fold")
    for leaf in leaves:
        table.add_row(
            leaf.path,
            str(list(leaf.shape)),
            leaf.dtype,
            axes_text(leaf.logical_axes),
            spec_text(leaf.spec),
            str(list(leaf.shard_shape)),
            human_bytes(leaf.bytes_per_device),
        )
    return table


def markdown(report: Report, all_leaves: bool = False) -> str:
    t = report.totals()
    lines = [f"## {_title(report)}", "", _mesh_line(report), ""]
    lines.append(f"- parameters: {t['parameters']:,}")
    lines.append(f"- state per device: {human_bytes(t['state_bytes_per_device'])}")
    c = report.compile
    if c is not None:
        verdict = "fits" if c.fits else "**does not fit**"
        lines.append(f"- HBM per device: {human_bytes(c.needed_bytes)} of {human_bytes(c.capacity_bytes)}: {verdict}")
        if c.flops is not None:
            lines.append(f"- FLOPs: {c.flops:.4g}")
        if c.collectives:
            lines.append(f"- collectives: {collectives_text(c.collectives)}")
    lines += ["", "| path | shape | dtype | logical axes | spec | bytes/device |", "|---|---|---|---|---|---|"]
    leaves = report.leaves if all_leaves else sorted(report.leaves, key=lambda x: (-x.bytes_per_device, x.path))[:8]
    for leaf in leaves:
        lines.append(
            f"| `{leaf.path}` | {list(leaf.shape)} | {leaf.dtype} | {axes_text(leaf.logical_axes)} | "
            f"`{spec_text(leaf.spec)}` | {human_bytes(leaf.bytes_per_device)} |"
        )
    return "\n".join(lines) + "\n"
