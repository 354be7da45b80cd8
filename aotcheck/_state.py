"""Abstract train state for either path: `init_state_fn`, eval_shape, and its leaves.

`init_state_fn(cfg, spec, path)` is the zero-argument builder that `pure_nnx` chooses
between: Linen gives a flax `TrainState` (params, AdamW state, step), NNX a `TrainState`
module holding the model and an `nnx.Optimizer`. The state is only ever evaluated
abstractly (`jax.eval_shape` / `nnx.eval_shape`): no weight memory is allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aotcheck._config import RunConfig
from aotcheck._errors import USER_CODE_FAILURES, BuildError, UsageError, one_line
from aotcheck._model import BatchField, ModelSpec

Path = Literal["linen", "nnx"]
Role = Literal["param", "optimizer", "step", "rng", "other"]


@dataclass(frozen=True)
class Leaf:
    """One array of the train state, before any sharding is decided."""

    path: str
    role: Role
    shape: tuple[int, ...]
    dtype: str
    logical_axes: tuple[str | None, ...] | None  # None: the model gave no annotation


@dataclass(frozen=True)
class AbstractState:
    path: Path
    tree: Any  # pytree of jax.ShapeDtypeStruct, the step's first argument
    leaves: tuple[Leaf, ...]  # in tree-flatten order
    graphdef: Any = None  # NNX only: rebuilds the TrainState module inside the step


def optimizer(cfg: RunConfig, spec: ModelSpec) -> Any:
    import jax.numpy as jnp
    import optax

    if spec.optimizer is not None:
        return spec.optimizer(cfg)
    c = cfg.core
    return optax.adamw(
        learning_rate=c.learning_rate,
        b1=c.adam_b1,
        b2=c.adam_b2,
        eps=c.adam_eps,
        eps_root=c.adam_eps_root,
        weight_decay=c.adam_weight_decay,
        mu_dtype=jnp.dtype(c.mu_dtype) if c.mu_dtype else None,
    )


def global_batch_size(cfg: RunConfig, num_devices: int) -> int:
    size = cfg.core.per_device_batch_size * num_devices
    if size < 1 or size != int(size):
        raise UsageError(
            f"config: per_device_batch_size={cfg.core.per_device_batch_size} x {num_devices} devices "
            f"= {size:g} is not a whole batch; choose a per-device size that gives a whole number"
        )
    return int(size)


def abstract_batch(cfg: RunConfig, spec: ModelSpec, global_batch: int) -> dict[str, BatchField]:
    try:
        fields = dict(spec.batch(cfg, global_batch))
    except USER_CODE_FAILURES as exc:
        raise BuildError(f"model '{spec.name}': batch() raised {one_line(exc)}") from exc
    for name, f in fields.items():
        _check_batch_field(spec.name, name, f)
    return dict(sorted(fields.items()))


def _check_batch_field(model: str, name: str, f: Any) -> None:
    import jax.numpy as jnp  # knows bfloat16, which numpy alone does not

    where = f"model '{model}': batch '{name}'"
    if not isinstance(f, BatchField):
        raise BuildError(f"{where} is a {type(f).__name__}; give an aotcheck.BatchField(shape, dtype, logical_axes)")
    if len(f.logical_axes) != len(f.shape):
        raise BuildError(
            f"{where}: {len(f.logical_axes)} logical axes {list(f.logical_axes)} for shape {list(f.shape)}; "
            f"give one name (or None) per dimension"
        )
    try:
        jnp.dtype(f.dtype)
    except TypeError:
        raise BuildError(f"{where}: '{f.dtype}' is not a dtype") from None


def _zeros_batch(fields: Mapping[str, BatchField]) -> dict[str, Any]:
    import jax.numpy as jnp

    return {name: jnp.zeros(f.shape, f.dtype) for name, f in fields.items()}


def init_state_fn(cfg: RunConfig, spec: ModelSpec, path: Path, batch: Mapping[str, BatchField]) -> Callable[[], Any]:
    """The zero-argument state builder for one path, to be evaluated abstractly."""
    factory: Any = spec.linen if path == "linen" else spec.nnx
    if factory is None:
        raise UsageError(f"model '{spec.name}' has no {path} path: its ModelSpec gives {spec.paths()[0]} (set ModelSpec.{path})")
    tx = optimizer(cfg, spec)

    if path == "linen":
        import jax
        from flax.training import train_state

        def init_linen() -> Any:
            module = _call_factory(spec, "linen", lambda: factory(cfg))
            captured: dict[str, Any] = {}

            # The model's call signature is known only to the loss, so initialise through it.
            def apply(*args: Any, **kwargs: Any) -> Any:
                out, variables = module.init_with_output(jax.random.key(0), *args, **kwargs)
                captured.update(variables)
                return out

            _call_loss(spec, "linen", apply, _zeros_batch(batch))
            return train_state.TrainState.create(apply_fn=module.apply, params=captured["params"], tx=tx)

        return init_linen

    from flax import nnx

    class TrainState(nnx.Module):
        """The model and its optimizer (`nnx.Optimizer` keeps no reference to the model)."""

        def __init__(self, model: nnx.Module, opt: nnx.Optimizer):
            self.model = model
            self.optimizer = opt

    def init_nnx() -> Any:
        # aotcheck resolves `out_sharding` names itself (Linen rule semantics); NNX's eager
        # sharding would try to resolve them at creation, against no mesh.
        with nnx.use_eager_sharding(False):
            model = _call_factory(spec, "nnx", lambda: factory(cfg, nnx.Rngs(params=0, dropout=1)))
            # As Linen's init does: a batch that does not fit the model fails here, by name,
            # rather than deep inside lowering. Abstract, so it costs one trace.
            _call_loss(spec, "nnx", model, _zeros_batch(batch))
            return TrainState(model, nnx.Optimizer(model, tx, wrt=nnx.Param))

    return init_nnx


def _call_factory(spec: ModelSpec, path: str, make: Callable[[], Any]) -> Any:
    try:
        return make()
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        raise BuildError(f"model '{spec.name}': the {path} factory raised {one_line(exc)}") from exc


def _call_loss(spec: ModelSpec, path: str, apply: Callable[..., Any], batch: Mapping[str, Any]) -> Any:
    try:
        return spec.loss(apply, batch)
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        shapes = ", ".join(f"{k} {v.dtype}{list(v.shape)}" for k, v in batch.items())
        raise BuildError(
            f"model '{spec.name}' ({path}): the loss failed on the batch ({shapes}); "
            f"does batch() fit the model? {one_line(exc)}"
        ) from exc


def key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(keys: Any) -> str:
    return "/".join(key_str(k) for k in keys)


def abstract_state(cfg: RunConfig, spec: ModelSpec, path: Path, batch: Mapping[str, BatchField]) -> AbstractState:
    """Evaluate `init_state_fn` abstractly and describe every leaf."""
    import jax

    build = init_state_fn(cfg, spec, path, batch)
    if path == "linen":
        from flax import linen as nn

        boxed = _evaluate(jax.eval_shape, build, spec, path)
        tree = nn.meta.unbox(boxed)
        metas = jax.tree_util.tree_leaves(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
        axes = [tuple(m.names) if isinstance(m, nn.LogicallyPartitioned) else None for m in metas]
        graphdef = None
        roles = [_linen_role(p) for p in _paths(tree)]
    else:
        from flax import nnx

        graphdef, tree = nnx.split(_evaluate(nnx.eval_shape, build, spec, path))
        variables = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
        axes = [_nnx_axes(v) for v in variables]
        roles = [_nnx_role(p, v) for p, v in zip(_paths(tree), variables, strict=True)]

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    if len(flat) != len(axes):
        raise BuildError(f"model '{spec.name}' ({path}): state leaves and their annotations do not line up")
    leaves = tuple(
        Leaf(path_str(keys), role, tuple(a.shape), str(a.dtype), ax)
        for (keys, a), ax, role in zip(flat, axes, roles, strict=True)
    )
    for leaf in leaves:
        if leaf.logical_axes is not None and len(leaf.logical_axes) != len(leaf.shape):
            raise UsageError(
                f"leaf {leaf.path}: {len(leaf.logical_axes)} logical axes {list(leaf.logical_axes)} "
                f"for a rank-{len(leaf.shape)} array; give one name (or None) per dimension"
            )
    return AbstractState(path=path, tree=tree, leaves=leaves, graphdef=graphdef)


def _evaluate(eval_shape: Callable[[Callable[[], Any]], Any], build: Callable[[], Any], spec: ModelSpec, path: str) -> Any:
    try:
        return eval_shape(build)
    except (UsageError, BuildError):
        raise
    except USER_CODE_FAILURES as exc:
        raise BuildError(f"model '{spec.name}' ({path}): abstract init failed: {one_line(exc)}") from exc


def _paths(tree: Any) -> list[str]:
    import jax

    return [path_str(k) for k, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _linen_role(path: str) -> Role:
    head = path.split("/", 1)[0]
    return {"params": "param", "opt_state": "optimizer", "step": "step"}.get(head, "other")  # type: ignore[return-value]


def _nnx_role(path: str, variable: Any) -> Role:
    from flax import nnx

    if isinstance(variable, nnx.RngState):
        return "rng"
    if path.startswith("optimizer/step"):
        return "step"
    if path.startswith("optimizer/"):
        return "optimizer"
    if isinstance(variable, nnx.Param):
        return "param"
    return "other"


def _nnx_axes(variable: Any) -> tuple[str | None, ...] | None:
    metadata = variable.get_metadata()
    names = metadata.get("out_sharding")
    return tuple(names) if names else None
