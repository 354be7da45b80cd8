"""The baseline aotcheck's cold compile is measured against: the same program, written by hand in JAX.

    python benchmarks/raw_jax.py [--model tiny] [--topology v5p-128] [--set key=value ...]

What a user would write without aotcheck, for the Linen path: describe the slice with
libtpu, lay out the mesh, `jax.eval_shape` the flax TrainState (the model's init and
AdamW), shard every leaf with Flax's logical-axis rules, jit the step with the state donated,
lower and compile. The model is the built-in decoder with its validated config, and its
activation constraints are active as they are under aotcheck, so the program is the one
`aotcheck compile` builds; this prints the compile's memory figures as JSON so the
benchmark can check that. Prints `{"seconds": ..., "memory": {...}, "flops": ...}`.
"""

from __future__ import annotations

import argparse
import json
import time

START = time.perf_counter()

import aotcheck  # noqa: E402  (for the model and its config only)

aotcheck.setup_libtpu_env()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--topology", default="v5p-128")
    parser.add_argument("--set", action="append", default=[], dest="sets", help="a config override, as aotcheck takes it")
    args = parser.parse_args()

    import jax
    import numpy as np
    import optax
    from flax import linen as nn
    from flax.training import train_state
    from jax.experimental import mesh_utils, topologies
    from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

    from aotcheck._config import parse_overrides
    from aotcheck._registry import load_config
    from aotcheck._topology import get_topology
    from aotcheck._tracing import tracing

    cfg, entry = load_config(args.model, None, {**parse_overrides(args.sets), "pure_nnx": False})
    spec, slice_ = entry.spec, get_topology(args.topology)
    assert spec.linen is not None
    devices = topologies.get_topology_desc(
        platform="tpu", topology_name=slice_.libtpu_topology, chip_config_name=slice_.chip_config,
        chips_per_host_bounds=slice_.chips_per_host_bounds, num_slices=1, wrap=slice_.wrap,
    ).devices
    axes = cfg.core.mesh_axes
    ici = [cfg.ici(a) for a in axes]
    ici = [len(devices) // -int(np.prod(ici)) if s == -1 else s for s in ici]  # the one -1 takes the rest
    mesh = Mesh(mesh_utils.create_device_mesh(ici, devices), axes, axis_types=(AxisType.Auto,) * len(axes))
    rules = [(name, list(mesh_axes) or None) for name, mesh_axes in cfg.rules]

    c = cfg.core
    tx = optax.adamw(learning_rate=c.learning_rate, b1=c.adam_b1, b2=c.adam_b2, eps=c.adam_eps, eps_root=c.adam_eps_root,
                     weight_decay=c.adam_weight_decay)
    model = spec.linen(cfg)
    batch = spec.batch(cfg, int(c.per_device_batch_size * len(devices)))
    zeros = {k: jax.numpy.zeros(f.shape, f.dtype) for k, f in batch.items()}

    def init() -> train_state.TrainState:
        captured: dict = {}

        def apply(*a, **k):
            out, variables = model.init_with_output(jax.random.key(0), *a, **k)
            captured.update(variables)
            return out

        spec.loss(apply, zeros)
        return train_state.TrainState.create(apply_fn=model.apply, params=captured["params"], tx=tx)

    boxed = jax.eval_shape(init)
    state_sh = nn.logical_to_mesh_sharding(nn.get_partition_spec(boxed), mesh, rules)
    batch_sh = {k: NamedSharding(mesh, nn.logical_to_mesh_axes(f.logical_axes, rules)) for k, f in batch.items()}
    batch_tree = {k: jax.ShapeDtypeStruct(f.shape, f.dtype) for k, f in batch.items()}

    def step(ts, batch):
        loss, grads = jax.value_and_grad(lambda p: spec.loss(lambda *a, **k: ts.apply_fn({"params": p}, *a, **k), batch))(ts.params)
        return ts.apply_gradients(grads=grads), loss

    jitted = jax.jit(step, in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, NamedSharding(mesh, PartitionSpec())),
                     donate_argnums=0)
    state = nn.meta.unbox(boxed)  # outside the mesh: inside it, unboxing would constrain abstract values
    with tracing(cfg.rules, mesh):  # jax.set_mesh and Flax's logical_axis_rules, as a training run traces
        lowered = jitted.lower(state, batch_tree)
    compiled = lowered.compile()
    m = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    print(json.dumps({
        "seconds": time.perf_counter() - START,
        "memory": {"argument": m.argument_size_in_bytes, "output": m.output_size_in_bytes,
                   "alias": m.alias_size_in_bytes, "temp": m.temp_size_in_bytes},
        "flops": cost.get("flops"),
    }))


if __name__ == "__main__":
    main()
