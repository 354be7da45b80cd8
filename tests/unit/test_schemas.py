"""The exported JSON Schemas accept what aotcheck writes and the files the repository holds."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from aotcheck import _golden
from aotcheck._schemas import json_schema, schema_of

from ._reports import nnx_report, report

REPO = Path(__file__).resolve().parents[2]
GOLDEN_FILES = sorted((REPO / "golden").rglob("*.json"))


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = schema_of(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", ["report", "golden", "matrix"])
def test_schemas_are_valid_draft_2020_12(name):
    schema = schema_of(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == {"report": "aotcheck report", "golden": "aotcheck golden file",
                               "matrix": "aotcheck matrix"}[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert json.loads(json_schema(name)) == schema


@pytest.mark.parametrize("make", [report, nnx_report, lambda: report(compiled=False)])
def test_report_schema_accepts_written_reports(make):
    validator("report").validate(json.loads(make().to_json()))


def test_report_schema_refuses_what_the_reader_refuses():
    v = validator("report")
    data = json.loads(report().to_json())
    data["leaves"]["step"]["role"] = "counter"
    assert not v.is_valid(data)
    data = json.loads(report().to_json())
    data["leaves"]["step"]["colour"] = "red"
    assert not v.is_valid(data)
    data = json.loads(report().to_json())
    data["schema"] = "aotcheck.report/3"
    assert not v.is_valid(data)


@pytest.mark.parametrize("make", [report, nnx_report])
def test_golden_schema_accepts_each_written_file(make):
    v = validator("golden")
    for text in _golden.files_of(make()).values():
        v.validate(json.loads(text))


def test_the_repository_has_goldens():
    assert len(GOLDEN_FILES) >= 4 * 8


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_golden_schema_accepts_the_repositorys_goldens(path):
    # The schema is of what aotcheck writes and reads: every committed golden must be of that form.
    data = json.loads(path.read_text())
    assert validator("golden").is_valid(data), f"{path.relative_to(REPO)}: {_golden_error(path.name, data)}"


def _golden_error(name: str, data: object) -> str:
    """The first error against the one file model the name says (the union's own error names no field)."""
    schema = schema_of("golden")
    branch = {"$defs": schema["$defs"], "$ref": f"#/$defs/{_golden._MODELS[name].__name__}"}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(branch).iter_errors(data))
    if error is None:
        return "valid as its own file model, but not under the union"
    where = "/".join(str(p) for p in error.absolute_path) or "top level"
    return f"at {where}: {error.message[:200]}"


def test_matrix_schema_accepts_the_repositorys_matrix():
    with open(REPO / "configs" / "matrix.yml") as f:
        data = yaml.safe_load(f)
    validator("matrix").validate(data)


def test_matrix_schema_refuses_empty_cases_and_unknown_keys():
    v = validator("matrix")
    assert v.is_valid({"cases": [{"topology": "v5p-8"}]})
    assert not v.is_valid({"cases": []})
    assert not v.is_valid({"cases": [{"topology": "v5p-8", "slowly": True}]})
    assert not v.is_valid({"cases": [{"topology": "v5p-8"}], "golden": "x"})
