"""The training step for each path, jitted with the state's shardings, lowered and compiled.

The step is the model's own `train_step` or the default (forward, the loss, gradients,
optimizer update; see `aotcheck._steps`). The state is donated, as in training, so its
buffers alias the outputs; it is traced inside the run's mesh and Flax's logical axis
rules, so the model's activation constraints apply as on the pod.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aotcheck._config import Rules, RunConfig
from aotcheck._errors import USER_CODE_FAILURES, BuildError, UsageError, one_line
from aotcheck._model import BatchField, ModelSpec
from aotcheck._sharding import Spec, partition_spec
from aotcheck._state import AbstractState
from aotcheck._steps import rng_hint, step_function
from aotcheck._tracing import tracing


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
    rules: Rules,
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
    fn = step_function(cfg, spec, state.path, state.graphdef)
    if fixed_outputs:
        step = jax.jit(fn, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, named(())), donate_argnums=0)
    else:  # the drift check: XLA chooses the state's output shardings
        step = jax.jit(fn, in_shardings=(state_sh, batch_sh), donate_argnums=0)
    start = time.perf_counter()
    try:
        with tracing(rules, mesh):
            lowered = step.lower(state.tree, batch_tree)
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        hint = rng_hint(spec, exc) or "lowering train_step failed:"
        raise BuildError(f"model '{spec.name}' ({state.path}): {hint} {one_line(exc)}") from exc
    return Lowered(lowered, time.perf_counter() - start)


# `--fast`: a low-effort compile, ~0.54x the time on llama2-7b, whose temp bytes, code size,
# bytes accessed and collective counts differ from the default compile's (docs/performance.md).
# Effort level O1 (jax's `EffortLevel.O1` = 19), not `exec_time_optimization_effort=-1`:
# jax 0.12 no longer passes that option to the compiler and libtpu 0.0.50 refuses it,
# while every supported jax takes `optimization_level`.
FAST_OPTIONS: Mapping[str, float] = {"optimization_level": 19}


def compiler_options(fast: bool) -> dict[str, float]:
    """What `compile(compiler_options=...)` gets: nothing by default, `FAST_OPTIONS` with `--fast`."""
    return dict(FAST_OPTIONS) if fast else {}


@dataclass(frozen=True)
class Compiled:
    """A compiled step, or the compiler's out-of-HBM message."""

    executable: Any  # None when the compiler ran out of memory
    compile_seconds: float
    out_of_memory: str | None = None  # the compiler's message


def compile_lowered(lowered: Lowered, label: str, options: Mapping[str, Any] | None = None) -> Compiled:
    """Compile (with `options` as jax's `compiler_options`); running out of HBM is a result (its message kept), any other failure a BuildError."""
    start = time.perf_counter()
    try:
        executable = lowered.lowered.compile(compiler_options=dict(options) if options else None)
    except Exception as exc:
        message = str(exc)
        if "RESOURCE_EXHAUSTED" in message:
            return Compiled(None, time.perf_counter() - start, message)
        if options and "No such compile option" in message:  # newer libtpu releases drop options
            raise UsageError(f"--fast: this jax/libtpu does not accept the compiler options {dict(options)}; "
                             "run without --fast") from None
        raise BuildError(f"{label}: compile failed: {one_line(exc)}") from exc
    return Compiled(executable, time.perf_counter() - start)
