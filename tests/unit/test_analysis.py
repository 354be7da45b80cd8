"""What aotcheck reads from compiled HLO text and from the TPU compiler's out-of-HBM message."""

from __future__ import annotations

import pytest

from aotcheck._analysis import COLLECTIVES, Compile, Memory, collectives, out_of_memory
from aotcheck._errors import BuildError

# Trimmed from a compiled train step: an async all-gather pair, a sync all-reduce, an async
# all-reduce pair, a reduce-scatter inside a fusion's called computation, an all-to-all and
# an async collective-permute, plus names that merely mention collectives.
HLO = """\
HloModule jit_train_step, is_scheduled=true, entry_computation_layout={(f32[64,32]{1,0})->f32[64,32]{1,0}}

%add.clone (x.1: f32[], y.1: f32[]) -> f32[] {
  %x.1 = f32[] parameter(0)
  %y.1 = f32[] parameter(1)
  ROOT %add.2 = f32[] add(f32[] %x.1, f32[] %y.1)
}

%all-reduce-fusion (param_0: f32[64,32]) -> f32[16,32] {
  %param_0 = f32[64,32]{1,0} parameter(0)
  ROOT %reduce-scatter.1 = f32[16,32]{1,0} reduce-scatter(f32[64,32]{1,0} %param_0), channel_id=3, replica_groups=[1,4]<=[4], dimensions={0}, to_apply=%add.clone
}

ENTRY %main.42 (Arg_0.1: f32[16,32], Arg_1.2: s32[]) -> (f32[64,32]) {
  %Arg_0.1 = f32[16,32]{1,0} parameter(0), sharding={devices=[4,1]<=[4]}
  %all-gather-start = (f32[16,32]{1,0}, f32[64,32]{1,0}) all-gather-start(f32[16,32]{1,0} %Arg_0.1), channel_id=1, replica_groups=[1,4]<=[4], dimensions={0}, use_global_device_ids=true
  %all-gather-done = f32[64,32]{1,0} all-gather-done((f32[16,32]{1,0}, f32[64,32]{1,0}) %all-gather-start)
  %all-reduce.7 = f32[] all-reduce(f32[] %constant.3), channel_id=2, replica_groups=[1,4]<=[4], to_apply=%add.clone
  %all-reduce-start.1 = f32[64,32]{1,0} all-reduce-start(f32[64,32]{1,0} %all-gather-done), channel_id=4, replica_groups=[1,4]<=[4], to_apply=%add.clone
  %all-reduce-done.1 = f32[64,32]{1,0} all-reduce-done(f32[64,32]{1,0} %all-reduce-start.1)
  %all-to-all.2 = f32[64,32]{1,0} all-to-all(f32[64,32]{1,0} %all-reduce-done.1), channel_id=5, replica_groups={{0,1,2,3}}, dimensions={0}
  %collective-permute-start = (f32[64,32]{1,0}, f32[64,32]{1,0}, u32[], u32[]) collective-permute-start(f32[64,32]{1,0} %all-to-all.2), channel_id=6, source_target_pairs={{0,1},{1,2},{2,3},{3,0}}
  %collective-permute-done = f32[64,32]{1,0} collective-permute-done((f32[64,32]{1,0}, f32[64,32]{1,0}, u32[], u32[]) %collective-permute-start)
  %fusion.3 = f32[16,32]{1,0} fusion(f32[64,32]{1,0} %collective-permute-done), kind=kLoop, calls=%all-reduce-fusion
  ROOT %copy.all-gather = f32[64,32]{1,0} copy(f32[64,32]{1,0} %collective-permute-done)
}
"""


def test_collectives_counts_each_kind_with_async_pairs_once():
    assert collectives(HLO) == {
        "all-gather": 1,
        "all-reduce": 2,
        "reduce-scatter": 1,
        "all-to-all": 1,
        "collective-permute": 1,
    }


def test_done_halves_alone_count_nothing():
    text = "%d = f32[8]{0} all-gather-done((f32[2]{0}, f32[8]{0}) %s)\n%e = f32[8]{0} all-reduce-done(f32[8]{0} %t)\n"
    assert collectives(text) == dict.fromkeys(COLLECTIVES, 0)


def test_names_that_mention_a_collective_are_not_instructions():
    text = "%all-reduce.1.remat = f32[8]{0} add(f32[8]{0} %all-gather.3, f32[8]{0} %all-to-all.9)\n"
    assert collectives(text) == dict.fromkeys(COLLECTIVES, 0)


def test_every_kind_is_reported_even_when_absent():
    assert collectives("") == dict.fromkeys(COLLECTIVES, 0)


TPU_USED = (
    "RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of memory in memory space hbm. "
    "Used 49.30G of 15.75G hbm. Exceeded hbm capacity by 33.55G.\n\nTotal hbm usage >= 49.55G:\n"
    "    reserved        258.00M \n    program          49.30G \n"
)
TPU_TEMPORARIES = (
    "RESOURCE_EXHAUSTED: Error allocating device buffer: Size of buffers required for HLO temporaries (120.50M) "
    "exceeds available HBM (95.74G) after program and argument allocation\n"
)


def test_out_of_memory_reads_the_used_of_available_form():
    assert out_of_memory(TPU_USED) == (int(49.30 * 1024**3), int(15.75 * 1024**3))


def test_out_of_memory_reads_the_temporaries_form():
    assert out_of_memory(TPU_TEMPORARIES) == (int(120.50 * 1024**2), int(95.74 * 1024**3))


def test_out_of_memory_units():
    assert out_of_memory("Used 512K of 1T hbm") == (512 * 1024, 1024**4)
    assert out_of_memory("used 100 of 200 HBM") == (100, 200)


@pytest.mark.parametrize("message", ["RESOURCE_EXHAUSTED: out of memory\nsomething else", "", "   \n"])
def test_out_of_memory_with_no_figures_is_a_one_line_build_error(message):
    with pytest.raises(BuildError, match="^the compiler ran out of memory but its message names no figures: ") as info:
        out_of_memory(message)
    text = str(info.value)
    assert "\n" not in text
    assert text.endswith("RESOURCE_EXHAUSTED: out of memory" if message.strip() else "no message")


def test_peak_and_headroom_are_derived_and_not_read_back():
    memory = Memory(argument=100, output=50, alias=40, temp=30, generated_code=7)
    assert memory.peak == 140
    c = Compile(verdict="fits", capacity_bytes_per_device=1000, needed_bytes_per_device=140, memory_per_device=memory)
    dumped = c.model_dump(mode="json")
    assert dumped["headroom_bytes_per_device"] == 860 and dumped["memory_per_device"]["peak"] == 140
    # A file whose derived figures were edited cannot contradict itself: they are recomputed.
    dumped["headroom_bytes_per_device"] = 1
    dumped["memory_per_device"]["peak"] = 1
    again = Compile.model_validate(dumped)
    assert again == c and again.headroom_bytes_per_device == 860


def test_fit_verdict_is_needed_within_capacity():
    assert Compile.assess(100, 100) == "fits"
    assert Compile.assess(101, 100) == "does not fit"


def test_a_compile_section_of_the_old_form_reads_with_xla_figures_kept():
    # Written before per-step counts: XLA's figures at the top, collectives as static counts.
    c = Compile.model_validate({"verdict": "fits", "capacity_bytes_per_device": 10, "needed_bytes_per_device": 1,
                                "memory_per_device": None, "flops": 1724283136.0, "bytes_accessed": 2.5,
                                "collectives": {"all-gather": 18, "all-reduce": 10}})
    assert c.per_step is None and c.collectives == {}
    dumped = c.model_dump(mode="json")
    assert dumped["xla_cost"]["flops"] == 1724283136 and isinstance(dumped["xla_cost"]["flops"], int)
    assert dumped["xla_cost"]["bytes_accessed"] == 2.5
