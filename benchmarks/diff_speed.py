"""How long `aotcheck diff` of two big reports takes: parse, compare, render, and the gate's golden read.

    python benchmarks/diff_speed.py [--leaves 10000] [--repeat 3]
    python benchmarks/diff_speed.py --write DIR   # only write a.json, b.json and goldens ga/, gb/ to DIR

Generates two synthetic reports of N leaves each (a Linen and an NNX state of N/3
parameters with Adam's mu and nu, the NNX side with its rng key, a few real differences on
side B), writes them as JSON and golden files, and times, median of --repeat, in this
process: reading both reports (`read_report`), `compare`, the table rendering, reading both
as golden directories, and the gate's read + compare. `benchmarks/run.py` times the whole
`aotcheck diff` commands on the written files in fresh processes (the issue's 0.3 s target).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aotcheck import _golden, render
from aotcheck._analysis import Compile, Memory
from aotcheck._compare import compare
from aotcheck._report import Header, Leaf, MeshInfo, Report, TopologyInfo, read_report

AXES = ("data", "fsdp", "tensor")
SHAPE = {"data": 1, "fsdp": 8, "tensor": 8}
# The logical-axis rules a real report carries: every leaf's names resolve, none is unmatched.
RULES = (("embed", ("fsdp",)), ("mlp", ("tensor",)))


def _leaf(role: str, spec: tuple[Any, ...], dtype: str = "float32") -> Leaf:
    return Leaf(role=role, shape=(512, 256), dtype=dtype, logical_axes=("embed", "mlp"), partition_spec=spec,
                shard_shape=(64, 32), bytes=512 * 256 * 4, bytes_per_device=64 * 32 * 4)


def synthetic(path: str, n: int, changed: bool) -> Report:
    """`n` leaves: n/3 parameters, their mu and nu; side B changes a few specs and one dtype."""
    leaves: dict[str, Leaf] = {}
    for i in range(n // 3):
        spec: tuple[Any, ...] = ("tensor", "fsdp") if changed and i % 997 == 0 else ("fsdp", "tensor")
        name = f"decoder/layers_{i // 8}/w{i % 8}/kernel"
        if path == "linen":
            leaves[f"params/{name}"] = _leaf("param", spec)
            for slot in ("mu", "nu"):
                leaves[f"opt_state/0/{slot}/{name}"] = _leaf("optimizer", spec)
        else:
            nnx_name = name.replace(f"layers_{i // 8}", f"layers/{i // 8}")
            leaves[f"model/{nnx_name}/value"] = _leaf("param", spec)
            for slot in ("mu", "nu"):
                leaves[f"optimizer/opt_state/0/{slot}/{nnx_name}/value"] = _leaf("optimizer", spec)
    step = "step" if path == "linen" else "optimizer/step/value"
    leaves[step] = Leaf(role="step", shape=(), dtype="int32" if path == "linen" else "uint32", logical_axes=None,
                        partition_spec=(), shard_shape=(), bytes=4, bytes_per_device=4)
    if path == "nnx":  # an NNX state keeps its rng key (a dtype whose size reading a golden must know)
        leaves["model/rngs/default/key/value"] = Leaf(role="rng", shape=(), dtype="key<fry>", logical_axes=None,
                                                      partition_spec=(), shard_shape=(), bytes=8, bytes_per_device=8)
    memory = Memory(argument=1 << 30, output=1 << 30, alias=1 << 30, temp=(1 << 28) + (1 << 24) * changed,
                    generated_code=1 << 20)
    section = Compile(verdict="fits", capacity_bytes_per_device=95 << 30, needed_bytes_per_device=memory.peak,
                      memory_per_device=memory, flops=1e12, bytes_accessed=1e11, collectives={"all-gather": 18})
    header = Header(model="synthetic", model_source="benchmarks/diff_speed.py", path=path, backend="mock",
                    topology=TopologyInfo(name="v5p-128", slice="v5p-128", libtpu_topology="v5:4x4x4", num_slices=1,
                                          devices=64, chips=64, device_kind="mock", hbm_bytes_per_device=95 << 30),
                    mesh=MeshInfo(axis_names=AXES, shape=SHAPE, ici=SHAPE, dcn=dict.fromkeys(AXES, 1)),
                    rules=RULES)
    return Report(header=header, leaves=dict(sorted(leaves.items())), compile=section)


def median(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write(directory: Path, leaves: int) -> tuple[Report, Report]:
    """The two reports as `a.json`, `b.json` and golden directories `ga`, `gb` in `directory`."""
    a, b = synthetic("linen", leaves, False), synthetic("nnx", leaves, True)
    (directory / "a.json").write_text(a.to_json())
    (directory / "b.json").write_text(b.to_json())
    _golden.write_golden(directory / "ga", a)
    _golden.write_golden(directory / "gb", b)
    return a, b


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--leaves", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", type=Path, help="only write the files to this directory")
    args = parser.parse_args()
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        write(args.write, args.leaves)
        return
    with tempfile.TemporaryDirectory() as tmp:
        a, b = write(Path(tmp), args.leaves)
        pa, pb, ga, gb = Path(tmp) / "a.json", Path(tmp) / "b.json", Path(tmp) / "ga", Path(tmp) / "gb"
        findings = compare(a, b)
        parse = median(lambda: (read_report(pa), read_report(pb)), args.repeat)
        cmp = median(lambda: compare(a, b), args.repeat)
        text = median(lambda: render.diff_text(findings, a, b, "a", "b"), args.repeat)
        golden = median(lambda: (_golden.read_golden(ga), _golden.read_golden(gb)), args.repeat)
        gate = median(lambda: compare(_golden.read_golden(ga), _golden.read_golden(gb)), args.repeat)
    print(f"{len(a.leaves)} vs {len(b.leaves)} leaves, {len(findings)} findings, median of {args.repeat}")
    print(f"read both reports   {parse:7.3f} s")
    print(f"compare             {cmp:7.3f} s")
    print(f"parse + compare     {parse + cmp:7.3f} s  (target 0.3 s)")
    print(f"render as text      {text:7.3f} s")
    print(f"read both goldens   {golden:7.3f} s")
    print(f"gate (read+compare) {gate:7.3f} s")


if __name__ == "__main__":
    main()
