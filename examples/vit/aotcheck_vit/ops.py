"""The ViT's math on plain arrays, shared by the Linen and NNX modules so both compute the same step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

TOKENS = ("activation_batch", None, "activation_embed")


def patchify(images: jax.Array, patch: int) -> jax.Array:
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def layer_norm(x: jax.Array, scale: jax.Array) -> jax.Array:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-6) * scale


def attention(x: jax.Array, q: jax.Array, k: jax.Array, v: jax.Array, o: jax.Array) -> jax.Array:
    queries = nn.with_logical_constraint(jnp.einsum("btd,dhk->bthk", x, q), ("activation_batch", None, "activation_heads", None))
    keys = jnp.einsum("btd,dhk->bthk", x, k)
    values = jnp.einsum("btd,dhk->bthk", x, v)
    weights = jax.nn.softmax(jnp.einsum("bqhk,bshk->bhqs", queries, keys) / jnp.sqrt(q.shape[-1]), axis=-1)
    y = jnp.einsum("bhqs,bshk->bqhk", weights, values)
    return nn.with_logical_constraint(jnp.einsum("bthk,hkd->btd", y, o), TOKENS)


def mlp(x: jax.Array, wi: jax.Array, bi: jax.Array, wo: jax.Array, bo: jax.Array) -> jax.Array:
    h = nn.with_logical_constraint(jax.nn.gelu(x @ wi + bi), ("activation_batch", None, "activation_mlp"))
    return nn.with_logical_constraint(h @ wo + bo, TOKENS)
