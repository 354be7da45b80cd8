"""End to end: the true per-step cost of the tiny model on v5p-8 against hand counts.

Three tiny compiles (a few seconds each): scanned, unscanned, two slices. Needs libtpu.

Analytic matmul FLOPs per device per step for the built-in decoder
(aotcheck/models/decoder/ops.py), with T tokens per device, B sequences of length S, L
layers, H query heads of size k:

- matmul parameters N_mm = L * (d*H*k + 2*d*Hkv*k + H*k*d + 3*d*m) + d*V  (q, k, v, out,
  gated MLP, logits; the embedding is a gather, not a matmul);
- forward 2*N_mm*T and backward 4*N_mm*T: 6*N*T;
- `remat_policy: full` recomputes the layers' forward in the backward, + 2*N_layers*T,
  *except* the MLP down-projection `wo`: its output only feeds the residual sum that is
  the next layer's (saved) input, so no gradient needs it and XLA drops its recompute as
  dead code (seen in the HLO: `checkpoint/.../mlp/blm,md->bld` appears only as its two
  backward matmuls). The attention output projection is recomputed: the post-attention
  norm's gradient needs its value. So + 2*(N_layers - N_wo)*T, i.e. ~7.6*N*T here, not 8;
- attention scores and values: 2 matmuls of 2*B*S*S*H*k each per layer forward (XLA
  computes the full square; the causal mask is a select), times 4 (forward, recompute,
  2x backward).

This matches the counted dot/convolution FLOPs exactly for tiny (and llama2-7b: 1.1060e14
counted vs 1.1060e14 by this formula). Elementwise work (norms, rope, softmax, Adam) adds
~7% for tiny, whose dimensions are small, ~0.2% for llama2-7b.

Analytic FSDP traffic (fsdp = n devices, bf16 compute weights, wire bytes as in
aotcheck._collectives): every parameter is all-gathered once in the forward and the layer
weights again for the rematerialised backward, (n-1)/n * 2 bytes * (N + N_layers); the
gradients are all-reduced in bf16 over fsdp, 2*(n-1)/n * 2 bytes * N.
"""

from __future__ import annotations

import time

import pytest

from aotcheck._cost import CostSummary, step_cost
from aotcheck._replica_groups import layout_from_plan
from aotcheck._topology import libtpu_available

pytestmark = pytest.mark.skipif(not libtpu_available(), reason="needs libtpu for TPU HLO")

# configs/models/tiny.yml
D, H, HKV, K, M, LAYERS, VOCAB, S, B_PER_DEVICE = 256, 8, 4, 32, 512, 4, 1024, 128, 2
N_LAYER_MM = LAYERS * (D * H * K + 2 * D * HKV * K + H * K * D + 3 * D * M)
N_MM = N_LAYER_MM + D * VOCAB
N_ALL = 2_885_888  # the report's parameter count: + embedding and norm scales
N_LAYERS_ALL = N_LAYER_MM + LAYERS * 2 * D
N_WO = LAYERS * M * D


def analytic_matmul_flops_per_device() -> float:
    tokens = B_PER_DEVICE * S
    matmuls = 6 * N_MM * tokens + 2 * (N_LAYER_MM - N_WO) * tokens
    attention = 4 * LAYERS * 2 * (2 * B_PER_DEVICE * S * S * H * K)
    return float(matmuls + attention)


def _cost(num_slices: int = 1, *overrides: str) -> tuple[CostSummary, float, float]:
    from aotcheck._pipeline import Request, build

    built = build(Request(topology="v5p-8", num_slices=num_slices, overrides=overrides, cache=False))
    mesh = built.report.header.mesh
    names = mesh.axis_names
    layout = layout_from_plan(names, [mesh.ici[a] for a in names], [mesh.dcn[a] for a in names],
                              per_slice_program=built.report.header.backend != "mock")
    start = time.perf_counter()
    summary = step_cost(built.executable.as_text(), layout)
    return summary, time.perf_counter() - start, built.report.timings["compile_seconds"]


@pytest.fixture(scope="module")
def scanned() -> tuple[CostSummary, float, float]:
    return _cost()


def test_scanned_and_unscanned_agree_with_the_hand_count(scanned: tuple[CostSummary, float, float]) -> None:
    scan, scan_s, scan_compile = scanned
    unscan, unscan_s, unscan_compile = _cost(1, "scan_layers=false")
    assert scan.loops and all(n == LAYERS for n in scan.loops.values())
    analytic = analytic_matmul_flops_per_device()
    assert abs(scan.flops / unscan.flops - 1) < 0.02
    assert abs(scan.matmul_flops / unscan.matmul_flops - 1) < 0.02
    assert abs(scan.matmul_flops / analytic - 1) < 0.01
    assert 1.0 < scan.flops / analytic < 1.10  # elementwise work on top of the matmuls
    print(f"\nFLOPs scanned {scan.flops:.4e} (matmul {scan.matmul_flops:.4e}) unscanned {unscan.flops:.4e} "
          f"(matmul {unscan.matmul_flops:.4e}) analytic matmul {analytic:.4e}")
    print(f"analysis {scan_s:.2f}s of compile {scan_compile:.2f}s; unscanned {unscan_s:.2f}s of {unscan_compile:.2f}s")


def test_fsdp_traffic_matches_parameter_traffic(scanned: tuple[CostSummary, float, float]) -> None:
    summary = scanned[0]
    n = 4
    gather = (n - 1) / n * 2 * (N_ALL + N_LAYERS_ALL)
    reduce = 2 * (n - 1) / n * 2 * N_ALL
    measured = summary.collectives["all-gather"].bytes + summary.collectives["all-reduce"].bytes
    assert set(summary.collectives["all-gather"].by_axis) == {"fsdp"}
    assert abs(measured / (gather + reduce) - 1) < 0.10
    print(f"\nall-gather {summary.collectives['all-gather'].bytes:.4e} (analytic {gather:.4e}), "
          f"all-reduce {summary.collectives['all-reduce'].bytes:.4e} (analytic {reduce:.4e})")


def test_two_slices_show_dcn_bytes() -> None:
    summary, _, _ = _cost(2)
    dcn = summary.collectives["send"].dcn_bytes
    # Gradients cross DCN once per step in bf16, each device its 1/fsdp shard.
    shard = 2 * N_ALL / 4
    assert dcn > 0 and abs(dcn / shard - 1) < 0.25
    assert summary.collectives["send"].by_axis.keys() == {"data"}
    print(f"\nDCN bytes sent per device per step {dcn:.4e} (gradient shard in bf16 {shard:.4e})")
