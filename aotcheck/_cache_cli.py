"""`aotcheck cache info|clear`: what the cache of reports, compiles and parsed YAML holds, and emptying it."""

# Annotations evaluated at definition: see `_cli`.
import typer

cache_app = typer.Typer(
    no_args_is_help=True,
    help="The cache of reports, compiles and parsed YAML files ($AOTCHECK_CACHE_DIR, capped at $AOTCHECK_CACHE_MAX_MB).",
)


@cache_app.command("info")
def cache_info() -> None:
    """Show the cache's directory, entries, bytes and size cap."""
    from aotcheck import _cache

    i = _cache.info()
    other = f", {i.other} other" if i.other else ""
    typer.echo(f"directory: {i.directory}")
    typer.echo(f"entries: {i.reports + i.compiles + i.parsed_yaml + i.other} ({i.reports} reports, {i.compiles} compiles, "
               f"{i.parsed_yaml} parsed YAML files{other})")
    typer.echo(f"bytes: {i.bytes:,} of {i.max_bytes:,} (AOTCHECK_CACHE_MAX_MB; least recently used evicted first)")


@cache_app.command("clear")
def cache_clear() -> None:
    """Remove every cached report, compile and parsed YAML file."""
    from aotcheck import _cache
    from aotcheck._io import cache_dir

    typer.echo(f"removed {_cache.clear()} entries from {cache_dir()}")
