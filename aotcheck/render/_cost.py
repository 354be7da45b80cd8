"""The true cost of a step, for people: the HBM picture, per-step counts, traffic, the estimate, drift.

Shared by the terminal summary and Markdown: each function gives plain lines, which the
summary styles and Markdown lists.
"""

from __future__ import annotations

from aotcheck._analysis import Compile
from aotcheck._text import human_bytes, spec_text

_BAR = 40
_KINDS = (("argument", "A"), ("temp", "T"), ("output", "O"), ("code", "C"))


def _seconds(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale or unit == "us":
            return f"{s / scale:.3g} {unit}"
    raise AssertionError


def hbm_parts(c: Compile) -> dict[str, int]:
    """Bytes per device by kind: arguments, temporaries, outputs not aliased to arguments, code."""
    m = c.memory_per_device
    if m is None:
        return {}
    return {"argument": m.argument, "temp": m.temp, "output": m.output - m.alias, "code": m.generated_code}


def hbm_bar(c: Compile) -> str:
    """`[AAATTTTOC.....]` argument / temp / output / code against usable HBM, one character per 1/40."""
    parts = hbm_parts(c)
    cells = ""
    for kind, letter in _KINDS:
        cells += letter * round(_BAR * parts.get(kind, 0) / c.capacity_bytes_per_device)
    return "[" + cells[:_BAR].ljust(_BAR, ".") + "]"


def hbm_line(c: Compile) -> str:
    parts = hbm_parts(c)
    spec = f" (spec {human_bytes(c.hbm_spec_bytes_per_device)})" if c.hbm_spec_bytes_per_device else ""
    kinds = ", ".join(f"{k} {human_bytes(v)}" for k, v in parts.items())
    return f"{hbm_bar(c)} {kinds} of usable {human_bytes(c.capacity_bytes_per_device)}{spec}"


def cost_lines(c: Compile) -> list[str]:
    """Per-step counts, collectives per kind and axis, the estimate and drift, one line each."""
    lines = []
    if c.per_step is not None:
        p = c.per_step
        xla = c.xla_cost.flops if c.xla_cost is not None else None
        beside = f" (XLA's cost analysis {xla:.4g}: a loop body once)" if xla is not None else ""
        lines.append(f"per step per device: FLOPs {p.flops:.4g}{beside}, bytes accessed {p.bytes_accessed:.4g}, "
                     f"transcendentals {p.transcendentals:.4g}")
        if p.uncosted_ops:
            lines.append("not costed (custom calls): " + ", ".join(f"{k} x{v}" for k, v in p.uncosted_ops.items()))
        if p.unknown_trip_counts:
            lines.append(f"loops counted once (trip count unknown): {', '.join(p.unknown_trip_counts)}")
    elif c.xla_cost is not None and c.xla_cost.flops is not None:
        lines.append(f"FLOPs {c.xla_cost.flops:.4g} (XLA's cost analysis: a loop body once)")
    if c.collectives:
        lines.append("collectives per step per device (wire bytes, by mesh axis):")
        for kind, t in c.collectives.items():
            axes = ", ".join(f"{a} {human_bytes(b)}" for a, b in sorted(t.by_axis.items()))
            dcn = f", DCN {human_bytes(t.dcn_bytes)}" if t.dcn_bytes else ""
            lines.append(f"  {kind} x{t.count:g}: {human_bytes(t.bytes)} ({axes}{dcn})")
    if (e := c.estimate) is not None:
        rate = f"; {e.tokens_per_second_per_chip:,.0f} tokens/s/chip" if e.tokens_per_second_per_chip else ""
        mfu = f", MFU {e.mfu:.1%}" if e.mfu is not None else ""
        lines.append(f"estimate ({e.chip} roofline, docs/cost.md): step {_seconds(e.step_seconds)}, "
                     f"{e.bound}-bound{rate}{mfu}")
        comm = "".join(f", {'' if a == 'dcn' else 'ICI '}{a} {_seconds(s)}" for a, s in e.communication_seconds.items())
        lines.append(f"  compute {_seconds(e.compute_seconds)}, memory {_seconds(e.memory_seconds)}{comm}")
    if c.drift is not None:
        if c.drift:
            lines.append(f"drift: {len(c.drift)} state leaves resharded by the step: " + ", ".join(
                f"{d.leaf} {spec_text(d.input)} -> {d.output}" for d in c.drift[:5]))
        else:
            lines.append("drift: none (every state leaf leaves the step sharded as it came in)")
    return lines


def peak_rows(c: Compile) -> list[tuple[str, str, str, str]]:
    """(source, buffers, bytes, share of the peak) of the largest groups live at the peak (--memory-detail)."""
    d = c.memory_detail
    if d is None:
        return []
    return [(g.source, str(g.buffers), human_bytes(g.bytes), f"{g.share:.1%}") for g in d.groups]


def activation_rows(c: Compile) -> list[tuple[str, str, str, str]]:
    """(name stack, shape, dtype, PartitionSpec) of every sharding constraint (--activations)."""
    return [(a.name, str(list(a.shape)), a.dtype, spec_text(a.partition_spec)) for a in c.activations or ()]
