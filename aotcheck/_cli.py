"""The `aotcheck` command line: parses options, calls the library, prints, and sets the exit code.

Exit codes: 0 success; 1 a regression or difference was found; 2 usage or configuration
error; 3 a model could not be built, lowered or compiled; 4 the step does not fit in HBM.
"""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from aotcheck import _cli_fit
from aotcheck._errors import EXIT_DOES_NOT_FIT, EXIT_USAGE, AotcheckError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="What will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod.",
)
F = TypeVar("F", bound=Callable[..., Any])


def _version(value: bool) -> None:
    if value:
        from aotcheck._report import versions

        typer.echo(" ".join(f"{k} {v}" for k, v in versions().items() if v))
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print aotcheck's and its stack's versions.")] = False,
) -> None:
    """What will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod."""


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


def one_line_errors(fn: F) -> F:
    """Turn aotcheck's errors into `error: ...` on stderr and their exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AotcheckError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:  # an unwritable --out or golden directory, a full disk
            where = f": {exc.filename}" if exc.filename else ""
            typer.echo(f"error: {exc.strerror or exc}{where}; check the path and its permissions", err=True)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


class Format(StrEnum):
    table = "table"
    json = "json"
    markdown = "markdown"


class BackendChoice(StrEnum):
    auto = "auto"
    libtpu = "libtpu"
    mock = "mock"


Topology = Annotated[str, typer.Option("--topology", "-t", help="TPU slice, e.g. v5p-128 or v5:4x4x4.")]
NumSlices = Annotated[int, typer.Option("--num-slices", help="Slices joined over DCN.")]
Model = Annotated[str | None, typer.Option("--model", "-m", help="Built-in model, installed model, or package.module:attr.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML file of config keys.")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Override a config key: key=value (repeatable).")]
NoCompile = Annotated[bool, typer.Option("--no-compile", help="Sharding report only: no lowering or compile.")]
BackendOpt = Annotated[BackendChoice, typer.Option("--backend", help="libtpu (real TPU compile), mock (CPU devices), or auto.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table, json or markdown.")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")]


NoCache = Annotated[bool, typer.Option("--no-cache", help="Compile even if an identical program was compiled before.")]


def request_from(
    topology: str, num_slices: int, model: str | None, config: Path | None, sets: list[str] | None,
    no_compile: bool, backend: BackendChoice, pure_nnx: bool | None = None, no_cache: bool = False,
) -> Any:
    from aotcheck._pipeline import Request

    return Request(
        topology=topology, num_slices=num_slices, model=model, config_file=config, overrides=tuple(sets or ()),
        pure_nnx=pure_nnx, compile=not no_compile, backend=backend.value, cache=not no_cache,
    )


def emit(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
        return
    from aotcheck._io import atomic_write

    atomic_write(out, text)
    typer.echo(f"wrote {out}", err=True)


@contextlib.contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A spinner on stderr naming the current stage; silent when stderr is not a terminal."""
    console = _console(stderr=True)
    if not console.is_terminal:
        yield lambda _msg: None
        return
    with console.status("starting") as status:
        yield lambda msg: status.update(f"{msg} ...")


@app.command("compile")
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
) -> None:
    """Build the abstract train state, compile train_step for a TPU slice, and report sharding and memory."""
    from aotcheck import render
    from aotcheck._pipeline import build

    request = request_from(topology, num_slices, model, config, sets, no_compile, backend, pure_nnx, no_cache)
    with progress() as say:
        built = build(request, say)
    for warning in built.warnings:
        typer.echo(f"warning: {warning}", err=True)
    report = built.report
    if fmt is Format.json:
        emit(report.to_json(), out)
    elif fmt is Format.markdown:
        emit(render.markdown(report, all_leaves=leaves), out)
    else:
        console = _console() if out is None else Console(record=True, width=160, file=io.StringIO())
        console.print(render.summary(report, largest=0 if leaves else 8))
        if leaves:
            console.print(render.leaf_table(report, title="all leaves"))
        if out is not None:
            emit(console.export_text(), out)
    if report.compile is not None and not report.compile.fits:
        raise typer.Exit(EXIT_DOES_NOT_FIT)


app.command("fit")(one_line_errors(_cli_fit.fit))


@app.command("topologies")
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


@app.command("models")
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

CaseOpt = Annotated[list[str] | None, typer.Option("--case", help="Only this case (repeatable; slow cases too).")]
FilterOpt = Annotated[str | None, typer.Option("--filter", "-k", help="Only cases whose name matches (substring or glob).")]
SlowOpt = Annotated[bool, typer.Option("--slow", "--all", help="Include the slow cases (big-model compiles).")]
MatrixOpt = Annotated[Path | None, typer.Option("--matrix", help="Matrix file (default configs/matrix.yml, else \\[tool.aotcheck] in pyproject.toml).")]
GoldenOpt = Annotated[Path | None, typer.Option("--golden", help="Golden directory (default: the matrix's golden_dir).")]
ShardOpt = Annotated[str | None, typer.Option("--shard", help="Run part i of n of the selected cases (i/n, 1-based), for CI runners.")]
JobsOpt = Annotated[int, typer.Option("--jobs", "-j", min=1, help="Build cases in N parallel processes.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Update goldens even when CI is set.")]
CheckBackendOpt = Annotated[BackendChoice, typer.Option("--backend", help="libtpu, mock or auto; compile figures are compared only with the golden's backend.")]


def _gate(
    *, update: bool, force: bool, case: list[str] | None, filter_: str | None, slow: bool, matrix_file: Path | None,
    golden_dir: Path | None, shard: str | None, jobs: int, backend: BackendChoice, memory_tolerance: float | None = None,
    junit: Path | None = None, markdown: Path | None = None, as_json: bool = False,
) -> None:
    import os

    from aotcheck import _gate as gate
    from aotcheck import _matrix as matrix_mod
    from aotcheck import render
    from aotcheck._io import atomic_write

    if update:
        gate.refuse_update_in_ci(force)
    matrix = matrix_mod.load(matrix_file)
    units = matrix_mod.select(matrix, case or (), filter_, slow)
    if shard is not None:
        units = matrix_mod.shard(units, *matrix_mod.parse_shard(shard))
    command = "aotcheck golden update" + (f" --matrix {matrix_file}" if matrix_file else "") + (
        f" --golden {golden_dir}" if golden_dir else "")

    def said(o: Any) -> None:
        typer.echo(f"{o.status:>9}  {o.name}  ({o.seconds:.1f}s)", err=True)

    result = gate.run(matrix, units, golden_root=golden_dir, update=update, backend=backend.value, jobs=jobs,
                      memory_tolerance=memory_tolerance, update_command=command, on_outcome=said)
    md = render.gate_markdown(result)
    if as_json:
        typer.echo(result.to_json(), nl=False)
    else:
        console = _console()
        console.print(render.gate_table(result))
        for line in render.gate_details(result):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if junit is not None:
        atomic_write(junit, render.gate_junit(result))
    if markdown is not None:
        atomic_write(markdown, md)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(md)
    raise typer.Exit(result.exit_code)


@app.command("check")
@one_line_errors
def check(
    case: CaseOpt = None,
    filter_: FilterOpt = None,
    slow: SlowOpt = False,
    matrix_file: MatrixOpt = None,
    golden_dir: GoldenOpt = None,
    shard: ShardOpt = None,
    jobs: JobsOpt = 1,
    memory_tolerance: Annotated[float | None, typer.Option("--memory-tolerance", min=0, help="Relative change of memory per chip that counts (default: the matrix's, else 0.01).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML: one test case per case and path.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the Markdown summary to this file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of the table.")] = False,
    update: Annotated[bool, typer.Option("--update", help="Write new goldens for the selected cases instead of checking.")] = False,
    force: ForceOpt = False,
    backend: CheckBackendOpt = BackendChoice.auto,
) -> None:
    """Compare each case of the matrix with its golden files; exit 0 clean, 1 changed, 2 usage error, 3 build failed."""
    _gate(update=update, force=force, case=case, filter_=filter_, slow=slow, matrix_file=matrix_file,
          golden_dir=golden_dir, shard=shard, jobs=jobs, backend=backend, memory_tolerance=memory_tolerance,
          junit=junit, markdown=markdown, as_json=as_json)


@golden_app.command("update")
@one_line_errors
def golden_update(
    case: CaseOpt = None,
    filter_: FilterOpt = None,
    slow: SlowOpt = False,
    matrix_file: MatrixOpt = None,
    golden_dir: GoldenOpt = None,
    shard: ShardOpt = None,
    jobs: JobsOpt = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of the table.")] = False,
    force: ForceOpt = False,
    backend: CheckBackendOpt = BackendChoice.auto,
) -> None:
    """Write the golden files of the selected cases (atomically) and print what changed; refused in CI without --force."""
    _gate(update=True, force=force, case=case, filter_=filter_, slow=slow, matrix_file=matrix_file,
          golden_dir=golden_dir, shard=shard, jobs=jobs, backend=backend, as_json=as_json)


# ---- aotcheck diff: two states (linen, nnx, saved reports, goldens, MaxText goldens) leaf by leaf ----

DiffSide = Annotated[str, typer.Argument(
    help="linen or nnx (built now from the options), an aotcheck report JSON, a golden directory, "
    "or MaxText's named_shardings.json / logical_shardings.json (or their directory).",
    show_default=False,
)]


@app.command("diff")
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
        "--memory-tolerance", min=0, help="Relative change of argument/temp/peak bytes per chip, or of FLOPs, that counts.")] = 0.01,
    fmt: FormatOpt = Format.table,
    out: Out = None,
    backend: BackendOpt = BackendChoice.auto,
) -> None:
    """Compare two states leaf by leaf (sharding, logical axes, dtypes, shapes) and their compiled steps.

    `aotcheck diff linen nnx` builds both paths of one configuration: does the NNX model give exactly the Linen model's state, sharding and memory? Expected, harmless differences (the step's dtype, NNX-only rng state) are listed as notes and do not fail.

    Exit 0 identical, 1 a real difference, 2 usage error, 3 a side could not be built.
    """
    from aotcheck import _canonical, render
    from aotcheck._compare import compare, failing
    from aotcheck._errors import EXIT_REGRESSION
    from aotcheck._pipeline import build_report
    from aotcheck._sides import load_side

    rules = _canonical.defaults() if rewrites is None else _canonical.defaults().then(_canonical.read(rewrites))
    request = request_from(topology, num_slices, model, config, sets, no_compile, backend)
    built: dict[str, Any] = {}

    def side(name: str) -> Any:
        if name in ("linen", "nnx"):
            if name not in built:
                with progress() as say:
                    built[name] = build_report(request.with_path(name), say)
            return built[name]
        return load_side(Path(name))

    ra, rb = side(a), side(b)
    findings = compare(ra, rb, memory_tolerance=memory_tolerance, rewrites=rules)
    write = {Format.json: render.diff_json, Format.markdown: render.diff_markdown, Format.table: render.diff_text}[fmt]
    emit(write(findings, ra, rb, a, b), out)
    if failing(findings):
        raise typer.Exit(EXIT_REGRESSION)


class SchemaName(StrEnum):
    report = "report"
    golden = "golden"
    matrix = "matrix"


@app.command("schema")
@one_line_errors
def schema(name: Annotated[SchemaName, typer.Argument(help="report, golden or matrix.")]) -> None:
    """Print the JSON Schema of a report, of a golden file, or of the matrix."""
    from aotcheck._schemas import json_schema

    typer.echo(json_schema(name.value), nl=False)


def main() -> None:
    """The `aotcheck` command: libtpu's environment first (before jax loads), then the app."""
    from aotcheck._env import setup_libtpu_env

    setup_libtpu_env()
    app()
