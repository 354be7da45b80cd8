"""Mesh planning: parallelism settings -> axis sizes per slice (ICI) and across slices (DCN)."""

from __future__ import annotations

import os

import pytest

from aotcheck import _config, _mesh, _topology
from aotcheck._errors import UsageError


def target(name: str = "v5p-128", num_slices: int = 1) -> _topology.Target:
    # Planning reads only the slice's size and the slice count: no devices needed.
    return _topology.Target(topology=_topology.get_topology(name), num_slices=num_slices, backend="mock", devices=())


def plan(values: dict, name: str = "v5p-128", num_slices: int = 1) -> _mesh.MeshPlan:
    return _mesh.plan_mesh(_config.validate(values, _config.NoModelFields), target(name, num_slices))


def test_fill_replaces_the_one_wildcard():
    assert _mesh._fill("ICI", {"data": 1, "fsdp": -1, "tensor": 4}, 64, "devices") == (1, 16, 4)


def test_fill_with_no_wildcard_keeps_the_sizes():
    assert _mesh._fill("ICI", {"fsdp": 8, "tensor": 8}, 64, "devices") == (8, 8)


def test_fill_refuses_two_wildcards_naming_both_keys():
    with pytest.raises(UsageError) as info:
        _mesh._fill("ICI", {"fsdp": -1, "stage": -1}, 64, "devices")
    assert str(info.value) == "mesh: at most one ICI axis may be -1, got ici_fsdp_parallelism, ici_pipeline_parallelism"


def test_fill_refuses_a_product_that_does_not_divide():
    with pytest.raises(UsageError) as info:
        _mesh._fill("ICI", {"fsdp": 3, "tensor": 1}, 64, "devices of one v5p-128 slice")
    assert str(info.value) == (
        "mesh: ICI parallelism fsdp=3 = 3 does not divide the 64 devices of one v5p-128 slice; "
        "make the product a divisor of 64"
    )


def test_fill_refuses_a_product_that_divides_but_falls_short():
    with pytest.raises(UsageError, match=r"^mesh: ICI parallelism fsdp=4 x tensor=2 = 8 but there are 64 devices; "
                                         r"make the product 64 or set one axis to -1$"):
        _mesh._fill("ICI", {"fsdp": 4, "tensor": 2}, 64, "devices")


@pytest.mark.parametrize("bad", [0, -2])
def test_fill_refuses_zero_and_negative_sizes(bad):
    with pytest.raises(UsageError, match=f"^mesh: DCN parallelism must be positive or -1, got data={bad}$"):
        _mesh._fill("DCN", {"data": bad}, 2, "slices")


def test_plan_fills_fsdp_from_the_slice():
    p = plan({"ici_fsdp_parallelism": -1, "ici_tensor_parallelism": 4})
    assert p.axis_names == ("data", "stage", "fsdp", "fsdp_transpose", "sequence", "tensor", "expert")
    assert p.shape == {"data": 1, "stage": 1, "fsdp": 16, "fsdp_transpose": 1, "sequence": 1, "tensor": 4, "expert": 1}


def test_plan_over_several_slices_puts_dcn_on_its_axis():
    p = plan({"ici_fsdp_parallelism": -1, "dcn_data_parallelism": -1}, "v5p-8", num_slices=2)
    assert dict(zip(p.axis_names, p.ici, strict=True))["fsdp"] == 4
    assert dict(zip(p.axis_names, p.dcn, strict=True))["data"] == 2
    assert p.shape["data"] == 2 and p.shape["fsdp"] == 4


def test_plan_with_two_wildcards_is_refused():
    with pytest.raises(UsageError, match="at most one ICI axis may be -1, got ici_fsdp_parallelism, ici_tensor_parallelism"):
        plan({"ici_fsdp_parallelism": -1, "ici_tensor_parallelism": -1})


def test_plan_with_a_non_dividing_product_gives_the_exact_one_line_message():
    with pytest.raises(UsageError) as info:
        plan({"ici_fsdp_parallelism": 3})
    assert str(info.value) == (
        "mesh: ICI parallelism fsdp=3 = 3 does not divide the 64 devices of one v5p-128 slice; "
        "make the product a divisor of 64"
    )


def test_plan_over_two_slices_needs_dcn_parallelism():
    with pytest.raises(UsageError, match="^mesh: DCN parallelism 1 = 1 but there are 2 slices; make the product 2"):
        plan({"ici_fsdp_parallelism": -1}, "v5p-8", num_slices=2)


def test_plan_refuses_parallelism_on_an_axis_not_in_mesh_axes():
    with pytest.raises(UsageError, match="^mesh: parallelism is set for axis 'tensor', which is not in mesh_axes$"):
        plan({"mesh_axes": ["data", "fsdp"], "ici_fsdp_parallelism": -1, "ici_tensor_parallelism": 2})


def test_config_refuses_a_rule_naming_an_axis_outside_the_mesh():
    with pytest.raises(UsageError, match="rule for 'embed' names mesh axis 'tensor', which is not in mesh_axes"):
        _config.validate({"mesh_axes": ["data", "fsdp"], "logical_axis_rules": [["embed", "tensor"]]},
                         _config.NoModelFields)


def test_config_rules_are_normalised_and_later_layers_take_precedence():
    merged = _config.merge_layers([
        {"logical_axis_rules": [["embed", "fsdp"], ["mlp", []]]},
        {"logical_axis_rules": [["embed", ["tensor"]]], "ici_fsdp_parallelism": -1},
    ])
    cfg = _config.validate(merged, _config.NoModelFields)
    assert cfg.rules == (("embed", ("tensor",)), ("embed", ("fsdp",)), ("mlp", ()))
    assert cfg.ici("fsdp") == -1 and cfg.ici("stage") == 1


def test_overrides_parse_yaml_values():
    assert _config.parse_overrides(["ici_fsdp_parallelism=-1", "scan_layers=false", "model_name=tiny"]) == {
        "ici_fsdp_parallelism": -1, "scan_layers": False, "model_name": "tiny"}
    with pytest.raises(UsageError, match="^--set expects key=value, got 'scan_layers'$"):
        _config.parse_overrides(["scan_layers"])


def test_an_unknown_config_key_is_refused_with_a_suggestion():
    with pytest.raises(UsageError, match=r"^config: unknown key 'ici_fsdp_paralelism'; did you mean ici_fsdp_parallelism"):
        _config.validate({"ici_fsdp_paralelism": 2}, _config.NoModelFields)


MAXTEXT_AXES = ["diloco", "data", "stage", "fsdp", "fsdp_transpose", "sequence", "context", "context_autoregressive",
                "tensor", "tensor_transpose", "tensor_sequence", "expert", "autoregressive"]


def test_maxtexts_own_mesh_axes_pass_through_with_their_own_parallelism_keys():
    p = plan({"mesh_axes": MAXTEXT_AXES, "ici_fsdp_parallelism": -1, "ici_context_parallelism": 2,
              "ici_tensor_sequence_parallelism": 2, "ici_pipeline_parallelism": 2,
              "logical_axis_rules": [["activation_length", ["sequence", "context"]]]})
    assert p.axis_names == tuple(MAXTEXT_AXES)
    assert p.shape["context"] == 2 and p.shape["tensor_sequence"] == 2 and p.shape["stage"] == 2
    assert p.shape["fsdp"] == 8 and p.shape["diloco"] == 1


def test_the_parallelism_of_an_axis_not_in_the_mesh_is_an_error():
    with pytest.raises(UsageError) as info:
        plan({"ici_contxt_parallelism": 2, "mesh_axes": ["data", "fsdp", "context"]})
    assert str(info.value) == "config: ici_contxt_parallelism sets mesh axis 'contxt', which is not in mesh_axes; did you mean context?"


def test_a_user_axis_parallelism_shows_in_the_settings_as_given():
    cfg = _config.validate({"mesh_axes": ["data", "fsdp", "context"], "ici_context_parallelism": 2}, _config.NoModelFields)
    settings = cfg.as_dict()
    assert settings["ici_context_parallelism"] == 2 and "parallelism" not in settings


def test_a_config_file_is_read_again_when_it_changes_and_callers_get_their_own_copy(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("per_device_batch_size: 2\nlogical_axis_rules: [[embed, [fsdp]]]\n")
    first = _config.read_config(path)
    first["logical_axis_rules"].append(["mlp", ["tensor"]])  # a caller's change stays its own
    assert _config.read_config(path) == {"per_device_batch_size": 2, "logical_axis_rules": [["embed", ["fsdp"]]]}
    before = path.stat().st_mtime_ns
    path.write_text("per_device_batch_size: 3\nlogical_axis_rules: [[embed, [fsdp]]]\n")  # same size
    os.utime(path, ns=(before + 10**9, before + 10**9))  # newer, even where the clock is coarse
    assert _config.read_config(path)["per_device_batch_size"] == 3
    path.unlink()
    with pytest.raises(UsageError, match="does not exist"):
        _config.read_config(path)
