"""The mock backend runs the default matrix: wherever libtpu is missing, `aotcheck check` works.

Each run is a fresh `aotcheck` process, as on a CI runner: jax starts there with as many CPU
devices as the largest selected case needs (64 for v5p-128), even when a smaller case comes first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTE = "compile figures not compared: golden from libtpu; this run is mock: --backend mock was asked"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GITHUB_STEP_SUMMARY", "JAX_NUM_CPU_DEVICES")}
    return subprocess.run([sys.executable, "-m", "aotcheck", "check", "--backend", "mock", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1800)


def test_a_small_case_first_then_a_64_device_case() -> None:
    result = check("--case", "tiny/v5p-8", "--case", "llama2-7b/v5p-128", "--filter", "linen")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "needs 64 CPU devices" not in result.stdout + result.stderr
    assert result.stdout.count(NOTE) == 1  # tiny compiled on mock; its libtpu figures are left alone


@pytest.mark.slow
def test_the_default_matrix_passes_on_the_mock_backend() -> None:
    # 16 units, 14 compiled on CPU: about 90 s of CPU time (4 min wall on a loaded 2-core machine).
    result = check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(NOTE) == 12
