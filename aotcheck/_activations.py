"""Every sharding constraint of the lowered step: name stack, shape and resolved PartitionSpec.

Read from the lowered StableHLO with debug info (`lowered.as_text(debug_info=True)`):
Shardy prints a constraint as `sdy.sharding_constraint %x <@mesh, [{"fsdp"}, {}, {}]> :
tensor<8x128x256xbf16> loc(#loc12)` and the location `#loc12 = loc("jit(step)/.../
sharding_constraint"(#loc3))` carries the JAX name stack. The older GSPMD form, a
`@Sharding` custom call with an `mhlo.sharding` attribute, is not produced by this stack
and is not read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from aotcheck._record import Entry, Record
from aotcheck._sharding import normalise

_CONSTRAINT_RE = re.compile(
    r"sdy\.sharding_constraint\s+%\S+\s+<@\w+,\s*\[(?P<dims>.*?)\]\s*(?:,\s*replicated=\{[^}]*\})?>"
    r"\s*:\s*tensor<(?P<type>[^>]*)>(?:\s+loc\((?P<loc>#loc\d+)\))?"
)
_LOC_RE = re.compile(r'^(#loc\d+) = loc\((?:callsite\()?"(?P<name>[^"]*)"')
_DIM_RE = re.compile(r"\{([^}]*)\}")


class Activation(Record):
    """One sharding constraint of the step (an activation's sharding)."""

    name: str  # the JAX name stack, without the jit(...) wrapper and the final op
    shape: tuple[int, ...]
    dtype: str
    partition_spec: tuple[Entry, ...]  # trailing replicated dimensions dropped


def _spec(dims: str, mesh_shape: Mapping[str, int] | None) -> tuple[Entry, ...]:
    entries = [tuple(re.findall(r'"([^"]+)"', inner)) for inner in _DIM_RE.findall(dims)]
    # Normalised as the leaves' specs are: size-1 mesh axes (which Flax's rules name) and trailing None dropped.
    shape = mesh_shape or {a: 2 for axes in entries for a in axes}
    return normalise(entries, {a: shape.get(a, 2) for axes in entries for a in axes})


def _name(stack: str) -> str:
    parts = stack.split("/")
    if parts and parts[0].startswith("jit("):
        parts = parts[1:]
    if len(parts) > 1 and parts[-1] == "sharding_constraint":
        parts = parts[:-1]
    return "/".join(parts)


def activations(lowered_text: str, mesh_shape: Mapping[str, int] | None = None) -> tuple[Activation, ...]:
    """The sharding constraints of a lowered program, in program order.

    Arguments:
        lowered_text: `lowered.as_text(debug_info=True)` (without debug info, names are empty).
        mesh_shape: the mesh's axis sizes, so that size-1 axes drop out of the specs.
    Returns:
        One Activation per constraint.

    Example:
        >>> text = ('%2 = sdy.sharding_constraint %1 <@mesh, [{"fsdp"}, {}, {}]> : tensor<8x128x256xbf16> loc(#loc9)\\n'
        ...         '#loc9 = loc("jit(step)/decoder/sharding_constraint"(#loc3))')
        >>> activations(text)[0].partition_spec, activations(text)[0].name
        (('fsdp',), 'decoder')
    """
    locs = {m.group(1): m.group("name") for line in lowered_text.splitlines() if (m := _LOC_RE.match(line))}
    out = []
    for m in _CONSTRAINT_RE.finditer(lowered_text):
        *dims, dtype = m.group("type").split("x")
        out.append(Activation(
            name=_name(locs.get(m.group("loc") or "", "")),
            shape=tuple(int(d) for d in dims),
            dtype=dtype,
            partition_spec=_spec(m.group("dims"), mesh_shape),
        ))
    return tuple(out)
