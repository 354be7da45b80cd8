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

from aotcheck import _golden
from aotcheck._compare import Category, Finding, compare
from aotcheck._errors import EXIT_BUILD, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, AotcheckError, UsageError
from aotcheck._matrix import Case, Matrix, Unit
from aotcheck._record import dumps
from aotcheck._report import Report

# Statuses. A check gives ok / changed / missing / error; an update gives created / updated / unchanged / error.
FAILING = ("changed", "missing")


@dataclass(frozen=True)
class Built:
    """What a (possibly remote) build returns: a report, or the one-line error and its exit code."""

    report: Report | None
    error: str | None
    exit_code: int
    seconds: float


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
        }


@dataclass(frozen=True)
class Result:
    outcomes: tuple[Outcome, ...]
    unused: tuple[str, ...]
    update: bool

    @property
    def exit_code(self) -> int:
        """2 a case is misconfigured, 3 a case could not be built or compiled, 1 a regression, else 0."""
        codes = {o.error_code for o in self.outcomes if o.status == "error"}
        if EXIT_USAGE in codes:
            return EXIT_USAGE
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


def build(case: Case, path: str, backend: str) -> Built:
    """Build one unit's report; safe to run in a fresh (spawned) process."""
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()  # a spawned worker imports jax afresh
    from aotcheck._pipeline import Request, build_report

    request = Request(topology=case.topology, num_slices=case.num_slices, model=case.model, overrides=case.overrides,
                      pure_nnx=path == "nnx", compile=case.compile, backend=backend, activations=case.activations)
    start = time.perf_counter()
    try:
        report = build_report(request)
    except AotcheckError as exc:
        return Built(None, str(exc), exc.exit_code, time.perf_counter() - start)
    return Built(report, None, EXIT_OK, time.perf_counter() - start)


def _builds(units: Sequence[Unit], backend: str, jobs: int) -> Iterator[Built]:
    """Builds in unit order, from this process or from `jobs` spawned workers (jax is not fork-safe)."""
    if jobs <= 1 or len(units) <= 1:
        for unit in units:
            yield build(unit.case, unit.path, backend)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=min(jobs, len(units)), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(build, unit.case, unit.path, backend) for unit in units]
        for future in futures:
            yield future.result()


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
) -> Result:
    """Check (or, with `update`, rewrite) the goldens of `units`."""
    root = golden_root or matrix.golden_dir
    tolerance = matrix.memory_tolerance if memory_tolerance is None else memory_tolerance
    outcomes = []
    for unit, built in zip(units, _builds(units, backend, jobs), strict=True):
        directory = unit.golden_dir(root)
        if update:
            outcome = _update(unit, built, directory, tolerance, matrix.large_leaf_bytes)
        else:
            outcome = _check(unit, built, directory, tolerance, matrix.large_leaf_bytes, update_command)
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return Result(outcomes=tuple(outcomes), unused=tuple(unused_goldens(matrix, root)), update=update)


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _comparable(old: Report, new: Report) -> tuple[Report, Report, list[str]]:
    """The two sides with the compile sections dropped where comparing them would mislead."""
    if new.compile is None:  # a sharding-only case: compile.json, if any, belongs to a slow case
        return old.model_copy(update={"compile": None}), new, []
    if old.compile is not None and old.header.backend != new.header.backend:
        note = (f"golden compiled with {old.header.backend}, this run with {new.header.backend}: "
                "compile figures not compared")
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


def _compare(old: Report, new: Report, tolerance: float, large_leaf_bytes: int) -> list[Finding]:
    return compare(old, new, memory_tolerance=tolerance, large_leaf_bytes=large_leaf_bytes)


def _compile_failed(old: Report | None, built: Built) -> tuple[Finding, ...]:
    if old is None or old.compile is None or built.exit_code != EXIT_BUILD:
        return ()
    return (Finding(Category.COMPILE_FAILING, None, old.compile.verdict, built.error),)


def _check(unit: Unit, built: Built, directory: Path, tolerance: float, large_leaf_bytes: int,
           update_command: str) -> Outcome:
    base = Outcome(case=unit.case.name, path=unit.path, golden_dir=_display(directory), status="ok",
                   seconds=built.seconds)
    create = f"{update_command} --case '{unit.case.name}'"
    if not _golden.exists(directory):
        if built.report is None:
            return dataclasses.replace(base, status="error", error=built.error, error_code=built.exit_code)
        return dataclasses.replace(base, status="missing", hint=f"no golden files; create them with: {create}")
    try:
        old = _golden.read_golden(directory)
    except UsageError as exc:
        return dataclasses.replace(base, status="error", error=str(exc), error_code=exc.exit_code)
    if built.report is None:
        return dataclasses.replace(base, status="error", error=built.error, error_code=built.exit_code,
                                   findings=_compile_failed(old, built))
    new = built.report
    warnings = _version_warnings(directory, new.header.versions, compiled=new.compile is not None)
    if new.compile is not None and old.compile is None:
        return dataclasses.replace(base, status="missing", warnings=tuple(warnings),
                                   hint=f"no compile.json (the golden is sharding-only); create it with: {create}")
    old, new, notes = _comparable(old, new)
    findings = tuple(_compare(old, new, tolerance, large_leaf_bytes))
    failed = any(not f.explained for f in findings)  # explained findings are expected and harmless
    return dataclasses.replace(base, status="changed" if failed else "ok", findings=findings,
                               warnings=tuple(warnings + notes))


def _update(unit: Unit, built: Built, directory: Path, tolerance: float, large_leaf_bytes: int) -> Outcome:
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
            old, cmp_new, warnings = _comparable(_golden.read_golden(directory), new)
            findings = tuple(_compare(old, cmp_new, tolerance, large_leaf_bytes))
        except UsageError as exc:  # a corrupt golden is simply replaced
            warnings = [f"replaced unreadable golden ({exc})"]
    changed = _golden.write_golden(directory, new)
    if new.compile is None and _golden.has_compile(directory) and changed:
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
