"""The CI gate: build each case of the matrix, compare it with its golden files, and say what changed.

Builds may run in worker processes (`jobs > 1`); comparing, writing goldens and every
output happen in this process, in matrix order, so the result does not depend on `jobs`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aotcheck import _canonical, _golden, _policy
from aotcheck._compare import Category, Finding, compare
from aotcheck._errors import (
    EXIT_BUILD,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_REGRESSION,
    EXIT_USAGE,
    AotcheckError,
    UsageError,
    one_line,
)
from aotcheck._matrix import Case, Matrix, Unit
from aotcheck._record import dumps
from aotcheck._report import Report
from aotcheck._topology import MAX_MOCK_DEVICES

# Statuses. A check gives ok / changed / missing / error; an update gives created / updated / unchanged / error.
FAILING = ("changed", "missing")


@dataclass(frozen=True)
class Built:
    """What a (possibly remote) build returns: a report, or the one-line error and its exit code."""

    report: Report | None
    error: str | None
    exit_code: int
    seconds: float
    rewrites: _canonical.Rewrites | None = None  # configs/canonical.yml, then the model's own
    warnings: tuple[str, ...] = ()  # the build's own (a setting nothing read, an unmatched name)


@dataclass(frozen=True)
class Outcome:
    """One unit's result: its status, the typed findings against its golden, and warnings."""

    case: str
    path: str
    golden_dir: str
    status: str
    findings: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()
    error: str | None = None
    error_code: int = EXIT_OK
    hint: str | None = None
    written: tuple[str, ...] = ()  # golden files an update replaced
    seconds: float = 0.0
    compiler: tuple[Finding, ...] = ()  # changed compile figures a compiler change explains (aotcheck._policy)
    compiler_change: str = ""  # e.g. "libtpu 0.0.46 -> 0.0.50"
    compiler_policy: str = _policy.DEFAULT_POLICY

    @property
    def name(self) -> str:
        return f"{self.case}/{self.path}"

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "path": self.path,
            "golden": self.golden_dir,
            "status": self.status,
            "findings": [f.to_json() for f in self.findings],
            "warnings": list(self.warnings),
            "error": self.error,
            "hint": self.hint,
            "written": list(self.written),
            "compiler": None if not self.compiler else {
                "change": self.compiler_change, "policy": self.compiler_policy,
                "findings": [f.to_json() for f in self.compiler]},
        }


@dataclass(frozen=True)
class Result:
    outcomes: tuple[Outcome, ...]
    unused: tuple[str, ...]
    update: bool

    @property
    def exit_code(self) -> int:
        """2 a case is misconfigured, 5 an internal error, 3 a case could not be built or compiled,
        1 a regression, else 0."""
        codes = {o.error_code for o in self.outcomes if o.status == "error"}
        for code in (EXIT_USAGE, EXIT_INTERNAL):
            if code in codes:
                return code
        if codes:
            return EXIT_BUILD
        if any(o.status in FAILING for o in self.outcomes):
            return EXIT_REGRESSION
        return EXIT_OK

    def to_json(self) -> str:
        return dumps({
            "mode": "update" if self.update else "check",
            "exit_code": self.exit_code,
            "counts": dict(sorted(Counter(o.status for o in self.outcomes).items())),
            "outcomes": [o.to_json() for o in self.outcomes],
            "unused_goldens": list(self.unused),
        })


def _request(case: Case, path: str, backend: str) -> Any:
    from aotcheck._pipeline import Request

    return Request(topology=case.topology, num_slices=case.num_slices, model=case.model, overrides=case.overrides,
                   pure_nnx=path == "nnx", compile=case.compile, backend=backend, activations=case.activations)


def build(case: Case, path: str, backend: str) -> Built:
    """Build one unit's report; safe to run in a fresh (spawned) process."""
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()  # a spawned worker imports jax afresh
    from aotcheck._pipeline import build as build_request
    from aotcheck._sides import model_rewrites

    request = _request(case, path, backend)
    start = time.perf_counter()
    try:
        built = build_request(request)
        rewrites = model_rewrites(request)
    except AotcheckError as exc:
        return Built(None, str(exc), exc.exit_code, time.perf_counter() - start)
    except Exception as exc:  # a bug in aotcheck: this unit's error row, the others still run
        return Built(None, f"internal error: {one_line(exc)}; report it", EXIT_INTERNAL, time.perf_counter() - start)
    return Built(built.report, None, EXIT_OK, time.perf_counter() - start, rewrites, built.warnings)


def mock_devices_needed(units: Sequence[Unit], backend: str) -> int:
    """The most CPU devices any unit needs on the mock backend; 0 when the backend is libtpu."""
    from aotcheck._topology import get_topology, resolve_backend

    try:
        if resolve_backend(backend) != "mock":
            return 0
    except UsageError:
        return 0  # each unit reports the bad backend itself
    need = 0
    for unit in units:
        try:
            need = max(need, get_topology(unit.case.topology).devices_per_slice * unit.case.num_slices)
        except UsageError:
            pass  # an unknown topology is that unit's error
    return need


def _cached(unit: Unit, backend: str) -> Built | None:
    """The unit's report from the cache (no jax, nothing traced), or None: then it is built."""
    from aotcheck._pipeline import cached
    from aotcheck._sides import model_rewrites

    start = time.perf_counter()
    request = _request(unit.case, unit.path, backend)
    try:
        hit = cached(request)
        rewrites = model_rewrites(request) if hit is not None else None
    except AotcheckError:
        return None  # its build reports the error
    return None if hit is None else Built(hit.report, None, EXIT_OK, time.perf_counter() - start, rewrites, hit.warnings)


def _builds(units: Sequence[Unit], backend: str, jobs: int) -> Iterator[Built]:
    """Builds in unit order, from this process or from up to `jobs` spawned workers (jax is not fork-safe).

    With `jobs > 1`, units whose report is in the cache are served here, and workers start
    only for two or more builds left (`_workers.worker_count`): a worker's start-up (jax,
    libtpu) costs more than a cache hit. On the mock backend every process needs as many CPU
    devices as the largest case; if this process's jax already started with fewer, the
    builds move to a fresh worker.
    """
    from aotcheck import _workers

    devices = min(mock_devices_needed(units, backend), MAX_MOCK_DEVICES)  # beyond it a unit reports its own error
    hits = [_cached(unit, backend) for unit in units] if jobs > 1 and len(units) > 1 else [None] * len(units)
    todo = [unit for unit, hit in zip(units, hits, strict=True) if hit is None]
    workers = _workers.worker_count(len(todo), jobs)
    if not workers and (not todo or not devices or _workers.reserve_mock_devices(devices)):
        for unit, hit in zip(units, hits, strict=True):
            yield hit or build(unit.case, unit.path, backend)
        return
    with _workers.pool(max(1, workers), devices) as pool:
        futures = iter([pool.submit(build, unit.case, unit.path, backend) for unit in todo])
        for hit in hits:
            yield hit or next(futures).result()


def run(
    matrix: Matrix,
    units: Sequence[Unit],
    *,
    golden_root: Path | None = None,
    update: bool = False,
    backend: str = "auto",
    jobs: int = 1,
    memory_tolerance: float | None = None,
    update_command: str = "aotcheck golden update",
    on_outcome: Callable[[Outcome], None] | None = None,
    compiler_changes: str | None = None,
    force: bool = False,
    names_are_notes: bool = True,
) -> Result:
    """Check (or, with `update`, rewrite) the goldens of `units`.

    A tolerance or compiler policy given here wins over the case's, which wins over the matrix's;
    `force` lets a mock update replace libtpu compile figures; `names_are_notes` (`check --names`
    turns it off) makes logical names that differ under an equal PartitionSpec explained notes.
    """
    root = golden_root or matrix.golden_dir
    outcomes = []
    for unit, built in zip(units, _builds(units, backend, jobs), strict=True):
        directory = unit.golden_dir(root)
        tolerance = next(t for t in (memory_tolerance, unit.case.memory_tolerance, matrix.memory_tolerance)
                         if t is not None)
        rules = built.rewrites or _canonical.defaults()
        how = _How(tolerance, matrix.large_leaf_bytes, names_are_notes,
                   rules if unit.case.rewrites is None else rules.then(unit.case.rewrites))
        if update:
            outcome = _update(unit, built, directory, how, backend, force)
        else:
            policy = compiler_changes or unit.case.compiler_changes or matrix.compiler_changes
            outcome = _check(unit, built, directory, how, update_command, backend, policy)
        if built.warnings:
            outcome = dataclasses.replace(outcome, warnings=built.warnings + outcome.warnings)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return Result(outcomes=tuple(outcomes), unused=tuple(unused_goldens(matrix, root)), update=update)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _comparable(old: Report, new: Report, requested: str = "auto") -> tuple[Report, Report, list[str]]:
    """The two sides with the compile sections dropped where comparing them would mislead."""
    if new.compile is None:  # a sharding-only case: compile.json, if any, belongs to a slow case
        return old.model_copy(update={"compile": None}), new, []
    if old.compile is not None and old.header.backend != new.header.backend:
        note = _policy.backend_note(str(old.header.backend), str(new.header.backend), requested)
        return old.model_copy(update={"compile": None}), new.model_copy(update={"compile": None}), [note]
    return old, new, []


def _version_warnings(directory: Path, now: dict[str, str | None], compiled: bool) -> list[str]:
    out = [f"{_golden.SHARDINGS} {_golden.OLD_FORMAT_NOTE}"] if _golden.is_old_format(directory) else []
    for name in (_golden.SHARDINGS, _golden.COMPILE):
        if (name == _golden.COMPILE and not compiled) or not (directory / name).is_file():
            continue
        recorded = _golden.read_file(directory / name).versions
        diffs = [f"{k} {recorded.get(k)} -> {now.get(k)}" for k in sorted(set(recorded) | set(now))
                 if recorded.get(k) != now.get(k)]
        if diffs:
            out.append(f"{name} was written with other versions ({', '.join(diffs)}); a warning, not a failure")
    return out


@dataclass(frozen=True)
class _How:
    """How one unit's build is compared with its golden."""

    tolerance: float
    large_leaf_bytes: int
    names_are_notes: bool
    rewrites: _canonical.Rewrites  # the defaults, the model's own, then the case's

    def compare(self, old: Report, new: Report) -> list[Finding]:
        return compare(old, new, memory_tolerance=self.tolerance, large_leaf_bytes=self.large_leaf_bytes,
                       rewrites=self.rewrites, names_are_notes=self.names_are_notes, labels=("the golden", "this run"))


def _rewrites_error(unit: Unit, exc: UsageError) -> str:
    return f"case '{unit.case.name}': {exc}; fix the case's or the model's rewrites"


def _compile_failed(old: Report | None, built: Built) -> tuple[Finding, ...]:
    if old is None or old.compile is None or built.exit_code != EXIT_BUILD:
        return ()
    return (Finding(Category.COMPILE_FAILING, None, old.compile.verdict, built.error),)


def _check(unit: Unit, built: Built, directory: Path, how: _How, update_command: str, requested: str = "auto",
           policy: str = _policy.DEFAULT_POLICY) -> Outcome:
    base = Outcome(case=unit.case.name, path=unit.path, golden_dir=_display(directory), status="ok",
                   seconds=built.seconds)
    create = f"{update_command} --case '{unit.case.name}'"
    if not _golden.exists(directory):
        if built.report is None:
            return dataclasses.replace(base, status="error", error=built.error, error_code=built.exit_code)
        return dataclasses.replace(base, status="missing", hint=f"no golden files; create them with: {create}")
    try:
        old = _golden.read_golden(directory)
        warnings = _version_warnings(directory, built.report.header.versions if built.report else {},
                                     compiled=built.report is not None and built.report.compile is not None)
    except Exception as exc:  # one malformed golden is this case's finding, never the run's abort
        error = str(exc) if isinstance(exc, UsageError) else f"golden {_display(directory)} is unreadable " \
            f"({one_line(exc)}); regenerate it"
        return dataclasses.replace(base, status="error", error=error, error_code=EXIT_USAGE)
    if built.report is None:
        return dataclasses.replace(base, status="error", error=built.error, error_code=built.exit_code,
                                   findings=_compile_failed(old, built))
    new = built.report
    if new.compile is not None and old.compile is None:
        return dataclasses.replace(base, status="missing", warnings=tuple(warnings),
                                   hint=f"no compile.json (the golden is sharding-only); create it with: {create}")
    old, new, notes = _comparable(old, new, requested)
    change = ""
    if old.compile is not None and new.compile is not None:
        change = _policy.compiler_change(_golden.read_file(directory / _golden.COMPILE).versions, new.header.versions)
    try:
        split = _policy.split(how.compare(old, new), change)
    except UsageError as exc:  # the rewrites put two leaves on one canonical path: this case's configuration
        return dataclasses.replace(base, status="error", error=_rewrites_error(unit, exc), error_code=EXIT_USAGE)
    # Explained findings are expected and harmless; a compiler's figures fail only under policy `fail`.
    failed = any(not f.explained for f in split.regressions) or (bool(split.compiler) and policy == "fail")
    if split.compiler:  # the compiler note replaces compile.json's "other versions, not a failure" warning
        warnings = [w for w in warnings if not w.startswith(f"{_golden.COMPILE} was written with other versions")]
        n = len(split.compiler)
        notes.append(f"{split.label}: {n} compile figure{'s' * (n != 1)} moved, policy {policy}"
                     f"{'' if policy == 'fail' else ' (not a failure)'}; accept the new figures with: {create}")
    return dataclasses.replace(base, status="changed" if failed else "ok", findings=split.regressions,
                               warnings=tuple(warnings + notes), compiler=split.compiler,
                               compiler_change=split.change, compiler_policy=policy)


def _update(unit: Unit, built: Built, directory: Path, how: _How, requested: str = "auto",
            force: bool = False) -> Outcome:
    base = Outcome(case=unit.case.name, path=unit.path, golden_dir=_display(directory), status="unchanged",
                   seconds=built.seconds)
    if built.report is None:
        return dataclasses.replace(base, status="error", error=built.error, error_code=built.exit_code)
    new = built.report
    findings: tuple[Finding, ...] = ()
    warnings: list[str] = []
    existed = _golden.exists(directory)
    if existed:
        try:
            old, cmp_new, warnings = _comparable(_golden.read_golden(directory), new, requested)
        except Exception as exc:  # a corrupt golden is simply replaced
            warnings = [f"replaced unreadable golden ({exc})"]
        else:
            try:
                findings = tuple(how.compare(old, cmp_new))
            except UsageError as exc:  # two leaves on one canonical path: the rewrites need fixing first
                return dataclasses.replace(base, status="error", error=_rewrites_error(unit, exc), error_code=EXIT_USAGE)
    kept = new.compile is not None and _golden.has_compile(directory) and _policy.keeps_compile(
        _golden.read_file(directory / _golden.COMPILE).backend, str(new.header.backend), force)
    if kept:
        new = new.model_copy(update={"compile": None})
        warnings = [w for w in warnings if "compile figures not compared" not in w] + [
            f"kept the libtpu {_golden.COMPILE}: this run is mock "
            f"({_policy.mock_reason(requested)}); --force replaces it"]
    changed = _golden.write_golden(directory, new)
    if new.compile is None and not kept and _golden.has_compile(directory) and changed:
        warnings.append("compile.json (owned by a case that compiles) was left as it is; update that case too")
    status = "created" if not existed else "updated" if changed else "unchanged"
    return dataclasses.replace(base, status=status, findings=findings, warnings=tuple(warnings), written=tuple(changed))


def unused_goldens(matrix: Matrix, root: Path) -> list[str]:
    """Golden directories (or compile.json files) that no case of the whole matrix uses."""
    units = matrix.units()
    used = {u.golden_dir(root).resolve() for u in units}
    compiled = {u.golden_dir(root).resolve() for u in units if u.case.compile}
    out = []
    for directory in _golden.find_dirs(root):
        d = directory.resolve()
        if d not in used:
            out.append(f"{_display(directory)}: no case uses this golden directory")
        elif _golden.has_compile(d) and d not in compiled:
            out.append(f"{_display(directory / _golden.COMPILE)}: no case compiles this model")
    return out


def refuse_update_in_ci(force: bool) -> None:
    ci = os.environ.get("CI", "")
    if ci and ci.lower() not in ("0", "false") and not force:
        raise UsageError("refusing to update goldens in CI (CI is set): update them locally and commit; --force overrides")
