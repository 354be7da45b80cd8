"""The train state builder and train step of each path: the team's own or aotcheck's defaults.

This is MaxText's pluggable `init_state_fn`: per path, a `ModelSpec` may give
`init_state(model, tx, cfg, batch) -> state` and `train_step(state, batch[, cfg]) ->
(state, metrics)`. aotcheck evaluates the builder abstractly, reads every leaf's sharding
from the state's own metadata, donates the state and compiles exactly that step. The
defaults below (Flax's `TrainState` and one AdamW step of the model's loss on Linen; a
`TrainState` module holding the model and an `nnx.Optimizer` on NNX) follow the same
protocol. Everything here runs inside `aotcheck._tracing.tracing`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aotcheck._config import Rules, RunConfig
from aotcheck._errors import USER_CODE_FAILURES, BuildError, UsageError, one_line
from aotcheck._model import ModelSpec

Path = Literal["linen", "nnx"]


def accepts(fn: Callable[..., Any], count: int) -> bool:
    """Whether `fn` takes `count` positional arguments (a 2-argument loss predates the config)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= count


def _named(fn: Callable[..., Any], **options: Any) -> dict[str, Any]:
    """The options whose names `fn`'s signature has (a factory that takes `mesh=` gets it)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in options.items() if k in params}


def loss_value(spec: ModelSpec, cfg: RunConfig, apply: Callable[..., Any], batch: Mapping[str, Any]) -> Any:
    """`spec.loss(apply, batch, cfg)`, or `(apply, batch)` for a loss that takes no config."""
    return spec.loss(apply, batch, cfg) if accepts(spec.loss, 3) else spec.loss(apply, batch)


def checked_loss(spec: ModelSpec, cfg: RunConfig, path: str, apply: Callable[..., Any], batch: Mapping[str, Any]) -> Any:
    """The loss at init, where a failure is reported with what most likely caused it."""
    try:
        return loss_value(spec, cfg, apply, batch)
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in batch.items())
        hint = rng_hint(spec, exc) or f"the loss failed on the batch ({shapes}); does batch() fit the model?"
        raise BuildError(f"model '{spec.name}' ({path}): {hint} {one_line(exc)}") from exc


def rng_hint(spec: ModelSpec, exc: BaseException) -> str:
    """Flax's errors for a stream nobody passed (Linen) or that `nnx.Rngs` lacks (NNX) mention it."""
    text = f"{type(exc).__name__} {exc}"
    if "Rng" in text or "PRNG" in text or "rngs" in text:
        return f"the model draws an RNG stream that ModelSpec(rngs=...) does not name (it names {list(spec.rngs)}); add it:"
    return ""


def make_model(cfg: RunConfig, spec: ModelSpec, path: Path, mesh: Any, rules: Rules) -> Any:
    """The factory's module; a factory that names `mesh` or `rules` parameters gets the run's."""
    factory: Any = spec.linen if path == "linen" else spec.nnx
    if factory is None:
        raise UsageError(f"model '{spec.name}' has no {path} path: its ModelSpec gives {spec.paths()[0]} (set ModelSpec.{path})")
    options = _named(factory, mesh=mesh, rules=rules)
    try:
        if path == "linen":
            return factory(cfg, **options)
        from flax import nnx

        streams = {name: i + 1 for i, name in enumerate(spec.rngs)}
        return factory(cfg, nnx.Rngs(params=0, **streams), **options)
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        if hint := rng_hint(spec, exc):
            raise BuildError(f"model '{spec.name}' ({path}): {hint} {one_line(exc)}") from exc
        raise BuildError(f"model '{spec.name}': the {path} factory raised {one_line(exc)}") from exc


def _zeros(batch: Mapping[str, Any]) -> dict[str, Any]:
    import jax.numpy as jnp

    return {name: jnp.zeros(f.shape, f.dtype) for name, f in batch.items()}


@functools.cache
def _rng_train_state() -> Any:
    import jax
    from flax import struct
    from flax.training import train_state

    class RngTrainState(train_state.TrainState):
        """Flax's TrainState with the key the step's RNG streams are folded from."""

        rng: jax.Array = struct.field(default=None)

    return RngTrainState


def _linen_init(spec: ModelSpec) -> Callable[..., Any]:
    def init_state(model: Any, tx: Any, cfg: RunConfig, batch: Mapping[str, Any]) -> Any:
        import jax
        from flax.training import train_state

        captured: dict[str, Any] = {}
        keys = {"params": jax.random.key(0), **{s: jax.random.key(i + 1) for i, s in enumerate(spec.rngs)}}

        # The model's call signature is known only to the loss, so initialise through it.
        def apply(*args: Any, **kwargs: Any) -> Any:
            out, variables = model.init_with_output(keys, *args, **kwargs)
            captured.update(variables)
            return out

        checked_loss(spec, cfg, "linen", apply, batch)
        if spec.rngs:
            return _rng_train_state().create(apply_fn=model.apply, params=captured["params"], tx=tx, rng=jax.random.key(0))
        return train_state.TrainState.create(apply_fn=model.apply, params=captured["params"], tx=tx)

    return init_state


def step_rngs(state: Any, streams: tuple[str, ...]) -> dict[str, Any]:
    """One key per stream for this step, folded from the state's key and step count."""
    import jax

    key = jax.random.fold_in(state.rng, state.step)
    return {name: jax.random.fold_in(key, i) for i, name in enumerate(streams)}


def _linen_step(spec: ModelSpec) -> Callable[..., Any]:
    def train_step(ts: Any, batch: Mapping[str, Any], cfg: RunConfig) -> tuple[Any, Any]:
        import jax

        extra = {"rngs": step_rngs(ts, spec.rngs)} if spec.rngs else {}

        def loss_of(params: Any) -> Any:
            return loss_value(spec, cfg, lambda *a, **k: ts.apply_fn({"params": params}, *a, **extra, **k), batch)

        loss, grads = jax.value_and_grad(loss_of)(ts.params)
        return ts.apply_gradients(grads=grads), loss

    return train_step


def _nnx_init(spec: ModelSpec) -> Callable[..., Any]:
    def init_state(model: Any, tx: Any, cfg: RunConfig, batch: Mapping[str, Any]) -> Any:
        from flax import nnx

        class TrainState(nnx.Module):
            """The model and its optimizer (`nnx.Optimizer` keeps no reference to the model)."""

            def __init__(self, model: nnx.Module, opt: nnx.Optimizer):
                self.model = model
                self.optimizer = opt

        # As Linen's init does: a batch that does not fit the model fails here, by name,
        # rather than deep inside lowering. Abstract, so it costs one trace.
        checked_loss(spec, cfg, "nnx", model, batch)
        return TrainState(model, nnx.Optimizer(model, tx, wrt=nnx.Param))

    return init_state


def _nnx_step(spec: ModelSpec) -> Callable[..., Any]:
    def train_step(ts: Any, batch: Mapping[str, Any], cfg: RunConfig) -> tuple[Any, Any]:
        from flax import nnx

        loss, grads = nnx.value_and_grad(lambda model: loss_value(spec, cfg, model, batch))(ts.model)
        ts.optimizer.update(ts.model, grads)
        return ts, loss

    return train_step


def state_builder(cfg: RunConfig, spec: ModelSpec, path: Path, tx: Any, batch: Mapping[str, Any],
                  mesh: Any, rules: Rules) -> Callable[[], Any]:
    """The zero-argument state builder of one path (the model's own or the default), to be evaluated abstractly."""
    init = spec.init_state.get(path) or (_linen_init(spec) if path == "linen" else _nnx_init(spec))

    def build() -> Any:
        model = make_model(cfg, spec, path, mesh, rules)
        try:
            return init(model, tx, cfg, _zeros(batch))
        except (UsageError, BuildError):
            raise
        except USER_CODE_FAILURES as exc:
            if path in spec.init_state:
                raise BuildError(f"model '{spec.name}' ({path}): its init_state raised {one_line(exc)}") from exc
            raise

    if path == "linen":
        return build
    from flax import nnx

    def build_nnx() -> Any:
        # aotcheck resolves `out_sharding` names itself (Linen rule semantics, first match);
        # NNX's eager sharding would constrain each new parameter by its own dict semantics.
        with nnx.use_eager_sharding(False):
            return build()

    return build_nnx


def step_function(cfg: RunConfig, spec: ModelSpec, path: Path, graphdef: Any) -> Callable[[Any, Any], tuple[Any, Any]]:
    """`step(state_tree, batch) -> (state_tree, metrics)`: the model's own train step or the default."""
    user = spec.train_step.get(path)
    step = user or (_linen_step(spec) if path == "linen" else _nnx_step(spec))
    with_cfg = user is None or accepts(user, 3)

    def call(state: Any, batch: Any) -> tuple[Any, Any]:
        out = step(state, batch, cfg) if with_cfg else step(state, batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise BuildError(f"model '{spec.name}' ({path}): train_step must return (state, metrics), got {type(out).__name__}")
        return out

    if path == "linen":
        return call
    from flax import nnx

    def nnx_step(tree: Any, batch: Any) -> tuple[Any, Any]:
        new, metrics = call(nnx.merge(graphdef, tree), batch)
        return nnx.state(new), metrics

    return nnx_step
