"""Files in and out: JSON and YAML read with one-line errors; atomic writes, so a reader (or an
interrupted writer) only ever sees the old file or the new one; where aotcheck keeps its files
(the built-in configs, the cache)."""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import pydantic_core

from aotcheck._errors import UsageError

MAX_INPUT_BYTES = 16 << 20  # no config, matrix, golden or report is near this; a bigger file is a mistake
MAX_INT = 1 << 63  # what a report can hold (int64); a longer number is a corrupt file, not a shape
# Every integer at or beyond MAX_INT has 19 digits or more. A text without such a run of digits
# needs no per-integer check, which costs more than the parse itself on a 10,000-leaf report.
# (Found by mapping digits to 0 and searching for 19 zeros: a regex takes 10x as long.)
_LONG_RUN = b"0" * 19
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"0" * 9)
# The text is mapped in pieces this size (below glibc's mmap threshold), so each piece reuses the
# last one's memory: one 4 MB copy is ~1,000 fresh pages, and a page fault costs ~3 us on a VM.
_PIECE = 1 << 16


def config_dir() -> Path:
    """The built-in configs (`base.yml`, `models/`, `canonical.yml`): the repository's `configs/`,
    which the package carries (a link in a checkout, a copy in a wheel)."""
    return Path(str(resources.files("aotcheck").joinpath("configs")))


def cache_dir() -> Path:
    """`$AOTCHECK_CACHE_DIR`, else `$XDG_CACHE_HOME/aotcheck`, else `~/.cache/aotcheck`."""
    explicit = os.environ.get("AOTCHECK_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aotcheck"


def cache_disabled() -> bool:
    """`AOTCHECK_NO_CACHE` set, as `--no-cache` does for the gate's workers."""
    return os.environ.get("AOTCHECK_NO_CACHE", "").lower() not in ("", "0", "false")


F = TypeVar("F", bound=Callable[..., Any])


def without_cycles(fn: F) -> F:
    """Run `fn` with the cycle collector paused, for work that makes many new objects and no
    reference cycles: a report or golden read from JSON is a tree, and collecting every 700
    allocations was half the cost of reading one of 10,000 leaves; comparing two such reports
    builds tables and findings, and the collector scanned both reports' objects as it did."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():  # an outer call already paused it
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()

    return wrapper  # type: ignore[return-value]


class _Refused(ValueError):
    pass


def read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes, bounded in size, or a one-line error naming it."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a directory; give a file") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path} is over {MAX_INPUT_BYTES >> 20} MiB; is it the right file?")
    return data


def decode(data: bytes, path: Path, what: str) -> str:
    """`data` (of the file `path`) as UTF-8 text, or a one-line error naming it."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None


def read_text(path: Path, what: str) -> str:
    """The file's UTF-8 text, bounded in size, or a one-line error naming it."""
    return decode(read_bytes(path, what), path, what)


def _int(text: str) -> int:
    value = int(text)
    if abs(value) >= MAX_INT:
        raise _Refused(f"the number {text[:20]}... is out of range")
    return value


def _constant(text: str) -> Any:
    raise _Refused(f"{text} is not JSON (numbers must be finite)")


def short_integers(text: str | bytes) -> bool:
    """Whether every integer in `text` is within int64: no run of 19 digits or more."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    overlap = len(_LONG_RUN) - 1  # a run that straddles two pieces
    return not any(_LONG_RUN in data[max(start - overlap, 0):start + _PIECE].translate(_DIGITS_TO_ZERO)
                   for start in range(0, len(data), _PIECE))


def loads_json(text: str) -> Any:
    """Strict JSON: no NaN or Infinity, integers within int64; ValueError otherwise."""
    if short_integers(text):
        # pydantic-core's parser takes 0.6x the time of json's on a 10,000-leaf report. Any
        # text it refuses goes to json's, whose messages (and leniencies) are the ones we keep.
        try:
            return pydantic_core.from_json(text, allow_inf_nan=False)
        except ValueError:
            return json.loads(text, parse_constant=_constant)
    return json.loads(text, parse_int=_int, parse_constant=_constant)


def read_json(path: Path, what: str) -> Any:
    """Parsed JSON, or a one-line error naming `what` the file was meant to be."""
    return parse_json(read_text(path, what), path, what)


def parse_json(text: str, path: Path, what: str) -> Any:
    """`text` (of the file `path`) parsed, or a one-line error naming `what` the file was meant to be."""
    try:
        return loads_json(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{what} {path} is not valid JSON (line {exc.lineno}): {exc.msg}") from None
    except (_Refused, RecursionError) as exc:
        reason = str(exc) if isinstance(exc, _Refused) else "it is nested too deeply"
        raise UsageError(f"{what} {path} is not valid: {reason}; regenerate or fix it") from None


@functools.cache
def _no_alias_loader() -> Any:
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """PyYAML's safe loader without anchors and aliases: an alias bomb expands exponentially."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "YAML aliases (*name) are not allowed; write the value out",
                                                  event.start_mark)
            return super().compose_node(parent, index)

    return NoAliasLoader


def loads_yaml(text: str) -> Any:
    """Safe-loaded YAML without aliases; `yaml.YAMLError` for bad YAML, RecursionError if nested too deeply."""
    import yaml  # ~10 ms, mostly its regexes: only when a text must be parsed (see read_yaml)

    return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass


# The parsed form of a YAML text, kept in the cache as `y-<hash>.json`: a command whose YAML
# files were all read before neither imports nor runs PyYAML. The tag changes with what
# `read_yaml` makes of a text.
_YAML_MEMO = "read_yaml/1"


def read_yaml(path: Path, what: str) -> Any:
    """Parsed YAML (an empty file is an empty mapping), or a one-line error naming `what` the file is.

    What shape the data must have is the caller's to check: it knows what to say. A text read
    before comes from the cache (data JSON holds exactly: plain strings, numbers, lists and
    mappings with string keys; anything else is parsed each time)."""
    text = read_text(path, what)
    memo = None if cache_disabled() else cache_dir() / f"y-{_digest(_YAML_MEMO, text)}.json"
    if memo is not None:
        try:
            data = loads_json(memo.read_text("utf-8"))
            os.utime(memo)  # recently used: evicted last
            return data
        except (OSError, ValueError):  # not there, or damaged: parsed again and rewritten
            pass
    import yaml

    try:
        data = loads_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{what} {path}{where} is not valid YAML: {problem}") from None
    except RecursionError:
        raise UsageError(f"{what} {path} is nested too deeply") from None
    data = {} if data is None else data
    if memo is not None and _json_exact(data):
        try:
            atomic_write(memo, json.dumps(data, allow_nan=False))
        except OSError:  # a cache that cannot be written costs only the parse
            pass
    return data


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _json_exact(data: Any) -> bool:
    """Whether JSON text gives `data` back as it is (no dates, sets, non-string keys, NaN...)."""
    stack = [data]
    while stack:
        value = stack.pop()
        kind = type(value)
        if kind is dict:
            if not all(type(k) is str for k in value):
                return False
            stack.extend(value.values())
        elif kind is list:
            stack.extend(value)
        elif kind is float:
            if not math.isfinite(value):
                return False
        elif kind not in (str, int, bool, type(None)):
            return False
    return True


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise


def check_output(path: Path, option: str = "--out") -> Path:
    """The regular file (or new file) `path` names, following symlinks; a one-line error otherwise.

    Commands call it before their work, so a bad output path costs nothing."""
    target = Path(os.path.realpath(path))
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise UsageError(f"{option} {path}: {exc.strerror}; give a writable file path") from None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise UsageError(f"{option} {path} is {kind}; give a file path")
    return target


def write_output(path: Path, text: str, option: str = "--out") -> Path:
    """Write a user-named output file atomically; only ever a regular file.

    A symlink is followed and its target (a regular file, or a new one) replaced; a
    directory, device node, FIFO or socket is a one-line error, never replaced.

    Returns:
        The path written (the symlink's target if `path` is one).
    """
    target = check_output(path, option)
    try:
        atomic_write(target, text)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write it ({exc.strerror or type(exc).__name__}); "
                         "check the directory exists and is writable") from None
    return target


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
