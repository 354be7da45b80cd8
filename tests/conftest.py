"""Test setup: libtpu's environment, and 64 fake CPU devices so sharding code is exercised.

64 is the device count of the largest slice the suite compiles on the mock backend
(v5p-128); it must be fixed before jax starts its CPU backend.
"""

from __future__ import annotations

import os

import aotcheck

aotcheck.setup_libtpu_env()

import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

# A fresh compile cache per test session: tests must see real compiles, and must not leave
# (or read) anything in the user's cache.
os.environ["AOTCHECK_CACHE_DIR"] = tempfile.mkdtemp(prefix="aotcheck-test-cache-")

jax.config.update("jax_num_cpu_devices", 64)

# Output fits COLUMNS when it is set; the suite checks the plain, full-width output unless a test sets it.
os.environ.pop("COLUMNS", None)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def repo() -> str:
    return REPO


@pytest.fixture(autouse=True)
def _outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    # CI itself sets CI (which makes `golden update` refuse) and may set a job summary; tests that
    # are about those set them themselves.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
