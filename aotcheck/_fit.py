"""`aotcheck fit`: the largest per-device batch, the remat policy and the slice a job needs, found by compiling.

Every (topology, mesh, remat policy) combination is searched on its own: per-device batch
1, 2, 4, ... until a compile does not fit, then a binary search between the last fit and
the first miss, so the answer B fits and B+1 was compiled and does not. An out-of-HBM
compile is a result (`Compile.fits` is False), not a failure. A combination the inputs
cannot make (a mesh that does not divide the slice, a torus that cannot carry it, a global
batch that is not a whole per-device batch) is a row with its one-line reason, and the
search goes on. Builds run in rounds: each round takes the next batch of every unfinished
combination, in row order, so the result does not depend on `jobs`; `max_compiles` bounds
the number of builds. Each build is a normal `build_report` and reuses the compile cache.

Pareto order: a fitting row dominates another when it carries at least as much batch per
chip with no more peak HBM per device, and is strictly better in one. The recommendation
is the fitting row with the most batch per chip (then the least peak, fewest chips, row
order); with a fixed global batch, the fitting row with the fewest chips (then least peak).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from aotcheck._analysis import Compile
from aotcheck._errors import EXIT_BUILD, EXIT_DOES_NOT_FIT, EXIT_OK, EXIT_USAGE, AotcheckError, UsageError
from aotcheck._fit_options import check_remat, expand_topologies, parse_mesh
from aotcheck._pipeline import Request
from aotcheck._record import Record
from aotcheck._report import Report
from aotcheck._text import human_bytes
from aotcheck._topology import get_topology, resolve_backend
from aotcheck._true_cost import usable_hbm
from aotcheck._workers import Pool

MAX_BATCH = 1 << 16  # the exponential search stops here: "fits at the cap" beats compiling forever
BUILD_FAILED = "build failed"
INTERRUPTED = "interrupted (Ctrl-C): the rows show what was found"


@dataclass(frozen=True)
class Outcome:
    """One build's result: its compile section (and report), or its one-line error and exit code."""

    compile: Compile | None
    report: Report | None = None
    error: str | None = None
    exit_code: int = EXIT_OK


Builder = Callable[[Request], Outcome]


def build(request: Request) -> Outcome:
    """Build one candidate (the default builder); safe to run in a spawned worker."""
    from aotcheck._pipeline import build_report

    try:
        report = build_report(request)
    except AotcheckError as exc:
        return Outcome(None, None, str(exc), exc.exit_code)
    return Outcome(report.compile, report)


class Probe(Record):
    """One per-device batch tried for a row: `fits`, `does not fit`, or `error` (with its reason)."""

    batch: int
    outcome: Literal["fits", "does not fit", "error"]
    needed_bytes_per_device: int | None = None
    error: str | None = None


class FitRow(Record):
    """One (topology, mesh, remat policy): the largest per-device batch that fits, and its figures."""

    topology: str
    num_slices: int
    devices: int
    chips: int
    mesh: str  # `fsdp=16,tensor=4`, or `config` for the config's own parallelism
    remat_policy: str
    max_per_device_batch_size: int | None  # None: nothing fits (or the combination is infeasible)
    batch_per_chip: float | None
    peak_bytes_per_device: int | None
    usable_bytes_per_device: int | None
    headroom_bytes_per_device: int | None
    flops: float | None = None  # per device per step, loops counted (XLA's figure where there is no count)
    collective_bytes: float | None = None  # per device per step, all kinds, on the wire
    step_seconds: float | None = None  # the roofline estimate (docs/cost.md)
    tokens_per_second_per_chip: float | None = None
    mfu: float | None = None
    pareto: bool = False
    reason: str | None = None  # why nothing fits, why the row is infeasible, or why its search stopped early
    probes: tuple[Probe, ...] = ()


class Recommendation(Record):
    """The configuration to run, and the `--set` overrides that give it."""

    topology: str
    num_slices: int
    mesh: str
    remat_policy: str
    per_device_batch_size: int
    overrides: tuple[str, ...]
    text: str


class FitResult(Record):
    """Every row, the recommendation, and why the search stopped early (if it did)."""

    rows: tuple[FitRow, ...]
    recommendation: Recommendation | None
    stopped: str | None = None
    builds: int = 0

    @property
    def exit_code(self) -> int:
        """0 a configuration fits; else 4 something compiled but did not fit, 3 a build failed, 2 all infeasible."""
        if self.recommendation is not None:
            return EXIT_OK
        if any(p.outcome == "does not fit" for r in self.rows for p in r.probes):
            return EXIT_DOES_NOT_FIT
        if any((r.reason or "").startswith(BUILD_FAILED) for r in self.rows):
            return EXIT_BUILD
        return EXIT_USAGE


@dataclass(frozen=True)
class Combo:
    topology: str
    mesh: str  # label; "config" for none
    remat: str


@dataclass
class _Search:
    """The search state of one combination."""

    combo: Combo
    devices: int
    fixed: tuple[int, ...] | None  # a fixed list of batches (or the one global-batch size); None: search
    fits: dict[int, Outcome] = dataclasses.field(default_factory=dict)
    misses: dict[int, Outcome] = dataclasses.field(default_factory=dict)
    reason: str | None = None  # set when the combination cannot go on

    @property
    def lo(self) -> int:
        return max(self.fits, default=0)

    @property
    def hi(self) -> int | None:
        return min(self.misses, default=None)

    def wanted(self) -> list[int]:
        """The batches to build next (empty: done)."""
        if self.reason is not None:
            return []
        if self.fixed is not None:
            return [b for b in self.fixed if b not in self.fits and b not in self.misses]
        lo, hi = self.lo, self.hi
        if hi is None:
            nxt = 1 if lo == 0 else lo * 2
            return [] if nxt > MAX_BATCH else [nxt]
        return [] if hi - lo <= 1 else [(lo + hi) // 2]

    def remaining(self) -> int:
        """A guess at the builds still to come, for the progress bar."""
        if self.fixed is not None or self.reason is not None:
            return len(self.wanted())
        lo, hi = self.lo, self.hi
        if hi is None:
            return 2 + max(0, math.ceil(math.log2(max(lo, 1))))
        return max(0, math.ceil(math.log2(max(hi - lo, 1))))

    def record(self, batch: int, outcome: Outcome) -> None:
        if outcome.compile is not None:
            (self.fits if outcome.compile.fits else self.misses)[batch] = outcome
            return
        # A usage error at one batch (an indivisible batch sharding) bounds the search like a miss;
        # a failed build says nothing about other batches, so the row stops with it.
        self.misses[batch] = outcome
        if outcome.exit_code != EXIT_USAGE:
            self.reason = f"{BUILD_FAILED}: {outcome.error}"


def fit(request: Request = Request(), **options: Any) -> FitResult:  # noqa: B008 - a frozen dataclass
    """Search each (topology, mesh, remat) for the largest per-device batch that fits, by compiling.

    Arguments:
        request: the model, config, `--set` overrides, slices and backend; its topology unless `topologies`.
        **options: as `search` takes them: `topologies` (names or family ranges like `v5p-{64..512}`),
            `meshes` (`fsdp=16,tensor=4`), `remat` (policies), `batches` (a fixed list instead of the
            search), `global_batch`, `jobs`, `max_compiles`, `on_progress`.

    Returns:
        One row per (topology, mesh, remat) and the recommendation (None when nothing fits).

    Example:
        >>> result = aotcheck.fit(aotcheck.Request(model="tiny", topology="v5p-8"),
        ...                       meshes=["fsdp=4"], remat=["full", "none"], batches=[1, 2])  # doctest: +SKIP
        >>> result.recommendation.overrides[-2:]  # doctest: +SKIP
        ('remat_policy=full', 'per_device_batch_size=2')
    """
    return search(request, **options)[0]


def search(
    request: Request = Request(),  # noqa: B008 - a frozen dataclass
    *,
    topologies: Sequence[str] = (),
    meshes: Sequence[str] = (),
    remat: Sequence[str] = (),
    batches: Sequence[int] = (),
    global_batch: int | None = None,
    jobs: int = 1,
    max_compiles: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    builder: Builder = build,
) -> tuple[FitResult, Report | None]:
    """`fit`, also giving the report of the recommended configuration (for `--out`).

    Arguments:
        request: the model, config, `--set` overrides, slices and backend; its topology unless `topologies`.
        topologies: slice names or family ranges (`v5p-{64..512}`).
        meshes: `--mesh` texts (`fsdp=16,tensor=4`); none: the config's parallelism.
        remat: remat policies; none: the config's.
        batches: per-device batches to try instead of searching.
        global_batch: hold the global batch fixed; the per-device batch is it divided by the devices.
        jobs: worker processes (1: this process).
        max_compiles: stop after this many builds.
        on_progress: called with (builds done, builds expected) after each round.
        builder: builds one request (a test passes a fake).

    Returns:
        The result and the recommended configuration's report (None when nothing fits, or from a fake builder).
    """
    from aotcheck._pipeline import configure

    if batches and global_batch is not None:
        raise UsageError("--batch and --global-batch exclude each other: the global batch fixes the per-device batch")
    if any(b < 1 for b in batches) or (global_batch is not None and global_batch < 1):
        raise UsageError("batch sizes must be positive integers")
    if max_compiles is not None and max_compiles < 1:
        raise UsageError("--max-compiles must be at least 1")
    check_remat(remat)
    resolve_backend(request.backend)  # a bad backend is the command's error, not every row's
    names = expand_topologies(topologies or (request.topology,))
    mesh_list = list(dict.fromkeys(parse_mesh(m) for m in meshes)) or [("config", ())]
    remats = list(dict.fromkeys(remat)) or [configure(request)[0].core.remat_policy]
    searches = []
    for name in names:
        devices = get_topology(name).devices_per_slice * request.num_slices
        fixed = tuple(sorted(set(batches))) or None
        reason = None
        if global_batch is not None:
            fixed = (global_batch // devices,)
            if global_batch % devices:
                reason = (f"global batch {global_batch} is not a whole per-device batch on {devices} devices "
                          f"({global_batch / devices:g}); choose a multiple of {devices}")
        for label, _ in mesh_list:
            for policy in remats:
                searches.append(_Search(Combo(name, label, policy), devices, fixed, reason=reason))
    mesh_overrides = dict(mesh_list)

    def candidate(s: _Search, batch: int) -> Request:
        sets = (*mesh_overrides[s.combo.mesh], f"remat_policy={s.combo.remat}", f"per_device_batch_size={batch}")
        return replace(request, topology=s.combo.topology, overrides=request.overrides + sets, compile=True)

    done, stopped = 0, None
    try:
        with Pool(jobs) as pool:
            while todo := [(s, b) for s in searches for b in s.wanted()]:
                if max_compiles is not None and done + len(todo) > max_compiles:
                    todo = todo[: max_compiles - done]
                    stopped = f"stopped after --max-compiles {max_compiles} builds"
                if not todo:
                    break
                for (s, b), outcome in zip(todo, pool.map(builder, [candidate(s, b) for s, b in todo]), strict=True):
                    s.record(b, outcome)
                done += len(todo)
                if on_progress is not None:
                    on_progress(done, done + sum(s.remaining() for s in searches))
                if stopped:
                    break
    except KeyboardInterrupt:
        stopped = INTERRUPTED
    rows = mark_pareto([make_row(s, request.num_slices, stopped) for s in searches])
    choice = recommend(rows, fixed_global=global_batch is not None)
    result = FitResult(rows=tuple(rows), recommendation=None if choice is None else _recommendation(
        rows[choice], mesh_overrides[rows[choice].mesh]), stopped=stopped, builds=done)
    report = None if choice is None else searches[choice].fits[searches[choice].lo].report
    return result, report


def make_row(s: _Search, num_slices: int, stopped: str | None) -> FitRow:
    """One row from a finished (or stopped) search: the figures of the largest batch that fitted."""
    topology = get_topology(s.combo.topology)
    chips = topology.chips_per_slice * num_slices
    probes = tuple(_probe(b, o) for b, o in sorted({**s.fits, **s.misses}.items()))
    best = s.fits[s.lo].compile if s.fits else None
    reason = s.reason
    if reason is None and best is None and s.misses:
        first = s.misses[min(s.misses)]
        c = first.compile
        reason = first.error if c is None else (
            f"does not fit at per-device batch {min(s.misses)}: needs {human_bytes(c.needed_bytes_per_device)} "
            f"of {human_bytes(c.capacity_bytes_per_device)}")
    if reason is None and s.wanted() and stopped:
        reason = stopped
    elif reason is None and s.fixed is None and s.hi is None and s.lo >= MAX_BATCH:
        reason = f"fits at the search's cap of {MAX_BATCH} per device"
    return FitRow(
        topology=s.combo.topology, num_slices=num_slices, devices=s.devices, chips=chips, mesh=s.combo.mesh,
        remat_policy=s.combo.remat, max_per_device_batch_size=s.lo if best else None,
        batch_per_chip=s.lo * s.devices / chips if best else None,
        peak_bytes_per_device=best.needed_bytes_per_device if best else None,
        usable_bytes_per_device=best.capacity_bytes_per_device if best else usable_hbm(topology),
        headroom_bytes_per_device=best.headroom_bytes_per_device if best else None,
        **_figures(best),
        reason=reason, probes=probes,
    )


def _figures(c: Compile | None) -> dict[str, float | None]:
    """The cost columns of a row: per-step counts and the roofline estimate of its largest fitting batch."""
    if c is None:
        return {}
    flops = c.per_step.flops if c.per_step else c.xla_cost.flops if c.xla_cost else None
    estimate = c.estimate
    return {
        "flops": flops,
        "collective_bytes": sum(t.bytes for t in c.collectives.values()) if c.collectives else None,
        "step_seconds": estimate.step_seconds if estimate else None,
        "tokens_per_second_per_chip": estimate.tokens_per_second_per_chip if estimate else None,
        "mfu": estimate.mfu if estimate else None,
    }


def _probe(batch: int, o: Outcome) -> Probe:
    if o.compile is None:
        return Probe(batch=batch, outcome="error", error=o.error)
    return Probe(batch=batch, outcome="fits" if o.compile.fits else "does not fit",
                 needed_bytes_per_device=o.compile.needed_bytes_per_device)


def mark_pareto(rows: Sequence[FitRow]) -> list[FitRow]:
    """The rows, each fitting row marked `pareto` unless another has >= batch per chip and <= peak, one strictly."""
    fitting = [(r.batch_per_chip, r.peak_bytes_per_device) for r in rows
               if r.batch_per_chip is not None and r.peak_bytes_per_device is not None]

    def dominated(b: float, p: int) -> bool:
        return any(ob >= b and op <= p and (ob > b or op < p) for ob, op in fitting)

    return [r.model_copy(update={"pareto": r.batch_per_chip is not None and r.peak_bytes_per_device is not None
                                 and not dominated(r.batch_per_chip, r.peak_bytes_per_device)}) for r in rows]


def recommend(rows: Sequence[FitRow], fixed_global: bool = False) -> int | None:
    """The index of the row to run (see the module's order), or None when nothing fits."""
    fitting = [i for i, r in enumerate(rows) if r.max_per_device_batch_size is not None]
    if not fitting:
        return None

    def order(i: int) -> tuple[float, ...]:
        r = rows[i]
        peak = float(r.peak_bytes_per_device or 0)
        if fixed_global:
            return (r.chips, peak, i)
        return (-(r.batch_per_chip or 0.0), peak, r.chips, i)

    return min(fitting, key=order)


def _recommendation(row: FitRow, mesh_sets: Sequence[str]) -> Recommendation:
    assert row.max_per_device_batch_size is not None and row.peak_bytes_per_device is not None
    sets = (*mesh_sets, f"remat_policy={row.remat_policy}", f"per_device_batch_size={row.max_per_device_batch_size}")
    usable = row.usable_bytes_per_device or 0
    text = (f"{row.topology}{f' x{row.num_slices}' if row.num_slices > 1 else ''}, mesh {row.mesh}, "
            f"remat {row.remat_policy}: per-device batch {row.max_per_device_batch_size} "
            f"(peak {human_bytes(row.peak_bytes_per_device)} of {human_bytes(usable)} per device, "
            f"headroom {human_bytes(row.headroom_bytes_per_device or 0)})")
    return Recommendation(topology=row.topology, num_slices=row.num_slices, mesh=row.mesh,
                          remat_policy=row.remat_policy, per_device_batch_size=row.max_per_device_batch_size,
                          overrides=sets, text=text)
