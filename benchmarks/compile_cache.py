"""How much aotcheck's compile cache saves, as ratios against a cold compile measured in the same run.

    python benchmarks/compile_cache.py [--model tiny] [--topology v5p-128] [--repeat 3]

Prints, per path: cold (lower + compile), warm (lower + cache hit) and the no-compile
sharding report, each as a ratio of the cold time. Nothing here is asserted: timings
depend on the machine; the ratios are what to compare across changes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import aotcheck

aotcheck.setup_libtpu_env()

import os  # noqa: E402

from aotcheck._pipeline import Request, build_report  # noqa: E402


def timed(request: Request) -> float:
    start = time.perf_counter()
    build_report(request)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--topology", default="v5p-128")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ["AOTCHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="aotcheck-bench-")
    base = Request(model=args.model, topology=args.topology)
    timed(base.with_path("linen"))  # warm up jax and libtpu once, outside the measurements
    print(f"{args.model} on {args.topology}, median of {args.repeat}")
    print(f"{'path':6} {'cold s':>8} {'warm/cold':>10} {'no-compile/cold':>16}")
    for path in ("linen", "nnx"):
        request = base.with_path(path)
        cold = statistics.median(timed(Request(**{**request.__dict__, "cache": False})) for _ in range(args.repeat))
        timed(request)  # fill the cache
        warm = statistics.median(timed(request) for _ in range(args.repeat))
        sharding = statistics.median(timed(Request(**{**request.__dict__, "compile": False})) for _ in range(args.repeat))
        print(f"{path:6} {cold:8.2f} {warm / cold:10.3f} {sharding / cold:16.3f}")


if __name__ == "__main__":
    main()
