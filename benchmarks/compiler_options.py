"""Which XLA/libtpu compiler options make aotcheck's deviceless TPU compile cheaper, and at what cost.

    python benchmarks/compiler_options.py [--models tiny,unscanned,llama2-7b] [--repeats 3] [--options a,b]

Per model it lowers the training step once, compiles it once to warm up, then compiles it
`--repeats` times with the default options and with each option, round-robin (default,
option 1, option 2, ..., default, option 1, ...; the order rotates each round), so machine
noise falls on all of them alike. It prints per option: accepted or the compiler's error,
the median compile seconds, the ratio against the default's median, and whether every
figure aotcheck reports is identical to the default's: memory analysis (argument, output,
alias, temp, generated code), cost analysis (flops, bytes accessed, transcendentals), the
collectives per kind and a hash of the compiled HLO text (hashes compare within one run
only: the text holds the calling script's path in its source-location table).

Models: `tiny` (v5p-128), `unscanned` (tiny with 4 unscanned layers, v5p-8) and
`llama2-7b` (scanned, v5p-128: ~35 s a compile on 2 cores, so it gets `--big-repeats`).
Nothing is asserted; timings depend on the machine, the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from typing import Any

import aotcheck

aotcheck.setup_libtpu_env()

from aotcheck import _mesh as mesh_mod  # noqa: E402
from aotcheck import _pipeline as pipeline  # noqa: E402
from aotcheck import _program as step  # noqa: E402
from aotcheck import _sharding as sharding  # noqa: E402
from aotcheck import _state as state  # noqa: E402
from aotcheck._analysis import collectives  # noqa: E402
from aotcheck._topology import get_topology, make_target  # noqa: E402

MODELS: dict[str, pipeline.Request] = {
    "tiny": pipeline.Request(topology="v5p-128"),
    "unscanned": pipeline.Request(topology="v5p-8", overrides=("scan_layers=false", "base_num_decoder_layers=4")),
    "llama2-7b": pipeline.Request(model="llama2-7b", topology="v5p-128"),
}

# name -> compiler_options. `default` is `{}`, not None: jax keeps the executable of a
# `compile()` without options on the Lowered object, so a None would be timed once only.
OPTIONS: dict[str, dict[str, Any]] = {
    "default": {},
    "memory_fitting_effort=-1": {"memory_fitting_effort": -1.0},
    "memory_fitting_level=O0": {"memory_fitting_level": 9},
    "xla_llvm_disable_expensive_passes": {"xla_llvm_disable_expensive_passes": True},
    "xla_jf_llvm_use_fast_opt": {"xla_jf_llvm_use_fast_opt": True},
    "no_latency_hiding_scheduler": {"xla_tpu_enable_latency_hiding_scheduler": False},
    "no_remat_pass": {"xla_disable_hlo_passes": "rematerialization"},
    "no_verify_buffer_assignment": {"xla_tpu_verify_buffer_assignment": False},
    "deduplicated_calls": {"xla_tpu_enable_deduplicated_calls": True},
    "exec_time_optimization_effort=-1": {"exec_time_optimization_effort": -1.0},
    "optimization_level=O1": {"optimization_level": 19},
    "optimization_level=O0": {"optimization_level": 9},
}
# Figures whose deviation is shown as a relative change; the others are counts or a hash.
RELATIVE = ("argument", "output", "alias", "temp", "code", "flops", "bytes_accessed", "transcendentals")


def lowered_for(request: pipeline.Request) -> Any:
    """`pipeline.build` up to `step.lower`, returning jax's Lowered object."""
    cfg, entry = pipeline.configure(request)
    path: state.Path = "nnx" if cfg.core.pure_nnx else "linen"
    target = make_target(get_topology(request.topology), request.num_slices, request.backend)
    plan = mesh_mod.plan_mesh(cfg, target)
    mesh = mesh_mod.build_mesh(plan, target, cfg.core.allow_split_physical_axes)
    batch = state.abstract_batch(cfg, entry.spec, state.global_batch_size(cfg, len(target.devices)))
    rules = sharding.effective_rules(cfg.rules, plan.axis_names)
    abstract = state.abstract_state(cfg, entry.spec, path, batch, mesh, rules)
    specs = tuple(sharding.leaf_spec(leaf.shape, leaf.logical_axes, rules, plan.shape, leaf.path)
                  for leaf in abstract.leaves)
    batch_specs = {k: sharding.leaf_spec(f.shape, f.logical_axes, rules, plan.shape, k) for k, f in batch.items()}
    return step.lower(cfg, entry.spec, abstract, specs, batch, batch_specs, mesh, rules).lowered


def figures(executable: Any) -> dict[str, Any]:
    m = executable.memory_analysis()
    cost = executable.cost_analysis() or {}
    if isinstance(cost, list):
        cost = cost[0] if cost else {}
    text = executable.as_text()
    out: dict[str, Any] = {
        "argument": m.argument_size_in_bytes,
        "output": m.output_size_in_bytes,
        "alias": m.alias_size_in_bytes,
        "temp": m.temp_size_in_bytes,
        "code": m.generated_code_size_in_bytes,
        "flops": cost.get("flops"),
        "bytes_accessed": cost.get("bytes accessed"),
        "transcendentals": cost.get("transcendentals"),
    }
    out.update(collectives(text))
    out["hlo_sha"] = hashlib.sha256(text.encode()).hexdigest()[:12]
    return out


def deviations(base: dict[str, Any], other: dict[str, Any]) -> str:
    parts = []
    for k, v in base.items():
        w = other[k]
        if v == w:
            continue
        if k in RELATIVE and v:
            parts.append(f"{k} {(w - v) / v:+.1%}")
        elif k == "hlo_sha":
            parts.append("HLO text")
        else:
            parts.append(f"{k} {v}->{w}")
    return "yes" if not parts else "no (" + ", ".join(parts) + ")"


def compile_once(lowered: Any, options: dict[str, Any]) -> tuple[float, Any]:
    import jax

    # jax keeps compiled executables in memory, keyed by program and options: without this
    # every repeat after the first would be a lookup.
    jax.clear_caches()
    start = time.perf_counter()
    executable = lowered.compile(compiler_options=dict(options))
    return time.perf_counter() - start, executable


def run_model(name: str, options: dict[str, dict[str, Any]], repeats: int) -> None:
    start = time.perf_counter()
    lowered = lowered_for(MODELS[name])
    lower_s = time.perf_counter() - start
    warm_s, executable = compile_once(lowered, {})
    base = figures(executable)
    times: dict[str, list[float]] = {k: [] for k in options}
    found: dict[str, str] = {}
    hashes: set[str] = {base["hlo_sha"]}
    names = list(options)
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for opt in order:
            if opt in found and found[opt].startswith("rejected"):
                continue
            try:
                seconds, executable = compile_once(lowered, options[opt])
            except Exception as exc:  # noqa: BLE001 - the compiler's verdict is the result
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                found[opt] = "rejected: " + first[:140]
                continue
            times[opt].append(seconds)
            figs = figures(executable)
            if opt == "default":
                hashes.add(figs["hlo_sha"])
            else:
                found.setdefault(opt, deviations(base, figs))
        print(f"  [{name}] round {r + 1}/{repeats} done", file=sys.stderr, flush=True)
    default_median = statistics.median(times["default"])
    print(f"\n{name} ({MODELS[name].model or 'tiny'} on {MODELS[name].topology}, "
          f"overrides {list(MODELS[name].overrides) or 'none'}): lower {lower_s:.1f} s, warm-up compile {warm_s:.1f} s, "
          f"median of {repeats}; default deterministic: {'yes' if len(hashes) == 1 else 'NO'}")
    print("| option | accepted | median s | ratio | figures identical |")
    print("| --- | --- | ---: | ---: | --- |")
    for opt in names:
        if opt != "default" and found.get(opt, "").startswith("rejected"):
            print(f"| {opt} | {found[opt]} | | | |")
            continue
        med = statistics.median(times[opt])
        same = "(reference)" if opt == "default" else found[opt]
        print(f"| {opt} | yes | {med:.2f} | {med / default_median:.2f} | {same} |")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,unscanned", help="comma-separated: " + ",".join(MODELS))
    parser.add_argument("--repeats", type=int, default=3, help="compiles per option for tiny and unscanned")
    parser.add_argument("--big-repeats", type=int, default=2, help="compiles per option for llama2-7b")
    parser.add_argument("--options", default="", help="comma-separated subset of: " + ",".join(o for o in OPTIONS if o != "default"))
    args = parser.parse_args()
    chosen = [o.strip() for o in args.options.split(",") if o.strip()] or [o for o in OPTIONS if o != "default"]
    unknown = [o for o in chosen if o not in OPTIONS]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if unknown or bad:
        parser.error(f"unknown option(s) {unknown} / model(s) {bad}")
    options = {"default": {}, **{o: OPTIONS[o] for o in chosen}}
    for name in models:
        run_model(name, options, args.big_repeats if name == "llama2-7b" else args.repeats)


if __name__ == "__main__":
    main()
