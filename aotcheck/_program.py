"""The training step for each path, jitted with the state's shardings, lowered and compiled.

One real step: forward, the model's loss, gradients, optimizer update. The state is
donated, as in training, so its buffers alias the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aotcheck._config import RunConfig
from aotcheck._errors import BuildError, UsageError, one_line
from aotcheck._model import BatchField, ModelSpec
from aotcheck._sharding import Spec, activation_rules, partition_spec
from aotcheck._state import AbstractState


def train_step(spec: ModelSpec, state: AbstractState) -> Callable[[Any, Any], tuple[Any, Any]]:
    """`step(state, batch) -> (state, loss)` for the state's path."""
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
    fixed_outputs: bool = True,
) -> Lowered:
    """Jit the step with the state's and batch's shardings (state donated) and lower it for `mesh`.

    With `fixed_outputs=False` the outputs' shardings are left to XLA (the drift check).
    """
    import jax
    from jax.sharding import NamedSharding

    def named(s: Spec) -> NamedSharding:
        return NamedSharding(mesh, partition_spec(s))

    treedef = jax.tree_util.tree_structure(state.tree)
    state_sh = jax.tree_util.tree_unflatten(treedef, [named(s) for s in specs])
    batch_sh = {k: named(batch_specs[k]) for k in batch}
    batch_tree = {k: jax.ShapeDtypeStruct(f.shape, f.dtype) for k, f in batch.items()}
    fn = train_step(spec, state)
    if fixed_outputs:
        step = jax.jit(fn, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, named(())), donate_argnums=0)
    else:
        step = jax.jit(fn, in_shardings=(state_sh, batch_sh), donate_argnums=0)
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
    """A compiled step, or the compiler's out-of-HBM message."""

    executable: Any  # None when the compiler ran out of memory
    compile_seconds: float
    out_of_memory: str | None = None  # the compiler's message


def compile_lowered(lowered: Lowered, label: str) -> Compiled:
    """Compile; running out of HBM is a result (its message kept), any other failure a BuildError."""
    start = time.perf_counter()
    try:
        executable = lowered.lowered.compile()
    except Exception as exc:
        message = str(exc)
        if "RESOURCE_EXHAUSTED" in message:
            return Compiled(None, time.perf_counter() - start, message)
        raise BuildError(f"{label}: compile failed: {one_line(exc)}") from exc
    return Compiled(executable, time.perf_counter() - start)
