"""Every logical name accounted for: the terminal warnings for names Flax would drop silently.

A name that a rule or a mesh axis knows is sharded; one that neither knows is replicated
by Flax without a word, so aotcheck says so (and lists it in the report's
`unmatched_logical_axes`, which the gate compares). A spec shorter than its array's rank
is padded with None, as Flax does, and noted.
"""

from __future__ import annotations

from collections.abc import Sequence

from aotcheck._report import Report
from aotcheck._text import human_bytes


def _some(paths: Sequence[str], shown: int = 3) -> str:
    more = f" (+{len(paths) - shown} more)" if len(paths) > shown else ""
    return ", ".join(paths[:shown]) + more


def warnings(report: Report) -> list[str]:
    """One line per unknown logical name, and one for padded specs."""
    out = [
        f"logical axis '{u.name}' matches no rule and is not a mesh axis, so it is replicated: "
        f"{len(u.leaves)} leaves, {human_bytes(u.bytes_per_device)} per device ({_some(u.leaves)}); "
        f"add a rule for it to logical_axis_rules"
        for u in report.unmatched_logical_axes
    ]
    if report.padded_leaves:
        out.append(
            f"{len(report.padded_leaves)} leaves have fewer logical axes than dimensions; padded with None as Flax "
            f"does (those dimensions are replicated): {_some(report.padded_leaves)}"
        )
    return out
