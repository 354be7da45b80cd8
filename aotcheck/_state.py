"""Abstract train state for either path: the path's state builder, eval_shape, and its leaves.

The builder (`aotcheck._steps.state_builder`: the model's own `init_state` or the default)
is only ever evaluated abstractly (`jax.eval_shape` / `nnx.eval_shape`), inside the run's
mesh and Flax's rules: no weight memory is allocated. Every leaf's logical axes come from
the state's own metadata (Linen `Partitioned` boxes, NNX `out_sharding`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from aotcheck._config import Rules, RunConfig
from aotcheck._errors import USER_CODE_FAILURES, BuildError, UsageError, one_line
from aotcheck._model import BatchField, ModelSpec
from aotcheck._sharding import leaf_spec
from aotcheck._steps import state_builder
from aotcheck._tracing import tracing

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
    padded: tuple[str, ...] = ()  # leaves annotated with fewer names than dimensions


def optimizer(cfg: RunConfig, spec: ModelSpec) -> Any:
    import jax.numpy as jnp
    import optax

    if spec.optimizer is not None:
        return spec.optimizer(cfg)
    c = cfg.core
    # The default is the optimizer `opt_type` names (AdamW is the one aotcheck offers).
    return {"adamw": optax.adamw}[c.opt_type](
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


def key_str(key: Any) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def path_str(keys: Any) -> str:
    return "/".join(key_str(k) for k in keys)


def abstract_state(cfg: RunConfig, spec: ModelSpec, path: Path, batch: Mapping[str, BatchField],
                   mesh: Any, rules: Rules) -> AbstractState:
    """Evaluate the path's state builder abstractly, inside the run's mesh and rules, and describe every leaf."""
    build = state_builder(cfg, spec, path, optimizer(cfg, spec), batch, mesh, rules)

    try:
        with tracing(rules, mesh):
            evaluated = _evaluate(build, path)
        return _describe(spec, path, evaluated)
    except UsageError:
        raise
    except BuildError as exc:
        failure = exc
    except USER_CODE_FAILURES as exc:
        failure = BuildError(f"model '{spec.name}' ({path}): abstract init failed: {one_line(exc)}")
        failure.__cause__ = exc
    # Inside the rules Flax constrains each parameter as it is created, so a bad annotation
    # fails there with jax's words; outside them it builds, and the leaf checks name it.
    try:
        plain = _describe(spec, path, _evaluate(build, path))
    except UsageError:
        raise
    except USER_CODE_FAILURES:
        raise failure from None
    for leaf in plain.leaves:
        leaf_spec(leaf.shape, leaf.logical_axes, rules, dict(mesh.shape), f"leaf {leaf.path}")
    raise failure


def _evaluate(build: Callable[[], Any], path: Path) -> Any:
    import jax

    if path == "linen":
        return jax.eval_shape(build)
    from flax import nnx

    # Not `nnx.eval_shape`: with a mesh set it attaches shardings resolved by NNX's own
    # (dict) reading of the rules; aotcheck resolves every leaf itself, first match.
    graphdef, abstract = jax.eval_shape(lambda: nnx.split(build()))
    return nnx.merge(graphdef, abstract)


def _describe(spec: ModelSpec, path: Path, evaluated: Any) -> AbstractState:
    import jax

    if path == "linen":
        from flax import linen as nn

        tree = nn.meta.unbox(evaluated)
        # `nn.Partitioned` (mesh axis names) is the base of `LogicallyPartitioned`: both name axes.
        metas = jax.tree_util.tree_leaves(evaluated, is_leaf=lambda x: isinstance(x, nn.Partitioned))
        axes = [tuple(m.names) if isinstance(m, nn.Partitioned) else None for m in metas]
        graphdef = None
        roles = [_linen_role(p) for p in _paths(tree)]
    else:
        from flax import nnx

        graphdef, tree = nnx.split(evaluated)
        variables = jax.tree_util.tree_leaves(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
        axes = [_nnx_axes(v) for v in variables]
        roles = [_nnx_role(p, v) for p, v in zip(_paths(tree), variables, strict=True)]

    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    if len(flat) != len(axes):
        raise BuildError(f"model '{spec.name}' ({path}): state leaves and their annotations do not line up")
    leaves, padded = [], []
    for (keys, a), ax, role in zip(flat, axes, roles, strict=True):
        leaf = Leaf(path_str(keys), role, tuple(a.shape), str(a.dtype), ax)
        if ax is not None and len(ax) > len(leaf.shape):
            raise UsageError(
                f"leaf {leaf.path}: {len(ax)} logical axes {list(ax)} for a rank-{len(leaf.shape)} array; "
                f"give at most one name (or None) per dimension"
            )
        if ax is not None and len(ax) < len(leaf.shape):
            # Flax and jax pad a short spec with None (the trailing dimensions are replicated).
            leaf = Leaf(leaf.path, role, leaf.shape, leaf.dtype, ax + (None,) * (len(leaf.shape) - len(ax)))
            padded.append(leaf.path)
        leaves.append(leaf)
    return AbstractState(path=path, tree=tree, leaves=tuple(leaves), graphdef=graphdef, padded=tuple(padded))


def _paths(tree: Any) -> list[str]:
    import jax

    return [path_str(k) for k, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _linen_role(path: str) -> Role:
    head = path.split("/", 1)[0]
    return {"params": "param", "opt_state": "optimizer", "step": "step", "rng": "rng"}.get(head, "other")  # type: ignore[return-value]


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
