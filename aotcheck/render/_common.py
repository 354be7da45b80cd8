"""What every output format shares: Markdown escaping and the fit verdict in words."""

from __future__ import annotations

from aotcheck._analysis import Compile
from aotcheck._text import human_bytes


def md(text: str) -> str:
    """Text made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def fit_text(c: Compile) -> str:
    """`fits: 20.74 MiB of 95.00 GiB per device (0.0%), headroom 94.98 GiB` or `does not fit: needs ...`."""
    need = f"{human_bytes(c.needed_bytes_per_device)} of {human_bytes(c.capacity_bytes_per_device)} per device"
    if not c.fits:
        return f"does not fit: needs {need}"
    frac = c.needed_bytes_per_device / c.capacity_bytes_per_device if c.capacity_bytes_per_device else 0.0
    return f"fits: {need} ({frac:.1%}), headroom {human_bytes(c.headroom_bytes_per_device)}"
