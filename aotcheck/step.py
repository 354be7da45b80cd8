"""The training step for each path, jitted with the state's shardings, lowered and compiled.

One real step: forward, next-token (or the model's) loss, gradients, optimizer update. The
state is donated, as in training, so its buffers alias the outputs.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aotcheck.config import RunConfig
from aotcheck.errors import BuildError, UsageError, one_line
from aotcheck.model import BatchField, ModelSpec
from aotcheck.rules import Spec, describe_entry, indivisible, normalise, partition_spec, resolve
from aotcheck.state import AbstractState, Leaf

COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
# An HLO instruction of one of those kinds, sync or async-start (`-done` halves are not counted).
_COLLECTIVE_RE = re.compile(r"=\s*[^=]*?\b(" + "|".join(COLLECTIVES) + r")(?:-start)?\(")
# The TPU compiler words an HBM overflow in (at least) these two ways; both give needed, available.
_OOM_RES = (
    re.compile(r"Used ([\d.]+[KMGT]?) of ([\d.]+[KMGT]?) hbm", re.IGNORECASE),
    re.compile(r"required for HLO temporaries \(([\d.]+[KMGT]?)\) exceeds available HBM \(([\d.]+[KMGT]?)\)"),
)


def leaf_spec(leaf: Leaf | BatchField, cfg: RunConfig, mesh_shape: Mapping[str, int], name: str) -> Spec:
    """The leaf's normalised spec; an indivisible dimension is a one-line error naming leaf and axis."""
    if leaf.logical_axes is None:
        return ()
    spec = normalise(resolve(leaf.logical_axes, cfg.rules), mesh_shape)
    bad = indivisible(leaf.shape, spec, mesh_shape)
    if bad:
        dim, size, entry = bad
        logical = leaf.logical_axes[dim]
        raise UsageError(
            f"sharding: {name} dimension {dim} (size {size}, logical '{logical}') is not divisible by mesh axes "
            f"{describe_entry(entry, mesh_shape)}; change the rule for '{logical}' or the parallelism"
        )
    return spec


def train_step(spec: ModelSpec, state: AbstractState) -> Callable[[Any, Any], tuple[Any, Any]]:
    if state.path == "linen":
        import jax

        def linen_step(ts: Any, batch: Mapping[str, Any]) -> tuple[Any, Any]:
            def loss_of(params: Any) -> Any:
                return spec.loss(lambda *a, **k: ts.apply_fn({"params": params}, *a, **k), batch)

            loss, grads = jax.value_and_grad(loss_of)(ts.params)
            return ts.apply_gradients(grads=grads), loss

        return linen_step

    from flax import nnx

    graphdef = state.graphdef

    def nnx_step(tree: Any, batch: Mapping[str, Any]) -> tuple[Any, Any]:
        ts = nnx.merge(graphdef, tree)
        loss, grads = nnx.value_and_grad(lambda model: spec.loss(model, batch))(ts.model)
        ts.optimizer.update(ts.model, grads)
        return nnx.state(ts), loss

    return nnx_step


@dataclass(frozen=True)
class Lowered:
    lowered: Any
    lower_seconds: float


def lower(
    cfg: RunConfig,
    spec: ModelSpec,
    state: AbstractState,
    specs: tuple[Spec, ...],
    batch: Mapping[str, BatchField],
    batch_specs: Mapping[str, Spec],
    mesh: Any,
) -> Lowered:
    import jax
    from jax.sharding import NamedSharding

    from aotcheck.rules import activation_rules

    def named(s: Spec) -> NamedSharding:
        return NamedSharding(mesh, partition_spec(s))

    treedef = jax.tree_util.tree_structure(state.tree)
    state_sh = jax.tree_util.tree_unflatten(treedef, [named(s) for s in specs])
    batch_sh = {k: named(batch_specs[k]) for k in batch}
    batch_tree = {k: jax.ShapeDtypeStruct(f.shape, f.dtype) for k, f in batch.items()}
    step = jax.jit(
        train_step(spec, state),
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, named(())),
        donate_argnums=0,
    )
    start = time.perf_counter()
    try:
        with jax.set_mesh(mesh), activation_rules(cfg.rules, mesh):
            lowered = step.lower(state.tree, batch_tree)
    except (UsageError, BuildError):
        raise
    except Exception as exc:
        raise BuildError(f"model '{spec.name}' ({state.path}): lowering train_step failed: {one_line(exc)}") from exc
    return Lowered(lowered, time.perf_counter() - start)


@dataclass(frozen=True)
class Compiled:
    executable: Any  # None when the compiler ran out of memory
    compile_seconds: float
    oom: tuple[int, int] | None = None  # (bytes needed, bytes available) from the compiler's message


def _bytes(text: str) -> int:
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    unit = text[-1].upper()
    return int(float(text[:-1]) * scale[unit]) if unit in scale else int(float(text))


def compile_lowered(lowered: Lowered, label: str) -> Compiled:
    start = time.perf_counter()
    try:
        executable = lowered.lowered.compile()
    except Exception as exc:
        message = str(exc)
        found = next((m for r in _OOM_RES if (m := r.search(message))), None)
        if "RESOURCE_EXHAUSTED" in message and found:
            return Compiled(None, time.perf_counter() - start, (_bytes(found.group(1)), _bytes(found.group(2))))
        raise BuildError(f"{label}: compile failed: {one_line(exc)}") from exc
    return Compiled(executable, time.perf_counter() - start)


def collectives(hlo_text: str) -> dict[str, int]:
    counts = dict.fromkeys(COLLECTIVES, 0)
    for match in _COLLECTIVE_RE.finditer(hlo_text):
        counts[match.group(1)] += 1
    return counts
