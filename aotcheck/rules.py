"""Logical axis names -> mesh axes, with Flax Linen's first-match semantics, for both paths.

Rules are an ordered list; for each rule in turn, a logical axis takes the rule's mesh
axes if it has none yet and none of those mesh axes is already taken by another
dimension. A later rule for the same name is thus a fallback. NNX's own resolution
treats the rules as a dict, so aotcheck resolves both paths here, through
`flax.linen.logical_to_mesh_axes`, to give them one meaning.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Rules = tuple[tuple[str, tuple[str, ...]], ...]
LogicalAxes = tuple[str | None, ...]
# One entry per array dimension: None (replicated), a mesh axis, or several mesh axes.
SpecEntry = str | tuple[str, ...] | None
Spec = tuple[SpecEntry, ...]


def resolve(logical_axes: Sequence[str | None], rules: Rules) -> tuple[tuple[str, ...], ...]:
    """Mesh axes per dimension, exactly as Flax Linen resolves them; () means replicated."""
    from flax import linen as nn

    spec = nn.logical_to_mesh_axes(tuple(logical_axes), [(name, axes) for name, axes in rules])
    return tuple(as_axes(entry) for entry in spec)


def as_axes(entry: Any) -> tuple[str, ...]:
    """One PartitionSpec entry (None, an axis name, or several) as a tuple of mesh axis names."""
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def normalise(entries: Sequence[Sequence[str]], mesh_shape: Mapping[str, int]) -> Spec:
    """Drop size-1 mesh axes and trailing replicated dimensions, so that specs compare by meaning."""
    out: list[SpecEntry] = []
    for axes in entries:
        kept = tuple(a for a in axes if mesh_shape[a] > 1)
        out.append(None if not kept else kept[0] if len(kept) == 1 else kept)
    while out and out[-1] is None:
        out.pop()
    return tuple(out)


def spec_from_json(value: Sequence[Any], mesh_shape: Mapping[str, int] | None = None) -> Spec:
    """A spec written as JSON (ours or MaxText's) back into normalised form."""
    entries = [as_axes(entry) for entry in value]
    if mesh_shape is None:
        mesh_shape = {a: 2 for axes in entries for a in axes}
    return normalise(entries, {a: mesh_shape.get(a, 2) for axes in entries for a in axes})


def spec_to_json(spec: Spec) -> list[Any]:
    return [list(e) if isinstance(e, tuple) else e for e in spec]


def partition_spec(spec: Spec) -> Any:
    from jax.sharding import PartitionSpec

    return PartitionSpec(*spec)


def shard_shape(shape: Sequence[int], spec: Spec, mesh_shape: Mapping[str, int]) -> tuple[int, ...]:
    """Per-device shape; callers check divisibility first (`indivisible`)."""
    out = list(shape)
    for dim, entry in enumerate(spec):
        out[dim] //= _ways(entry, mesh_shape)
    return tuple(out)


def indivisible(shape: Sequence[int], spec: Spec, mesh_shape: Mapping[str, int]) -> tuple[int, int, SpecEntry] | None:
    """The first (dimension, size, mesh axes) whose size the mesh axes do not divide, if any."""
    for dim, entry in enumerate(spec):
        if entry is not None and shape[dim] % _ways(entry, mesh_shape):
            return dim, shape[dim], entry
    return None


def _ways(entry: SpecEntry, mesh_shape: Mapping[str, int]) -> int:
    return math.prod(mesh_shape[a] for a in as_axes(entry))


def describe_entry(entry: SpecEntry, mesh_shape: Mapping[str, int]) -> str:
    return "x".join(f"{a}={mesh_shape[a]}" for a in as_axes(entry))


# Activation sharding constraints. Models call `constrain` while aotcheck traces their
# step; the rules and mesh of that trace are carried here so that model code stays free
# of aotcheck plumbing and runs unchanged (unconstrained) outside aotcheck.
_ACTIVE: contextvars.ContextVar[tuple[Rules, Any] | None] = contextvars.ContextVar("aotcheck_rules", default=None)


@contextlib.contextmanager
def activation_rules(rules: Rules, mesh: Any) -> Iterator[None]:
    token = _ACTIVE.set((rules, mesh))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x: Any, logical_axes: Sequence[str | None]) -> Any:
    """Shard an activation by logical axis names under the active rules (a no-op outside aotcheck)."""
    active = _ACTIVE.get()
    if active is None:
        return x
    import jax
    from jax.sharding import NamedSharding

    rules, mesh = active
    spec = normalise(resolve(logical_axes, rules), dict(mesh.shape))
    if indivisible(x.shape, spec, dict(mesh.shape)):
        # Small activations (a batch smaller than the data axes) stay unconstrained rather
        # than failing: XLA then picks their layout, as it would without the annotation.
        return x
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, partition_spec(spec)))
