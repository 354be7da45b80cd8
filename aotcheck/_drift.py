"""Sharding drift: state leaves the step would hand back sharded differently from how it took them.

The report's step pins its outputs to the state's shardings, so a step that reshards its
own state (an optimizer transformation, a `with_sharding_constraint` on the updated
parameters) compiles silently into extra collectives, and on a real run without pinned
outputs the state comes back resharded after the first step. The check compiles the
same step a second time with the outputs left to XLA and compares each state leaf's
output sharding with its input sharding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aotcheck._record import Entry, Record
from aotcheck._text import spec_text


class Drift(Record):
    """One state leaf whose output sharding differs from its input sharding."""

    leaf: str
    input: tuple[Entry, ...]
    output: str  # PartitionSpec as printed, or XLA's sharding text when it is not a named one


def _spec_of(sharding: Any) -> str:
    spec = getattr(sharding, "spec", None)
    if spec is None:
        return str(getattr(sharding, "_hlo_sharding", sharding))
    entries = list(spec)
    while entries and entries[-1] is None:
        entries.pop()
    return spec_text([tuple(e) if isinstance(e, (list, tuple)) else e for e in entries])


def drifted(executable: Any, paths: Sequence[str], specs: Sequence[tuple[Entry, ...]], mesh: Any) -> tuple[Drift, ...]:
    """The state leaves of a step compiled with free outputs whose output sharding changed.

    Arguments:
        executable: the step compiled with `_program.lower(..., fixed_outputs=False)`.
        paths: the state leaves' paths, in tree-flatten order.
        specs: their input PartitionSpecs, in the same order.
        mesh: the jax mesh of the compile.
    Returns:
        The drifted leaves, in path order; empty when the step keeps every sharding.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    state_out = jax.tree_util.tree_leaves(executable.output_shardings[0])
    shapes = jax.tree_util.tree_leaves(executable.out_info[0])
    out = []
    for path, spec, sharding, info in zip(paths, specs, state_out, shapes, strict=True):
        wanted = NamedSharding(mesh, PartitionSpec(*spec))
        if not sharding.is_equivalent_to(wanted, len(info.shape)):
            out.append(Drift(leaf=path, input=tuple(spec), output=_spec_of(sharding)))
    return tuple(sorted(out, key=lambda d: d.leaf))
