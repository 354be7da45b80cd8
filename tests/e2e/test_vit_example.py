"""The second example, examples/vit, runs as its README says: both paths, a clean diff, check, a caught change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VIT_DIR = REPO / "examples" / "vit"
MODEL = "aotcheck_vit:VIT"


def aotcheck(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The `aotcheck` command, run from the example's folder as its README does."""
    import os

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "aotcheck", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("flag", [None, "--pure-nnx"])
def test_both_paths_compile_for_a_tpu_topology(flag: str | None) -> None:
    args = ["compile", "--model", MODEL, "--topology", "v5p-8", "--format", "json", *([flag] if flag else [])]
    done = aotcheck(VIT_DIR, *args)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["compile"]["verdict"] == "fits"
    # The team's step read its own settings; nothing read the settings the model has no use for.
    assert report["header"]["own_config"]["microbatches"] == 2 and report["header"]["own_config"]["ema_decay"] == 0.999
    assert {"scan_layers", "weight_dtype", "max_target_length"}.isdisjoint(report["header"]["config"])
    ema, param = ("ema_params/block_0/wi", "params/block_0/wi") if flag is None else ("ema_params/block_0/wi/value", "model/block_0/wi/value")
    # The team's own state field, sharded like the parameter it mirrors (mesh axis names: fsdp, tensor).
    assert report["leaves"][ema]["partition_spec"] == report["leaves"][param]["partition_spec"] == ["fsdp"]


def test_diff_linen_nnx_is_clean_with_no_flags() -> None:
    done = aotcheck(VIT_DIR, "diff", "linen", "nnx", "--model", MODEL, "--topology", "v5p-8")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: identical (apart from 1 explained note)" in done.stdout


def test_check_is_green_on_its_goldens_and_catches_a_changed_annotation(tmp_path: Path) -> None:
    done = aotcheck(VIT_DIR, "check", "--matrix", "matrix.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    copy = tmp_path / "vit"
    shutil.copytree(VIT_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    linen = copy / "aotcheck_vit" / "linen.py"
    text = linen.read_text()
    assert 'nn.with_partitioning(_INIT, ("fsdp", "tensor"))' in text
    linen.write_text(text.replace('nn.with_partitioning(_INIT, ("fsdp", "tensor"))', 'nn.with_partitioning(_INIT, ("tensor", "fsdp"))'))
    done = aotcheck(copy, "check", "--matrix", "matrix.yml", "--case", "vit/v5p-128")
    assert done.returncode == 1, done.stdout + done.stderr
    # The resolved sharding moved: a PartitionSpec finding, the names that moved it in its note.
    assert "PartitionSpec changed: " in done.stdout
    assert "P('fsdp') -> P(None, 'fsdp') (logical axes (fsdp, tensor) -> (tensor, fsdp)" in done.stdout


def test_settings_nothing_reads_are_not_shown_and_setting_one_warns_on_a_build_and_from_the_cache(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from aotcheck._pipeline import Request, build

    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(VIT_DIR))
    # Without a compile the team's step is never traced, so nothing reads `microbatches`.
    run_yml = tmp_path / "run.yml"
    run_yml.write_text("ema_decay: 0.99\nnum_layers: 3\n")
    request = Request(model=MODEL, topology="v5p-8", compile=False, config_file=run_yml,
                      overrides=("weight_dtype=bfloat16", "num_layers=1", "microbatches=4"))
    fresh, cached = build(request), build(request)
    assert "report_cache_hit" not in fresh.report.timings and cached.report.timings == {"report_cache_hit": 1.0}
    assert fresh.warnings == cached.warnings == (
        f"--config {run_yml}: nothing read 'ema_decay' in this run (model '{MODEL}', linen path); it changes nothing",
        f"--set weight_dtype=bfloat16: model '{MODEL}' does not read this setting (its ModelSpec ignores it), "
        "so it changes nothing",
        f"--set microbatches=4: nothing read 'microbatches' in this run (model '{MODEL}', linen path); it changes nothing",
    )
    h = fresh.report.header
    assert h == cached.report.header
    assert {"scan_layers", "remat_policy", "weight_dtype", "dtype", "max_target_length"}.isdisjoint(h.config)
    assert "microbatches" not in h.own_config and "ema_decay" not in h.own_config
    assert h.own_config["num_layers"] == 1 and h.config["per_device_batch_size"] == 4


def test_diff_linen_nnx_gives_the_builds_warnings_each_once() -> None:
    args = ("diff", "linen", "nnx", "--model", MODEL, "--topology", "v5p-8", "--no-compile", "--backend", "mock",
            "--set", "weight_dtype=bfloat16", "--set", "microbatches=4")
    done = aotcheck(VIT_DIR, *args)
    assert done.returncode == 0, done.stderr
    ignored = f"warning: --set weight_dtype=bfloat16: model '{MODEL}' does not read this setting (its ModelSpec ignores it)"
    assert done.stderr.count(ignored) == 1  # both paths give it: once
    for path in ("linen", "nnx"):
        assert (f"warning: --set microbatches=4: nothing read 'microbatches' in this run (model '{MODEL}', {path} path)"
                in done.stderr)

