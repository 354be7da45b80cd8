"""`aotcheck check` and `aotcheck golden update`: the CI gate's options, and the run that prints its result.

The commands are registered on the app in `aotcheck._cli`.
"""

# Annotations evaluated at definition: see `_cli`.
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from aotcheck._boundary import finite
from aotcheck._cli_common import BackendChoice, Format, Names, NoCache, _console, _verbosity

CaseOpt = Annotated[list[str] | None, typer.Option("--case", help="Only this case (repeatable; slow cases too).")]
FilterOpt = Annotated[str | None, typer.Option("--filter", "-k", help="Only cases matching a pytest-style expression: words match "
                                               "case/path names by substring (or glob), with and, or, not and parentheses.")]
SlowOpt = Annotated[bool, typer.Option("--slow", "--all", help="Include the slow cases (big-model compiles).")]
MatrixOpt = Annotated[Path | None, typer.Option("--matrix", envvar="AOTCHECK_MATRIX", help="Matrix file (default: \\[tool.aotcheck] of the nearest pyproject.toml, else the nearest configs/matrix.yml).")]
GoldenOpt = Annotated[Path | None, typer.Option("--golden", envvar="AOTCHECK_GOLDEN", help="Golden directory (default: the matrix's golden_dir).")]
ShardOpt = Annotated[str | None, typer.Option("--shard", envvar="AOTCHECK_SHARD", help="Run part i of n of the selected cases (i/n, 1-based), for CI runners.")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", min=1, envvar="AOTCHECK_JOBS", help="Build cases in up to N parallel processes; cached cases and a lone build need none (default: \\[tool.aotcheck] jobs, else 1).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Update goldens even when CI is set, and let a mock run replace libtpu compile figures.")]
CheckBackendOpt = Annotated[BackendChoice | None, typer.Option("--backend", envvar="AOTCHECK_BACKEND", help="libtpu, mock or auto (default: \\[tool.aotcheck] backend, else auto); compile figures are compared only with the golden's backend.")]
GateFormatOpt = Annotated[Format, typer.Option("--format", "-f", envvar="AOTCHECK_FORMAT", help="table, json or markdown.")]
JsonAlias = Annotated[bool, typer.Option("--json", hidden=True, help="Deprecated: --format json.")]


class Policy(StrEnum):
    fail = "fail"
    warn = "warn"


def _gate(
    *, update: bool, force: bool, case: list[str] | None, filter_: str | None, slow: bool, matrix_file: Path | None,
    golden_dir: Path | None, shard: str | None, jobs: int | None, backend: BackendChoice | None,
    memory_tolerance: float | None = None, junit: Path | None = None, markdown: Path | None = None,
    fmt: Format = Format.table, compiler_changes: Policy | None = None, no_cache: bool = False, names: bool = False,
) -> None:
    from aotcheck import _gate as gate
    from aotcheck import _matrix as matrix_mod
    from aotcheck import _settings, render
    from aotcheck._io import check_output, write_output

    for option, path in (("--junit", junit), ("--markdown", markdown)):
        if path is not None:
            check_output(path, option)
    if update:
        gate.refuse_update_in_ci(force)
    if no_cache:
        os.environ["AOTCHECK_NO_CACHE"] = "1"  # the gate's worker processes inherit it
    settings = _settings.find()
    backend_name = _settings.choice("backend", backend.value if backend else None, settings, "auto",
                                    tuple(BackendChoice))
    jobs = _settings.count("jobs", jobs, settings, 1)
    matrix = matrix_mod.load(matrix_file)
    units = matrix_mod.select(matrix, case or (), filter_, slow)
    if shard is not None:
        units = matrix_mod.shard(units, *matrix_mod.parse_shard(shard))
    command = "aotcheck golden update" + (f" --matrix {matrix_file}" if matrix_file else "") + (
        f" --golden {golden_dir}" if golden_dir else "")

    def said(o: Any) -> None:
        if _verbosity["level"] >= 0:
            typer.echo(f"{o.status:>9}  {o.name}  ({o.seconds:.1f}s)", err=True)

    result = gate.run(matrix, units, golden_root=golden_dir, update=update, backend=backend_name, jobs=jobs,
                      memory_tolerance=memory_tolerance, update_command=command, on_outcome=said,
                      compiler_changes=compiler_changes.value if compiler_changes else None, force=force,
                      names_are_notes=not names)
    md = render.gate_markdown(result)
    if fmt is Format.json:
        typer.echo(result.to_json(), nl=False)
    elif fmt is Format.markdown:
        typer.echo(md, nl=False)
    elif _verbosity["level"] < 0:
        typer.echo(render.gate_verdict(result))
    else:
        console = _console()
        console.print(render.gate_table(result))
        for line in render.gate_details(result):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
    if junit is not None:
        write_output(junit, render.gate_junit(result), "--junit")
    if markdown is not None:
        write_output(markdown, md, "--markdown")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(os.environ["GITHUB_STEP_SUMMARY"], "a") as summary:
            summary.write(md)
    raise typer.Exit(result.exit_code)


def check(
    case: CaseOpt = None,
    filter_: FilterOpt = None,
    slow: SlowOpt = False,
    matrix_file: MatrixOpt = None,
    golden_dir: GoldenOpt = None,
    shard: ShardOpt = None,
    jobs: JobsOpt = None,
    memory_tolerance: Annotated[float | None, typer.Option("--memory-tolerance", min=0, callback=finite, envvar="AOTCHECK_MEMORY_TOLERANCE", help="Relative change of memory per chip that counts (default: the case's, else the matrix's, else 0.01).")] = None,
    compiler_changes: Annotated[Policy | None, typer.Option("--compiler-changes", envvar="AOTCHECK_COMPILER_CHANGES", help="When jax/jaxlib/libtpu differ from the golden's, changed compile figures fail or only warn (default: the case's, else the matrix's, else fail).")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML: one test case per case and path.")] = None,
    markdown: Annotated[Path | None, typer.Option("--markdown", help="Write the Markdown summary to this file.")] = None,
    fmt: GateFormatOpt = Format.table,
    as_json: JsonAlias = False,
    update: Annotated[bool, typer.Option("--update", help="Write new goldens for the selected cases instead of checking.")] = False,
    force: ForceOpt = False,
    backend: CheckBackendOpt = None,
    no_cache: NoCache = False,
    names: Names = False,
) -> None:
    """Compare each case of the matrix with its golden files; exit 0 clean, 1 changed, 2 usage error, 3 build failed."""
    _gate(update=update, force=force, case=case, filter_=filter_, slow=slow, matrix_file=matrix_file,
          golden_dir=golden_dir, shard=shard, jobs=jobs, backend=backend, memory_tolerance=memory_tolerance,
          junit=junit, markdown=markdown, fmt=Format.json if as_json else fmt, compiler_changes=compiler_changes,
          no_cache=no_cache, names=names)


def golden_update(
    case: CaseOpt = None,
    filter_: FilterOpt = None,
    slow: SlowOpt = False,
    matrix_file: MatrixOpt = None,
    golden_dir: GoldenOpt = None,
    shard: ShardOpt = None,
    jobs: JobsOpt = None,
    fmt: GateFormatOpt = Format.table,
    as_json: JsonAlias = False,
    force: ForceOpt = False,
    backend: CheckBackendOpt = None,
    no_cache: NoCache = False,
) -> None:
    """Write the golden files of the selected cases (atomically) and print what changed; refused in CI without --force.

    A mock run (no libtpu here) keeps the goldens' libtpu compile.json unless --force.
    """
    _gate(update=True, force=force, case=case, filter_=filter_, slow=slow, matrix_file=matrix_file,
          golden_dir=golden_dir, shard=shard, jobs=jobs, backend=backend, fmt=Format.json if as_json else fmt,
          no_cache=no_cache)
