"""The ViT in `flax.linen`: logical names for attention, mesh axis names for the MLP and head."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec

from aotcheck_vit import ops

_INIT = nn.initializers.lecun_normal()


class Block(nn.Module):
    config: Any

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        d, h, k = c.hidden_dim, c.num_heads, c.hidden_dim // c.num_heads
        attn_axes = ("vit_embed", "vit_heads", "vit_head_dim")
        q, kk, v = (self.param(n, nn.with_logical_partitioning(_INIT, attn_axes), (d, h, k)) for n in ("query", "key", "value"))
        o = self.param("out", nn.with_logical_partitioning(_INIT, ("vit_heads", "vit_head_dim", "vit_embed")), (h, k, d))
        norm1 = self.param("norm1", nn.with_logical_partitioning(nn.initializers.ones, ("vit_embed",)), (d,))
        norm2 = self.param("norm2", nn.with_logical_partitioning(nn.initializers.ones, ("vit_embed",)), (d,))
        wi = self.param("wi", nn.with_partitioning(_INIT, ("fsdp", "tensor")), (d, c.mlp_dim))
        bi = self.param("bi", nn.with_partitioning(nn.initializers.zeros, ("tensor",)), (c.mlp_dim,))
        wo = self.param("wo", nn.with_partitioning(_INIT, ("tensor", "fsdp")), (c.mlp_dim, d))
        bo = self.param("bo", nn.with_partitioning(nn.initializers.zeros, ("fsdp",)), (d,))
        drop = nn.Dropout(c.dropout_rate, deterministic=not c.train)
        x = x + drop(ops.attention(ops.layer_norm(x, norm1), q, kk, v, o))
        return x + drop(ops.mlp(ops.layer_norm(x, norm2), wi, bi, wo, bo))


class ViT(nn.Module):
    config: Any
    mesh: Any  # the run's mesh, as MaxText-style constructors take it

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        c = self.config
        tokens = (c.image_size // c.patch_size) ** 2
        patch = self.param("patch_embed", nn.with_logical_partitioning(_INIT, (None, "vit_embed")),
                           (c.patch_size * c.patch_size * 3, c.hidden_dim))
        pos = self.param("pos_embedding", nn.with_partitioning(nn.initializers.normal(0.02), (None, "fsdp")), (tokens, c.hidden_dim))
        x = nn.with_logical_constraint(ops.patchify(images, c.patch_size) @ patch + pos, ops.TOKENS)
        for i in range(c.num_layers):
            x = Block(c, name=f"block_{i}")(x)
        norm = self.param("norm", nn.with_logical_partitioning(nn.initializers.ones, ("vit_embed",)), (c.hidden_dim,))
        pooled = ops.layer_norm(x, norm).mean(axis=1)
        pooled = jax.lax.with_sharding_constraint(pooled, NamedSharding(self.mesh, PartitionSpec(("data", "fsdp"))))
        head = self.param("head", nn.with_partitioning(_INIT, ("fsdp", None)), (c.hidden_dim, c.num_classes))
        head_bias = self.param("head_bias", nn.initializers.zeros, (c.num_classes,))
        return (pooled @ head + head_bias).astype(jnp.float32)
