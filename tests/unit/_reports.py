"""Hand-made reports for the unit tests: small, fully specified, built without jax tracing."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aotcheck import _sharding
from aotcheck._analysis import Compile, Memory
from aotcheck._drift import Drift
from aotcheck._report import BatchInput, Header, Leaf, MeshInfo, Report, TopologyInfo
from aotcheck._true_cost import PerStep, Traffic, XlaCost

AXES = ("data", "fsdp", "tensor")
MESH_SHAPE = {"data": 1, "fsdp": 4, "tensor": 2}
RULES = (("batch", ("data", "fsdp")), ("embed", ("fsdp",)), ("mlp", ("tensor",)), ("vocab", ("tensor",)))


def leaf(role: str, shape: tuple[int, ...], dtype: str, axes: tuple[Any, ...] | None,
         spec: tuple[Any, ...] = (), mesh_shape: Mapping[str, int] = MESH_SHAPE) -> Leaf:
    """A leaf whose derived figures (shard shape, bytes) are computed as the pipeline does."""
    shard = _sharding.shard_shape(shape, spec, mesh_shape)
    return Leaf(role=role, shape=shape, dtype=dtype, logical_axes=axes, partition_spec=spec, shard_shape=shard,
                bytes=_sharding.nbytes(shape, dtype), bytes_per_device=_sharding.nbytes(shard, dtype))


def header(path: str = "linen", **changes: Any) -> Header:
    fields: dict[str, Any] = dict(
        model="tiny", model_source="aotcheck.models.tiny", path=path, backend="mock",
        versions={"aotcheck": "0.1.0", "jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": None, "flax": "0.12.8",
                  "optax": "0.2.8"},
        topology=TopologyInfo(name="v5p-16", slice="v5p-16", libtpu_topology="v5:2x2x2", num_slices=1, devices=8,
                              chips=8, device_kind="mock (CPU devices)", hbm_bytes_per_device=102005473280),
        mesh=MeshInfo(axis_names=AXES, shape=MESH_SHAPE, ici=MESH_SHAPE, dcn=dict.fromkeys(AXES, 1)),
        rules=RULES,
        config={"model_name": "tiny", "scan_layers": True, "remat_policy": "full"},
    )
    fields.update(changes)
    return Header(**fields)


def compile_section(temp: int = 4096, collectives: Mapping[str, float] | None = None,
                    flops: float | None = 1.5e9, drift: tuple[Drift, ...] = ()) -> Compile:
    """A compile section; `collectives` are wire bytes per kind (all along fsdp)."""
    memory = Memory(argument=8192, output=8192, alias=8000, temp=temp, generated_code=1024)
    traffic = {k: Traffic(count=2, bytes=v, by_axis={"fsdp": v})
               for k, v in (collectives or {"all-gather": 3e6, "all-reduce": 1e6}).items()}
    return Compile(
        verdict="fits", capacity_bytes_per_device=102800042229, hbm_spec_bytes_per_device=102005473280,
        needed_bytes_per_device=memory.peak, memory_per_device=memory,
        per_step=None if flops is None else PerStep(flops=flops, bytes_accessed=2.25e8, transcendentals=3e6),
        xla_cost=XlaCost(flops=flops and flops / 4, bytes_accessed=1e8, transcendentals=1e6),
        collectives=traffic, drift=drift, notes=("a note",),
    )


def linen_leaves() -> dict[str, Leaf]:
    return {
        "params/decoder/layers_0/mlp/kernel": leaf("param", (64, 32), "float32", ("embed", "mlp"), ("fsdp", "tensor")),
        "params/decoder/norm/scale": leaf("param", (64,), "float32", ("embed",), ("fsdp",)),
        "params/token_embedder/embedding": leaf("param", (128, 64), "bfloat16", ("vocab", "embed"),
                                                ("tensor", "fsdp")),
        "params/decoder/bias": leaf("param", (32,), "float32", None),  # unannotated: replicated
        "opt_state/0/mu/decoder/layers_0/mlp/kernel": leaf("optimizer", (64, 32), "float32", ("embed", "mlp"),
                                                           ("fsdp", "tensor")),
        "opt_state/0/nu/decoder/layers_0/mlp/kernel": leaf("optimizer", (64, 32), "float32", ("embed", "mlp"),
                                                           ("fsdp", "tensor")),
        "opt_state/0/count": leaf("optimizer", (), "int32", None),
        "step": leaf("step", (), "int32", None),
    }


def report(leaves: Mapping[str, Leaf] | None = None, path: str = "linen", compiled: bool = True,
           **header_changes: Any) -> Report:
    batch = {"inputs": BatchInput(shape=(8, 16), dtype="int32", logical_axes=("batch", None),
                                  partition_spec=(("data", "fsdp"),))}
    return Report(header=header(path, **header_changes), batch=batch,
                  leaves=dict(linen_leaves() if leaves is None else leaves),
                  compile=compile_section() if compiled else None, timings={"compile_seconds": 1.25})


def nnx_report(**changes: Any) -> Report:
    """An NNX state: the Linen leaves under NNX names, plus an rng key, the step counted in uint32."""
    leaves = {}
    for path, lf in linen_leaves().items():
        if path.startswith("params/"):
            path = "model/" + path.removeprefix("params/") + "/value"
        elif path.startswith("opt_state/"):
            path = "optimizer/" + path + "/value"
        else:
            path, lf = "optimizer/step/value", dataclasses.replace(lf, dtype="uint32")
        leaves[path.replace("layers_0", "layers/0")] = lf
    leaves["model/rngs/default/key/value"] = leaf("rng", (), "key<fry>", None)
    return report(leaves, path="nnx", **changes)
