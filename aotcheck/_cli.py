"""The `aotcheck` command line: parses options, calls the library, prints, and sets the exit code.

Exit codes: 0 success; 1 a regression or difference was found; 2 usage or configuration
error; 3 a model could not be built, lowered or compiled; 4 the step does not fit in HBM;
5 an internal error (a bug in aotcheck: `--debug` or AOTCHECK_DEBUG=1 shows the traceback);
130 interrupted (Ctrl-C).
"""

# No `from __future__ import annotations` here: typer reads every command's annotations at each
# start, and evaluating them from strings took ~0.01 s of a 0.3 s `aotcheck diff`.
import contextlib
import io
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from aotcheck import _cli_fit, _cli_gate
from aotcheck._boundary import debug_mode, finite, one_line_errors
from aotcheck._cli_common import EXIT_CODES, BackendChoice, Format, Names, NoCache, _console, _verbosity, _width
from aotcheck._errors import EXIT_DOES_NOT_FIT

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="What will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod.",
)


def _version(value: bool) -> None:
    if value:
        from aotcheck._report import versions

        typer.echo(" ".join(f"{k} {v}" for k, v in versions().items() if v))
        raise typer.Exit()


@app.callback(epilog=EXIT_CODES)
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print aotcheck's and its stack's versions.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the verdict.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Progress and timings on stderr.")] = False,
    debug: Annotated[bool, typer.Option("--debug", envvar="AOTCHECK_DEBUG", help="Show the traceback of an internal error (exit 5).")] = False,
) -> None:
    """What will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod."""
    _verbosity["level"] = -1 if quiet else 1 if verbose else 0
    debug_mode(debug)


Topology = Annotated[str, typer.Option("--topology", "-t", help="TPU slice, e.g. v5p-128 or v5:4x4x4.")]
NumSlices = Annotated[int, typer.Option("--num-slices", help="Slices joined over DCN.")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="Built-in model, installed model, or package.module:attr.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file of config keys.")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
NoCompile = Annotated[bool, typer.Option("--no-compile", help="Sharding report only: no lowering or compile.")]
BackendOpt = Annotated[BackendChoice, typer.Option("--backend", envvar="AOTCHECK_BACKEND", help="libtpu (real TPU compile), mock (CPU devices), or auto.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")]


Fast = Annotated[bool, typer.Option("--fast", help="Low-effort compile (effort level O1, optimization_level=19): ~2x quicker on big models, but temp bytes, code size, bytes accessed and collectives differ from the default compile's; the report says so.")]


def request_from(
    topology: str, num_slices: int, model: str | None, config: Path | None, sets: list[str] | None,
    no_compile: bool, backend: BackendChoice, pure_nnx: bool | None = None, no_cache: bool = False, fast: bool = False,
) -> Any:
    from aotcheck._pipeline import Request

    return Request(
        topology=topology, num_slices=num_slices, model=model, config_file=config, overrides=tuple(sets or ()),
        pure_nnx=pure_nnx, compile=not no_compile, backend=backend.value, cache=not no_cache, fast=fast,
    )


def warn(*warnings: tuple[str, ...]) -> None:
    """The builds' warnings on stderr, each once (not with -q). A path's own warning names it."""
    for warning in dict.fromkeys(w for ws in warnings for w in ws) if _verbosity["level"] >= 0 else ():
        typer.echo(f"warning: {warning}", err=True)


def emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    from aotcheck._io import write_output

    write_output(out, text)
    typer.echo(f"wrote {out}", err=True)


@contextlib.contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the current stage (silent when stderr is not a terminal or with -q);
    with -v, one line per stage with the time since the start."""
    console = _console(stderr=True)
    if _verbosity["level"] > 0:
        start = time.perf_counter()
        yield lambda msg: typer.echo(f"[{time.perf_counter() - start:6.2f}s] {msg}", err=True)
        typer.echo(f"[{time.perf_counter() - start:6.2f}s] done", err=True)
        return
    if not console.is_terminal or _verbosity["level"] < 0:
        yield lambda _msg: None
        return
    with console.status("starting") as status:
        yield lambda msg: status.update(f"{msg} ...")


@app.command("compile", epilog=EXIT_CODES)
@one_line_errors
def compile_(
    topology: Topology = "v5p-128",
    pure_nnx: Annotated[bool | None, typer.Option("--pure-nnx/--linen", help="NNX path (MaxText's pure_nnx) or Linen.")] = None,
    model: Model = None,
    config: ConfigFile = None,
    sets: Sets = None,
    num_slices: NumSlices = 1,
    no_compile: NoCompile = False,
    leaves: Annotated[bool, typer.Option("--leaves", help="Show every leaf, not only the largest.")] = False,
    fmt: FormatOpt = Format.table,
    out: Out = None,
    backend: BackendOpt = BackendChoice.auto,
    no_cache: NoCache = False,
    fast: Fast = False,
    memory_detail: Annotated[int, typer.Option("--memory-detail", min=0, metavar="N", help=(
        "List the N largest buffer groups live at the HBM peak, by name stack (a second compile); 0: off."))] = 0,
    no_drift: Annotated[bool, typer.Option("--no-drift", help=(
        "Skip the drift check (a second compile with the outputs' shardings left to XLA)."))] = False,
    activations: Annotated[bool, typer.Option("--activations", help="List every sharding constraint of the step.")] = False,
) -> None:
    """Build the abstract train state, compile train_step for a TPU slice, and report sharding, memory and cost."""
    from dataclasses import replace

    from aotcheck import render
    from aotcheck._io import check_output
    from aotcheck._pipeline import build

    if out is not None:
        check_output(out)
    request = replace(request_from(topology, num_slices, model, config, sets, no_compile, backend, pure_nnx, no_cache, fast),
                      drift=not no_drift, memory_detail=memory_detail, activations=activations)
    with progress() as say:
        built = build(request, say)
    warn(built.warnings)
    report = built.report
    if fmt is Format.json:
        emit(report.to_json(), out)
    elif fmt is Format.markdown:
        emit(render.markdown(report, all_leaves=leaves), out)
    else:
        width = _width() if out is None else None
        from rich.console import Console

        console = _console() if out is None else Console(record=True, width=100_000, file=io.StringIO())
        console.print(render.summary(report, largest=0 if leaves else 8, width=width))
        if leaves:
            console.print(render.leaf_table(report, title="all leaves", width=width))
        if out is not None:
            emit(console.export_text(), out)
    if report.compile is not None and not report.compile.fits:
        raise typer.Exit(EXIT_DOES_NOT_FIT)


app.command("fit", epilog=EXIT_CODES)(one_line_errors(_cli_fit.fit))


@app.command("topologies", epilog=EXIT_CODES)
@one_line_errors
def topologies(name: Annotated[str | None, typer.Argument(help="Show one slice.")] = None) -> None:
    """List the TPU slices aotcheck knows (name, chips, devices, libtpu topology, HBM per chip)."""
    from rich.table import Table

    from aotcheck._topology import all_topologies, get_topology, libtpu_available

    rows = [get_topology(name)] if name else list(all_topologies().values())
    table = Table(title=None if name else f"{len(rows)} TPU slices (backend: {'libtpu' if libtpu_available() else 'mock'})")
    for col in ("name", "chips", "devices", "libtpu topology", "chip config", "HBM per chip"):
        table.add_column(col)
    for t in rows:
        table.add_row(t.name, str(t.chips_per_slice), str(t.devices_per_slice), t.libtpu_topology, t.chip_config, f"{t.hbm_gib_per_chip:g} GiB")
    _console().print(table)


@app.command("models", epilog=EXIT_CODES)
@one_line_errors
def models() -> None:
    """List built-in and installed models, with where each comes from."""
    from rich.table import Table

    from aotcheck._registry import available_models

    table = Table()
    for col in ("name", "paths", "source", "description"):
        table.add_column(col)
    entries, broken = available_models()
    for entry in entries:
        table.add_row(entry.name, ", ".join(entry.spec.paths()), entry.source, entry.spec.description)
    for name, error in broken.items():
        table.add_row(name, "-", "entry point (cannot load)", error, style="red")
    _console().print(table)


# ---- aotcheck check / aotcheck golden update: the CI gate over the matrix of golden files ----

golden_app = typer.Typer(no_args_is_help=True, help="Golden files: the reviewed record of each case's sharding.")
app.add_typer(golden_app, name="golden")

app.command("check", epilog=EXIT_CODES)(one_line_errors(_cli_gate.check))
golden_app.command("update", epilog=EXIT_CODES)(one_line_errors(_cli_gate.golden_update))


# ---- aotcheck diff: two states (linen, nnx, saved reports, goldens, MaxText goldens) leaf by leaf ----

DiffSide = Annotated[str, typer.Argument(
    help="linen or nnx (built now from the options), an aotcheck report JSON, a golden directory, "
    "or MaxText's named_shardings.json / logical_shardings.json (or their directory).",
    show_default=False,
)]


@app.command("diff", epilog=EXIT_CODES)
@one_line_errors
def diff_(
    a: DiffSide,
    b: DiffSide,
    topology: Topology = "v5p-128",
    model: Model = None,
    config: ConfigFile = None,
    sets: Sets = None,
    num_slices: NumSlices = 1,
    no_compile: NoCompile = False,
    rewrites: Annotated[Path | None, typer.Option(
        "--rewrites", help="YAML file of extra canonical-path rewrite rules for containers named differently, "
        "applied after configs/canonical.yml and laid out like it (per source kind: pattern, replacement, optional role).")] = None,
    memory_tolerance: Annotated[float, typer.Option(
        "--memory-tolerance", min=0, callback=finite, help="Relative change of argument/temp/peak bytes per chip, or of FLOPs, that counts.")] = 0.01,
    names: Names = False,
    fmt: FormatOpt = Format.table,
    out: Out = None,
    backend: BackendOpt = BackendChoice.auto,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", min=1, help="Processes for building linen and nnx (default: one per path, at most the idle cores).")] = None,
) -> None:
    """Compare two states leaf by leaf (sharding, logical axes, dtypes, shapes) and their compiled steps.

    `aotcheck diff linen nnx` builds both paths of one configuration: does the NNX model give exactly the Linen model's state, sharding and memory? Findings come in order of what matters: leaves on one side only, PartitionSpec, dtype and shape, logical names, then the compiled figures. Expected, harmless differences (the step's dtype, NNX-only rng state, logical names that differ under an equal PartitionSpec) are listed as notes and do not fail.

    Exit 0 identical, 1 a real difference, 2 usage error, 3 a side could not be built.
    """
    from aotcheck import _canonical, render
    from aotcheck._compare import compare, failing
    from aotcheck._errors import EXIT_REGRESSION, UsageError
    from aotcheck._io import check_output
    from aotcheck._sides import load_side, model_rewrites, recorded_rewrites

    if out is not None:
        check_output(out)
    paths = list(dict.fromkeys(n for n in (a, b) if n in ("linen", "nnx")))
    # Two saved sides need no request, hence none of the modules that build reports.
    request = request_from(topology, num_slices, model, config, sets, no_compile, backend) if paths else None
    rules = model_rewrites(request) if request is not None else _canonical.defaults()
    extra = _canonical.read(rewrites) if rewrites is not None else None
    # Saved sides first: a bad file is reported before minutes of building.
    loaded = {n: load_side(Path(n)) for n in (a, b) if n not in paths}
    for name, saved in loaded.items():  # the model's rules as a saved side recorded them (each set once)
        rules = rules.then(recorded_rewrites(saved, name))
    if extra is not None:
        rules = rules.then(extra)
    if request is not None:
        from aotcheck._parallel import build_all

        with progress() as say:
            builds = build_all([request.with_path(p) for p in paths], jobs, say)
        warn(*(built.warnings for built in builds))
        loaded.update((path, built.report) for path, built in zip(paths, builds, strict=True))

    def side(name: str) -> Any:
        return loaded[name]

    ra, rb = side(a), side(b)
    try:
        findings = compare(ra, rb, memory_tolerance=memory_tolerance, rewrites=rules, names_are_notes=not names,
                           labels=(a, b))
    except UsageError as exc:  # two leaves of a side on one canonical path
        raise UsageError(f"{exc}; fix the model's rewrites or the --rewrites file") from None
    write = {Format.json: render.diff_json, Format.markdown: render.diff_markdown, Format.table: render.diff_text}[fmt]
    emit(write(findings, ra, rb, a, b), out)
    if failing(findings):
        raise typer.Exit(EXIT_REGRESSION)


from aotcheck._cache_cli import cache_app  # noqa: E402  (the commands register in order)

app.add_typer(cache_app, name="cache")


class SchemaName(StrEnum):
    report = "report"
    golden = "golden"
    matrix = "matrix"


@app.command("schema", epilog=EXIT_CODES)
@one_line_errors
def schema(name: Annotated[SchemaName, typer.Argument(help="report, golden or matrix.")]) -> None:
    """Print the JSON Schema of a report, of a golden file, or of the matrix."""
    from aotcheck._schemas import json_schema

    typer.echo(json_schema(name.value), nl=False)


def main() -> None:
    """The `aotcheck` command: libtpu's environment first (before jax loads), then the app."""
    import os

    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()
    # aotcheck's records use no pydantic plugin, and looking for one reads every installed
    # distribution's metadata: ~13 ms of a 10,000-leaf diff. A user's own setting is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    try:
        app()
    except SystemExit as exc:
        if isinstance(exc.code, int | None):
            _exit(exc.code or 0)
        raise


def _exit(code: int) -> None:
    """End the process once the command is done: the exit handlers run and the output is
    flushed, but the interpreter is not torn down. Freeing jax's, flax's and libtpu's modules
    took 0.2-0.5 s after a `--no-compile` run (1-2.5 s in all) had written everything, and
    freeing two 10,000-leaf reports ~0.1 s of a `diff`. A live thread gets the ordinary exit."""
    import sys
    import threading

    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more can be written anyway
            pass
    os._exit(code)
