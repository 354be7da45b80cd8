"""The team's own train state and train step, one per path: EMA parameters, a step RNG,
gradient accumulation over microbatches, and an auxiliary accuracy output."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import optax
from flax import nnx, struct
from flax.training import train_state


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return (logits.argmax(-1) == labels).mean()


def loss(apply: Callable[..., Any], batch: Mapping[str, Any], cfg: Any) -> jax.Array:
    """The loss alone, for aotcheck's default step (the team's steps below compute it too)."""
    return cross_entropy(apply(batch["images"]), batch["labels"])


def microbatches(batch: Mapping[str, jax.Array], n: int) -> list[dict[str, jax.Array]]:
    return [{k: v.reshape(n, -1, *v.shape[1:])[i] for k, v in batch.items()} for i in range(n)]


def _mean(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: sum(xs) / len(xs), *trees)


class TrainState(train_state.TrainState):
    ema_params: Any = None
    rng: jax.Array = struct.field(default=None)


def linen_init_state(model: Any, tx: optax.GradientTransformation, cfg: Any, batch: Mapping[str, jax.Array]) -> TrainState:
    variables = model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, batch["images"])
    params = variables["params"]
    return TrainState.create(apply_fn=model.apply, params=params, tx=tx, ema_params=params, rng=jax.random.key(2))


def linen_train_step(state: TrainState, batch: Mapping[str, jax.Array], cfg: Any) -> tuple[TrainState, dict[str, jax.Array]]:
    c = cfg.model
    step_key = jax.random.fold_in(state.rng, state.step)
    grads, metrics = [], []
    for i, mb in enumerate(microbatches(batch, c.microbatches)):

        def loss_fn(params: Any, mb: dict[str, jax.Array] = mb, i: int = i) -> tuple[jax.Array, jax.Array]:
            logits = state.apply_fn({"params": params}, mb["images"], rngs={"dropout": jax.random.fold_in(step_key, i)})
            return cross_entropy(logits, mb["labels"]), accuracy(logits, mb["labels"])

        (value, acc), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads.append(g)
        metrics.append({"loss": value, "accuracy": acc})
    state = state.apply_gradients(grads=_mean(grads))
    ema = jax.tree.map(lambda e, p: c.ema_decay * e + (1 - c.ema_decay) * p, state.ema_params, state.params)
    return state.replace(ema_params=ema), _mean(metrics)


class EmaParam(nnx.Variable):
    """An exponential moving average of a parameter, with the parameter's sharding metadata."""


def _variables(tree: Any) -> list[Any]:
    return jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))


class NnxTrainState(nnx.Module):
    def __init__(self, model: nnx.Module, tx: optax.GradientTransformation):
        self.model = model
        self.optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        self.rng = nnx.Variable(jax.random.key(2))
        params = nnx.state(model, nnx.Param)
        self.ema_params = nnx.data(jax.tree.map(lambda p: EmaParam(p[...], **p.get_metadata()), params,
                                                is_leaf=lambda x: isinstance(x, nnx.Variable)))


def nnx_init_state(model: nnx.Module, tx: optax.GradientTransformation, cfg: Any, batch: Mapping[str, jax.Array]) -> NnxTrainState:
    return NnxTrainState(model, tx)


def nnx_train_step(state: NnxTrainState, batch: Mapping[str, jax.Array], cfg: Any) -> tuple[NnxTrainState, dict[str, jax.Array]]:
    c = cfg.model

    step_key = jax.random.fold_in(state.rng[...], state.optimizer.step[...])

    def loss_fn(model: nnx.Module, mb: dict[str, jax.Array], key: jax.Array) -> tuple[jax.Array, jax.Array]:
        logits = model(mb["images"], rngs=nnx.Rngs(dropout=key))
        return cross_entropy(logits, mb["labels"]), accuracy(logits, mb["labels"])

    grads, metrics = [], []
    for i, mb in enumerate(microbatches(batch, c.microbatches)):
        (value, acc), g = nnx.value_and_grad(loss_fn, has_aux=True)(state.model, mb, jax.random.fold_in(step_key, i))
        grads.append(g)
        metrics.append({"loss": value, "accuracy": acc})
    state.optimizer.update(state.model, _mean(grads))
    for e, p in zip(_variables(state.ema_params), _variables(nnx.state(state.model, nnx.Param)), strict=True):
        e[...] = c.ema_decay * e[...] + (1 - c.ema_decay) * p[...]
    return state, _mean(metrics)
