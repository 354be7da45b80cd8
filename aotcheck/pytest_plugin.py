"""aotcheck's cases as pytest items: `pytest --aotcheck` gates a project inside its own test suite.

Registered through the `pytest11` entry point, so it loads in every pytest run of an
environment with aotcheck installed; without `--aotcheck` it adds its options and does
nothing else (no jax, no matrix). With `--aotcheck`, each case and path of the matrix is
one item, `<matrix file>::<case>/<path>`, so `-k`, `--lf` and pytest-xdist's `-n` work
on them; a failure prints the lines `aotcheck check` prints, and `--aotcheck-update`
rewrites the goldens instead (as `--snapshot-update` does for syrupy's snapshots).

Options: `--aotcheck`, `--aotcheck-update`, `--aotcheck-matrix FILE`, `--aotcheck-backend`,
`--aotcheck-slow`; the rest (golden directory, tolerances, compiler policy) comes from the
matrix and `[tool.aotcheck]`, as for `aotcheck check`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_MATRIX = pytest.StashKey[Any]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aotcheck", "aotcheck: sharding and memory goldens of Flax train steps")
    group.addoption("--aotcheck", action="store_true", help="Run the aotcheck matrix's cases as test items.")
    group.addoption("--aotcheck-update", action="store_true",
                    help="Rewrite the goldens of the selected cases instead of checking them (implies --aotcheck).")
    group.addoption("--aotcheck-matrix", default=None, metavar="FILE",
                    help="Matrix file (default: as `aotcheck check` finds it from the working directory).")
    group.addoption("--aotcheck-backend", default=None, choices=("auto", "libtpu", "mock"),
                    help="Compile backend (default: [tool.aotcheck] backend, else auto).")
    group.addoption("--aotcheck-slow", action="store_true", help="Include the matrix's slow cases.")


def _enabled(config: pytest.Config) -> bool:
    return bool(config.getoption("aotcheck") or config.getoption("aotcheck_update"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "aotcheck: an aotcheck matrix case (pytest --aotcheck)")
    if not _enabled(config):
        return
    from aotcheck import _matrix
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()  # before anything imports jax: deviceless TPU compiles need libtpu's environment
    given = config.getoption("aotcheck_matrix")
    try:
        matrix = _matrix.load(Path(given) if given else None)
    except Exception as exc:  # aotcheck's one-line errors: a usage error of the run, not a traceback
        raise pytest.UsageError(f"--aotcheck: {exc}") from None
    config.stash[_MATRIX] = matrix
    config.args.append(str(matrix.source))  # collected like a test file, beside the project's own


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    matrix = parent.config.stash.get(_MATRIX, None)
    if matrix is not None and file_path == matrix.source:
        return MatrixNode.from_parent(parent, path=file_path, matrix=matrix)
    return None


class MatrixNode(pytest.File):
    """The matrix file: its items are its cases, one per path."""

    def __init__(self, *, matrix: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.matrix = matrix

    def collect(self) -> list[pytest.Item]:
        from aotcheck import _matrix

        units = _matrix.select(self.matrix, slow=self.config.getoption("aotcheck_slow"))
        return [AotcheckItem.from_parent(self, name=unit.name, unit=unit) for unit in units]


class AotcheckFailure(Exception):
    """A case whose goldens disagree with the build (or that could not be built)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class AotcheckItem(pytest.Item):
    """One case on one path, checked against (or, with --aotcheck-update, written to) its goldens."""

    def __init__(self, *, unit: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.unit = unit
        self.add_marker("aotcheck")

    def runtest(self) -> None:
        from aotcheck import _gate, _settings
        from aotcheck.render import change_summary, gate_details

        config = self.config
        update = bool(config.getoption("aotcheck_update"))
        backend = config.getoption("aotcheck_backend") or _settings.choice(
            "backend", None, _settings.find(), "auto", ("auto", "libtpu", "mock"))
        matrix = self.parent.matrix  # type: ignore[union-attr]
        given = config.getoption("aotcheck_matrix")
        command = "aotcheck golden update" + (f" --matrix {given}" if given else "")
        result = _gate.run(matrix, [self.unit], update=update, backend=backend, update_command=command)
        outcome = result.outcomes[0]
        lines = [f"{outcome.name}: {outcome.status}: {change_summary(outcome)}"]
        lines += [line for line in gate_details(result) if not line.startswith("warning: ")]
        if result.exit_code == 0 and (outcome.warnings or outcome.written):
            self.add_report_section("call", "aotcheck", "\n".join(lines))
        if result.exit_code != 0:
            fix = f"accept an intended change with: pytest --aotcheck-update -k '{self.unit.name}'"
            raise AotcheckFailure(lines + ([fix] if outcome.status != "error" else []))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, AotcheckFailure):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"aotcheck: {self.unit.name}"
