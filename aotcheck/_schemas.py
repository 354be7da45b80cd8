"""The JSON Schemas of what aotcheck writes and reads: reports, golden files and the matrix."""

from __future__ import annotations

from typing import Any

import pydantic

from aotcheck._golden import GoldenFile
from aotcheck._matrix import MatrixFile
from aotcheck._record import dumps
from aotcheck._report import Report

_TITLES = {"report": "aotcheck report", "golden": "aotcheck golden file", "matrix": "aotcheck matrix"}


def schema_of(name: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of `report`, `golden` (any of its four files) or `matrix`.

    Example:
        >>> schema_of("report")["title"]
        'aotcheck report'
    """
    target: Any = {"report": Report, "golden": GoldenFile, "matrix": MatrixFile}[name]
    schema = pydantic.TypeAdapter(target).json_schema(mode="serialization", by_alias=True)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": _TITLES[name]}


def json_schema(name: str) -> str:
    """`schema_of(name)` as deterministic JSON text."""
    return dumps(schema_of(name))
