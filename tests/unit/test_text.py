"""How sizes, specs and axes are written for people, and Markdown/JUnit cells that stay well formed."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from aotcheck._analysis import Compile
from aotcheck._compare import Category, Finding
from aotcheck._text import axes_text, collectives_text, human_bytes, join, percent, spec_text
from aotcheck.render import diff_markdown, finding_line, markdown
from aotcheck.render._common import fit_text, md
from aotcheck.render._findings import value_text, verdict

from ._reports import leaf, linen_leaves, report


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (512, "512 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536 * 1024, "1.50 MiB"),
        (95 * 1024**3, "95.00 GiB"),
        (3 * 1024**4, "3.00 TiB"),
        (5000 * 1024**4, "5000.00 TiB"),
        (-2048, "-2.00 KiB"),
    ],
)
def test_human_bytes(n, text):
    assert human_bytes(n) == text


def test_spec_text():
    assert spec_text(["fsdp", None, ["data", "tensor"]]) == "P('fsdp', None, ('data', 'tensor'))"
    assert spec_text(("fsdp", None, ("data", "tensor"))) == "P('fsdp', None, ('data', 'tensor'))"
    assert spec_text([]) == "P()"
    assert spec_text(None) == "-"


def test_axes_text():
    assert axes_text(("embed", None, ("heads", "kv"))) == "(embed, None, heads+kv)"
    assert axes_text(()) == "()"
    assert axes_text(None) == "-"


def test_collectives_text_is_sorted_whatever_the_order():
    assert collectives_text({"all-reduce": 2, "all-gather": 5}) == "all-gather 5, all-reduce 2"


def test_percent_and_join():
    assert percent(0.0123) == "+1.2%"
    assert percent(-0.5) == "-50.0%"
    assert percent(float("inf")) == "new"
    assert join("a", "", "b") == "a; b"
    assert join("", "") == ""


def test_md_escapes_pipes_and_newlines():
    assert md("a|b\nc") == "a\\|b c"
    assert md("plain") == "plain"


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row, as a GFM renderer splits it (an escaped pipe does not split)."""
    return re.split(r"(?<!\\)\|", row.strip().strip("|"))


def test_diff_markdown_rows_keep_their_columns_whatever_the_text():
    a = report()
    finding = Finding(Category.PARTITION_SPEC, "param/odd|name", ["fsdp"], None, note="first line\nsecond | line")
    text = diff_markdown([finding], a, a, "A|side", "B")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "odd" in line]
    assert len(rows) == 1
    assert len(_cells(rows[0])) == 4
    assert "odd\\|name" in rows[0] and "first line second \\| line" in rows[0]


def test_report_markdown_escapes_leaf_paths():
    leaves = {"params/odd|name": leaf("param", (64,), "float32", ("embed",), ("fsdp",))}
    text = markdown(report(leaves))
    (row,) = [line for line in text.splitlines() if "odd" in line]
    assert len(_cells(row)) == 6
    assert "`params/odd\\|name`" in row


def test_report_markdown_lists_the_largest_leaves_first():
    text = markdown(report())
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `params/token_embedder/embedding`")  # 4 KiB per device, the largest
    assert len(rows) == len(linen_leaves())
    assert "- parameters: 10,336" in text


def test_fit_text():
    fits = Compile(verdict="fits", capacity_bytes_per_device=4 * 1024**3, needed_bytes_per_device=1024**3,
                   memory_per_device=None)
    assert fit_text(fits) == "fits: 1.00 GiB of 4.00 GiB per device (25.0%), headroom 3.00 GiB"
    over = Compile(verdict="does not fit", capacity_bytes_per_device=1024**3, needed_bytes_per_device=2 * 1024**3,
                   memory_per_device=None)
    assert fit_text(over) == "does not fit: needs 2.00 GiB of 1.00 GiB per device"


def test_finding_values_are_written_for_people():
    assert value_text(Category.PARTITION_SPEC, ["fsdp", ["data", "tensor"]]) == "P('fsdp', ('data', 'tensor'))"
    assert value_text(Category.LOGICAL_AXES, None) == "-"
    assert value_text(Category.LOGICAL_AXES, ["embed", "mlp"]) == "(embed, mlp)"
    assert value_text(Category.MEMORY, {"temp": 3 * 1024**2}) == "3.00 MiB"
    assert value_text(Category.FLOPS, 1234567.0) == "1,234,567"
    assert value_text(Category.DTYPE, None) == "-"
    assert value_text(Category.LEAF_ADDED, {"shape": [4], "partition_spec": ["fsdp"]}) == "shape=[4]  partition_spec=P('fsdp')"


def test_finding_line_and_verdict():
    real = Finding(Category.DTYPE, "param/w", "float32", "bfloat16")
    note = Finding(Category.DTYPE, "step", "int32", "uint32", explained=True, note="harmless")
    assert finding_line(real) == "dtype changed: param/w: float32 -> bfloat16"
    assert finding_line(note) == "dtype changed: step: int32 -> uint32 (harmless) [explained: expected, not a failure]"
    assert verdict([]) == "identical"
    assert verdict([note]) == "identical (apart from 1 explained note)"
    assert verdict([real, note]) == "1 difference"


def test_gate_junit_is_well_formed_xml_with_one_testcase_per_unit():
    from aotcheck._gate import Outcome, Result
    from aotcheck.render import gate_junit

    ok = Outcome(case="tiny/v5p-8", path="linen", golden_dir="golden/tiny/v5p-8/linen", status="ok", seconds=1.5)
    changed = Outcome(case="tiny/v5p-8", path="nnx", golden_dir="golden/tiny/v5p-8/nnx", status="changed",
                      findings=(Finding(Category.PARTITION_SPEC, "param/w<&>", ["fsdp"], None),))
    text = gate_junit(Result(outcomes=(ok, changed), unused=(), update=False))
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n')
    suite = ET.fromstring(text.split("\n", 1)[1]).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["tiny/v5p-8/linen", "tiny/v5p-8/nnx"]
    assert cases[0].get("time") == "1.500" and cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.text == "PartitionSpec changed: param/w<&>: P('fsdp') -> -"
