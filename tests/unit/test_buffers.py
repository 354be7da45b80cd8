"""Peak-buffer and allocation parsing over captured TPU dump excerpts (tiny model, v5p-8)."""

from __future__ import annotations

from pathlib import Path

from aotcheck._buffers import parse_allocations, parse_live_at_peak, peak_report, source_of

DATA = Path(__file__).parent / "data"

HLO = """HloModule m

ENTRY %main (param.16: f32[64,4,512]) -> f32[64,4,512] {
  %param.16 = f32[64,4,512]{2,1,0} parameter(0), metadata={op_name="ts.params[\\'decoder\\'][\\'layers\\'][\\'mlp\\'][\\'wi_0\\'][\\'kernel\\']"}
  %copy-start.46 = (f32[64,4,512]{2,1,0}, f32[64,4,512]{2,1,0}, u32[]) copy-start(%param.16)
  ROOT %bitcast_dynamic-update-slice_fusion.16 = f32[64,4,512]{2,1,0} copy(%param.16), metadata={op_name="jit(linen_step)/transpose(jvp(Transformer))/decoder/while/body/dynamic_update_slice"}
}
"""


def test_live_at_peak_section() -> None:
    time, live = parse_live_at_peak((DATA / "live_range_peak.txt").read_text())
    assert time == 546
    assert live[0] == ("bitcast_dynamic-update-slice_fusion.16{}", 524288)
    assert len(live) == 12 and all(b == 524288 for _, b in live)


def test_allocation_split_keeps_hbm_only() -> None:
    split = parse_allocations((DATA / "buffer_assignment.txt").read_text())
    assert (split.argument, split.output, split.constant, split.temp) == (2 * 524288, 160, 512, 6520960 + 512)


def test_peak_report_groups_by_name_stack() -> None:
    report = peak_report((DATA / "live_range_peak.txt").read_text(), (DATA / "buffer_assignment.txt").read_text(), HLO)
    by_name = {b.name: b for b in report.buffers}
    assert by_name["param.16{}"].source == "ts.params['decoder']['layers']['mlp']['wi_0']['kernel']"
    # copy-start has no metadata of its own: it is named after the parameter it prefetches.
    assert by_name["copy-start.46{0}"].source == by_name["param.16{}"].source
    assert by_name["bitcast_dynamic-update-slice_fusion.16{}"].source == (
        "transpose(jvp(Transformer))/decoder/while/body"
    )
    assert report.peak_bytes == sum(b for _, b in parse_live_at_peak((DATA / "live_range_peak.txt").read_text())[1])
    assert abs(sum(g.share for g in report.groups) - 1.0) < 1e-9 or len(report.groups) == 20


def test_source_of() -> None:
    assert source_of("jit(step)/decoder/layers/mlp/wi_0/dot_general") == "decoder/layers/mlp/wi_0"
    assert source_of("ts.step") == "ts.step"
