"""The JSON Schemas published under docs/schemas/ are the ones `aotcheck schema` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from aotcheck._schemas import json_schema

DOCS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


@pytest.mark.parametrize("name", ["report", "golden", "matrix"])
def test_published_schema_is_current(name: str) -> None:
    published = (DOCS / f"{name}.schema.json").read_text()
    assert published == json_schema(name), f"regenerate: aotcheck schema {name} > docs/schemas/{name}.schema.json"
