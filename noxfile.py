"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s slow` (big-model compiles), `nox -s bench`,
`nox -s fuzz` (5,000 examples per input surface)."""

import nox

nox.options.sessions = ["lint", "tests"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session(python="3.11")
def slow(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", "-q", "-m", "slow", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("-e", ".[test]", "types-PyYAML")
    session.run("ruff", "check", "aotcheck", "tests", "benchmarks", "noxfile.py")
    session.run("mypy")


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
