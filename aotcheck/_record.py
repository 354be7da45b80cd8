"""The base of every typed record aotcheck reads or writes, and its one JSON form.

Records are pydantic models: frozen, unknown keys refused, numbers finite (JSON has no NaN
or Infinity). `dumps` gives the deterministic text: sorted keys, indent 2, trailing newline.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic


class Record(pydantic.BaseModel):
    """A frozen, strict-keyed record with finite numbers."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True)


def dumps(data: Any) -> str:
    """Deterministic, strict JSON text of `data` (a record or plain JSON data)."""
    if isinstance(data, pydantic.BaseModel):
        data = data.model_dump(mode="json", by_alias=True)
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def number(x: float | None) -> float | int | None:
    """Integral floats as integers, so the JSON does not depend on float printing."""
    if x is None:
        return None
    return int(x) if float(x).is_integer() else x
