"""The decoder's arithmetic as pure functions of arrays, shared by the Linen and NNX modules.

Both paths call exactly these functions, so any difference aotcheck finds between them is
in the state (names, shapes, dtypes, annotations), never in the maths.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

BATCH_LENGTH_EMBED = ("activation_batch", "activation_length", "activation_embed")


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float, dtype: jnp.dtype) -> jax.Array:
    x32 = x.astype(jnp.float32)
    y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + epsilon)
    return (y * scale.astype(jnp.float32)).astype(dtype)


def rope(x: jax.Array, positions: jax.Array, max_timescale: float) -> jax.Array:
    """Rotary position embedding on [batch, length, heads, head_dim], rotate-half layout."""
    half = x.shape[-1] // 2
    freq = max_timescale ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angles = positions[:, :, None, None].astype(jnp.float32) * freq
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attention(
    x: jax.Array,
    positions: jax.Array,
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    out: jax.Array,
    *,
    max_timescale: float,
    dtype: jnp.dtype,
) -> jax.Array:
    """Causal grouped-query attention; kernels are [embed, heads, head_dim] and [heads, head_dim, embed]."""
    x = x.astype(dtype)
    q = jnp.einsum("bld,dhk->blhk", x, query.astype(dtype))
    k = jnp.einsum("bld,dhk->blhk", x, key.astype(dtype))
    v = jnp.einsum("bld,dhk->blhk", x, value.astype(dtype))
    q = nn.with_logical_constraint(rope(q, positions, max_timescale), ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
    k = nn.with_logical_constraint(rope(k, positions, max_timescale), ("activation_batch", "activation_length", "activation_kv_heads", "activation_kv"))
    v = nn.with_logical_constraint(v, ("activation_batch", "activation_length", "activation_kv_heads", "activation_kv"))
    y = jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
    y = nn.with_logical_constraint(y, ("activation_batch", "activation_length", "activation_heads", "activation_kv"))
    return nn.with_logical_constraint(jnp.einsum("blhk,hkd->bld", y, out.astype(dtype)), BATCH_LENGTH_EMBED)


def _activation(name: str, x: jax.Array) -> jax.Array:
    return x if name == "linear" else getattr(jax.nn, name)(x)


def gated_mlp(
    x: jax.Array, wi_0: jax.Array, wi_1: jax.Array, wo: jax.Array, *, activations: Sequence[str], dtype: jnp.dtype
) -> jax.Array:
    x = x.astype(dtype)
    h0 = _activation(activations[0], jnp.einsum("bld,dm->blm", x, wi_0.astype(dtype)))
    h1 = _activation(activations[1], jnp.einsum("bld,dm->blm", x, wi_1.astype(dtype)))
    h = nn.with_logical_constraint(h0 * h1, ("activation_batch", "activation_length", "activation_mlp"))
    return nn.with_logical_constraint(jnp.einsum("blm,md->bld", h, wo.astype(dtype)), BATCH_LENGTH_EMBED)


def routed_experts(
    x: jax.Array,
    gate: jax.Array,
    wi_0: jax.Array,
    wi_1: jax.Array,
    wo: jax.Array,
    *,
    top_k: int,
    capacity_factor: float,
    activations: Sequence[str],
    dtype: jnp.dtype,
) -> jax.Array:
    """Top-k routed experts with a fixed per-expert capacity (GShard-style dispatch).

    Capacity dispatch keeps the expert matmuls at the size of the tokens actually routed,
    so FLOPs and memory track a sparse MoE rather than running every expert on every token.
    """
    batch, length, _ = x.shape
    num_experts = gate.shape[-1]
    capacity = max(1, int(round(capacity_factor * length * top_k / num_experts)))
    x = x.astype(dtype)
    probs = jax.nn.softmax(jnp.einsum("bld,de->ble", x, gate.astype(dtype)).astype(jnp.float32), axis=-1)
    weights, chosen = jax.lax.top_k(probs, top_k)
    weights = weights / jnp.sum(weights, axis=-1, keepdims=True)
    onehot = jax.nn.one_hot(chosen, num_experts, dtype=jnp.int32).reshape(batch, length * top_k, num_experts)
    slot = (jnp.cumsum(onehot, axis=1) - 1) * onehot
    kept = onehot * (slot < capacity)
    dispatch = (jax.nn.one_hot(slot, capacity, dtype=dtype) * kept[..., None].astype(dtype)).reshape(
        batch, length, top_k, num_experts, capacity
    )
    combine = jnp.einsum("blkec,blk->blec", dispatch, weights.astype(dtype))
    dispatch = jnp.sum(dispatch, axis=2)
    expert_axes = ("activation_batch_moe", "activation_exp", None, "activation_embed")
    routed = nn.with_logical_constraint(jnp.einsum("bld,blec->becd", x, dispatch), expert_axes)
    h0 = _activation(activations[0], jnp.einsum("becd,edm->becm", routed, wi_0.astype(dtype)))
    h1 = _activation(activations[1], jnp.einsum("becd,edm->becm", routed, wi_1.astype(dtype)))
    h = nn.with_logical_constraint(h0 * h1, ("activation_batch_moe", "activation_exp", None, "activation_mlp"))
    y = nn.with_logical_constraint(jnp.einsum("becm,emd->becd", h, wo.astype(dtype)), expert_axes)
    return nn.with_logical_constraint(jnp.einsum("becd,blec->bld", y, combine), BATCH_LENGTH_EMBED)


def embed(tokens: jax.Array, table: jax.Array, dtype: jnp.dtype) -> jax.Array:
    return nn.with_logical_constraint(jnp.take(table, tokens, axis=0).astype(dtype), BATCH_LENGTH_EMBED)


def logits(x: jax.Array, kernel: jax.Array, dtype: jnp.dtype) -> jax.Array:
    y = jnp.einsum("bld,dv->blv", x.astype(dtype), kernel.astype(dtype))
    return nn.with_logical_constraint(y, ("activation_embed_and_logits_batch", "activation_length", "activation_vocab"))


def remat_policy(name: str):  # noqa: ANN201 - returns a jax checkpoint policy or None
    """MaxText's remat policy names mapped to jax.checkpoint policies."""
    policies = jax.checkpoint_policies
    return {
        "full": policies.nothing_saveable,
        "minimal": policies.checkpoint_dots_with_no_batch_dims,
    }[name]
