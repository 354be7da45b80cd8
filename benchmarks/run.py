"""aotcheck's speed in one run, as ratios: every figure is measured here, side by side, in fresh processes.

    python benchmarks/run.py [--model tiny] [--topology v5p-128] [--repeat 2] [--big]

- cold `aotcheck compile --no-cache --no-drift` against `benchmarks/raw_jax.py` (the same
  program by hand, one compile; their memory figures and FLOPs are checked equal), wall
  time and peak memory; the default compile (with the drift check's second compile) for
  reference; against MaxText's `train_compile` where MaxText is installed (skipped with a
  note otherwise);
- warm (an unchanged re-run: the report from the cache) against cold, and against
  `python -c "import jax"`;
- `--fast` against the default compile;
- `aotcheck diff linen nnx` with `--jobs 2` and with its default against `--jobs 1` (cold
  cache each), and whether their outputs are equal;
- `aotcheck diff` of two 10,000-leaf reports and of their golden directories
  (`benchmarks/diff_speed.py --write`), with the cache a first command leaves and with an
  empty one, against the same commands on 30-leaf files (their
  fixed cost), `python -c pass` and a typer command that only prints its arguments
  (`benchmarks/typer_floor.py`: the floor of any typer command);
- `--no-compile` wall time and peak memory of the built-in models on several topology
  families, the largest model on the largest slice among them;
- with `--big`: the peak memory of an unscanned llama2-7b compile on v5p-128 against the
  raw-JAX script's (each ~8 GB and 2-10 minutes), and whether their figures are equal.

Medians of --repeat (of at least 15 for the sub-second diff rows), alternating the two sides
of each ratio so that machine load falls on both. Nothing is asserted: the ratios are what to
compare across changes and machines.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AOTCHECK = [sys.executable, "-m", "aotcheck"]
TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
# What any typer command costs before it does anything (rich only loads to draw a table).
TYPER_FLOOR = [sys.executable, str(HERE / "typer_floor.py"), "diff", "a.json", "b.json"]
# The largest built-in model on the largest slice, with a mesh that divides it (18,432 devices).
LARGEST = ("llama2-70b", "tpu7x-18432", ("--set", "ici_fsdp_parallelism=32", "--set", "ici_data_parallelism=-1"))


def run(cmd: list[str], cache: Path | None = None, cwd: Path | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (0 if unknown) and stdout of a fresh process.

    Bytecode is cached, as for an installed package: with PYTHONDONTWRITEBYTECODE set (some
    shells set it), every run would compile aotcheck's sources again (~0.1 s). The wall time
    is this process's clock around the run (`/usr/bin/time` gives 0.01 s steps, coarse
    against a 0.3 s target); `/usr/bin/time` gives the peak RSS."""
    env = {**os.environ, "AOTCHECK_CACHE_DIR": str(cache or Path(tempfile.mkdtemp(prefix="aotcheck-bench-")))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    with tempfile.NamedTemporaryFile("r") as stats:
        wrapped = [TIME, "-f", "%M", "-o", stats.name, *cmd] if TIME else cmd
        start = time.perf_counter()
        out = subprocess.run(wrapped, capture_output=True, text=True, env=env, check=False, cwd=cwd)
        wall = time.perf_counter() - start
        if out.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
        fields = stats.read().split()[-1:] if TIME else []
    return wall, int(fields[0]) // 1024 if fields else 0, out.stdout


def median_pair(a: list[str], b: list[str], repeat: int, cache_a: Path | None = None,
                cwd: Path | None = None, cache_b: Path | None = None) -> tuple[float, float, str, str, int, int]:
    """Medians of wall time of `a` and `b`, run in turn; their last outputs; their largest peak RSS.
    A side without a cache directory runs with an empty one each time."""
    ta, tb, out_a, out_b, rss_a, rss_b = [], [], "", "", 0, 0
    for _ in range(repeat):
        wall, rss, out_a = run(a, cache_a, cwd)
        ta.append(wall)
        rss_a = max(rss_a, rss)
        wall, rss, out_b = run(b, cache_b, cwd)
        tb.append(wall)
        rss_b = max(rss_b, rss)
    return statistics.median(ta), statistics.median(tb), out_a, out_b, rss_a, rss_b


def row(name: str, value: str, note: str = "") -> None:
    print(f"| {name} | {value} | {note} |", flush=True)


def same_figures(report: str, raw: str) -> bool:
    compiled, by_hand = json.loads(report)["compile"], json.loads(raw)
    memory = all(compiled["memory_per_device"][k] == v for k, v in by_hand["memory"].items())
    return memory and compiled["xla_cost"]["flops"] == by_hand["flops"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--topology", default="v5p-128")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--big", action="store_true", help="also the unscanned llama2-7b memory comparison")
    args = parser.parse_args()
    target = ["--model", args.model, "--topology", args.topology]
    compile_cmd = [*AOTCHECK, "compile", *target, "--no-cache", "--format", "json"]
    one_compile = [*compile_cmd, "--no-drift"]
    raw_cmd = [sys.executable, str(HERE / "raw_jax.py"), *target]
    print(f"{args.model} on {args.topology}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the start; "
          f"medians of {args.repeat}\n")
    print("| measure | result | note |\n| --- | ---: | --- |")

    cold, raw, report, raw_out, rss, raw_rss = median_pair(one_compile, raw_cmd, args.repeat)
    row("cold compile (--no-drift) / raw JAX", f"{cold / raw:.3f}",
        f"{cold:.2f} s / {raw:.2f} s; same figures: {'yes' if same_figures(report, raw_out) else 'NO'}")
    row("peak memory: cold compile / raw JAX", f"{rss / raw_rss:.3f}", f"{rss} MB / {raw_rss} MB")
    default, raw2, _, _, _, _ = median_pair(compile_cmd, raw_cmd, args.repeat)
    row("default compile (with the drift check) / raw JAX", f"{default / raw2:.3f}",
        f"{default:.2f} s / {raw2:.2f} s: the drift check is a second compile")
    if importlib.util.find_spec("MaxText") is None:
        row("cold compile / MaxText train_compile", "-", "skipped: MaxText is not installed")
    else:
        maxtext = [sys.executable, "-m", "MaxText.train_compile", "MaxText/configs/base.yml", f"compile_topology={args.topology}",
                   "compile_topology_num_slices=1", f"model_name={args.model}"]
        cold2, mt, _, _, _, _ = median_pair(one_compile, maxtext, args.repeat)
        row("cold compile / MaxText train_compile", f"{cold2 / mt:.3f}", f"{cold2:.2f} s / {mt:.2f} s")

    cache = Path(tempfile.mkdtemp(prefix="aotcheck-bench-warm-"))
    run([*AOTCHECK, "compile", *target], cache)  # fill the cache
    warm, jax_import, _, _, _, _ = median_pair([*AOTCHECK, "compile", *target], [sys.executable, "-c", "import jax"],
                                               max(3, args.repeat), cache)
    row("warm re-run / cold (default compile)", f"{warm / default:.3f}", f"{warm:.2f} s (target <= 1.0 s)")
    row("warm re-run / `import jax`", f"{warm / jax_import:.2f}", f"{jax_import:.2f} s for import jax (target <= 1.7)")

    fast, plain, _, _, _, _ = median_pair([*one_compile, "--fast"], one_compile, args.repeat)
    row("--fast / default compile (--no-drift both)", f"{fast / plain:.3f}", f"{fast:.2f} s / {plain:.2f} s")

    diff = [*AOTCHECK, "diff", "linen", "nnx", *target, "--format", "json"]
    parallel, serial, out_p, out_s, _, _ = median_pair([*diff, "--jobs", "2"], [*diff, "--jobs", "1"], args.repeat)
    row("diff linen nnx: --jobs 2 / --jobs 1", f"{parallel / serial:.3f}",
        f"{parallel:.2f} s / {serial:.2f} s, cold cache; same output: {'yes' if out_p == out_s else 'NO'}")
    auto, serial2, out_a, out_s2, _, _ = median_pair(diff, [*diff, "--jobs", "1"], args.repeat)
    row("diff linen nnx: default / --jobs 1", f"{auto / serial2:.3f}",
        f"{auto:.2f} s / {serial2:.2f} s, cold cache (the default picks by idle cores); "
        f"same output: {'yes' if out_a == out_s2 else 'NO'}")

    files = Path(tempfile.mkdtemp(prefix="aotcheck-bench-diff-"))
    small = Path(tempfile.mkdtemp(prefix="aotcheck-bench-diff-small-"))
    run([sys.executable, str(HERE / "diff_speed.py"), "--leaves", "10000", "--write", str(files)])
    run([sys.executable, str(HERE / "diff_speed.py"), "--leaves", "30", "--write", str(small)])
    # Sub-second commands: 15 runs each take seconds, and a median of 15 moves less with this
    # shared machine's drift (10-20% within the hour) than one of 5.
    repeat = max(15, args.repeat)
    bare, floor, _, _, _, _ = median_pair([sys.executable, "-c", "pass"], TYPER_FLOOR, repeat)
    # As from a user's second command on: the canonical rules' YAML, parsed by the first, comes from the cache.
    cache = Path(tempfile.mkdtemp(prefix="aotcheck-bench-diff-cache-"))
    run([*AOTCHECK, "diff", str(small / "a.json"), str(small / "b.json")], cache)
    for name, a, b in (("reports", "a.json", "b.json"), ("golden directories", "ga", "gb")):
        # The same command on 30-leaf files is its fixed cost: what the 10,000 leaves add is the comparison's.
        wall, fixed, _, _, _, _ = median_pair([*AOTCHECK, "diff", a, b], [*AOTCHECK, "diff", str(small / a), str(small / b)],
                                              repeat, cache, files, cache)
        first = statistics.median(run([*AOTCHECK, "diff", a, b], cwd=files)[0] for _ in range(repeat))
        row(f"10,000-leaf diff of {name}", f"{wall:.3f} s",
            f"target 0.3 s; {first:.3f} s with an empty cache (a first command parses the canonical rules' YAML); "
            f"the same on 30 leaves {fixed:.3f} s, so the leaves add {wall - fixed:.3f} s; "
            f"`python -c pass` {bare:.3f} s, a typer command that only prints its arguments {floor:.3f} s")

    for model, topology, sets in (("tiny", "v5p-128", ()), ("llama2-7b", "v5p-128", ()), ("llama2-70b", "v6e-256", ()),
                                  ("mixtral-8x7b", "v5p-128", ()), ("llama3-8b", "tpu7x-16", ()),
                                  ("mistral-7b", "v5e-16", ()), LARGEST):
        cmd = [*AOTCHECK, "compile", "--model", model, "--topology", topology, *sets, "--no-compile", "--format", "json"]
        walls, peak = [], 0
        for _ in range(args.repeat):
            wall, rss, _ = run(cmd)
            walls.append(wall)
            peak = max(peak, rss)
        row(f"--no-compile {model} on {topology}", f"{statistics.median(walls):.2f} s, {peak} MB",
            "target < 2 s, < 500 MB" + (f" ({' '.join(sets[1::2])})" if sets else ""))

    if args.big:
        big = ["--model", "llama2-7b", "--topology", "v5p-128", "--set", "scan_layers=false"]
        _, _, report, raw_out, rss, raw_rss = median_pair([*AOTCHECK, "compile", *big, "--no-cache", "--no-drift", "--format", "json"],
                                               [sys.executable, str(HERE / "raw_jax.py"), "--model", "llama2-7b",
                                                "--topology", "v5p-128", "--set", "scan_layers=false"], 1)
        row("peak memory, unscanned llama2-7b on v5p-128: aotcheck / raw JAX", f"{rss / raw_rss:.3f}",
            f"{rss} MB / {raw_rss} MB (target <= 1.05); same figures: {'yes' if same_figures(report, raw_out) else 'NO'}")
    print(f"\nload {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
