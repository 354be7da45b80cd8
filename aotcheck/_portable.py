"""Golden directory names every platform can check out: no `:` or `<>|?*"\\`, no trailing dot or space,
no reserved Windows device name; names that are already portable are left as they are."""

from __future__ import annotations

import re

_FORBIDDEN = re.compile(r'[<>|?*"\\\x00-\x1f]')
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)


def portable_segment(name: str) -> str:
    """One path segment made portable: `my_mlp:MLP` -> `my_mlp.MLP`.

    Example:
        >>> portable_segment("my_mlp:MLP")
        'my_mlp.MLP'
    """
    if name in (".", ".."):
        return name
    out = _FORBIDDEN.sub("_", name.replace(":", ".")).rstrip(". ")
    if _RESERVED.match(out):
        out += "_"
    return out or "_"


def portable_path(path: str) -> str:
    """A `/`-separated relative path with each segment made portable.

    Example:
        >>> portable_path("pkg.models:MLP/v5p-8")
        'pkg.models.MLP/v5p-8'
    """
    return "/".join(portable_segment(part) for part in path.split("/") if part)


def is_portable(path: str) -> bool:
    return portable_path(path) == path.strip("/")
