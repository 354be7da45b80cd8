"""End to end: the true per-step, per-device cost in the report against hand counts (docs/cost.md).

Compiles on v5p-8 (fsdp = 4), both paths, scanned and unscanned: the tiny model and a
smaller llama shape (llama2-7b's blocks at d=1024, 2 layers, vocab 32000, S=512). Needs libtpu.

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
  norm's gradient needs its value. So + 2*(N_layers - N_wo)*T, i.e. ~7.6*N*T for tiny, not 8;
- attention scores and values: 2 matmuls of 2*B*S*S*H*k each per layer forward (XLA
  computes the full square; the causal mask is a select), times 4 (forward, recompute,
  2x backward).

This matches the counted dot/convolution FLOPs exactly for tiny (and llama2-7b: 1.1060e14
counted vs 1.1060e14 by this formula). Elementwise work (norms, rope, softmax, Adam) adds
~7% for tiny, whose dimensions are small, and well under 5% from d=1024 up.

Analytic FSDP traffic (fsdp = n devices, bf16 compute weights, wire bytes as in
aotcheck._collectives): every parameter is all-gathered once in the forward and the layer
weights again for the rematerialised backward, (n-1)/n * 2 bytes * (N + N_layers); the
gradients are all-reduced in bf16 over fsdp, 2*(n-1)/n * 2 bytes * N.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from aotcheck._cli import app
from aotcheck._pipeline import Request, build_report
from aotcheck._report import Report
from aotcheck._topology import libtpu_available

pytestmark = pytest.mark.skipif(not libtpu_available(), reason="needs libtpu for TPU HLO")


@dataclass(frozen=True)
class Shape:
    """A decoder's dimensions (see the module docstring) and how to ask aotcheck for it."""

    model: str
    overrides: tuple[str, ...]
    d: int
    h: int
    hkv: int
    k: int
    m: int
    layers: int
    vocab: int
    s: int
    b: int  # sequences per device
    total_over_matmul: tuple[float, float]  # elementwise work on top of the matmuls: bounds of the ratio

    @property
    def n_layer_mm(self) -> int:
        return self.layers * (self.d * self.h * self.k + 2 * self.d * self.hkv * self.k + self.h * self.k * self.d
                              + 3 * self.d * self.m)

    def analytic_matmul_flops_per_device(self) -> float:
        tokens = self.b * self.s
        n_mm = self.n_layer_mm + self.d * self.vocab
        n_wo = self.layers * self.m * self.d
        matmuls = 6 * n_mm * tokens + 2 * (self.n_layer_mm - n_wo) * tokens
        attention = 4 * self.layers * 2 * (2 * self.b * self.s * self.s * self.h * self.k)
        return float(matmuls + attention)


TINY = Shape("tiny", (), 256, 8, 4, 32, 512, 4, 1024, 128, 2, (1.0, 1.10))  # configs/models/tiny.yml
SMALL_LLAMA = Shape("llama2-7b", ("base_emb_dim=1024", "base_num_query_heads=8", "base_num_kv_heads=8",
                                  "base_mlp_dim=2816", "base_num_decoder_layers=2", "max_target_length=512",
                                  "per_device_batch_size=1"), 1024, 8, 8, 128, 2816, 2, 32000, 512, 1, (1.0, 1.05))
N_ALL = 2_885_888  # tiny's parameter count, as the report gives it
N_LAYERS_ALL = TINY.n_layer_mm + TINY.layers * 2 * TINY.d

_built: dict[tuple[str, str, bool, int], Report] = {}


def _report(shape: Shape, path: str, scanned: bool = True, num_slices: int = 1) -> Report:
    key = (shape.model, path, scanned, num_slices)
    if key not in _built:
        overrides = shape.overrides + (() if scanned else ("scan_layers=false",))
        _built[key] = build_report(Request(topology="v5p-8", num_slices=num_slices, model=shape.model,
                                           overrides=overrides, pure_nnx=path == "nnx", drift=False))
    return _built[key]


@pytest.mark.parametrize("path", ["linen", "nnx"])
@pytest.mark.parametrize("shape", [TINY, SMALL_LLAMA], ids=["tiny", "small-llama"])
def test_scanned_and_unscanned_agree_with_the_hand_count(shape: Shape, path: str) -> None:
    scan, unscan = _report(shape, path).compile, _report(shape, path, scanned=False).compile
    assert scan is not None and unscan is not None and scan.per_step is not None and unscan.per_step is not None
    analytic = shape.analytic_matmul_flops_per_device()
    assert abs(scan.per_step.flops / unscan.per_step.flops - 1) < 0.02
    for per_step in (scan.per_step, unscan.per_step):
        assert abs(per_step.matmul_flops / analytic - 1) < 0.02
        low, high = shape.total_over_matmul
        assert low < per_step.flops / analytic < high
    # XLA's own figure counts the scanned body once: below the per-step count by (L-1) layers' work.
    assert scan.xla_cost is not None and scan.xla_cost.flops is not None
    assert scan.xla_cost.flops < 0.95 * scan.per_step.flops
    assert scan.estimate is not None and scan.estimate.step_seconds > 0 and scan.estimate.mfu
    timings = _report(shape, path).timings
    print(f"\n{shape.model} {path}: per-step FLOPs scanned {scan.per_step.flops:.4e} unscanned "
          f"{unscan.per_step.flops:.4e}, matmul {scan.per_step.matmul_flops:.4e}, analytic matmul {analytic:.4e}; "
          f"analysis {timings.get('analysis_seconds', 0):.2f}s of compile {timings.get('compile_seconds', 0):.2f}s")


@pytest.mark.slow
def test_long_sequence_softmax_is_counted_as_a_reduction() -> None:
    # At sequence 8192 the TPU compiler prints the softmax's row max as a reduce-window
    # spanning the row; counted per output element it made this step 215 TFLOPs, not 4.
    long = Shape("tiny", ("max_target_length=8192", "per_device_batch_size=1"), 256, 8, 4, 32, 512, 4, 1024,
                 8192, 1, (1.0, 1.10))
    compiled = build_report(Request(topology="v5e-1", model="tiny", overrides=long.overrides, drift=False)).compile
    assert compiled is not None and compiled.per_step is not None
    low, high = long.total_over_matmul
    assert low < compiled.per_step.flops / long.analytic_matmul_flops_per_device() < high


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_fsdp_traffic_matches_parameter_traffic(path: str) -> None:
    c = _report(TINY, path).compile
    assert c is not None
    n = 4
    gather = (n - 1) / n * 2 * (N_ALL + N_LAYERS_ALL)
    reduce = 2 * (n - 1) / n * 2 * N_ALL
    measured = c.collectives["all-gather"].bytes + c.collectives["all-reduce"].bytes
    assert set(c.collectives["all-gather"].by_axis) == {"fsdp"}
    assert abs(measured / (gather + reduce) - 1) < 0.10
    assert set(c.estimate.communication_seconds if c.estimate else {}) == {"fsdp"}


@pytest.mark.parametrize("path", ["linen", "nnx"])
def test_two_slices_show_dcn_bytes_in_the_cli_output(path: str) -> None:
    flag = "--pure-nnx" if path == "nnx" else "--linen"
    result = CliRunner().invoke(app, ["compile", "-t", "v5p-8", "--num-slices", "2", "--model", "tiny", flag,
                                      "-f", "json", "--no-drift"])
    assert result.exit_code == 0, result.output
    c = json.loads(result.stdout)["compile"]
    # Gradients cross DCN once per step in bf16, each device its 1/fsdp shard.
    shard = 2 * N_ALL / 4
    assert c["collectives"]["send"]["by_axis"].keys() == {"data"}
    assert abs(c["collectives"]["send"]["dcn_bytes"] / shard - 1) < 0.25
    assert c["estimate"]["communication_seconds"]["dcn"] > 0


def test_the_summary_shows_the_cost_and_the_memory_picture() -> None:
    result = CliRunner().invoke(app, ["compile", "-t", "v5p-8", "--model", "tiny", "--memory-detail", "3",
                                      "--activations", "--no-drift"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "per step per device: FLOPs " in out and "(XLA's cost analysis " in out
    assert "collectives per step per device (wire bytes, by mesh axis):" in out and "(fsdp " in out
    assert "estimate (v5p roofline, docs/cost.md): step " in out and "MFU " in out
    assert "of usable 95.74 GiB (spec 95.00 GiB)" in out
    assert "largest at the peak" in out and "activations: " in out
    markdown = CliRunner().invoke(app, ["compile", "-t", "v5p-8", "--model", "tiny", "-f", "markdown", "--no-drift",
                                        "--memory-detail", "3"])
    assert "- HBM by kind: `[" in markdown.stdout and "| source | buffers | bytes | share |" in markdown.stdout


def test_memory_detail_and_activations_in_the_report() -> None:
    report = build_report(Request(topology="v5p-8", model="tiny", drift=False, memory_detail=5, activations=True))
    c = report.compile
    assert c is not None and c.memory_detail is not None and c.activations
    d = c.memory_detail
    assert len(d.groups) == 5 and d.groups[0].bytes >= d.groups[-1].bytes
    assert 0 < sum(g.share for g in d.groups) <= 1.0 + 1e-6
    assert d.peak_bytes <= c.needed_bytes_per_device
    # The decoder constrains its activations to the batch on fsdp.
    assert any(a.partition_spec == ("fsdp",) and a.shape[0] == 8 for a in c.activations)
    assert all(a.name and not a.name.startswith("jit(") for a in c.activations)
