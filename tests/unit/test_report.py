"""The report's JSON: deterministic, strict, read back equal, schema 1 still readable."""

from __future__ import annotations

import dataclasses
import json
import math

import pydantic
import pytest

from aotcheck._errors import UsageError
from aotcheck._io import short_integers
from aotcheck._report import SCHEMA, Report, parse_report, read_report

from ._reports import leaf, report


def mixed_report() -> Report:
    leaves = {
        "model/decoder/mlp/kernel/value": leaf("param", (64, 32), "float32", ("embed", "mlp"), ("fsdp", "tensor")),
        "model/token_embedder/embedding/value": leaf("param", (128, 64), "bfloat16", ("vocab", "embed"),
                                                     ("tensor", "fsdp")),
        "model/decoder/bias/value": leaf("param", (32,), "float32", None),
        "model/rngs/default/key/value": leaf("rng", (), "key<fry>", None),
        "model/rngs/dropout/key/value": leaf("rng", (2,), "key<fry>", None),
        "optimizer/step/value": leaf("step", (), "uint32", None),
    }
    return report(leaves, path="nnx")


def test_round_trip_equals_the_original():
    original = mixed_report()
    text = original.to_json()
    back = parse_report(json.loads(text), "r.json")
    assert back == original
    assert back.read_from_schema is None
    assert back.leaves["model/rngs/default/key/value"].dtype == "key<fry>"
    assert back.leaves["model/rngs/default/key/value"].role == "rng"
    assert back.leaves["model/decoder/bias/value"].logical_axes is None


def test_json_is_byte_identical_on_re_dump():
    text = mixed_report().to_json()
    assert parse_report(json.loads(text), "r.json").to_json() == text
    assert text.endswith("}\n") and text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_json_names_the_schema_and_partition_spec():
    data = json.loads(mixed_report().to_json())
    assert data["schema"] == SCHEMA == "aotcheck.report/2"
    entry = data["leaves"]["model/decoder/mlp/kernel/value"]
    assert entry["partition_spec"] == ["fsdp", "tensor"] and "spec" not in entry
    assert "read_from_schema" not in data and "known_fields" not in data["header"]


def test_leaves_are_written_sorted_whatever_the_order_given():
    r = mixed_report()
    shuffled = Report(header=r.header, leaves=dict(reversed(list(r.leaves.items()))))
    assert list(shuffled.leaves) == sorted(r.leaves)


def test_totals_are_computed():
    t = mixed_report().totals
    assert t.leaves == 6
    assert t.parameters == 64 * 32 + 128 * 64 + 32
    assert t.parameter_bytes == 64 * 32 * 4 + 128 * 64 * 2 + 32 * 4
    assert t.state_bytes == t.parameter_bytes + 8 + 16 + 4
    # fsdp=4 x tensor=2 split the two annotated parameters eight ways; the rest is replicated.
    assert t.state_bytes_per_device == 64 * 32 * 4 // 8 + 128 * 64 * 2 // 8 + 32 * 4 + 8 + 16 + 4
    # Scalars carry no annotation and need none: only arrays count as unannotated.
    assert t.unannotated.leaves == ("model/decoder/bias/value", "model/rngs/dropout/key/value")
    assert t.unannotated.bytes_per_device == 32 * 4 + 16


def test_totals_in_a_file_are_recomputed_not_trusted():
    original = mixed_report()
    data = json.loads(original.to_json())
    data["totals"]["parameters"] = 1
    data["totals"]["leaves"] = 999
    back = parse_report(data, "r.json")
    assert back.totals == original.totals
    assert json.loads(back.to_json())["totals"]["parameters"] == original.totals.parameters


def test_derived_compile_figures_in_a_file_are_recomputed():
    data = json.loads(mixed_report().to_json())
    data["compile"]["headroom_bytes_per_device"] = 0
    back = parse_report(data, "r.json")
    assert back.compile.headroom_bytes_per_device == back.compile.capacity_bytes_per_device - back.compile.needed_bytes_per_device


def test_timings_are_rounded_to_milliseconds():
    r = mixed_report().model_copy(update={"timings": {"compile_seconds": 1.23456, "state_seconds": 0.0004}})
    assert json.loads(r.to_json())["timings"] == {"compile_seconds": 1.235, "state_seconds": 0.0}


def test_a_schema_1_report_is_read_and_says_so():
    current = json.loads(mixed_report().to_json())
    old = {**current, "schema": "aotcheck.report/1"}
    old["leaves"] = {p: {("spec" if k == "partition_spec" else k): v for k, v in e.items()}
                     for p, e in current["leaves"].items()}
    old["batch"] = {p: {("spec" if k == "partition_spec" else k): v for k, v in e.items()}
                    for p, e in current["batch"].items()}
    back = parse_report(old, "old.json")
    assert back.read_from_schema == "aotcheck.report/1"
    assert back.leaves == mixed_report().leaves and back.batch == mixed_report().batch
    # Written again, it is schema 2.
    assert json.loads(back.to_json())["schema"] == SCHEMA
    assert back.to_json() == mixed_report().to_json()


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_on_reading(bad):
    text = mixed_report().to_json().replace('"flops": 1500000000', f'"flops": {bad}', 1)
    assert bad in text
    with pytest.raises(UsageError, match=r"^r\.json: compile\.per_step\.flops: .*; regenerate it$"):
        parse_report(json.loads(text), "r.json")


def test_nan_is_refused_when_building():
    with pytest.raises(pydantic.ValidationError):
        report().compile.model_validate({**report().compile.model_dump(), "per_step": {
            "flops": math.nan, "bytes_accessed": 1, "transcendentals": 1}})
    with pytest.raises(pydantic.ValidationError):
        Report(header=report().header, leaves={}, timings={"compile_seconds": math.inf})


def test_a_file_of_another_kind_is_refused_naming_its_schema():
    with pytest.raises(UsageError, match=r"^x\.json is not an aotcheck report \(schema 'aotcheck\.golden/2', expected "
                                         r"'aotcheck\.report/2'\)$"):
        parse_report({"schema": "aotcheck.golden/2"}, "x.json")
    with pytest.raises(UsageError, match=r"schema None"):
        parse_report([1, 2], "x.json")


def test_a_bad_field_is_a_one_line_error_naming_it():
    data = json.loads(mixed_report().to_json())
    data["leaves"]["model/decoder/bias/value"]["role"] = "weights"
    with pytest.raises(UsageError, match=r"^r\.json: leaves\.model/decoder/bias/value\.role: ") as info:
        parse_report(data, "r.json")
    assert "\n" not in str(info.value)
    data = json.loads(mixed_report().to_json())
    data["leaves"]["model/decoder/bias/value"]["colour"] = "red"
    with pytest.raises(UsageError, match=r"colour: Extra inputs are not permitted"):
        parse_report(data, "r.json")
    del data["leaves"]["model/decoder/bias/value"]["colour"], data["leaves"]["model/decoder/bias/value"]["dtype"]
    with pytest.raises(UsageError, match=r"leaves\.model/decoder/bias/value\.dtype: Field required; regenerate it$"):
        parse_report(data, "r.json")


def test_read_report_from_disk(tmp_path):
    path = tmp_path / "report.json"
    path.write_text(mixed_report().to_json())
    assert read_report(path) == mixed_report()
    path.write_text("{not json")
    with pytest.raises(UsageError, match=rf"^report {path} is not valid JSON \(line 1\)"):
        read_report(path)
    with pytest.raises(UsageError, match="does not exist"):
        read_report(tmp_path / "missing.json")


@pytest.mark.parametrize("number", [str(1 << 63), str(-(1 << 63)), "1" + "0" * 30])
def test_an_integer_beyond_int64_is_refused_on_reading(tmp_path, number):
    path = tmp_path / "report.json"
    path.write_text(mixed_report().to_json().replace('"flops": 1500000000', f'"flops": {number}', 1))
    with pytest.raises(UsageError, match=rf"^report {path} is not valid: the number {number[:20]}\.\.\. is out of range"):
        read_report(path)


@pytest.mark.parametrize("at", [0, *range((1 << 16) - 20, (1 << 16) + 2), 3 << 16])
def test_an_out_of_range_integer_is_found_wherever_it_sits_in_a_big_text(at):
    # The text is scanned in pieces of 64 KiB: a number across a seam is still one run of 19
    # digits, which sends the text to the careful parse (that tells int64's largest from beyond it).
    assert not short_integers(b" " * at + str(1 << 63).encode() + b" " * 70000)
    assert not short_integers(" " * at + str(-(1 << 63)) + " " * 70000)
    assert short_integers(b" " * at + b"9" * 18 + b" " * 70000)


@pytest.mark.parametrize("value", ["NaN", "-Infinity", str(1 << 64)])
def test_a_setting_json_cannot_hold_is_refused_in_a_file(tmp_path, value):
    # The settings are free-form: the model's own types do not refuse these, the reading must.
    data = json.loads(mixed_report().to_json())
    data["header"]["config"] = {"learning_rate": "PLACEHOLDER"}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True).replace('"PLACEHOLDER"', value))
    with pytest.raises(UsageError, match=rf"^report {path} is not valid: .*(not JSON|out of range)"):
        read_report(path)


def test_a_setting_too_large_for_a_float_is_refused_in_a_file(tmp_path):
    # 1e400 is valid JSON text, but reads as Infinity, which no report can write back.
    data = json.loads(mixed_report().to_json())
    data["header"]["own_config"] = {"schedule": {"peaks": [1.0, "PLACEHOLDER"]}}
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True).replace('"PLACEHOLDER"', "1e400"))
    with pytest.raises(UsageError, match=rf"^report {path}: header\.own_config: schedule\.peaks\.1 is inf, "
                                         "not a finite number; regenerate it$"):
        read_report(path)


def test_a_file_is_read_as_its_parsed_json_is(tmp_path):
    # Derived figures in the file are dropped and recomputed, and leaves come back sorted,
    # whether the text is validated as it stands or parsed first.
    data = json.loads(mixed_report().to_json())
    data["totals"]["parameters"] = 1
    data["unmatched_logical_axes"] = [{"name": "made-up", "leaves": [], "bytes_per_device": 0}]
    data["leaves"] = dict(reversed(list(data["leaves"].items())))
    path = tmp_path / "report.json"
    path.write_text(json.dumps(data, indent=2))
    read = read_report(path)
    assert read == parse_report(data, "r.json") == mixed_report()
    assert list(read.leaves) == sorted(read.leaves)
    assert read.to_json() == mixed_report().to_json()


def test_long_digit_runs_that_are_no_out_of_range_integer_are_read(tmp_path):
    # Strings, floats and the largest int64 take the careful path and are read as written.
    text = mixed_report().to_json().replace('"bytes": 8192', f'"bytes": {(1 << 63) - 1}', 1)
    text = text.replace('"model": "tiny"', '"model": "run 12345678901234567890"', 1)
    assert text.count(str((1 << 63) - 1)) == 1
    path = tmp_path / "report.json"
    path.write_text(text)
    back = read_report(path)
    assert back.leaves["model/decoder/mlp/kernel/value"].bytes == (1 << 63) - 1
    assert back.header.model == "run 12345678901234567890"


def test_reports_are_frozen():
    r = mixed_report()
    with pytest.raises(pydantic.ValidationError):
        r.header.model = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.leaves["model/decoder/bias/value"].dtype = "float16"  # type: ignore[misc]
