"""Abstract train states: every built-in model, both paths, no weights allocated."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from aotcheck._pipeline import Request, build_report

MODELS = ["tiny", "llama2-7b", "llama3-8b", "mistral-7b", "llama2-70b", "mixtral-8x7b"]
# Published parameter counts of the models (the tiny one is ours).
PARAMETERS = {
    "llama2-7b": 6_738_415_616,
    "llama3-8b": 8_030_261_248,
    "mistral-7b": 7_241_732_096,
    "llama2-70b": 68_976_648_192,
    "mixtral-8x7b": 46_702_792_704,
}


def canonical(path: str) -> str:
    """Linen and NNX spell the same leaf differently; this is the mapping the diff uses, inlined."""
    path = re.sub(r"/value$", "", path)
    path = re.sub(r"^model/", "params/", path)
    path = re.sub(r"^optimizer/opt_state/", "opt_state/", path)
    path = re.sub(r"^optimizer/step$", "step", path)
    return re.sub(r"^(opt_state/\d+/(?:mu|nu))/", r"\1/", path)


@pytest.mark.parametrize("model", MODELS)
def test_linen_and_nnx_states_have_the_same_leaves(model: str) -> None:
    request = Request(model=model, topology="v5p-128", compile=False)
    linen = build_report(request.with_path("linen"))
    nnx = build_report(request.with_path("nnx"))
    lin = dict(linen.leaves)
    nnx_leaves = {canonical(p): leaf for p, leaf in nnx.items()}
    assert set(lin) == set(nnx_leaves)
    for path, a in lin.items():
        b = nnx_leaves[path]
        same_dtype = a.dtype == b.dtype or (path == "step" and (a.dtype, b.dtype) == ("int32", "uint32"))
        assert same_dtype, path
        assert (a.shape, a.logical_axes, a.partition_spec, a.shard_shape) == (b.shape, b.logical_axes, b.partition_spec, b.shard_shape), path
    if model in PARAMETERS:
        assert linen.totals.parameters == nnx.totals.parameters == PARAMETERS[model]


def test_maxtext_parameter_tree_of_llama2() -> None:
    report = build_report(Request(model="llama2-7b", topology="v5p-128", compile=False))
    leaves = {p: leaf for p, leaf in report.items() if leaf.role == "param"}
    expected = {
        "params/token_embedder/embedding": ((32000, 4096), ("vocab", "embed_vocab")),
        "params/decoder/layers/self_attention/query/kernel": ((4096, 32, 32, 128), ("embed", "layers", "q_heads", "kv")),
        "params/decoder/layers/self_attention/key/kernel": ((4096, 32, 32, 128), ("embed", "layers", "kv_heads", "kv_head_dim")),
        "params/decoder/layers/self_attention/value/kernel": ((4096, 32, 32, 128), ("embed", "layers", "kv_heads", "kv_head_dim")),
        "params/decoder/layers/self_attention/out/kernel": ((32, 32, 128, 4096), ("heads", "layers", "kv", "embed")),
        "params/decoder/layers/mlp/wi_0/kernel": ((4096, 32, 11008), ("embed", "layers", "mlp")),
        "params/decoder/layers/mlp/wi_1/kernel": ((4096, 32, 11008), ("embed", "layers", "mlp")),
        "params/decoder/layers/mlp/wo/kernel": ((11008, 32, 4096), ("mlp", "layers", "embed")),
        "params/decoder/layers/pre_self_attention_layer_norm/scale": ((4096, 32), ("norm", "layers")),
        "params/decoder/layers/post_self_attention_layer_norm/scale": ((4096, 32), ("norm", "layers")),
        "params/decoder/decoder_norm/scale": ((4096,), ("norm",)),
        "params/decoder/logits_dense/kernel": ((4096, 32000), ("embed_vocab", "vocab")),
    }
    assert {p: (leaf.shape, leaf.logical_axes) for p, leaf in leaves.items()} == expected
    # llama2's model file puts `norm` on fsdp ahead of the base rule (`norm` -> tensor).
    assert leaves["params/decoder/decoder_norm/scale"].partition_spec == ("fsdp",)


def test_mixtral_experts_shard_on_the_expert_axis() -> None:
    report = build_report(
        Request(model="mixtral-8x7b", topology="v5p-128", compile=False, overrides=("ici_expert_parallelism=4",))
    )
    wi = report.leaves["params/decoder/layers/MoeBlock_0/wi_0"]
    assert wi.logical_axes == ("exp", "layers", "embed_moe", "mlp_moe")
    assert wi.partition_spec == ("expert", None, "fsdp") and wi.shard_shape == (2, 32, 256, 14336)
    assert report.mesh_shape["expert"] == 4 and report.mesh_shape["fsdp"] == 16


def test_unscanned_layers_are_numbered_per_path() -> None:
    request = Request(topology="v5p-8", compile=False, overrides=("scan_layers=false",))
    linen = set(build_report(request.with_path("linen")).leaves)
    nnx = set(build_report(request.with_path("nnx")).leaves)
    assert "params/decoder/layers_3/mlp/wo/kernel" in linen
    assert "model/decoder/layers/3/mlp/wo/kernel/value" in nnx


def test_abstract_state_of_a_70b_model_costs_no_weight_memory() -> None:
    # 69e9 parameters with AdamW would be ~830 GB if allocated; the abstract state is kilobytes.
    code = (
        "import re, aotcheck; aotcheck.setup_libtpu_env()\n"
        "from aotcheck._pipeline import Request, build_report\n"
        "r = build_report(Request(model='llama2-70b', topology='v5p-128', compile=False, pure_nnx=True))\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec, so a child of a big
        # pytest process would report the parent's high-water mark.
        "print(r.totals.parameters, re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) == 68_976_648_192
    assert int(out[1]) < 1024 * 1024  # kilobytes: under 1 GiB of RSS


def test_compiled_tiny_model_on_every_family_of_slice() -> None:
    for topology in ("v5e-16", "v6e-8", "tpu7x-16", "v4-8"):
        report = build_report(Request(topology=topology))
        assert report.compile is not None and report.compile.fits, topology
        assert report.header.topology.devices == {"v5e-16": 16, "v6e-8": 8, "tpu7x-16": 16, "v4-8": 4}[topology]
