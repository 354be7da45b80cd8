"""From a request to a report: config -> target/mesh -> sharding -> abstract state -> program -> analysis -> report."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aotcheck import _cache, _canonical, _mesh, _names, _program, _reads, _sharding, _state
from aotcheck._activations import activations
from aotcheck._analysis import Compile, analyse
from aotcheck._buffers import dump_peak_buffers, memory_detail
from aotcheck._config import RunConfig, parse_overrides, read_config
from aotcheck._drift import drifted
from aotcheck._fingerprint import inputs_key, tool_hash
from aotcheck._model import ModelSpec
from aotcheck._registry import ModelEntry, load_config
from aotcheck._report import BatchInput, Header, Leaf, MeshInfo, Report, TopologyInfo, versions
from aotcheck._topology import Target, get_topology, make_target, resolve_backend
from aotcheck._true_cost import CostContext, axis_links, chip_of, tokens_per_step, usable_hbm

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """Everything that determines a report.

    Example:
        >>> aotcheck.Request(model="llama2-7b", topology="v5p-128", pure_nnx=True, compile=False)
        Request(topology='v5p-128', num_slices=1, model='llama2-7b', config_file=None, overrides=(), pure_nnx=True, compile=False, backend='auto', cache=True, fast=False, drift=True, memory_detail=0, activations=False)
    """

    topology: str = "v5p-8"
    num_slices: int = 1
    model: str | ModelSpec | None = None  # a name (see `aotcheck models`) or, from Python, the spec itself
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()  # `key=value`, as `--set` takes them
    pure_nnx: bool | None = None  # None: as the config says
    compile: bool = True
    backend: str = "auto"  # auto, libtpu or mock
    cache: bool = True  # reuse an identical earlier report, or compile section
    fast: bool = False  # a low-effort compile (`--fast`): quicker, different figures, labelled in the header
    drift: bool = True  # also compile with the state's output shardings left to XLA (a second compile)
    memory_detail: int = 0  # the N largest buffers at the peak (a second compile with a dump); 0: off
    activations: bool = False  # list the step's sharding constraints

    def with_path(self, path: str) -> Request:
        """The same request on the `linen` or `nnx` path."""
        return replace(self, pure_nnx=path == "nnx")


def configure(request: Request) -> tuple[RunConfig, ModelEntry]:
    """The validated config of a request and the model it names."""
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
    executable: Any  # the compiled step, or None (--no-compile, out of HBM, or served from the cache)
    warnings: tuple[str, ...] = ()


def build_report(request: Request, progress: Progress | None = None) -> Report:
    """Build the abstract state, lower and compile the step, and report on it.

    Arguments:
        request: the model, target and settings.
        progress: called with a short message as each stage starts.

    Returns:
        The report; `report.compile` is None when `request.compile` is False.

    Example:
        >>> report = aotcheck.build_report(aotcheck.Request(topology="v5p-8", compile=False))  # doctest: +SKIP
        >>> report.header.mesh.shape["fsdp"]  # doctest: +SKIP
        4
    """
    return build(request, progress).report


def build(request: Request, progress: Progress | None = None) -> Built:
    """`build_report`, also giving the compiled executable and any warnings."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    warnings: list[str] = []
    cfg, entry = configure(request)
    topology = get_topology(request.topology)
    report_key = _report_key(request, cfg, entry)
    if report_key is not None and (hit := _cached(report_key)) is not None:
        return _served(hit, request, entry)
    # From here on the config notes every key read (the header shows those, and warns of the rest).
    # `model_name` was read already if it chose the model (no model named).
    cfg = _reads.recording(cfg, ("model_name",) if request.model is None else ())
    path: _state.Path = "nnx" if cfg.core.pure_nnx else "linen"
    with _timed(timings, "target_seconds"):
        target = make_target(topology, request.num_slices, request.backend)
    # The options are the TPU compiler's; the CPU compiler of newer jax refuses them.
    options = _program.compiler_options(request.fast) if target.backend == "libtpu" else {}
    if request.fast and target.backend != "libtpu":
        warnings.append("--fast sets the TPU compiler's effort; the mock backend's CPU compile is unchanged")
    plan = _mesh.plan_mesh(cfg, target)
    mesh = _mesh.build_mesh(plan, target, cfg.core.allow_split_physical_axes)
    mesh_shape = plan.shape
    # A mesh axis that no rule names stands for itself (models annotated with mesh axis names).
    rules = _sharding.effective_rules(cfg.rules, plan.axis_names)

    say(f"building the abstract {path} state of {entry.name}")
    batch = _state.abstract_batch(cfg, entry.spec, _state.global_batch_size(cfg, len(target.devices)))
    with _timed(timings, "state_seconds"):
        abstract = _state.abstract_state(cfg, entry.spec, path, batch, mesh, rules)
    specs = tuple(_sharding.leaf_spec(leaf.shape, leaf.logical_axes, rules, mesh_shape, f"leaf {leaf.path}")
                  for leaf in abstract.leaves)
    batch_specs = {k: _sharding.leaf_spec(f.shape, f.logical_axes, rules, mesh_shape, f"batch '{k}'")
                   for k, f in batch.items()}
    leaves = {leaf.path: _leaf(leaf, spec, mesh_shape) for leaf, spec in zip(abstract.leaves, specs, strict=True)}

    compiled: Compile | None = None
    executable = None
    if request.compile:
        say(f"lowering train_step for {target.name}")
        lowered = _program.lower(cfg, entry.spec, abstract, specs, batch, batch_specs, mesh, rules)
        timings["lower_seconds"] = lowered.lower_seconds
        # The key needs the lowered module as text: not made under --no-cache (a big module's text takes time).
        cache_key = _cache.key(lowered.lowered.as_text(), target.name, target.backend,
                               mesh={"axes": plan.axis_names, "ici": plan.ici, "dcn": plan.dcn},
                               allow_split_physical_axes=cfg.core.allow_split_physical_axes, compiler_options=options,
                               options={"drift": request.drift, "memory_detail": request.memory_detail,
                                        "aotcheck": tool_hash()},
                               ) if request.cache else ""
        compiled = _cache.get("c", cache_key, Compile) if request.cache else None
        timings["compile_cache_hit"] = float(compiled is not None)
        if compiled is None:
            label = f"model '{entry.name}' ({path}) on {target.name}"
            say(f"compiling for {target.name} ({len(target.devices)} devices, {target.backend})")
            result = _program.compile_lowered(lowered, label, options)
            timings["compile_seconds"] = result.compile_seconds
            params = sum(math.prod(leaf.shape) for leaf in abstract.leaves if leaf.role == "param")
            # Not a read of the setting: it counts tokens only where the batch already has that length.
            tokens = tokens_per_step({k: f.shape for k, f in batch.items()}, _reads.plain(cfg).core.max_target_length)
            ctx = _cost_context(target, plan, params, tokens)
            usable = usable_hbm(topology)
            with _timed(timings, "analysis_seconds"):
                compiled = analyse(result, usable, target.backend, ctx, topology.hbm_bytes_per_device)
            executable = result.executable
            if executable is not None and request.memory_detail:
                say("compiling again with a buffer dump (--memory-detail)")
                with _timed(timings, "memory_detail_seconds"):
                    _, peak = dump_peak_buffers(lowered.lowered, request.memory_detail)
                compiled = compiled.model_copy(update={"memory_detail": memory_detail(peak)})
            if executable is not None and request.drift:
                say("compiling again with the outputs' shardings left to XLA (drift check; --no-drift skips it)")
                with _timed(timings, "drift_seconds"):
                    free = _program.lower(cfg, entry.spec, abstract, specs, batch, batch_specs, mesh, rules,
                                         fixed_outputs=False)
                    free_result = _program.compile_lowered(free, f"{label}, outputs left to XLA", options)
                    drift = () if free_result.executable is None else drifted(
                        free_result.executable, [leaf.path for leaf in abstract.leaves], specs, mesh)
                compiled = compiled.model_copy(update={"drift": drift})
            if request.cache and (warning := _cache.put("c", cache_key, compiled)):
                warnings.append(warning)
        if request.activations:
            compiled = compiled.model_copy(update={"activations": activations(lowered.lowered.as_text(debug_info=True), mesh_shape)})

    report = Report(
        header=_header(cfg, entry, path, target, plan).model_copy(update={"compiler_options": options}),
        batch={k: BatchInput(shape=f.shape, dtype=f.dtype, logical_axes=f.logical_axes, partition_spec=batch_specs[k])
               for k, f in batch.items()},
        leaves=dict(sorted(leaves.items())),
        compile=compiled,
        padded_leaves=tuple(sorted(abstract.padded)),
        timings=timings,
    )
    warnings[:0] = _reads.unread_warnings(report.header, _given(request), entry.spec.ignores) + _names.warnings(report)
    if report_key is not None and (warning := _cache.put("r", report_key, report)):
        warnings.append(warning)
    return Built(report, executable, tuple(dict.fromkeys(warnings)))  # one line per distinct warning


def _given(request: Request) -> dict[str, str]:
    """The keys the user set, each with where (`--set k=v` wins over `--config FILE`); `--pure-nnx` is not one."""
    given = {key: f"--config {request.config_file}" for key in read_config(request.config_file)} if request.config_file else {}
    for item in request.overrides:
        given[item.partition("=")[0].strip()] = f"--set {item.strip()}"
    return given


def _report_key(request: Request, cfg: RunConfig, entry: ModelEntry) -> str | None:
    """The first-level cache key of a request (None without the cache): no jax, nothing traced.

    A model given as a Python object has none: it may be built at run time (a closure over
    arguments, a notebook cell) from source files that do not change with it.
    """
    if not request.cache or isinstance(request.model, ModelSpec):
        return None
    return inputs_key(cfg, entry.name, entry.source, entry.spec, get_topology(request.topology), request.num_slices,
                      resolve_backend(request.backend), request.compile, _program.compiler_options(request.fast),
                      {"drift": request.drift, "memory_detail": request.memory_detail, "activations": request.activations})


def _cached(key: str) -> Report | None:
    hit = _cache.get("r", key, Report)
    return None if hit is None else hit.model_copy(update={"timings": {"report_cache_hit": 1.0}})


def _served(hit: Report, request: Request, entry: ModelEntry) -> Built:
    """A cached report with the warnings its build gave."""
    # Unknown names, padded specs and the settings read are in the report itself.
    unread = _reads.unread_warnings(hit.header, _given(request), entry.spec.ignores)
    return Built(hit, None, tuple(unread + _names.warnings(hit)))


def cached(request: Request) -> Built | None:
    """An unchanged earlier build of `request` (report and warnings), served from the cache, or None."""
    cfg, entry = configure(request)
    key = _report_key(request, cfg, entry)
    hit = None if key is None else _cached(key)
    return None if hit is None else _served(hit, request, entry)


def _cost_context(target: Target, plan: _mesh.MeshPlan, params: int, tokens: int | None) -> CostContext:
    topology = target.topology
    chip = chip_of(topology.family)
    per_chip = chip.devices_per_chip if chip is not None else 1
    links, rings = axis_links(topology.physical_shape, topology.wrap, per_chip, plan.axis_names, plan.ici)
    from aotcheck._replica_groups import layout_from_plan  # numpy: only for a compile, not for a cached report

    layout = layout_from_plan(plan.axis_names, plan.ici, plan.dcn, per_slice_program=target.backend != "mock")
    return CostContext(layout, chip, params, tokens, topology.chips_per_slice * target.num_slices, links, rings)


def _header(cfg: RunConfig, entry: ModelEntry, path: _state.Path, target: Target, plan: _mesh.MeshPlan) -> Header:
    topology = target.topology
    core, own = _reads.settings_read(cfg, entry.spec.ignores)
    return Header(
        model=entry.name,
        model_source=entry.source,
        path=path,
        backend=target.backend,
        versions=versions(),
        topology=TopologyInfo(
            name=target.name,
            slice=topology.name,
            libtpu_topology=topology.libtpu_topology,
            num_slices=target.num_slices,
            devices=len(target.devices),
            chips=topology.chips_per_slice * target.num_slices,
            device_kind=target.device_kind,
            hbm_bytes_per_device=topology.hbm_bytes_per_device,
        ),
        mesh=MeshInfo(
            axis_names=plan.axis_names,
            shape=plan.shape,
            ici=dict(zip(plan.axis_names, plan.ici, strict=True)),
            dcn=dict(zip(plan.axis_names, plan.dcn, strict=True)),
        ),
        rules=cfg.rules,
        config=core,
        own_config=own,
        rewrites=_canonical.recordable(entry.spec.rewrites, f"ModelSpec '{entry.spec.name}' rewrites"),
    )


def _leaf(leaf: _state.Leaf, spec: _sharding.Spec, mesh_shape: dict[str, int]) -> Leaf:
    shard = _sharding.shard_shape(leaf.shape, spec, mesh_shape)
    return Leaf(
        role=leaf.role,
        shape=leaf.shape,
        dtype=leaf.dtype,
        logical_axes=leaf.logical_axes,
        partition_spec=spec,
        shard_shape=shard,
        bytes=_sharding.nbytes(leaf.shape, leaf.dtype),
        bytes_per_device=_sharding.nbytes(shard, leaf.dtype),
    )
