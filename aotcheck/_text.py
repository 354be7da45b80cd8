"""How sizes, PartitionSpecs and logical axes are written for people, wherever they appear."""

from __future__ import annotations

from typing import Any


def human_bytes(n: float) -> str:
    """`1.50 MiB`, `512 B`.

    Example:
        >>> human_bytes(1536 * 1024)
        '1.50 MiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError


def spec_text(spec: Any) -> str:
    """`P('fsdp', None, ('data', 'tensor'))`; `-` for no spec at all.

    Example:
        >>> spec_text(["fsdp", None, ["data", "tensor"]])
        "P('fsdp', None, ('data', 'tensor'))"
    """
    if spec is None:
        return "-"

    def entry(e: Any) -> str:
        if e is None:
            return "None"
        return repr(e) if isinstance(e, str) else "(" + ", ".join(repr(a) for a in e) + ")"

    return "P(" + ", ".join(entry(e) for e in spec) + ")"


def axes_text(axes: Any) -> str:
    """`(embed, mlp)`; `-` for an unannotated leaf."""
    if axes is None:
        return "-"
    return "(" + ", ".join("None" if a is None else a if isinstance(a, str) else "+".join(a) for a in axes) + ")"


def collectives_text(counts: dict[str, int]) -> str:
    # Sorted: a fresh compile and one read back from JSON (sorted keys) print alike.
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def percent(change: float) -> str:
    return "new" if change == float("inf") else f"{change:+.1%}"


def join(*parts: str) -> str:
    """Non-empty parts joined by `; `."""
    return "; ".join(p for p in parts if p)
