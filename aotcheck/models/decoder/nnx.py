"""The decoder in `flax.nnx`, with the Linen version's parameter tree.

Parameters carry logical axes in `out_sharding` metadata. Scanned layers are created with
`nnx.vmap` (the stacked axis at position 1, named `layers`) and run with `nnx.scan`; both,
and `nnx.remat`, use `graph_updates=False`, which keeps the traced program identical to
Linen's `nn.scan`/`nn.remat` (with graph updates NNX threads extra loop values and the
memory figures drift).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

import aotcheck.models.decoder.ops as ops
from aotcheck import RunConfig

_INIT = jax.nn.initializers.normal(stddev=0.02)


def _param(cfg: RunConfig, rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...], init: Any = _INIT) -> nnx.Param:
    return nnx.Param(init(rngs.params(), shape, jnp.dtype(cfg.core.weight_dtype)), out_sharding=axes)


class RMSNorm(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.scale = _param(cfg, rngs, (cfg.model.base_emb_dim,), ("norm",), jax.nn.initializers.ones)

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.rms_norm(x, self.scale[...], self.cfg.model.normalization_layer_epsilon, jnp.dtype(self.cfg.core.dtype))


class Dense(nnx.Module):
    """A bare kernel, as MaxText's DenseGeneral stores it (`<name>/kernel`)."""

    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str | None, ...]):
        self.kernel = _param(cfg, rngs, shape, axes)


class Attention(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        m = cfg.model
        d, q_heads, kv_heads, hd = m.base_emb_dim, m.base_num_query_heads, m.base_num_kv_heads, m.head_dim
        self.cfg = cfg
        self.query = Dense(cfg, rngs, (d, q_heads, hd), ("embed", "q_heads", "kv"))
        self.key = Dense(cfg, rngs, (d, kv_heads, hd), ("embed", "kv_heads", "kv_head_dim"))
        self.value = Dense(cfg, rngs, (d, kv_heads, hd), ("embed", "kv_heads", "kv_head_dim"))
        self.out = Dense(cfg, rngs, (q_heads, hd, d), ("heads", "kv", "embed"))

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        return ops.attention(
            x,
            positions,
            self.query.kernel[...],
            self.key.kernel[...],
            self.value.kernel[...],
            self.out.kernel[...],
            max_timescale=self.cfg.model.rope_max_timescale,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class MLP(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        d, f = cfg.model.base_emb_dim, cfg.model.base_mlp_dim
        self.cfg = cfg
        self.wi_0 = Dense(cfg, rngs, (d, f), ("embed", "mlp"))
        self.wi_1 = Dense(cfg, rngs, (d, f), ("embed", "mlp"))
        self.wo = Dense(cfg, rngs, (f, d), ("mlp", "embed"))

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.gated_mlp(
            x,
            self.wi_0.kernel[...],
            self.wi_1.kernel[...],
            self.wo.kernel[...],
            activations=self.cfg.model.mlp_activations,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class MoeBlock(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        m = cfg.model
        d, f, e = m.base_emb_dim, m.base_mlp_dim, m.num_experts
        self.cfg = cfg
        self.gate = Dense(cfg, rngs, (d, e), ("embed", None))
        self.wi_0 = _param(cfg, rngs, (e, d, f), ("exp", "embed_moe", "mlp_moe"))
        self.wi_1 = _param(cfg, rngs, (e, d, f), ("exp", "embed_moe", "mlp_moe"))
        self.wo = _param(cfg, rngs, (e, f, d), ("exp", "mlp_moe", "embed_moe"))

    def __call__(self, x: jax.Array) -> jax.Array:
        m = self.cfg.model
        return ops.routed_experts(
            x,
            self.gate.kernel[...],
            self.wi_0[...],
            self.wi_1[...],
            self.wo[...],
            top_k=m.num_experts_per_tok,
            capacity_factor=m.capacity_factor,
            activations=m.mlp_activations,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class DecoderLayer(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        self.pre_self_attention_layer_norm = RMSNorm(cfg, rngs)
        self.self_attention = Attention(cfg, rngs)
        self.post_self_attention_layer_norm = RMSNorm(cfg, rngs)
        if cfg.model.num_experts > 1:
            self.MoeBlock_0 = MoeBlock(cfg, rngs)
        else:
            self.mlp = MLP(cfg, rngs)

    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        x = x + self.self_attention(self.pre_self_attention_layer_norm(x), positions)
        h = self.post_self_attention_layer_norm(x)
        x = x + (self.MoeBlock_0(h) if hasattr(self, "MoeBlock_0") else self.mlp(h))
        return nn.with_logical_constraint(x, ops.BATCH_LENGTH_EMBED)


class Decoder(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        m = cfg.model
        self.cfg = cfg
        if cfg.core.scan_layers:

            @nnx.split_rngs(splits=m.base_num_decoder_layers)
            @nnx.vmap(in_axes=0, out_axes=1, transform_metadata={nnx.PARTITION_NAME: "layers"})
            def stack(rngs: nnx.Rngs) -> DecoderLayer:
                return DecoderLayer(cfg, rngs)

            self.layers: Any = stack(rngs)
        else:
            self.layers = nnx.List([DecoderLayer(cfg, rngs) for _ in range(m.base_num_decoder_layers)])
        self.decoder_norm = RMSNorm(cfg, rngs)
        if not m.logits_via_embedding:
            self.logits_dense = Dense(cfg, rngs, (m.base_emb_dim, m.vocab_size), ("embed_vocab", "vocab"))

    def __call__(self, x: jax.Array, positions: jax.Array, embedding: jax.Array) -> jax.Array:
        core = self.cfg.core

        def body(layer: DecoderLayer, x: jax.Array) -> jax.Array:
            return layer(x, positions)

        if core.remat_policy != "none":
            body = nnx.remat(body, policy=ops.remat_policy(core.remat_policy), prevent_cse=not core.scan_layers, graph_updates=False)
        if core.scan_layers:
            scan = nnx.scan(
                lambda x, layer: (body(layer, x), None),
                in_axes=(nnx.Carry, 1),
                out_axes=(nnx.Carry, 0),
                transform_metadata={nnx.PARTITION_NAME: "layers"},
                graph_updates=False,
            )
            x, _ = scan(x, self.layers)
        else:
            for layer in self.layers:
                x = body(layer, x)
        x = self.decoder_norm(x)
        kernel = embedding.T if self.cfg.model.logits_via_embedding else self.logits_dense.kernel[...]
        return ops.logits(x, kernel, jnp.dtype(core.dtype))


class Embedder(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        m = cfg.model
        self.embedding = _param(cfg, rngs, (m.vocab_size, m.base_emb_dim), ("vocab", "embed_vocab"))


class Transformer(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        self.cfg = cfg
        self.token_embedder = Embedder(cfg, rngs)
        self.decoder = Decoder(cfg, rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        table = self.token_embedder.embedding[...]
        x = ops.embed(tokens, table, jnp.dtype(self.cfg.core.dtype))
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        return self.decoder(x, positions, table)
