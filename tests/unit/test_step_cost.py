"""The HLO cost walk, replica groups and roofline on small captured or hand-written HLO."""

from __future__ import annotations

from pathlib import Path

import pytest

from aotcheck._collectives import wire_bytes
from aotcheck._cost import convolution_flops, dot_flops, step_cost
from aotcheck._hlo import parse_module, parse_shape
from aotcheck._loops import trip_count
from aotcheck._replica_groups import MeshLayout, attribute, parse_replica_groups
from aotcheck._roofline import estimate, load_chips

DATA = Path(__file__).parent / "data"
AXES = ("data", "fsdp")


def _module(body: str) -> str:
    return f"HloModule m\n\nENTRY %main () -> f32[] {{\n{body}\n}}\n"


def _loop_module(compare: str, init: str = "constant(0)") -> str:
    return f"""HloModule m

%c (p: (s32[])) -> pred[] {{
  %p = (s32[]) parameter(0)
  %i = s32[] get-tuple-element(%p), index=0
  %n = s32[] constant(10)
  ROOT %cmp = pred[] {compare}
}}

%b (q: (s32[])) -> (s32[]) {{
  %q = (s32[]) parameter(0)
  %j = s32[] get-tuple-element(%q), index=0
  ROOT %t = (s32[]) tuple(%j)
}}

ENTRY %main () -> (s32[]) {{
  %s = s32[] {init}
  %init = (s32[]) tuple(%s)
  ROOT %w = (s32[]) while(%init), condition=%c, body=%b
}}
"""


@pytest.mark.parametrize(
    ("compare", "init", "expected"),
    [
        ("compare(%i, %n), direction=LT", "constant(0)", 10),
        ("compare(%n, %i), direction=GT", "constant(0)", 10),
        ("compare(%i, %n), direction=LE", "constant(0)", 11),
        ("compare(%n, %i), direction=GE", "constant(0)", 11),
        ("compare(%i, %n), direction=LT", "constant(1)", 9),  # a peeled first iteration
        ("compare(%i, %n), direction=NE", "constant(3)", 7),
    ],
)
def test_trip_count_forms(compare: str, init: str, expected: int) -> None:
    module = parse_module(_loop_module(compare, init))
    entry = module.entry_computation
    assert trip_count(module, entry, entry.by_name["w"]) == expected


def test_trip_count_from_backend_config_wins() -> None:
    text = _loop_module("compare(%i, %n), direction=LT").replace(
        "body=%b", 'body=%b, backend_config={"known_trip_count":{"n":"32"}}'
    )
    module = parse_module(text)
    assert trip_count(module, module.entry_computation, module.entry_computation.by_name["w"]) == 32


def test_unknown_trip_count_counts_once_and_is_listed() -> None:
    text = _loop_module("compare(%i, %i), direction=LT")
    summary = step_cost(text)
    assert summary.unknown_trip_counts == ("w",)
    assert summary.loops == {"w": 1}


def test_real_tpu_condition_is_read() -> None:
    condition = (DATA / "tpu_condition.hlo").read_text()
    text = condition + _loop_module("compare(%i, %n), direction=LT").split("\n", 1)[1].replace(
        "condition=%c", "condition=%wide.region_5.6_spmd.clone.clone.clone"
    ).replace("%s = s32[] constant(0)", "%k = s32[] constant(0)\n  %s = s32[] copy(%k)")
    module = parse_module("HloModule m\n\n" + text)
    assert trip_count(module, module.entry_computation, module.entry_computation.by_name["w"]) == 4


@pytest.mark.parametrize(
    ("text", "groups"),
    [
        ("{{0,1},{2,3}}", [[0, 1], [2, 3]]),
        ("{}", [[0, 1, 2, 3]]),
        ("[2,2]<=[4]", [[0, 1], [2, 3]]),
        ("[2,2]<=[2,2]T(1,0)", [[0, 2], [1, 3]]),
        ("[4,2]<=[2,4]T(1,0)", [[0, 4], [1, 5], [2, 6], [3, 7]]),
        ("mesh['axis_0'=2,'axis_1'=2] {'axis_0'}", [[0, 2], [1, 3]]),
        ("mesh['a'=4,'b'=1,'c'=1] {'a'}", [[0, 1, 2, 3]]),
        ("mesh['a'=2,'b'=2], device_ids=(3,2,1,0) {'b'}", [[3, 2], [1, 0]]),
        ("mesh['a'=8] {'a':(2)2}", [[0, 2], [1, 3], [4, 6], [5, 7]]),
    ],
)
def test_replica_group_forms(text: str, groups: list[list[int]]) -> None:
    assert parse_replica_groups(text, 4) == groups


def test_iota_groups_map_to_mesh_axes() -> None:
    layout = MeshLayout(AXES, (2, 4))
    # Rows of [2,4]<=[8] vary the last mesh axis; [4,2]<=[2,4]T(1,0) vary the first.
    assert attribute(parse_replica_groups("[2,4]<=[8]", 8), layout) == ("fsdp", False)
    assert attribute(parse_replica_groups("[4,2]<=[2,4]T(1,0)", 8), layout) == ("data", False)
    assert attribute(parse_replica_groups("[1,8]<=[8]", 8), layout) == ("data+fsdp", False)


def test_groups_across_slices_are_dcn() -> None:
    layout = MeshLayout(AXES, (2, 4), slice_of=(0, 0, 0, 0, 1, 1, 1, 1))
    assert attribute([[0, 4], [1, 5]], layout) == ("data", True)
    assert attribute([[0, 1, 2, 3]], layout) == ("fsdp", False)


def test_dot_flops_by_hand() -> None:
    module = parse_module(_module(
        "  %a = f32[8,32]{1,0} parameter(0)\n  %b = f32[32,16]{1,0} parameter(1)\n"
        "  ROOT %d = f32[8,16]{1,0} dot(%a, %b), lhs_contracting_dims={1}, rhs_contracting_dims={0}"
    ))
    entry = module.entry_computation
    assert dot_flops(entry, entry.by_name["d"]) == 2 * 8 * 16 * 32


def test_tpu_matmul_convolution_skips_padded_taps() -> None:
    # Captured from the tiny model on v5p-8: einsum bld,dhk->blhk printed as a convolution
    # whose 8 heads are a padded window; only one tap per output position is real.
    module = parse_module(_module(
        "  %l = bf16[2,128,256,1]{2,1,3,0:T(8,128)(2,1)} parameter(0)\n"
        "  %r = bf16[256,8,32,1]{0,2,1,3:T(8,128)(2,1)} parameter(1)\n"
        "  ROOT %c = bf16[2,128,8,32]{1,3,2,0:T(8,128)(2,1)} convolution(%l, %r), "
        "window={size=1x8 pad=0_0x7_7 rhs_reversal=0x1}, dim_labels=0bf1_i1o0->0b1f"
    ))
    entry = module.entry_computation
    assert convolution_flops(entry, entry.by_name["c"]) == 2 * (2 * 128 * 8 * 32) * 256


def test_plain_convolution_by_hand() -> None:
    # 3x3 'SAME' conv, 1 image 4x4x2 -> 4x4x5: taps per spatial dim = 4*3 - 2 (edges).
    module = parse_module(_module(
        "  %l = f32[1,4,4,2]{3,2,1,0} parameter(0)\n  %r = f32[3,3,2,5]{3,2,1,0} parameter(1)\n"
        "  ROOT %c = f32[1,4,4,5]{3,2,1,0} convolution(%l, %r), window={size=3x3 pad=1_1x1_1}, "
        "dim_labels=b01f_01io->b01f"
    ))
    entry = module.entry_computation
    assert convolution_flops(entry, entry.by_name["c"]) == 2 * 1 * 5 * 2 * 10 * 10


_MAX = """HloModule m

%max (a: f32[], b: f32[]) -> f32[] {
  %a = f32[] parameter(0)
  %b = f32[] parameter(1)
  ROOT %m = f32[] maximum(%a, %b)
}

ENTRY %main (p: f32[2,3,64]) -> f32[2,3,64] {
  %p = f32[2,3,64]{2,1,0} parameter(0)
  %ninf = f32[] constant(-inf)
  ROOT %rw = f32[2,3,64]{2,1,0} reduce-window(%p, %ninf), window={WINDOW}, to_apply=%max
}
"""


@pytest.mark.parametrize(
    ("window", "applications"),
    [
        # A softmax's row max as TPU compilers print it at long sequences (captured from tiny
        # at max_target_length=8192, N=8192 there): one max per row, then a broadcast.
        ("size=1x1x127 pad=0_0x0_0x63_63", 2 * 3 * 63),
        # A cumulative max: output i sees inputs 0..i, i taps, i - 1 applications.
        ("size=1x1x64 pad=0_0x0_0x63_0", 2 * 3 * (64 * 65 // 2 - 64)),
        # Non-overlapping pairs: 32 outputs of 2 taps.
        ("size=1x1x2 stride=1x1x2", 2 * 3 * 32),
    ],
)
def test_reduce_window_counts_real_taps(window: str, applications: int) -> None:
    text = _MAX.replace("{WINDOW}", "{" + window + "}")
    if "stride" in window:
        text = text.replace("-> f32[2,3,64] {", "-> f32[2,3,32] {").replace(
            "ROOT %rw = f32[2,3,64]", "ROOT %rw = f32[2,3,32]")
    assert step_cost(text).flops == applications


def test_small_step_totals() -> None:
    summary = step_cost((DATA / "step_small.hlo").read_text(), MeshLayout(AXES, (2, 4)))
    assert summary.loops == {"loop": 4}  # 6 - 2: the init tuple starts the counter at 2
    # Per iteration: dot 2*8*16*16, multiply 128 (fused), reducer add 128, counter add 1,
    # and the condition's compare 1.
    assert summary.flops == 4 * (2 * 8 * 16 * 16 + 128 + 128 + 1 + 1)
    assert summary.matmul_flops == 4 * 2 * 8 * 16 * 16
    assert summary.transcendentals == 4 * 128  # the fused tanh
    assert summary.uncosted_ops == {"tpu_custom_call": 4}
    ag, ar = summary.collectives["all-gather"], summary.collectives["all-reduce"]
    assert (ag.count, ag.bytes, dict(ag.by_axis)) == (4, 4 * 512 * 3, {"fsdp": 4 * 512 * 3})
    assert ar.count == 4 and dict(ar.by_axis) == {"fsdp": 4 * 2 * 512 * 3 / 4}
    send = summary.collectives["send"]
    assert (send.count, send.bytes, send.dcn_bytes) == (1, 512, 512)
    assert summary.collectives["recv"].dcn_bytes == 512


def test_fusion_bytes_at_boundary() -> None:
    text = (DATA / "step_small.hlo").read_text()
    module = parse_module(text)
    fused_inner = module.computations["fused_tanh"]
    assert [i.opcode for i in fused_inner.instructions] == ["parameter", "multiply", "tanh"]
    summary = step_cost(module)
    # The fusion reads 512 and writes 512 bytes per iteration; its multiply/tanh add nothing.
    assert summary.bytes_accessed > 0
    without_fusion = step_cost(text.replace("%f = f32[8,16]{1,0} fusion(%d), kind=kLoop, calls=%fused_tanh",
                                            "%f = f32[8,16]{1,0} copy(%d)"))
    assert summary.bytes_accessed == without_fusion.bytes_accessed


def test_wire_bytes_conventions() -> None:
    assert wire_bytes("all-gather", 100, 4) == 300
    assert wire_bytes("reduce-scatter", 400, 4) == 300
    assert wire_bytes("all-reduce", 400, 4) == 600
    assert wire_bytes("collective-permute", 100, 4) == 100


def test_shape_parsing() -> None:
    arrays = parse_shape("(s32[]{:T(128)}, /*index=1*/bf16[2,128]{1,0:T(8,128)(2,1)S(1)}, token[])")
    assert [(a.dtype, a.dims, a.bytes) for a in arrays] == [("s32", (), 4), ("bf16", (2, 128), 512), ("token", (), 0)]


def test_roofline_estimate_and_mfu() -> None:
    chips = load_chips()
    assert set(chips) == {"v4", "v5e", "v5p", "v6e", "tpu7x"}
    assert chips["v5p"].usable_hbm_per_device == int(95.74 * 1024**3)
    summary = step_cost((DATA / "step_small.hlo").read_text(), MeshLayout(AXES, (2, 4)))
    est = estimate(summary, chips["v5p"], params=1000, tokens_per_step=64, chips=4)
    assert est.step_s == max(est.compute_s, est.memory_s, est.dcn_s, *est.ici_s.values())
    assert est.step_s_no_overlap >= est.step_s
    assert est.mfu == pytest.approx(6 * 1000 * 64 / (est.step_s * 4.59e14 * 4))
    assert est.bound == "dcn"  # 512 bytes over 6.25e9 B/s dwarfs this toy's compute


def test_layout_from_plan_puts_slices_dcn_major() -> None:
    from aotcheck._replica_groups import layout_from_plan

    layout = layout_from_plan(AXES, (1, 4), (2, 1))
    assert layout.shape == (2, 4) and layout.per_slice_shape == (1, 4)
    assert layout.slice_of == (0, 0, 0, 0, 1, 1, 1, 1)
    # A per-slice program's group {0..3} runs along fsdp inside one slice.
    assert attribute([[0, 1, 2, 3]], layout) == ("fsdp", False)


def test_mock_layout_flags_groups_across_slices() -> None:
    from aotcheck._replica_groups import layout_from_plan

    layout = layout_from_plan(AXES, (1, 4), (2, 1), per_slice_program=False)
    assert attribute([[0, 4], [1, 5], [2, 6], [3, 7]], layout) == ("data", True)


def test_summary_json_is_plain() -> None:
    import json

    from aotcheck._cost import summary_json

    summary = step_cost((DATA / "step_small.hlo").read_text(), MeshLayout(AXES, (2, 4)))
    again = json.loads(json.dumps(summary_json(summary)))
    assert again["collectives"]["send"]["dcn_bytes"] == 512 and again["loops"] == {"loop": 4}
