"""Bad input: one line that names the thing and the fix, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app

runner = CliRunner()


def fails(*args: str, code: int = 2) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, (result.stdout, result.stderr)
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in result.stdout + result.stderr
    return err


def test_unknown_topology_lists_close_names() -> None:
    err = fails("compile", "--topology", "v5p-100", "--no-compile")
    assert err == "error: unknown topology 'v5p-100'; close names: v5p-128, v5p-64, v5p-32 (`aotcheck topologies` lists all)"
    assert "tpu7x-8" in fails("topologies", "tpu7-8")


def test_unknown_config_key_names_a_close_match() -> None:
    err = fails("compile", "--no-compile", "--set", "ici_fsdp_paralelism=4")
    assert err.startswith("error: config: unknown key 'ici_fsdp_paralelism'; did you mean ici_fsdp_parallelism")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("weight_dtype=bf16", "error: config: weight_dtype: Input should be 'float32', 'bfloat16' or 'float16' (got 'bf16')"),
        ("per_device_batch_size=0", "error: config: per_device_batch_size: Input should be greater than 0 (got 0)"),
        ("base_num_kv_heads=3", "error: config: base_num_query_heads=8 must be a multiple of base_num_kv_heads=3"),
        ("logical_axis_rules=[[mlp, tensr]]", "error: config: rule for 'mlp' names mesh axis 'tensr', which is not in mesh_axes; did you mean tensor?"),
        ("nokey", "error: --set expects key=value, got 'nokey'"),
    ],
)
def test_bad_overrides(override: str, message: str) -> None:
    assert fails("compile", "--no-compile", "--set", override) == message


def test_mesh_that_does_not_divide_the_devices() -> None:
    err = fails("compile", "--no-compile", "--topology", "v5p-128", "--set", "ici_tensor_parallelism=3")
    assert err == (
        "error: mesh: ICI parallelism fsdp=-1 x tensor=3 = 3 does not divide the 64 devices of one v5p-128 slice; "
        "make the product a divisor of 64"
    )
    err = fails("compile", "--no-compile", "--topology", "v5p-8", "--set", "ici_fsdp_parallelism=2")
    assert err.startswith("error: mesh: ICI parallelism fsdp=2 = 2 but there are 4 devices")


def test_mesh_the_torus_cannot_carry() -> None:
    err = fails(
        "compile", "--no-compile", "--topology", "v5p-128",
        "--set", "ici_expert_parallelism=8", "--set", "ici_fsdp_parallelism=8",
    )
    assert err.startswith(
        "error: mesh: ICI mesh fsdp=8 x expert=8 cannot be laid on the 4x4x4 torus of v5p-128 without "
        "splitting physical axes; set allow_split_physical_axes=true to allow it"
    )
    result = runner.invoke(app, [
        "compile", "--no-compile", "--topology", "v5p-128", "--set", "ici_expert_parallelism=8",
        "--set", "ici_fsdp_parallelism=8", "--set", "allow_split_physical_axes=true",
    ])
    assert result.exit_code == 0, result.stderr


def test_dimension_not_divisible_by_its_mesh_axes_names_leaf_and_axis() -> None:
    # tiny has 4 kv heads; 8-way tensor parallelism cannot split them.
    err = fails("compile", "--no-compile", "--topology", "v5p-8", "--set", "ici_tensor_parallelism=4", "--set", "base_num_kv_heads=2")
    assert err == (
        "error: sharding: leaf params/decoder/layers/self_attention/key/kernel dimension 2 "
        "(size 2, logical 'kv_heads') is not divisible by mesh axes tensor=4; "
        "change the rule for 'kv_heads' or the parallelism"
    )


def test_unknown_model_and_bad_config_file(tmp_path) -> None:
    assert fails("compile", "--no-compile", "--model", "llama2-7") .startswith("error: unknown model 'llama2-7'; did you mean llama2-7b")
    assert fails("compile", "--no-compile", "--config", str(tmp_path / "none.yml")) == f"error: config file {tmp_path / 'none.yml'} does not exist"
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1,\n")
    assert "is not valid YAML" in fails("compile", "--no-compile", "--config", str(bad))


def test_fractional_global_batch() -> None:
    err = fails("compile", "--no-compile", "--topology", "v5p-8", "--set", "per_device_batch_size=0.3")
    assert err == ("error: config: per_device_batch_size=0.3 x 4 devices = 1.2 is not a whole batch; "
                   "choose a per-device size that gives a whole number")


def test_bad_num_slices() -> None:
    assert fails("compile", "--no-compile", "--num-slices", "0") == "error: --num-slices must be 1..4096, got 0"


def test_unwritable_output_path(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    err = fails("compile", "--no-compile", "--format", "json", "--out", str(blocker / "report.json"))
    assert err == f"error: --out {blocker / 'report.json'}: Not a directory; give a writable file path"
