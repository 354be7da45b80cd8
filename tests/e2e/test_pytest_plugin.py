"""`pytest --aotcheck`: a project's matrix cases as pytest items, failing with the findings, mended by --aotcheck-update."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aotcheck._topology import libtpu_available

REPO = Path(__file__).resolve().parents[2]


def pytest_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The plugin loads through aotcheck's pytest11 entry point, as in any project that installs aotcheck.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(directory)])}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=directory, env=env, capture_output=True, text=True, check=False, timeout=900)


@pytest.fixture
def mixer(tmp_path: Path) -> Path:
    copy = tmp_path / "mixer"
    shutil.copytree(REPO / "examples" / "mixer", copy)
    return copy


def test_without_aotcheck_the_plugin_adds_nothing_and_imports_no_jax(tmp_path: Path) -> None:
    (tmp_path / "test_own.py").write_text("import sys\n\ndef test_own():\n    assert 'jax' not in sys.modules\n")
    (tmp_path / "matrix.yml").write_text("cases: [{topology: v5p-8}]\n")
    out = pytest_in(tmp_path, "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout and "aotcheck" not in out.stdout


@pytest.mark.skipif(not libtpu_available(), reason="the mixer's goldens are libtpu goldens")
def test_mixer_cases_run_as_items_fail_with_findings_and_update_mends_them(mixer: Path) -> None:
    listed = pytest_in(mixer, "--aotcheck", "--collect-only", "-q")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert [line for line in listed.stdout.splitlines() if "::" in line] == [
        f"matrix.yml::mixer/{t}/{p}" for t in ("v5p-8", "v5p-128") for p in ("linen", "nnx")]

    assert pytest_in(mixer, "--aotcheck", "-k", "v5p-8").returncode == 0

    linen = mixer / "aotcheck_mixer" / "linen.py"
    linen.write_text(linen.read_text().replace('("pixel", "hidden"), name="stem"', '("hidden", "pixel"), name="stem"'))
    failed = pytest_in(mixer, "--aotcheck", "-k", "v5p-8 and linen")
    assert failed.returncode == 1
    # The swapped names move the resolved sharding: PartitionSpec findings first, naming the axes, then the program's.
    assert "mixer/v5p-8/linen: changed: 2 PartitionSpec changed, " in failed.stdout
    assert ("  PartitionSpec changed: param/stem/kernel: P(None, 'fsdp') -> P('fsdp') "
            "(logical axes (pixel, hidden) -> (hidden, pixel)") in failed.stdout
    assert "accept an intended change with: pytest --aotcheck-update -k 'mixer/v5p-8/linen'" in failed.stdout

    mended = pytest_in(mixer, "--aotcheck-update", "-k", "v5p-8 and linen")
    assert mended.returncode == 0, mended.stdout
    annotations = "golden/v5p-8/linen/logical_annotations.json"
    assert (mixer / annotations).read_text() != (REPO / "examples" / "mixer" / annotations).read_text()
    again = pytest_in(mixer, "--aotcheck", "-k", "v5p-8 and linen")
    assert again.returncode == 0 and "1 passed" in again.stdout
