"""From a request to a report: config -> target/mesh -> abstract state -> lowered/compiled step -> report."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aotcheck import cache, rules, state, step
from aotcheck import mesh as mesh_mod
from aotcheck.config import RunConfig
from aotcheck.model import ModelEntry, ModelSpec, load_config
from aotcheck.report import COLLECTIVES_NOTE, MOCK_NOTE, SCAN_NOTE, CompileReport, LeafReport, Memory, Report, versions
from aotcheck.topology import Target, get_topology, make_target

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """Everything that determines a report."""

    topology: str = "v5p-8"
    num_slices: int = 1
    model: str | ModelSpec | None = None  # a name (see `resolve_model`) or, from Python, the spec itself
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    pure_nnx: bool | None = None  # None: as the config says
    compile: bool = True
    backend: str = "auto"
    cache: bool = True  # reuse the compile section of an identical earlier compile

    def with_path(self, path: str) -> Request:
        return Request(**{**self.__dict__, "pure_nnx": path == "nnx"})


def configure(request: Request) -> tuple[RunConfig, ModelEntry]:
    from aotcheck.config import parse_overrides

    overrides = parse_overrides(request.overrides)
    if request.pure_nnx is not None:
        overrides["pure_nnx"] = request.pure_nnx
    return load_config(request.model, request.config_file, overrides)


@contextlib.contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - start


@dataclass(frozen=True)
class Built:
    report: Report
    executable: Any  # the compiled step, or None (--no-compile, or out of HBM)


def build_report(request: Request, progress: Progress | None = None) -> Report:
    return build(request, progress).report


def build(request: Request, progress: Progress | None = None) -> Built:
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    cfg, entry = configure(request)
    path: state.Path = "nnx" if cfg.core.pure_nnx else "linen"
    topology = get_topology(request.topology)
    with _timed(timings, "target_seconds"):
        target = make_target(topology, request.num_slices, request.backend)
    plan = mesh_mod.plan_mesh(cfg, target)
    mesh = mesh_mod.build_mesh(plan, target, cfg.core.allow_split_physical_axes)
    mesh_shape = plan.shape

    say(f"building the abstract {path} state of {entry.name}")
    batch = state.abstract_batch(cfg, entry.spec, state.global_batch_size(cfg, len(target.devices)))
    with _timed(timings, "state_seconds"):
        abstract = state.abstract_state(cfg, entry.spec, path, batch)
    specs = tuple(step.leaf_spec(leaf, cfg, mesh_shape, f"leaf {leaf.path}") for leaf in abstract.leaves)
    batch_specs = {k: step.leaf_spec(f, cfg, mesh_shape, f"batch '{k}'") for k, f in batch.items()}
    leaves = tuple(sorted((_leaf_report(leaf, s, mesh_shape) for leaf, s in zip(abstract.leaves, specs, strict=True)), key=lambda r: r.path))

    compiled = executable = None
    if request.compile:
        say(f"lowering train_step for {target.name}")
        lowered = step.lower(cfg, entry.spec, abstract, specs, batch, batch_specs, mesh)
        timings["lower_seconds"] = lowered.lower_seconds
        cache_key = cache.key(lowered.lowered.as_text(), target.name, target.backend)
        compiled = cache.get(cache_key) if request.cache else None
        timings["compile_cache_hit"] = float(compiled is not None)
        if compiled is None:
            say(f"compiling for {target.name} ({len(target.devices)} devices, {target.backend})")
            result = step.compile_lowered(lowered, f"model '{entry.name}' ({path}) on {target.name}")
            timings["compile_seconds"] = result.compile_seconds
            compiled = _compile_report(result, target)
            executable = result.executable
            if request.cache:
                cache.put(cache_key, compiled)

    header = {
        "model": entry.name,
        "model_source": entry.source,
        "path": path,
        "backend": target.backend,
        "versions": versions(),
        "topology": {
            "name": target.name,
            "slice": topology.name,
            "libtpu_topology": topology.libtpu_topology,
            "num_slices": target.num_slices,
            "devices": len(target.devices),
            "chips": topology.chips_per_slice * target.num_slices,
            "device_kind": target.device_kind,
            "hbm_bytes_per_device": topology.hbm_bytes_per_device,
        },
        "mesh": {
            "axis_names": list(plan.axis_names),
            "shape": mesh_shape,
            "ici": dict(zip(plan.axis_names, plan.ici, strict=True)),
            "dcn": dict(zip(plan.axis_names, plan.dcn, strict=True)),
        },
        "rules": [[name, list(axes)] for name, axes in cfg.rules],
        "config": {k: v for k, v in cfg.as_dict().items() if k != "logical_axis_rules"},
    }
    batch_json = {
        k: {"shape": list(f.shape), "dtype": f.dtype, "logical_axes": list(f.logical_axes),
            "spec": rules.spec_to_json(batch_specs[k])}
        for k, f in batch.items()
    }
    return Built(Report(header=header, batch=batch_json, leaves=leaves, compile=compiled, timings=timings), executable)


# jax's typed PRNG keys (NNX rng state) are not numpy dtypes; each holds 2 (threefry) or 4 (rbg) uint32 words.
_KEY_BYTES = {"key<fry>": 8, "key<rbg>": 16, "key<urbg>": 16}


def _leaf_report(leaf: state.Leaf, spec: rules.Spec, mesh_shape: Mapping[str, int]) -> LeafReport:
    import numpy as np

    shard = rules.shard_shape(leaf.shape, spec, mesh_shape)
    itemsize = _KEY_BYTES[leaf.dtype] if leaf.dtype in _KEY_BYTES else np.dtype(leaf.dtype).itemsize
    return LeafReport(
        path=leaf.path,
        role=leaf.role,
        shape=leaf.shape,
        dtype=leaf.dtype,
        logical_axes=leaf.logical_axes,
        spec=spec,
        shard_shape=shard,
        bytes=int(np.prod(leaf.shape, dtype=np.int64)) * itemsize,
        bytes_per_device=int(np.prod(shard, dtype=np.int64)) * itemsize,
    )


def _compile_report(result: step.Compiled, target: Target) -> CompileReport:
    capacity = target.topology.hbm_bytes_per_device
    notes = [SCAN_NOTE, COLLECTIVES_NOTE] + ([MOCK_NOTE] if target.backend == "mock" else [])
    if result.executable is None:
        needed, available = result.oom  # type: ignore[misc]
        return CompileReport(
            fits=False, capacity_bytes=available or capacity, memory=None, needed_bytes=needed,
            flops=None, bytes_accessed=None, transcendentals=None,
            collectives={}, notes=tuple(notes + ["the TPU compiler ran out of HBM; figures are from its message"]),
        )
    ex = result.executable
    m = ex.memory_analysis()
    memory = Memory(
        argument=m.argument_size_in_bytes,
        output=m.output_size_in_bytes,
        alias=m.alias_size_in_bytes,
        temp=m.temp_size_in_bytes,
        generated_code=m.generated_code_size_in_bytes,
    )
    cost = ex.cost_analysis() or {}
    if isinstance(cost, list):  # older jax returned one dict per program
        cost = cost[0] if cost else {}
    return CompileReport(
        fits=memory.peak <= capacity,
        capacity_bytes=capacity,
        memory=memory,
        needed_bytes=memory.peak,
        flops=cost.get("flops"),
        bytes_accessed=cost.get("bytes accessed"),
        transcendentals=cost.get("transcendentals"),
        collectives=step.collectives(ex.as_text()),
        notes=tuple(notes),
    )
