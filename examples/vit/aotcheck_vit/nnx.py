"""The ViT in `flax.nnx`, with the Linen version's parameter tree and annotations."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from aotcheck_vit import ops

_INIT = jax.nn.initializers.lecun_normal()


def _logical(rngs: nnx.Rngs, init: Any, shape: tuple[int, ...], names: tuple[str | None, ...]) -> nnx.Param:
    return nnx.Param(init(rngs.params(), shape), out_sharding=names)


def _mesh_named(rngs: nnx.Rngs, init: Any, shape: tuple[int, ...], axes: tuple[str | None, ...]) -> nnx.Param:
    return nnx.Param(nnx.with_partitioning(init, axes)(rngs.params(), shape))


class Block(nnx.Module):
    def __init__(self, config: Any, rngs: nnx.Rngs):
        c = config
        d, h, k = c.hidden_dim, c.num_heads, c.hidden_dim // c.num_heads
        attn_axes = ("vit_embed", "vit_heads", "vit_head_dim")
        self.query = _logical(rngs, _INIT, (d, h, k), attn_axes)
        self.key = _logical(rngs, _INIT, (d, h, k), attn_axes)
        self.value = _logical(rngs, _INIT, (d, h, k), attn_axes)
        self.out = _logical(rngs, _INIT, (h, k, d), ("vit_heads", "vit_head_dim", "vit_embed"))
        self.norm1 = _logical(rngs, jax.nn.initializers.ones, (d,), ("vit_embed",))
        self.norm2 = _logical(rngs, jax.nn.initializers.ones, (d,), ("vit_embed",))
        self.wi = _mesh_named(rngs, _INIT, (d, c.mlp_dim), ("fsdp", "tensor"))
        self.bi = _mesh_named(rngs, jax.nn.initializers.zeros, (c.mlp_dim,), ("tensor",))
        self.wo = _mesh_named(rngs, _INIT, (c.mlp_dim, d), ("tensor", "fsdp"))
        self.bo = _mesh_named(rngs, jax.nn.initializers.zeros, (d,), ("fsdp",))
        # The step passes the dropout keys (as Linen's `rngs=` does), so the model holds none.
        self.dropout = nnx.Dropout(c.dropout_rate, deterministic=not c.train)

    def __call__(self, x: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        y = ops.attention(ops.layer_norm(x, self.norm1[...]), self.query[...], self.key[...], self.value[...], self.out[...])
        x = x + self.dropout(y, rngs=rngs)
        h = ops.mlp(ops.layer_norm(x, self.norm2[...]), self.wi[...], self.bi[...], self.wo[...], self.bo[...])
        return x + self.dropout(h, rngs=rngs)


class ViT(nnx.Module):
    def __init__(self, config: Any, mesh: Any, *, rngs: nnx.Rngs):
        c = self.config = config
        self.mesh = mesh
        tokens = (c.image_size // c.patch_size) ** 2
        self.patch_embed = _logical(rngs, _INIT, (c.patch_size * c.patch_size * 3, c.hidden_dim), (None, "vit_embed"))
        self.pos_embedding = _mesh_named(rngs, jax.nn.initializers.normal(0.02), (tokens, c.hidden_dim), (None, "fsdp"))
        for i in range(c.num_layers):
            setattr(self, f"block_{i}", Block(c, rngs))
        self.norm = _logical(rngs, jax.nn.initializers.ones, (c.hidden_dim,), ("vit_embed",))
        self.head = _mesh_named(rngs, _INIT, (c.hidden_dim, c.num_classes), ("fsdp", None))
        self.head_bias = nnx.Param(jnp.zeros((c.num_classes,)))

    def __call__(self, images: jax.Array, rngs: nnx.Rngs | None = None) -> jax.Array:
        c = self.config
        x = nn.with_logical_constraint(ops.patchify(images, c.patch_size) @ self.patch_embed[...] + self.pos_embedding[...], ops.TOKENS)
        for i in range(c.num_layers):
            x = getattr(self, f"block_{i}")(x, rngs)
        pooled = ops.layer_norm(x, self.norm[...]).mean(axis=1)
        pooled = jax.lax.with_sharding_constraint(pooled, NamedSharding(self.mesh, PartitionSpec(("data", "fsdp"))))
        return (pooled @ self.head[...] + self.head_bias[...]).astype(jnp.float32)
