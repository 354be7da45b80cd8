"""What a compiler upgrade may move, and which backend's compile figures may be compared or replaced.

A golden's compile figures (memory, FLOPs, collectives and whatever program figure comes
next) are the compiler's answer as much as the model's. When the jax/jaxlib/libtpu that
wrote a golden differ from the running ones, changed program figures are their own
category, "compiler changed (libtpu X -> Y)", with its own policy; sharding, dtype and
shape findings stay regressions whatever the compiler. A step that stops fitting stays a
regression too: a compiler upgrade that runs a job out of HBM must not pass as green.

The policy defaults to `fail`: the gate stays red until someone accepts the new figures
(`aotcheck golden update --case ...`), which is one reviewed commit per upgrade; a team
that upgrades often sets `compiler_changes: warn` and reads the warnings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from aotcheck._compare import Category, Finding

Policy = Literal["fail", "warn"]
POLICIES: tuple[Policy, ...] = ("fail", "warn")
DEFAULT_POLICY: Policy = "fail"
COMPILER_STACK = ("jax", "jaxlib", "libtpu")


def compiler_change(recorded: Mapping[str, str | None], now: Mapping[str, str | None]) -> str:
    """The compiler versions that differ, e.g. `libtpu 0.0.46 -> 0.0.50`; empty when none does.

    Example:
        >>> compiler_change({"libtpu": "0.0.46", "jax": "0.10.2"}, {"libtpu": "0.0.50", "jax": "0.10.2"})
        'libtpu 0.0.46 -> 0.0.50'
    """
    return ", ".join(f"{k} {recorded.get(k)} -> {now.get(k)}" for k in COMPILER_STACK if recorded.get(k) != now.get(k))


def is_compile_figure(finding: Finding) -> bool:
    """A finding about the compiled program rather than the state (memory, FLOPs, collectives,
    a leaf the step reshards, ...): its category says so (`Category.about_program`)."""
    return finding.category.about_program


def stops_fitting(finding: Finding) -> bool:
    """The step no longer fits or no longer compiles: a regression under any compiler."""
    return finding.category is Category.COMPILE_FAILING or (
        finding.category is Category.FIT_VERDICT and finding.after == "does not fit")


@dataclass(frozen=True)
class Split:
    """Findings against a golden, with those a compiler change explains set apart."""

    regressions: tuple[Finding, ...]
    compiler: tuple[Finding, ...]
    change: str  # e.g. "libtpu 0.0.46 -> 0.0.50"; empty: same compiler

    @property
    def label(self) -> str:
        return f"compiler changed ({self.change})"


def split(findings: Iterable[Finding], change: str) -> Split:
    """Set apart the changed compile figures when the compiler changed (`change` non-empty).

    Example:
        >>> split([], "libtpu 0.0.46 -> 0.0.50").compiler
        ()
    """
    findings = tuple(findings)
    if not change:
        return Split(findings, (), "")
    moved = tuple(f for f in findings if is_compile_figure(f) and not stops_fitting(f) and not f.explained)
    return Split(tuple(f for f in findings if f not in moved), moved, change)


def backend_note(golden_backend: str, run_backend: str, requested: str) -> str:
    """Why compile figures were not compared: the golden's backend, this run's, and the reason."""
    if run_backend == "mock":
        why = mock_reason(requested)
    else:
        why = f"compare with --backend {golden_backend}, or accept libtpu figures with golden update"
    return f"compile figures not compared: golden from {golden_backend}; this run is {run_backend}: {why}"


def mock_reason(requested: str) -> str:
    """Why a run is mock: asked for, or no libtpu on this machine."""
    return "--backend mock was asked" if requested == "mock" else "libtpu is not installed here"


def keeps_compile(golden_backend: str | None, run_backend: str, force: bool) -> bool:
    """A mock run never replaces libtpu compile figures unless forced."""
    return golden_backend == "libtpu" and run_backend == "mock" and not force
