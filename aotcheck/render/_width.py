"""Tables that fit a terminal: paths wrapped after a `/`, other cells folded, optional columns left out with a note.

On a terminal (or with `COLUMNS` set) a table must fit its width without losing the figures
a reader came for; piped output keeps every column and the full paths (`width=None`).
"""

from __future__ import annotations

from collections.abc import Sequence

from rich import box
from rich.table import Table

ELLIPSIS = "…"
_GAP = 2  # spaces between columns
_MIN = {"path": 20, "shape": 11, "spec": 14, "logical axes": 14, "per device": 11}  # narrowest a column folds to


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut in the middle (`head…tail`).

    Example:
        >>> shorten_middle("post_self_attention_layer_norm", 20)
        'post_self…layer_norm'
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail = (width - 1) // 2 + (width - 1) % 2
    return text[:width - 1 - tail] + ELLIPSIS + text[len(text) - tail:]


def wrap_path(path: str, width: int) -> str:
    """A `/`-separated path broken into lines of at most `width` after a `/`; a segment too long for a
    line is shortened in the middle.

    Example:
        >>> print(wrap_path("params/decoder/layers/mlp/wi_0/kernel", 20))
        params/decoder/
        layers/mlp/wi_0/
        kernel
    """
    lines: list[str] = []
    line = ""
    parts = path.split("/")
    for k, part in enumerate(parts):
        piece = shorten_middle(part, width - (k < len(parts) - 1)) + ("/" if k < len(parts) - 1 else "")
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = ""
        line += piece
    return "\n".join([*lines, line])


def _widths(headers: Sequence[str], rows: Sequence[Sequence[str]], keep: list[int], width: int) -> list[int] | None:
    """Column widths for the kept columns that fit `width`, folding the widest other cells first and the path
    last; None if even the narrowest do not fit."""
    current = [max(len(headers[i]), *(len(r[i]) for r in rows)) if rows else len(headers[i]) for i in keep]
    floor = [min(c, _MIN.get(headers[i], c)) for c, i in zip(current, keep, strict=True)]
    excess = sum(current) + _GAP * len(keep) + len(keep) - 1 - width  # padding, and a divider between columns
    while excess > 0:
        slack = [c - f for c, f in zip(current, floor, strict=True)]
        # Fold the other cells before the path: a path is what a reader searches for.
        k = max(range(1, len(keep)), key=lambda j: slack[j], default=0)
        if slack[k] <= 0:
            k = 0
        if slack[k] <= 0:
            return None
        step = min(slack[k], excess, max(1, slack[k] // 2))
        current[k] -= step
        excess -= step
    return current


def fitted_table(title: str | None, headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None,
                 optional: Sequence[str] = ()) -> Table:
    """A table of `rows` under `headers` that fits `width` (None: no limit, full first column).

    The first column (paths) wraps after a `/`; the others fold at spaces, down to a
    readable minimum; if even so the table is too wide, the `optional` columns are left
    out, in order, and the caption says which.
    """
    if width is None:
        table = Table(title=title, title_justify="left")
        table.add_column(headers[0], no_wrap=True)
        for h in headers[1:]:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*row)
        return table
    keep = list(range(len(headers)))
    dropped: list[str] = []
    widths = _widths(headers, rows, keep, width)
    for name in optional:
        if widths is not None:
            break
        keep.remove(headers.index(name))
        dropped.append(name)
        widths = _widths(headers, rows, keep, width)
    if widths is None:  # narrower than any table: let the terminal wrap it
        widths = [_MIN.get(headers[i], len(headers[i])) for i in keep]
    caption = (f"{' and '.join(dropped)} left out at {width} columns: widen the terminal, or pipe the output"
               if dropped else None)
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  padding=(0, _GAP, 0, 0), caption=caption, caption_justify="left", collapse_padding=True)
    for i, w in zip(keep, widths, strict=True):
        table.add_column(headers[i], width=w + _GAP, overflow="fold")  # rich counts the padding in the width
    for row in rows:
        table.add_row(wrap_path(row[0], widths[0]), *(row[i] for i in keep[1:]))
    return table
