"""What `aotcheck fit` varies, from its options: slices (with family ranges), meshes, remat policies."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import get_args

from aotcheck._config import PARALLELISM_KEYS, RematPolicy
from aotcheck._errors import UsageError, close_matches
from aotcheck._topology import all_topologies, get_topology


def expand_topologies(items: Sequence[str]) -> list[str]:
    """Slice names, with family ranges expanded: `v5p-{64..512}` is every v5p slice from 64 to 512.

    Example:
        >>> expand_topologies(["v5e-{4..16}"])
        ['v5e-4', 'v5e-8', 'v5e-16']
    """
    out: list[str] = []
    for item in items:
        match = re.fullmatch(r"([a-z0-9]+)-\{(\d+)\.\.(\d+)\}", item.strip())
        if match:
            family, low, high = match.group(1), int(match.group(2)), int(match.group(3))
            sizes = sorted((int(n.rsplit("-", 1)[1]), n) for n in all_topologies() if re.fullmatch(rf"{family}-\d+", n))
            names = [n for size, n in sizes if low <= size <= high]
            if not names:
                raise UsageError(f"--topology {item}: no {family} slice between {low} and {high} "
                                 "(`aotcheck topologies` lists them)")
        elif "{" in item:
            raise UsageError(f"--topology {item}: a range is written family-{{low..high}}, e.g. 'v5p-{{64..512}}'")
        else:
            names = [get_topology(item.strip()).name]
        out += [n for n in names if n not in out]
    return out


def parse_mesh(text: str) -> tuple[str, tuple[str, ...]]:
    """A `--mesh` (`fsdp=16,tensor=4`) as its label and the `ici_*_parallelism` overrides (other axes 1).

    Example:
        >>> parse_mesh("tensor=4, fsdp=16")[0]
        'fsdp=16,tensor=4'
    """
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        axis, sep, value = part.partition("=")
        axis = axis.strip()
        if axis not in PARALLELISM_KEYS:
            raise UsageError(f"--mesh {text}: unknown mesh axis '{axis}'{close_matches(axis, PARALLELISM_KEYS)} "
                             f"(axes: {', '.join(PARALLELISM_KEYS)})")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if not sep or (size < 1 and size != -1):
            raise UsageError(f"--mesh {text}: '{part}' needs a size, a positive integer or -1 (axis=size)")
        sizes[axis] = size
    if not sizes:
        raise UsageError("--mesh needs axis=size pairs, e.g. --mesh fsdp=16,tensor=4")
    label = ",".join(f"{a}={sizes[a]}" for a in PARALLELISM_KEYS if a in sizes)
    return label, tuple(f"ici_{key}_parallelism={sizes.get(axis, 1)}" for axis, key in PARALLELISM_KEYS.items())


def check_remat(names: Sequence[str]) -> None:
    known = get_args(RematPolicy)
    for name in names:
        if name not in known:
            raise UsageError(f"--remat: unknown policy '{name}'{close_matches(name, known)} (choose {', '.join(known)})")
