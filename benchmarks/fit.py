"""`aotcheck fit` from a cold cache, then repeated from the compile cache, as a ratio; and where the repeat's time goes.

    python benchmarks/fit.py [--topology v5p-8] [--jobs 1] [--max-compiles 24] [--set key=value ...]

A search over three remat policies and two meshes (fsdp=4; fsdp=2,tensor=2) of the tiny
model, bounded by --max-compiles (the same bound for both runs, so both build the same
candidates; tiny fits up to very large batches on 95 GiB, and an unbounded search compiles
them all). The repeat still builds the state and traces and lowers every candidate (the
cache key is the lowered program), so it cannot be free: the breakdown says how much of it
is target, state and lowering. Nothing is asserted; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict

import aotcheck

aotcheck.setup_libtpu_env()

import os  # noqa: E402

from aotcheck import render  # noqa: E402
from aotcheck._fit import Outcome, build, search  # noqa: E402
from aotcheck._pipeline import Request  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)


def measured(request: Request) -> Outcome:
    """The real builder, adding each build's stage timings to SPENT (in-process: --jobs 1)."""
    start = time.perf_counter()
    outcome = build(request)
    SPENT["build_seconds"] += time.perf_counter() - start
    for key, seconds in (outcome.report.timings if outcome.report else {}).items():
        SPENT[key] += seconds
    return outcome


def run(request: Request, jobs: int, max_compiles: int | None) -> tuple[float, str, dict[str, float]]:
    SPENT.clear()
    start = time.perf_counter()
    result, _ = search(request, meshes=["fsdp=4", "fsdp=2,tensor=2"], remat=["none", "minimal", "full"], jobs=jobs,
                       max_compiles=max_compiles, builder=measured if jobs == 1 else build)
    seconds = time.perf_counter() - start
    return seconds, render.fit_markdown(result) + f"{result.builds} builds\n", dict(SPENT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topology", default="v5p-8")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--max-compiles", type=int, default=24, help="bound each run (the same bound twice)")
    parser.add_argument("--set", dest="sets", action="append",
                        default=None, help="config overrides (default: none, the tiny model as it is)")
    args = parser.parse_args()
    os.environ["AOTCHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="aotcheck-bench-fit-")
    sets = tuple(args.sets or ())
    request = Request(model="tiny", topology=args.topology, overrides=sets)
    first, table, spent_first = run(request, args.jobs, args.max_compiles)
    again, table_again, spent_again = run(request, args.jobs, args.max_compiles)
    assert table_again == table, "the repeated search gave another answer"
    print(table)
    print(f"tiny {' '.join(sets)} on {args.topology}, -j {args.jobs}, --max-compiles {args.max_compiles}")
    print(f"first run {first:.1f} s, repeated run {again:.1f} s: repeat/first = {again / first:.3f}")
    for name, spent in (("first", spent_first), ("repeat", spent_again)):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items()))
        print(f"{name}: {parts}")


if __name__ == "__main__":
    main()
