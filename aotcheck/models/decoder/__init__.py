"""The built-in decoder-only transformer (Llama 2/3, Mistral, Mixtral), in Linen and in NNX.

Its parameter tree matches MaxText's llama2-family decoder: the same names, kernel shapes,
logical axis names and, when scanning, the stacked `layers` axis at position 1 (MaxText's
`param_scan_axis`), so that MaxText sharding goldens line up with aotcheck's.
"""

from __future__ import annotations

from typing import Any, Literal

import pydantic

from aotcheck import ModelSpec, RunConfig


class DecoderFields(pydantic.BaseModel):
    """The decoder's own settings, with MaxText's key names."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    decoder_block: Literal["llama2", "mistral", "mixtral"] = "llama2"
    base_emb_dim: int = pydantic.Field(2048, gt=0)
    base_num_query_heads: int = pydantic.Field(16, gt=0)
    base_num_kv_heads: int = pydantic.Field(16, gt=0)
    base_mlp_dim: int = pydantic.Field(7168, gt=0)
    base_num_decoder_layers: int = pydantic.Field(16, gt=0)
    head_dim: int = pydantic.Field(128, gt=0)
    vocab_size: int = pydantic.Field(32000, gt=0)
    mlp_activations: tuple[str, str] = ("silu", "linear")
    num_experts: int = pydantic.Field(1, gt=0)
    num_experts_per_tok: int = pydantic.Field(1, gt=0)
    capacity_factor: float = pydantic.Field(1.0, gt=0)
    rope_max_timescale: float = pydantic.Field(10_000.0, gt=0)
    normalization_layer_epsilon: float = pydantic.Field(1e-5, gt=0)
    logits_via_embedding: bool = False

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> DecoderFields:
        if self.base_num_query_heads % self.base_num_kv_heads:
            raise ValueError(
                f"base_num_query_heads={self.base_num_query_heads} must be a multiple of "
                f"base_num_kv_heads={self.base_num_kv_heads}"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(f"num_experts_per_tok={self.num_experts_per_tok} exceeds num_experts={self.num_experts}")
        for name in self.mlp_activations:
            if name != "linear" and name not in ("silu", "gelu", "relu"):
                raise ValueError(f"mlp activation '{name}' is not one of silu, gelu, relu, linear")
        return self


def _linen(cfg: RunConfig) -> Any:
    from aotcheck.models.decoder.linen import Transformer

    return Transformer(cfg)


def _nnx(cfg: RunConfig, rngs: Any) -> Any:
    from aotcheck.models.decoder.nnx import Transformer

    return Transformer(cfg, rngs)


DECODER = ModelSpec(
    name="decoder",
    linen=_linen,
    nnx=_nnx,
    config=DecoderFields,
    description="decoder-only transformer, MaxText llama2-family parameter tree",
)
