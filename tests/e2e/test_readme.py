"""Every `aotcheck` example in the README runs, and shown output is what the command prints.

A compile of a model bigger than tiny runs with the slow set (`pytest -m slow`, `nox -s slow`).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each `$ aotcheck ...` line in console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```console\n(.*?)```", README.read_text(), flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            elif found and line.strip() and line.strip() != "...":
                found[-1][1].append(line.strip())
    return found


def test_readme_opens_with_install_and_test_commands_that_ci_runs() -> None:
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.S).group(1).splitlines()
    assert first[0].endswith(".venv/bin/aotcheck compile") and "pip install -e" in first[0]
    test_command = first[1].removeprefix(".venv/bin/")
    ci = (README.parent / ".ci" / "run").read_text()
    assert test_command in ci and 'pip install --quiet -e ".[test]"' in ci


def big_compile(command: str) -> bool:
    """A compile of a built-in model bigger than tiny: a minute or more, so with the other
    big-model compiles (tests/e2e/test_slow.py) in the slow set."""
    argv = shlex.split(command)
    return (argv[1] == "compile" and "--no-compile" not in argv and "--model" in argv
            and argv[argv.index("--model") + 1] != "tiny")


@pytest.mark.parametrize(("command", "expected"), [
    pytest.param(c, e, id=c, marks=pytest.mark.slow if big_compile(c) else ()) for c, e in examples()])
def test_readme_example(command: str, expected: list[str], tmp_path, monkeypatch) -> None:
    # Run where a user would, in a checkout, without writing into this one.
    for name in ("configs", "golden"):
        (tmp_path / name).symlink_to(README.parent / name)
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)
    assert argv[0] == "aotcheck"
    result = CliRunner().invoke(app, argv[1:])
    assert result.exit_code == 0, result.stderr
    out = [line.strip() for line in result.stdout.splitlines()]
    for line in expected:
        assert line in out, f"README shows {line!r}; the command printed:\n{result.stdout}"
