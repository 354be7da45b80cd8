"""The decoder in `flax.linen`. Parameters carry logical axes via `nn.with_logical_partitioning`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

import aotcheck.models.decoder.ops as ops
from aotcheck import RunConfig

_INIT = nn.initializers.normal(stddev=0.02)


class _Layer(nn.Module):
    cfg: RunConfig

    def _param(self, name: str, shape: tuple[int, ...], axes: tuple[str | None, ...], init: Any = _INIT) -> Any:
        return self.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(self.cfg.core.weight_dtype))


class RMSNorm(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self._param("scale", (x.shape[-1],), ("norm",), nn.initializers.ones)
        m = self.cfg.model
        return ops.rms_norm(x, scale, m.normalization_layer_epsilon, jnp.dtype(self.cfg.core.dtype))


class Dense(_Layer):
    """A bare kernel, as MaxText's DenseGeneral stores it (`<name>/kernel`)."""

    shape: tuple[int, ...] = ()
    axes: tuple[str | None, ...] = ()

    @nn.compact
    def __call__(self) -> jax.Array:
        return self._param("kernel", self.shape, self.axes)


class Attention(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array) -> jax.Array:
        m = self.cfg.model
        d, q_heads, kv_heads, hd = m.base_emb_dim, m.base_num_query_heads, m.base_num_kv_heads, m.head_dim
        return ops.attention(
            x,
            positions,
            Dense(self.cfg, (d, q_heads, hd), ("embed", "q_heads", "kv"), name="query")(),
            Dense(self.cfg, (d, kv_heads, hd), ("embed", "kv_heads", "kv_head_dim"), name="key")(),
            Dense(self.cfg, (d, kv_heads, hd), ("embed", "kv_heads", "kv_head_dim"), name="value")(),
            Dense(self.cfg, (q_heads, hd, d), ("heads", "kv", "embed"), name="out")(),
            max_timescale=m.rope_max_timescale,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class MLP(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        m = self.cfg.model
        d, f = m.base_emb_dim, m.base_mlp_dim
        return ops.gated_mlp(
            x,
            Dense(self.cfg, (d, f), ("embed", "mlp"), name="wi_0")(),
            Dense(self.cfg, (d, f), ("embed", "mlp"), name="wi_1")(),
            Dense(self.cfg, (f, d), ("mlp", "embed"), name="wo")(),
            activations=m.mlp_activations,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class MoeBlock(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        m = self.cfg.model
        d, f, e = m.base_emb_dim, m.base_mlp_dim, m.num_experts
        return ops.routed_experts(
            x,
            Dense(self.cfg, (d, e), ("embed", None), name="gate")(),
            self._param("wi_0", (e, d, f), ("exp", "embed_moe", "mlp_moe")),
            self._param("wi_1", (e, d, f), ("exp", "embed_moe", "mlp_moe")),
            self._param("wo", (e, f, d), ("exp", "mlp_moe", "embed_moe")),
            top_k=m.num_experts_per_tok,
            capacity_factor=m.capacity_factor,
            activations=m.mlp_activations,
            dtype=jnp.dtype(self.cfg.core.dtype),
        )


class DecoderLayer(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, None]:
        h = RMSNorm(self.cfg, name="pre_self_attention_layer_norm")(x)
        x = x + Attention(self.cfg, name="self_attention")(h, positions)
        h = RMSNorm(self.cfg, name="post_self_attention_layer_norm")(x)
        if self.cfg.model.num_experts > 1:
            x = x + MoeBlock(self.cfg, name="MoeBlock_0")(h)
        else:
            x = x + MLP(self.cfg, name="mlp")(h)
        return nn.with_logical_constraint(x, ops.BATCH_LENGTH_EMBED), None


class Decoder(_Layer):
    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, embedding: jax.Array) -> jax.Array:
        core, m = self.cfg.core, self.cfg.model
        layer = DecoderLayer
        if core.remat_policy != "none":
            layer = nn.remat(layer, policy=ops.remat_policy(core.remat_policy), prevent_cse=not core.scan_layers)
        if core.scan_layers:
            stack = nn.scan(
                layer,
                variable_axes={"params": 1},
                split_rngs={"params": True},
                in_axes=(nn.broadcast,),
                length=m.base_num_decoder_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            x, _ = stack(self.cfg, name="layers")(x, positions)
        else:
            for i in range(m.base_num_decoder_layers):
                x, _ = layer(self.cfg, name=f"layers_{i}")(x, positions)
        x = RMSNorm(self.cfg, name="decoder_norm")(x)
        if m.logits_via_embedding:
            kernel = embedding.T
        else:
            kernel = Dense(self.cfg, (m.base_emb_dim, m.vocab_size), ("embed_vocab", "vocab"), name="logits_dense")()
        return ops.logits(x, kernel, jnp.dtype(core.dtype))


class Embedder(_Layer):
    @nn.compact
    def __call__(self) -> jax.Array:
        m = self.cfg.model
        return self._param("embedding", (m.vocab_size, m.base_emb_dim), ("vocab", "embed_vocab"))


class Transformer(_Layer):
    @nn.compact
    def __call__(self, tokens: jax.Array) -> jax.Array:
        table = Embedder(self.cfg, name="token_embedder")()
        x = ops.embed(tokens, table, jnp.dtype(self.cfg.core.dtype))
        positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        return Decoder(self.cfg, name="decoder")(x, positions, table)
