"""What every `aotcheck` command shares: output width, verbosity, and the option types used across commands."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # rich loads when a table is printed: `diff` prints plain text
    from rich.console import Console

EXIT_CODES = ("Exit codes: 0 ok; 1 a regression or difference; 2 usage or configuration error; "
              "3 a model could not be built or compiled; 4 the step does not fit in HBM; 5 internal error.")
_verbosity = {"level": 0}  # -1 quiet, 0 normal, 1 verbose; set once per invocation by the callback


def _width() -> int | None:
    """The width to fit: `COLUMNS`, else the terminal's; None when piped (plain text, full paths)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    if sys.stdout.isatty():
        from rich.console import Console

        return Console().width
    return None


def _console(stderr: bool = False) -> Console:
    # Piped output is not wrapped at all: each line is whole, for grep and for diffs.
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, width=_width() or 100_000)


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class BackendChoice(StrEnum):
    auto = "auto"
    libtpu = "libtpu"
    mock = "mock"


NoCache = Annotated[bool, typer.Option("--no-cache", envvar="AOTCHECK_NO_CACHE", help="Compile even if an identical program was compiled before.")]
Names = Annotated[bool, typer.Option(
    "--names", help="Count logical names that differ while the PartitionSpec is equal as differences (by default they are explained notes).")]
