"""The context every piece of model code runs in: the run's mesh and Flax's logical axis rules.

A real training run traces its model inside `jax.set_mesh(mesh)` and
`flax.linen.logical_axis_rules(rules)`; there `nn.with_logical_constraint`,
`nn.with_logical_partitioning`, NNX `out_sharding` metadata and
`jax.lax.with_sharding_constraint` resolve against that mesh and those rules. aotcheck runs
factories, the state builder and the step inside the same context, so they act as they
would on the pod (outside it they are no-ops, silently).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aotcheck._config import Rules


def flax_rules(rules: Rules) -> list[tuple[str, Any]]:
    """Rules as Flax takes them: a rule with no mesh axes replicates (None)."""
    return [(name, (axes[0] if len(axes) == 1 else axes) if axes else None) for name, axes in rules]


@contextlib.contextmanager
def tracing(rules: Rules, mesh: Any) -> Iterator[None]:
    """Enter `jax.set_mesh(mesh)` and Flax's `logical_axis_rules(rules)`, as a training run does."""
    import jax
    from flax import linen as nn

    with jax.set_mesh(mesh), nn.logical_axis_rules(flax_rules(rules)):
        yield
