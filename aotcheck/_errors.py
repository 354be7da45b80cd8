"""The errors aotcheck reports as one line, each with the exit code the CLI returns."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_USAGE = 2
EXIT_BUILD = 3
EXIT_DOES_NOT_FIT = 4
EXIT_INTERNAL = 5


class AotcheckError(Exception):
    """A failure the user can act on; the CLI prints `error: <message>` and exits with `exit_code`."""

    exit_code: int = EXIT_USAGE


class UsageError(AotcheckError):
    """Bad input: an unknown name, an invalid config value, a mesh that cannot be built."""

    exit_code = EXIT_USAGE


class BuildError(AotcheckError):
    """The inputs were valid but the state, lowering or compile failed."""

    exit_code = EXIT_BUILD


# What user model code may raise besides exceptions: `sys.exit()` or a stray KeyboardInterrupt
# inside an import, factory or loss is that model's failure, never the command's success.
USER_CODE_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


def one_line(exc: BaseException) -> str:
    """`Type: first line of the message`, for wrapping a library's exception in a one-line error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def close_matches(word: str, choices: Iterable[str], n: int = 3) -> str:
    """`; did you mean a, b?` or an empty string, for the end of an error message."""
    found = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6)
    return f"; did you mean {', '.join(found)}?" if found else ""
