"""What the true-cost analysis and the drift check cost, as ratios of the compile they read.

    python benchmarks/true_cost.py [--model tiny] [--topology v5p-8] [--repeat 3] [--set key=value ...]

Per path, from the report's own timings (no compile cache): the per-step walk of the
compiled HLO, the collective attribution and the estimate (`analysis_seconds`) against
the compile (`compile_seconds`); the drift check (a second lowering and compile,
`drift_seconds`) and `--memory-detail` (a second compile with a dump) likewise. Nothing
is asserted: the ratios are what to compare across changes (the issue's bar: the
analysis under 10% of the compile).
"""

from __future__ import annotations

import argparse
import statistics

import aotcheck

aotcheck.setup_libtpu_env()

from aotcheck._pipeline import Request, build_report  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--topology", default="v5p-8")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args()
    base = Request(model=args.model, topology=args.topology, overrides=tuple(args.sets), cache=False,
                   memory_detail=10)
    build_report(base.with_path("linen"))  # warm up jax and libtpu once, outside the measurements
    for path in ("linen", "nnx"):
        runs = [build_report(base.with_path(path)).timings for _ in range(args.repeat)]

        def ratio(key: str, runs: list[dict[str, float]] = runs) -> float:
            return statistics.median(r[key] / r["compile_seconds"] for r in runs)

        compile_s = statistics.median(r["compile_seconds"] for r in runs)
        print(f"{args.model} on {args.topology} ({path}): compile {compile_s:.2f}s (median of {args.repeat}); "
              f"analysis {ratio('analysis_seconds'):.1%}, drift check {ratio('drift_seconds'):.0%}, "
              f"memory detail {ratio('memory_detail_seconds'):.0%} of the compile")


if __name__ == "__main__":
    main()
