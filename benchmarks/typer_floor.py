"""The floor of any typer command, for the diff rows of `run.py`: a typer app whose command
takes two paths and an option, as `aotcheck diff` does, and only prints them.

typer (0.2x) builds a pydantic TypeAdapter for each parameter, so this imports and starts
pydantic as an aotcheck command does; `python -c "import typer, pydantic"` misses both.

    python benchmarks/typer_floor.py diff a.json b.json
"""

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer()


@app.command()
def diff(a: Path, b: Path, fmt: Annotated[str, typer.Option("--format")] = "table") -> None:
    """Print the arguments."""
    print(a, b, fmt)


@app.command()
def other() -> None:
    """A second command, so that typer dispatches by name as aotcheck's app does."""


if __name__ == "__main__":
    app()
