"""aotcheck's speed in one run, as ratios: every figure is measured here, side by side, in fresh processes.

    python benchmarks/run.py [--model tiny] [--topology v5p-128] [--repeat 2]

- cold `aotcheck compile --no-cache` against `benchmarks/raw_jax.py` (the same program by
  hand; their memory figures and FLOPs are checked equal), and against MaxText's
  `train_compile` where MaxText is installed (skipped with a note otherwise);
- warm (an unchanged re-run: the report from the cache) against cold, and against
  `python -c "import jax"`;
- `--fast` against the default compile;
- `aotcheck diff linen nnx` in two processes against one (both with a cold cache);
- the 10,000-leaf diff (`benchmarks/diff_speed.py`);
- `--no-compile` wall time and peak memory of a few built-in models and topology families.

Medians of --repeat, alternating the two sides of each ratio so that machine load falls on
both. Nothing is asserted: the ratios are what to compare across changes and machines.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
AOTCHECK = [sys.executable, "-m", "aotcheck"]
TIME = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)


def run(cmd: list[str], cache: Path | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in MB (0 if unknown) and stdout of a fresh process."""
    env = {**os.environ, "AOTCHECK_CACHE_DIR": str(cache or Path(tempfile.mkdtemp(prefix="aotcheck-bench-")))}
    with tempfile.NamedTemporaryFile("r") as stats:
        wrapped = [TIME, "-f", "%e %M", "-o", stats.name, *cmd] if TIME else cmd
        out = subprocess.run(wrapped, capture_output=True, text=True, env=env, check=False)
        if out.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
        fields = stats.read().split()[-2:] if TIME else []
    wall, rss = (float(fields[0]), int(fields[1]) // 1024) if len(fields) == 2 else (0.0, 0)
    return wall, rss, out.stdout


def median_pair(a: list[str], b: list[str], repeat: int, cache_a: Path | None = None) -> tuple[float, float, str, str]:
    ta, tb, out_a, out_b = [], [], "", ""
    for _ in range(repeat):
        wall, _, out_a = run(a, cache_a)
        ta.append(wall)
        wall, _, out_b = run(b)
        tb.append(wall)
    return statistics.median(ta), statistics.median(tb), out_a, out_b


def row(name: str, value: str, note: str = "") -> None:
    print(f"| {name} | {value} | {note} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--topology", default="v5p-128")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    target = ["--model", args.model, "--topology", args.topology]
    compile_cmd = [*AOTCHECK, "compile", *target, "--no-cache", "--format", "json"]
    print(f"{args.model} on {args.topology}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; "
          f"medians of {args.repeat}\n")
    print("| measure | result | note |\n| --- | ---: | --- |")

    cold, raw, report, raw_out = median_pair(compile_cmd, [sys.executable, str(HERE / "raw_jax.py"), *target], args.repeat)
    memory = json.loads(report)["compile"]
    raw_figures = json.loads(raw_out)
    same = all(memory["memory_per_device"][k] == v for k, v in raw_figures["memory"].items()) and (
        memory["flops"] == raw_figures["flops"])
    row("cold compile / raw JAX", f"{cold / raw:.3f}", f"{cold:.2f} s / {raw:.2f} s; same figures: {'yes' if same else 'NO'}")
    if importlib.util.find_spec("MaxText") is None:
        row("cold compile / MaxText train_compile", "-", "skipped: MaxText is not installed")
    else:
        maxtext = [sys.executable, "-m", "MaxText.train_compile", "MaxText/configs/base.yml", f"compile_topology={args.topology}",
                   "compile_topology_num_slices=1", f"model_name={args.model}"]
        cold2, mt, _, _ = median_pair(compile_cmd, maxtext, args.repeat)
        row("cold compile / MaxText train_compile", f"{cold2 / mt:.3f}", f"{cold2:.2f} s / {mt:.2f} s")

    cache = Path(tempfile.mkdtemp(prefix="aotcheck-bench-warm-"))
    run([*AOTCHECK, "compile", *target], cache)  # fill the cache
    warm, jax_import, _, _ = median_pair([*AOTCHECK, "compile", *target], [sys.executable, "-c", "import jax"],
                                         max(3, args.repeat), cache)
    row("warm re-run / cold", f"{warm / cold:.3f}", f"{warm:.2f} s (target <= 1.0 s)")
    row("warm re-run / `import jax`", f"{warm / jax_import:.2f}", f"{jax_import:.2f} s for import jax (target <= 1.7)")

    fast, default, _, _ = median_pair([*compile_cmd, "--fast"], compile_cmd, args.repeat)
    row("--fast / default compile", f"{fast / default:.3f}", f"{fast:.2f} s / {default:.2f} s")

    diff = [*AOTCHECK, "diff", "linen", "nnx", *target]
    parallel, serial, out_p, out_s = median_pair([*diff, "--jobs", "2"], [*diff, "--jobs", "1"], args.repeat)
    row("diff linen nnx: 2 processes / 1", f"{parallel / serial:.3f}",
        f"{parallel:.2f} s / {serial:.2f} s, cold cache; same output: {'yes' if out_p == out_s else 'NO'}")

    _, _, speed = run([sys.executable, str(HERE / "diff_speed.py"), "--leaves", "10000"])
    figures = {line.rsplit(None, 2)[0].strip(): line.split()[-2] for line in speed.splitlines() if line.endswith(" s")
               or "(target" in line}
    for name in ("compare", "read both reports", "gate (read+compare)"):
        row(f"10,000-leaf diff: {name}", f"{float(figures[name]):.3f} s", "target 0.3 s" if name == "compare" else "")

    for model, topology in (("tiny", "v5p-128"), ("llama2-7b", "v5p-128"), ("llama2-70b", "v6e-256"),
                            ("mixtral-8x7b", "v5p-128"), ("llama3-8b", "tpu7x-16"), ("mistral-7b", "v5e-16")):
        wall, rss, _ = run([*AOTCHECK, "compile", "--model", model, "--topology", topology, "--no-compile", "--format", "json"])
        row(f"--no-compile {model} on {topology}", f"{wall:.2f} s, {rss} MB", "target < 2 s, < 500 MB")


if __name__ == "__main__":
    main()
