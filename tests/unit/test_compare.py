"""Findings between two reports: one finding per real difference, explained ones marked, mirrors folded."""

from __future__ import annotations

import dataclasses

import pytest

from aotcheck import _canonical
from aotcheck._analysis import Compile
from aotcheck._causes import GRAPH_UPDATES_NOTE, KEY_NOTE, ORDER_NOTE, RNG_NOTE, STEP_NOTE
from aotcheck._compare import MIRROR_NOTE, ORDER, Category, Finding, compare, failing
from aotcheck._drift import Drift
from aotcheck._errors import UsageError
from aotcheck._report import Header, Leaf, MeshInfo, Report

from ._reports import RULES, compile_section, leaf, linen_leaves, nnx_report, report

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
    # Same rules and mesh on both sides: neither is blamed.
    assert finding == Finding(Category.PARTITION_SPEC, "param/decoder/norm/scale", ["fsdp"], ["tensor"],
                              note="same logical axes (embed)")
    assert failing([finding]) == [finding]


def test_a_spec_change_under_the_same_names_blames_the_rules_or_the_mesh_only_when_they_differ():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("embed",), ("tensor",))
    rules = tuple((name, ("tensor",) if name == "embed" else axes) for name, axes in RULES)
    (finding,) = compare(report(), report(table, rules=rules))
    assert finding.note == "same logical axes (embed): the rules differ"
    mesh = MeshInfo(axis_names=("data", "fsdp", "tensor"), shape={"data": 1, "fsdp": 2, "tensor": 4})
    (finding,) = compare(report(), report(table, mesh=mesh))
    assert finding.note == "same logical axes (embed): the mesh differs (fsdp=4, tensor=2 -> fsdp=2, tensor=4)"
    (finding,) = compare(report(), report(table, mesh=mesh, rules=rules))
    assert finding.note == "same logical axes (embed): the rules and the mesh differ"


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


def test_the_step_dtype_flip_between_two_states_of_one_path_is_a_real_difference():
    table = linen_leaves()
    table["step"] = leaf("step", (), "uint32", None)
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.explained, finding.note) == (Category.DTYPE, False, "")
    # NNX counting in int32 is no design of either path either.
    nnx_int32 = nnx_report()
    nnx_int32 = nnx_int32.model_copy(update={"leaves": {**nnx_int32.leaves, "optimizer/step/value": leaf("step", (), "int64", None)}})
    (finding,) = [f for f in compare(report(), nnx_int32) if f.leaf == "step"]
    assert not finding.explained


def test_rng_state_on_one_side_of_two_nnx_states_is_a_real_difference():
    without = nnx_report()
    without = without.model_copy(update={"leaves": {p: lf for p, lf in without.leaves.items() if lf.role != "rng"}})
    (added,) = compare(without, nnx_report())
    assert (added.category, added.leaf, added.explained, added.note) == (
        Category.LEAF_ADDED, "rng/rngs/default/key", False, "")


def test_linen_step_key_against_nnx_streams_is_explained_by_the_key_note():
    table = {**linen_leaves(), "rng": leaf("rng", (), "key<fry>", None)}
    findings = {(f.category, f.leaf): f for f in compare(report(table), nnx_report())}
    key, streams = findings[(Category.LEAF_REMOVED, "rng")], findings[(Category.LEAF_ADDED, "rng/rngs/default/key")]
    assert key.explained and streams.explained and key.note == streams.note == KEY_NOTE
    # A Linen step key with no NNX streams: the NNX model draws none, a real difference.
    without = nnx_report()
    without = without.model_copy(update={"leaves": {p: lf for p, lf in without.leaves.items() if lf.role != "rng"}})
    (only_key,) = [f for f in compare(report(table), without) if f.leaf == "rng"]
    assert not only_key.explained


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


def test_a_changed_logical_axis_that_moves_the_spec_is_a_partition_spec_finding_naming_the_axes():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("mlp",), ("tensor",))
    (finding,) = compare(report(), report(table))
    assert (finding.category, finding.before, finding.after) == (Category.PARTITION_SPEC, ["fsdp"], ["tensor"])
    assert finding.note == "logical axes (embed) -> (mlp)" and not finding.explained


def test_a_large_leaf_that_loses_its_sharding_is_newly_replicated():
    table = linen_leaves()
    table["params/token_embedder/embedding"] = leaf("param", (128, 64), "bfloat16", None)
    (finding,) = compare(report(), report(table), large_leaf_bytes=16 * 1024)
    assert finding.category == Category.NEWLY_REPLICATED and finding.leaf == "param/token_embedder/embedding"
    assert finding.before == {"partition_spec": ["tensor", "fsdp"], "logical_axes": ["vocab", "embed"]}
    assert finding.after == {"partition_spec": [], "logical_axes": None}
    assert finding.note.startswith("16.00 KiB per device on side B; annotated on side A only")
    # Below the threshold the same change is an ordinary PartitionSpec finding.
    (small,) = compare(report(), report(table), large_leaf_bytes=1 << 20)
    assert (small.category, small.before, small.after) == (Category.PARTITION_SPEC, ["tensor", "fsdp"], [])
    assert small.note.startswith("annotated on side A only")


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
    table = {p: dataclasses.replace(lf, dtype="bfloat16") for p, lf in linen_leaves().items()}
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


def test_names_that_differ_under_an_equal_partition_spec_are_notes_unless_asked():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("fsdp",), ("fsdp",))  # a mesh axis name
    (note,) = compare(report(), report(table))
    assert note.category == Category.LOGICAL_AXES
    assert note.explained and note.note == "only the names differ: the same PartitionSpec P('fsdp')"
    (strict,) = compare(report(), report(table), names_are_notes=False)
    assert strict.category == Category.LOGICAL_AXES and not strict.explained and failing([strict]) == [strict]


def test_an_annotation_on_one_side_only_under_an_equal_spec_stays_a_finding():
    table = linen_leaves()
    table["params/decoder/bias"] = leaf("param", (32,), "float32", ("norm",))  # annotated, still replicated
    rules = (*RULES, ("norm", ()))
    (finding,) = compare(report(rules=rules), report(table, rules=rules))
    assert (finding.category, finding.explained) == (Category.LOGICAL_AXES, False)
    assert finding.note.startswith("annotated on side B only")


def test_sharding_dtype_and_shape_come_before_names_and_names_before_compiled_figures():
    assert ORDER.index(Category.LEAF_REMOVED) < ORDER.index(Category.NEWLY_REPLICATED) < ORDER.index(
        Category.PARTITION_SPEC) < ORDER.index(Category.DTYPE) < ORDER.index(Category.SHAPE) < ORDER.index(
        Category.LOGICAL_AXES) < min(ORDER.index(c) for c in (Category.COMPILE_FAILING, Category.FIT_VERDICT,
                                                              Category.MEMORY, Category.COLLECTIVES, Category.FLOPS,
                                                              Category.SHARDING_DRIFT))
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", ("fsdp",), ("fsdp",))  # names only
    table["params/decoder/bias"] = leaf("param", (32,), "bfloat16", None)
    table["params/decoder/layers_0/mlp/kernel"] = leaf("param", (64, 32), "float32", ("embed", "mlp"), ("fsdp",))
    b = with_leaves(table, flops=3e9)
    findings = compare(report(), b, names_are_notes=False)
    assert [f.category for f in findings] == [Category.PARTITION_SPEC, Category.DTYPE, Category.LOGICAL_AXES,
                                              Category.FLOPS]


def _layers(n: int) -> dict[str, Leaf]:
    return {f"params/decoder/layers_{i}/mlp/kernel": leaf("param", (64, 32), "float32", ("embed", "mlp"),
                                                          ("fsdp", "tensor")) for i in range(n)}


def _nnx_layers(n: int) -> dict[str, Leaf]:
    return {f"model/decoder/layers/{i}/mlp/kernel/value": leaf("param", (64, 32), "float32", ("embed", "mlp"),
                                                               ("fsdp", "tensor")) for i in range(n)}


def _temp(r: Report, temp: int, flops: float = 1.5e9) -> Report:
    c = compile_section(temp=temp, flops=flops)
    return r.model_copy(update={"compile": c.model_copy(update={"needed_bytes_per_device": c.memory_per_device.peak})})


def _by_figure(findings: list[Finding]) -> dict[str, Finding]:
    return {next(iter(f.before)): f for f in findings if f.category == Category.MEMORY}


def test_the_layer_order_note_needs_eleven_unscanned_linen_layers_against_numbered_nnx_ones_and_a_memory_change():
    linen, nnx_ = report(_layers(11)), report(_nnx_layers(11), path="nnx")
    memory = _by_figure(compare(_temp(linen, 4096, 1.5e9), _temp(nnx_, 8192, 3e9)))
    assert ORDER_NOTE in memory["temp"].note and ORDER_NOTE in memory["peak"].note
    # The FLOPs do not depend on the arguments' order: no note there.
    (flops,) = [f for f in compare(_temp(linen, 4096, 1.5e9), _temp(nnx_, 8192, 3e9)) if f.category == Category.FLOPS]
    assert ORDER_NOTE not in flops.note
    # Ten layers flatten alike (layers_0 ... layers_9): withheld.
    ten = _by_figure(compare(_temp(report(_layers(10)), 4096), _temp(report(_nnx_layers(10), path="nnx"), 8192)))
    assert ten and all(ORDER_NOTE not in f.note for f in ten.values())
    # Two Linen states, or an NNX side that names its layers layers_N too: withheld.
    same_kind = _by_figure(compare(_temp(linen, 4096), _temp(report(_layers(11)), 8192)))
    renamed = {p.replace("model/", "model/").replace("layers/", "layers_"): lf for p, lf in _nnx_layers(11).items()}
    nnx_named = _by_figure(compare(_temp(linen, 4096), _temp(report(renamed, path="nnx"), 8192)))
    assert same_kind and nnx_named and all(ORDER_NOTE not in f.note for f in [*same_kind.values(), *nnx_named.values()])
    # No memory change, no memory finding to carry it.
    assert compare(_temp(linen, 4096), _temp(nnx_, 4096)) == []


def test_the_graph_updates_note_needs_more_nnx_temp_under_the_same_scan_or_remat_settings():
    linen, nnx_ = report(), nnx_report()
    more = _by_figure(compare(_temp(linen, 4096), _temp(nnx_, 8192)))
    assert GRAPH_UPDATES_NOTE in more["temp"].note and GRAPH_UPDATES_NOTE in more["peak"].note
    # The NNX side on side A: the same premise.
    assert GRAPH_UPDATES_NOTE in _by_figure(compare(_temp(nnx_, 8192), _temp(linen, 4096)))["temp"].note
    # Less temp on the NNX side: withheld.
    less = _by_figure(compare(_temp(linen, 8192), _temp(nnx_, 4096)))
    assert all(GRAPH_UPDATES_NOTE not in f.note for f in less.values())
    # The paths ran with different settings: those are the likelier cause.
    unscanned = nnx_report(config={"model_name": "tiny", "scan_layers": False, "remat_policy": "full"})
    assert GRAPH_UPDATES_NOTE not in _by_figure(compare(_temp(linen, 4096), _temp(unscanned, 8192)))["temp"].note
    # A model without scan or remat (it ignores both settings, so its header holds neither).
    plain = {"model_name": "mine"}
    ignoring = _by_figure(compare(_temp(report(config=plain), 4096), _temp(nnx_report(config=plain), 8192)))
    assert GRAPH_UPDATES_NOTE not in ignoring["temp"].note
    # Neither scans nor remats.
    off = {"model_name": "tiny", "scan_layers": False, "remat_policy": "none"}
    untransformed = _by_figure(compare(_temp(report(config=off), 4096), _temp(nnx_report(config=off), 8192)))
    assert GRAPH_UPDATES_NOTE not in untransformed["temp"].note
    # The states differ in a sharding: that difference is the likelier cause.
    nnx_moved = nnx_report()
    scale = "model/decoder/norm/scale/value"
    nnx_moved = nnx_moved.model_copy(update={"leaves": {**nnx_moved.leaves, scale: leaf("param", (64,), "float32", ("embed",), ("tensor",))}})
    assert GRAPH_UPDATES_NOTE not in _by_figure(compare(_temp(linen, 4096), _temp(nnx_moved, 8192)))["temp"].note


def test_the_one_sided_annotation_cause_needs_a_sharding_that_differs():
    table = linen_leaves()
    table["params/decoder/norm/scale"] = leaf("param", (64,), "float32", None)  # unannotated: replicated on B
    findings = compare(_temp(report(), 4096), _temp(report(table), 8192))
    memory = _by_figure(findings)
    assert "annotated on one side only: param/decoder/norm/scale" in memory["temp"].note
    # Annotated on B only but replicated all the same: nothing in the programs follows from it.
    table = linen_leaves()
    table["params/decoder/bias"] = leaf("param", (32,), "float32", ("norm",))
    rules = (*RULES, ("norm", ()))
    memory = _by_figure(compare(_temp(report(rules=rules), 4096), _temp(report(table, rules=rules), 8192)))
    assert "annotated on one side only" not in memory["temp"].note
