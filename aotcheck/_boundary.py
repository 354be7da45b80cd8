"""The one error boundary of every command: each failure becomes one `error: ...` line on stderr
and its documented exit code (see docs/errors.md), never a traceback unless `--debug` asks."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from aotcheck._errors import EXIT_INTERNAL, EXIT_USAGE, AotcheckError, one_line

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130
_debug = {"on": False}


def debug_mode(on: bool) -> None:
    """Show the traceback of internal errors (`--debug`, AOTCHECK_DEBUG=1)."""
    _debug["on"] = on


def one_line_errors(fn: F) -> F:
    """Wrap a command: every failure is one `error:` line and its exit code, never 1 (that is a comparison's)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except AotcheckError as exc:
            _error(str(exc), exc.exit_code)
        except OSError as exc:  # an unwritable golden directory, a full disk
            where = f": {exc.filename}" if exc.filename else ""
            _error(f"{exc.strerror or exc}{where}; check the path and its permissions", EXIT_USAGE)
        except KeyboardInterrupt:
            _error("interrupted", EXIT_INTERRUPTED)
        except (Exception, SystemExit) as exc:  # a bug in aotcheck (user code's failures are BuildErrors)
            if _debug["on"]:
                import traceback

                traceback.print_exception(exc)
            _error(f"internal error: {one_line(exc)}; rerun with --debug for the traceback and report it", EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def _error(message: str, code: int) -> None:
    lines = message.strip().splitlines() or [""]
    typer.echo(f"error: {lines[0]}", err=True)
    raise typer.Exit(code) from None


def finite(value: float | None) -> float | None:
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number; give a relative change such as 0.01")
    return value
