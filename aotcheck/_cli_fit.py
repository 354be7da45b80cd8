"""`aotcheck fit`: the command's options, progress bar and output; the search is `_fit.search`.

A module of its own so the command line stays one screen per command; `_cli` registers it.
"""

# Annotations evaluated at definition: see `_cli`.
import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C; the rows found so far are printed first


def _console(stderr: bool = False) -> "Console":
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for text in values or () for v in text.split(",") if v.strip()]


def _batches(text: str | None) -> list[int]:
    from aotcheck._errors import UsageError

    try:
        return sorted({int(b) for b in _split([text] if text else None)})
    except ValueError:
        raise UsageError(f"--batch expects positive integers separated by commas, e.g. 1,2,4,8; got '{text}'") from None


@contextlib.contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None]]:
    """done/total and the time so far on stderr; silent when stderr is not a terminal."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = _console(stderr=True)
    if not console.is_terminal:
        yield lambda _done, _total: None
        return
    columns = (TextColumn("compiling candidates"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("fit", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def fit(
    topology: Annotated[list[str] | None, typer.Option(
        "--topology", "-t", help="TPU slice (repeatable), or a family range such as 'v5p-{64..512}' (default v5p-128).")] = None,
    pure_nnx: Annotated[bool | None, typer.Option("--pure-nnx/--linen", help="NNX path (MaxText's pure_nnx) or Linen.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Built-in model, installed model, or package.module:attr.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML file of config keys.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")] = None,
    num_slices: Annotated[int, typer.Option("--num-slices", help="Slices joined over DCN.")] = 1,
    batch: Annotated[str | None, typer.Option("--batch", help="Per-device batches to try, e.g. 1,2,4,8 (default: search for the largest).")] = None,
    remat: Annotated[list[str] | None, typer.Option("--remat", help="Remat policies to try, e.g. none,minimal,full (default: the config's).")] = None,
    mesh: Annotated[list[str] | None, typer.Option("--mesh", help="ICI mesh to try, e.g. fsdp=16,tensor=4 (repeatable; other axes 1; default: the config's).")] = None,
    global_batch: Annotated[int | None, typer.Option("--global-batch", min=1, help="Hold the global batch fixed: per-device batch = N / devices.")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Build candidates in N processes (default: the cores).")] = None,
    max_compiles: Annotated[int | None, typer.Option("--max-compiles", min=1, help="Stop after this many builds.")] = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, json or markdown.")] = "table",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the recommended configuration's report (JSON, as `compile --format json`) here.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="libtpu (real TPU compile), mock (CPU devices), or auto.")] = "auto",
) -> None:
    """Find the largest per-device batch that fits for each slice, mesh and remat policy, by compiling.

    One row per (topology, mesh, remat): the largest per-device batch that fits, its peak HBM against the usable HBM, headroom and compile figures; the Pareto-best rows marked; a recommendation. Infeasible combinations are rows with their reason.

    Exit 0 something fits, 4 nothing fits, 3 a build failed and nothing fits, 2 usage error or every row infeasible, 130 interrupted.
    """
    from aotcheck import render
    from aotcheck._errors import UsageError
    from aotcheck._fit import INTERRUPTED, search
    from aotcheck._io import atomic_write
    from aotcheck._pipeline import Request

    if fmt not in ("table", "json", "markdown"):
        raise UsageError(f"--format: choose table, json or markdown, not '{fmt}'")
    request = Request(model=model, config_file=config, overrides=tuple(sets or ()), pure_nnx=pure_nnx,
                      num_slices=num_slices, backend=backend, topology=topology[0] if topology else "v5p-128")
    with _progress_bar() as on_progress:
        result, report = search(
            request, topologies=topology or (), meshes=mesh or (), remat=_split(remat), batches=_batches(batch),
            global_batch=global_batch, jobs=jobs or os.cpu_count() or 1, max_compiles=max_compiles,
            on_progress=on_progress,
        )
    if fmt == "json":
        typer.echo(render.fit_json(result), nl=False)
    elif fmt == "markdown":
        typer.echo(render.fit_markdown(result), nl=False)
    else:
        _console().print(render.fit_table(result))
    typer.echo(f"{result.builds} builds", err=True)
    if out is not None and report is not None:
        atomic_write(out, report.to_json())
        typer.echo(f"wrote {out}", err=True)
    elif out is not None:
        typer.echo(f"{out} not written: nothing fits", err=True)
    if result.stopped == INTERRUPTED:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(result.exit_code)

