"""Logical axis names -> PartitionSpecs, divisibility, per-device shapes and bytes: pure functions.

Rules are an ordered list; for each rule in turn, a logical axis takes the rule's mesh
axes if it has none yet and none of those mesh axes is already taken by another
dimension. A later rule for the same name is thus a fallback. NNX's own resolution
treats the rules as a dict, so aotcheck resolves both paths here, through
`flax.linen.logical_to_mesh_axes`, to give them one meaning.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aotcheck._errors import UsageError

if TYPE_CHECKING:
    from aotcheck._config import Rules

LogicalAxes = tuple[str | None, ...]
# One entry per array dimension: None (replicated), a mesh axis, or several mesh axes.
SpecEntry = str | tuple[str, ...] | None
Spec = tuple[SpecEntry, ...]


def resolve(logical_axes: Sequence[str | None], rules: Rules) -> tuple[tuple[str, ...], ...]:
    """Mesh axes per dimension, exactly as Flax Linen resolves them; () means replicated.

    Example:
        >>> resolve(("embed", "mlp"), (("embed", ("fsdp",)), ("mlp", ("tensor",))))
        (('fsdp',), ('tensor',))
    """
    from flax import linen as nn

    spec = nn.logical_to_mesh_axes(tuple(logical_axes), [(name, axes) for name, axes in rules])
    return tuple(as_axes(entry) for entry in spec or ())


def as_axes(entry: Any) -> tuple[str, ...]:
    """One PartitionSpec entry (None, an axis name, or several) as a tuple of mesh axis names."""
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def normalise(entries: Sequence[Sequence[str]], mesh_shape: Mapping[str, int]) -> Spec:
    """Drop size-1 mesh axes and trailing replicated dimensions, so that specs compare by meaning.

    Example:
        >>> normalise([("fsdp",), ("data",), ()], {"fsdp": 4, "data": 1})
        ('fsdp',)
    """
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
    """Per-device shape, as jax's `NamedSharding.shard_shape` gives it; check `indivisible` first.

    Example:
        >>> shard_shape((64, 8), ("fsdp",), {"fsdp": 4})
        (16, 8)
    """
    if len(spec) > len(shape) or any(a not in mesh_shape for e in spec for a in as_axes(e)) or indivisible(
            shape, spec, mesh_shape):
        # jax's own error for a spec that does not fit the shape or the mesh
        from jax.sharding import AbstractMesh, NamedSharding

        mesh = AbstractMesh(tuple(mesh_shape.values()), tuple(mesh_shape))
        return tuple(NamedSharding(mesh, partition_spec(spec)).shard_shape(tuple(shape)))
    # The arithmetic jax does, without importing jax (a golden of 10,000 leaves reads in 0.1 s, not 2.5 s)
    divisors = [math.prod(mesh_shape[a] for a in as_axes(e)) for e in spec]
    return tuple(d // divisors[i] if i < len(divisors) else d for i, d in enumerate(shape))


def indivisible(shape: Sequence[int], spec: Spec, mesh_shape: Mapping[str, int]) -> tuple[int, int, SpecEntry] | None:
    """The first (dimension, size, mesh axes) whose size the mesh axes do not divide, if any."""
    for dim, entry in enumerate(spec):
        if entry is not None and shape[dim] % math.prod(mesh_shape[a] for a in as_axes(entry)):
            return dim, shape[dim], entry
    return None


def describe_entry(entry: SpecEntry, mesh_shape: Mapping[str, int]) -> str:
    return "x".join(f"{a}={mesh_shape[a]}" for a in as_axes(entry))


def leaf_spec(shape: Sequence[int], logical_axes: LogicalAxes | None, rules: Rules,
              mesh_shape: Mapping[str, int], name: str) -> Spec:
    """The normalised spec of an array; an indivisible dimension is a one-line error naming it and the axis."""
    if logical_axes is None:
        return ()
    spec = normalise(resolve(logical_axes, rules), mesh_shape)
    bad = indivisible(shape, spec, mesh_shape)
    if bad:
        dim, size, entry = bad
        logical = logical_axes[dim]
        raise UsageError(
            f"sharding: {name} dimension {dim} (size {size}, logical '{logical}') is not divisible by mesh axes "
            f"{describe_entry(entry, mesh_shape)}; change the rule for '{logical}' or the parallelism"
        )
    return spec


@functools.cache
def _key_itemsizes() -> dict[str, int]:
    # jax's typed PRNG keys (NNX rng state) are not numpy dtypes; jax itself knows their size.
    import jax

    out = {}
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        dtype = jax.eval_shape(lambda impl=impl: jax.random.key(0, impl=impl)).dtype
        out[str(dtype)] = dtype.itemsize
    return out


_COMMON_ITEMSIZES = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4, "int64": 8, "uint64": 8,
    "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "complex64": 8, "complex128": 16,
}
# jax's typed PRNG keys as jax prints them (threefry2x32, rbg, unsafe_rbg): every NNX state holds
# one, and reading its golden should not import jax for it. A test holds these to jax's answers.
_KEY_ITEMSIZES = {"key<fry>": 8, "key<rbg>": 16, "key<urbg>": 16}


def itemsize(dtype: str) -> int:
    """Bytes per element of a dtype named as jax prints it: `bfloat16`, `int32`, `key<fry>`.

    Example:
        >>> itemsize("bfloat16"), itemsize("key<fry>")
        (2, 8)
    """
    if dtype in _COMMON_ITEMSIZES:  # without importing jax: reading a golden needs no jax
        return _COMMON_ITEMSIZES[dtype]
    if dtype in _KEY_ITEMSIZES:
        return _KEY_ITEMSIZES[dtype]
    keys = _key_itemsizes() if dtype.startswith("key<") else {}  # a key type newer than the table
    if dtype in keys:
        return keys[dtype]
    import jax.numpy as jnp

    try:
        return int(jnp.dtype(dtype).itemsize)
    except TypeError:
        raise UsageError(f"unknown dtype '{dtype}'; give a jax dtype such as float32, bfloat16 or key<fry>") from None


def nbytes(shape: Sequence[int], dtype: str) -> int:
    """Bytes of an array of `shape` and `dtype`."""
    return math.prod(shape) * itemsize(dtype)


def effective_rules(rules: Rules, mesh_axes: Sequence[str]) -> Rules:
    """The run's rules, then each mesh axis that no rule names standing for itself.

    Models written with mesh axis names (`nn.with_partitioning(init, ("fsdp", "tensor"))`)
    then get those axes, while a rule of the same name still wins.

    Example:
        >>> effective_rules((("embed", ("fsdp",)),), ("data", "fsdp"))
        (('embed', ('fsdp',)), ('data', ('data',)), ('fsdp', ('fsdp',)))
    """
    named = {name for name, _ in rules}
    return tuple(rules) + tuple((axis, (axis,)) for axis in mesh_axes if axis not in named)


def unmatched(logical_axes: Sequence[Any] | None, rules: Rules) -> tuple[str, ...]:
    """The names of `logical_axes` that no rule (of the effective rules) knows: replicated, silently in Flax.

    Example:
        >>> unmatched(("embed", "heads", None), (("embed", ("fsdp",)),))
        ('heads',)
    """
    known = {name for name, _ in rules}
    return tuple(n for n in (logical_axes or ()) if isinstance(n, str) and n not in known)


def constrain(x: Any, logical_axes: Sequence[str | None]) -> Any:
    """An alias of `flax.linen.with_logical_constraint(x, logical_axes)`, kept for older model code.

    aotcheck traces every model inside Flax's `logical_axis_rules` and the run's mesh, so
    Flax's own call shards the activation; outside such a context it returns `x` unchanged.
    """
    from flax import linen as nn

    return nn.with_logical_constraint(x, tuple(logical_axes))
