"""Findings between two reports: one finding per real difference, explained ones marked, mirrors folded."""

from __future__ import annotations

import pytest

from aotcheck import _canonical
from aotcheck._analysis import Compile
from aotcheck._compare import MIRROR_NOTE, RNG_NOTE, STEP_NOTE, Category, Finding, compare, failing
from aotcheck._drift import Drift
from aotcheck._errors import UsageError
from aotcheck._report import Header, Leaf, MeshInfo, Report

from ._reports import compile_section, leaf, linen_leaves, nnx_report, report

KERNEL = "params/decoder/layers_0/mlp/kernel"
MU = "opt_state/0/mu/decoder/layers_0/mlp/kernel"
NU = "opt_state/0/nu/decoder/layers_0/mlp/kernel"


def with_leaves(table: dict[str, Leaf], **compile_changes) -> Report:
    base = compile_section(**{k: compile_changes.pop(k) for k in ("collectives", "flops", "drift") if k in compile_changes})
    c = Compile.model_validate({**base.model_dump(), **compile_changes})
    return report(table).model_copy(update={"compile": c})


def test_a_report_against_itself_has_no_findings():
    assert compare(report(), report()) == []
    assert compare(nnx_report(), nnx_report()) == []


def test_one_changed_partition_spec_is_exactly_one_finding():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("embed",), ("tensor",))
    (finding,) = compare(report(), report(table))
    assert finding == Finding(Category.PARTITION_SPEC, "param/decoder/norm/scale", ["fsdp"], ["tensor"],
                              note="same logical axes (embed): the rules or the mesh differ")
    assert failing([finding]) == [finding]


def test_linen_against_nnx_differs_only_by_explained_notes():
    findings = compare(report(), nnx_report())
    assert failing(findings) == []
    assert {(f.category, f.leaf) for f in findings} == {(Category.DTYPE, "step"),
                                                        (Category.LEAF_ADDED, "rng/rngs/default/key")}


def test_the_step_dtype_flip_is_explained():
    findings = compare(report(), nnx_report())
    (step,) = [f for f in findings if f.leaf == "step"]
    assert (step.category, step.before, step.after) == (Category.DTYPE, "int32", "uint32")
    assert step.explained and step.note == STEP_NOTE


def test_nnx_rng_state_is_an_explained_addition():
    (rng,) = [f for f in compare(report(), nnx_report()) if f.category == Category.LEAF_ADDED]
    assert rng.explained and rng.note == RNG_NOTE
    assert rng.after == {"shape": [], "dtype": "key<fry>", "logical_axes": None, "partition_spec": []}


def test_the_same_dtype_flip_elsewhere_is_a_real_difference():
    table = linen_leaves()
    table["opt_state/0/count"] = leaf("optimizer", (), "uint32", None)
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.leaf, finding.explained) == (Category.DTYPE, "opt/0/count", False)


def test_a_step_dtype_change_other_than_int32_uint32_is_real():
    table = linen_leaves()
    table["step"] = leaf("step", (), "int64", None)
    (finding,) = compare(report(), report(table))
    assert finding.category == Category.DTYPE and not finding.explained


def test_optimizer_slots_that_mirror_their_parameter_fold_into_its_finding():
    new = ("fsdp",)
    table = linen_leaves()
    table[KERNEL] = leaf("param", (64, 32), "float32", ("embed", "mlp"), new)
    table[MU] = leaf("optimizer", (64, 32), "float32", ("embed", "mlp"), new)
    table[NU] = leaf("optimizer", (64, 32), "float32", ("embed", "mlp"), new)
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.leaf) == (Category.PARTITION_SPEC, "param/decoder/layers/0/mlp/kernel")
    assert (finding.before, finding.after) == (["fsdp", "tensor"], ["fsdp"])
    assert finding.note.endswith(f"same in opt/0/mu, opt/0/nu: {MIRROR_NOTE}")


def test_a_slot_that_changes_differently_from_its_parameter_is_its_own_finding():
    table = linen_leaves()
    table[KERNEL] = leaf("param", (64, 32), "float32", ("embed", "mlp"), ("fsdp",))
    table[MU] = leaf("optimizer", (64, 32), "float32", ("embed", "mlp"), (None, "tensor"))
    findings = compare(report(), report(table))
    assert [(f.category, f.leaf) for f in findings] == [
        (Category.PARTITION_SPEC, "opt/0/mu/decoder/layers/0/mlp/kernel"),
        (Category.PARTITION_SPEC, "param/decoder/layers/0/mlp/kernel"),
    ]
    assert all(MIRROR_NOTE not in f.note for f in findings)


def test_a_slot_change_without_a_parameter_change_is_kept():
    table = linen_leaves()
    table[NU] = leaf("optimizer", (64, 32), "bfloat16", ("embed", "mlp"), ("fsdp", "tensor"))
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.leaf) == (Category.DTYPE, "opt/0/nu/decoder/layers/0/mlp/kernel")


def test_added_and_removed_leaves():
    table = linen_leaves()
    del table["params/decoder/bias"]
    table["params/decoder/gate"] = leaf("param", (8,), "float32", None)
    findings = compare(report(), report(table))
    assert [(f.category, f.leaf, f.explained) for f in findings] == [
        (Category.LEAF_ADDED, "param/decoder/gate", False),
        (Category.LEAF_REMOVED, "param/decoder/bias", False),
    ]
    assert findings[0].before is None and findings[0].after["shape"] == [8]


def test_a_changed_logical_axis_carries_the_spec_in_its_note():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("mlp",), ("tensor",))
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.before, finding.after) == (Category.LOGICAL_AXES, ["embed"], ["mlp"])
    assert finding.note == "PartitionSpec P('fsdp') -> P('tensor') follows"


def test_a_large_leaf_that_loses_its_sharding_is_newly_replicated():
    table = linen_leaves()
    table["params/token_embedder/embedding"] = leaf("param", (128, 64), "bfloat16", None)
    (finding,) = compare(report(), report(table), large_leaf_bytes=16 * 1024)
    assert finding.category == Category.NEWLY_REPLICATED and finding.leaf == "param/token_embedder/embedding"
    assert finding.before == {"partition_spec": ["tensor", "fsdp"], "logical_axes": ["vocab", "embed"]}
    assert finding.after == {"partition_spec": [], "logical_axes": None}
    assert finding.note.startswith("16.00 KiB per device on side B; annotated on side A only")
    # Below the threshold the same change is an ordinary logical-axes finding.
    (small,) = compare(report(), report(table), large_leaf_bytes=1 << 20)
    assert small.category == Category.LOGICAL_AXES


def test_a_shape_change():
    table = linen_leaves()
    table["params/decoder/bias"] = leaf("param", (64,), "float32", None)
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.before, finding.after) == (Category.SHAPE, [32], [64])


def test_two_leaves_on_one_canonical_path_are_refused():
    table = linen_leaves()
    table["params/decoder/layers/0/mlp/kernel"] = table[KERNEL]
    with pytest.raises(UsageError, match="^side B: leaves .* both map to canonical path param/decoder/layers/0/mlp/kernel$"):
        compare(report(), report(table))


def test_user_rewrites_line_up_renamed_leaves():
    table = {k.replace("decoder", "backbone"): v for k, v in linen_leaves().items()}
    assert {f.category for f in compare(report(), report(table))} == {Category.LEAF_ADDED, Category.LEAF_REMOVED}
    user = _canonical.parse({"linen": [[r"^(param|opt/\d+/\w+)/backbone/", r"\1/decoder/"]]}, "user.yml")
    assert compare(report(), report(table), rewrites=_canonical.defaults().then(user)) == []


def test_memory_beyond_tolerance_is_a_finding_and_within_it_is_not():
    a = report()
    memory = a.compile.memory_per_device
    slightly = memory.model_copy(update={"temp": int(memory.temp * 1.005)})
    b = with_leaves(linen_leaves(), memory_per_device=slightly)
    assert compare(a, b) == []
    much = memory.model_copy(update={"temp": memory.temp * 2})
    b = with_leaves(linen_leaves(), memory_per_device=much, needed_bytes_per_device=memory.peak + memory.temp)
    findings = compare(a, b)
    assert [(f.category, f.before) for f in findings] == [
        (Category.MEMORY, {"peak": memory.peak}),
        (Category.MEMORY, {"temp": memory.temp}),
    ]
    assert findings[1].after == {"temp": 2 * memory.temp} and findings[1].note.startswith("+100.0% per chip")
    assert compare(a, b, memory_tolerance=10.0) == []


def test_collective_bytes_and_per_step_flops_changes():
    b = with_leaves(linen_leaves(), collectives={"all-gather": 4e6, "all-reduce": 1e6}, flops=3e9)
    findings = compare(report(), b)
    assert [f.category for f in findings] == [Category.COLLECTIVES, Category.FLOPS]
    assert findings[0].note == "all-gather 2.86 MiB -> 3.81 MiB per device per step (+33.3%)"
    assert findings[0].after == {"all-gather": 4000000, "all-reduce": 1000000}
    assert (findings[1].before, findings[1].after, findings[1].note) == (1500000000, 3000000000,
                                                                        "+100.0% per device per step")


def test_collective_bytes_within_the_tolerance_are_no_finding():
    b = with_leaves(linen_leaves(), collectives={"all-gather": 3.003e6, "all-reduce": 1e6})
    assert compare(report(), b) == []


def test_drift_new_on_side_b_is_a_finding_per_leaf():
    moved = Drift(leaf="params/decoder/norm/scale", input=("fsdp",), output="P('tensor')")
    b = with_leaves(linen_leaves(), drift=(moved,))
    (finding,) = compare(report(), b)
    assert (finding.category, finding.leaf, finding.before, finding.after) == (
        Category.SHARDING_DRIFT, "params/decoder/norm/scale", "P('fsdp')", "P('tensor')")
    assert compare(b, b) == []  # recorded in the golden: accepted, not a change


def test_a_compile_that_runs_out_of_hbm_is_compile_failing():
    b = with_leaves(linen_leaves(), verdict="does not fit", memory_per_device=None,
                    needed_bytes_per_device=200 * 1024**3)
    (finding,) = compare(report(), b)
    assert finding.category == Category.COMPILE_FAILING
    assert "ran out of HBM on side B: needs 200.00 GiB" in finding.note


def test_a_verdict_flip_is_a_finding():
    b = with_leaves(linen_leaves(), capacity_bytes_per_device=1024, verdict="does not fit")
    (finding,) = compare(report(), b)
    assert (finding.category, finding.before, finding.after) == (Category.FIT_VERDICT, "fits", "does not fit")


def test_no_compile_section_on_one_side_compares_leaves_only():
    assert compare(report(), report(compiled=False)) == []


def test_fields_a_side_does_not_record_are_not_compared():
    # MaxText's files hold no dtypes: a dtype difference cannot show.
    table = {p: lf.model_copy(update={"dtype": "bfloat16"}) for p, lf in linen_leaves().items()}
    maxtext = Report(
        header=Header(model="MaxText goldens", model_source="m", path="linen", mesh=MeshInfo(axis_names=(), shape={}),
                      known_fields=("shape", "partition_spec")),
        leaves=table,
    )
    assert compare(report(), maxtext) == []


def test_findings_are_sorted_by_category_then_leaf():
    table = linen_leaves()
    table["step"] = leaf("step", (), "int64", None)
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("embed",), ())
    table["params/decoder/bias"] = leaf("param", (16,), "float32", None)
    del table["opt_state/0/count"]
    findings = compare(report(), report(table))
    assert [f.category for f in findings] == [Category.LEAF_REMOVED, Category.PARTITION_SPEC, Category.DTYPE,
                                              Category.SHAPE]
    assert findings[0].to_json() == {"category": "leaf removed", "leaf": "opt/0/count",
                                     "before": {"shape": [], "dtype": "int32", "logical_axes": None,
                                                "partition_spec": []},
                                     "after": None, "explained": False, "note": ""}


def test_names_that_differ_under_an_equal_partition_spec_are_notes_when_asked():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("fsdp",), ("fsdp",))  # a mesh axis name
    (strict,) = compare(report(), report(table))
    assert strict.category == Category.LOGICAL_AXES and not strict.explained
    (note,) = compare(report(), report(table), names_are_notes=True)
    assert note.explained and note.note == "only the names differ: the same PartitionSpec P('fsdp')"
