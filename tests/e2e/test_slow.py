"""Big-model compiles: minutes each, so marked slow and left out of CI (`pytest -m slow`, `nox -s slow`)."""

from __future__ import annotations

import pytest

from aotcheck._pipeline import Request, build_report

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_llama2_7b_on_v5p_128_argument_bytes(path: str) -> None:
    # 6.74e9 parameters x 12 bytes (f32 params, mu, nu) / 64 chips = 1.263 GB per device.
    report = build_report(Request(model="llama2-7b", topology="v5p-128", pure_nnx=path == "nnx"))
    assert report.compile is not None and report.compile.memory_per_device is not None and report.compile.fits
    assert report.compile.memory_per_device.argument == pytest.approx(6_738_415_616 * 12 / 64, rel=0.001)


def test_mixtral_with_expert_parallelism_compiles_on_v5p_128() -> None:
    report = build_report(
        Request(model="mixtral-8x7b", topology="v5p-128", overrides=("ici_expert_parallelism=4",))
    )
    assert report.compile is not None and report.compile.memory_per_device is not None
    assert report.compile.collectives["all-to-all"] > 0 or report.compile.collectives["all-gather"] > 0
