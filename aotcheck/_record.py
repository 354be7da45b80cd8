"""The base of every typed record aotcheck reads or writes, and its one JSON form.

Records are pydantic models: frozen, unknown keys refused, numbers finite (JSON has no NaN
or Infinity). The rows of a big table (a report's leaves, a golden file's entries) are `row`
dataclasses under the same rules. `dumps` gives the deterministic text: sorted keys, indent 2,
trailing newline.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar, cast, dataclass_transform

import pydantic
import pydantic.dataclasses

from aotcheck._io import short_integers
from aotcheck._sharding import SpecEntry

_RULES = pydantic.ConfigDict(extra="forbid", allow_inf_nan=False)
# A PartitionSpec's (or logical axes') entry in a record. A string, an array and null exclude
# each other, so the first member that validates is the answer: pydantic's default ("smart")
# tries every member, which was a tenth of reading a 10,000-leaf report.
Entry = Annotated[SpecEntry, pydantic.Field(union_mode="left_to_right")]
_T = TypeVar("_T")
_M = TypeVar("_M", bound=pydantic.BaseModel)


class Record(pydantic.BaseModel):
    """A frozen, strict-keyed record with finite numbers."""

    model_config = pydantic.ConfigDict(**_RULES, frozen=True, populate_by_name=True)


def from_json_bytes(model: type[_M], data: bytes) -> _M | None:
    """`model` validated straight from a file's JSON bytes (0.6-0.7x the time of parsing them to
    Python first); None where parsing first must decide, and give its one-line error: a bad
    field (NaN or Infinity among them), an older format, text that is not JSON or not UTF-8, or
    an integer beyond int64, which validation alone would let through."""
    if not short_integers(data):
        return None
    try:
        return model.model_validate_json(data)
    except ValueError:
        return None


@dataclass_transform(frozen_default=True, field_specifiers=(pydantic.Field,))
def row(cls: type[_T]) -> type[_T]:
    """A record as a frozen, slotted pydantic dataclass: the same rules as `Record`, for the rows
    of a table of thousands. pydantic builds one in 0.6x the time of a model (it has no
    `__dict__`), which is most of reading a 10,000-leaf report.

    Example:
        >>> @row
        ... class Dtype:
        ...     dtype: str
        >>> Dtype(dtype="bfloat16")
        Dtype(dtype='bfloat16')
    """
    return cast("type[_T]", pydantic.dataclasses.dataclass(frozen=True, slots=True, config=_RULES)(cls))


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
