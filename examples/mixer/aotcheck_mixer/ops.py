"""The Mixer's math on plain arrays, shared by the Linen and NNX modules so both compute the same step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

# Activations [batch, patch, hidden]: batch over the data axes, hidden as the base rules say.
ACTIVATIONS = ("activation_batch", None, "activation_embed")
Arrays = tuple[jax.Array, ...]


def patchify(images: jax.Array, patch: int) -> jax.Array:
    """[B, H, W, C] -> [B, (H/p)*(W/p), p*p*C]: a stride-p convolution's input, as a matmul's."""
    b, h, w, c = images.shape
    x = images.reshape(b, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // patch) * (w // patch), patch * patch * c)


def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    return x @ kernel.astype(x.dtype) + bias.astype(x.dtype)


def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array, eps: float = 1e-6) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    y = (x32 - mean) * jax.lax.rsqrt(var + eps) * scale + bias
    return y.astype(x.dtype)


def mlp(x: jax.Array, wi: jax.Array, bi: jax.Array, wo: jax.Array, bo: jax.Array) -> jax.Array:
    return dense(jax.nn.gelu(dense(x, wi, bi)), wo, bo)


def mixer_block(
    x: jax.Array, token_norm: Arrays, token_mlp: Arrays, channel_norm: Arrays, channel_mlp: Arrays
) -> jax.Array:
    """Mix across patches (on the transposed activations), then across channels; both residual."""
    y = layer_norm(x, *token_norm).swapaxes(1, 2)
    x = x + mlp(y, *token_mlp).swapaxes(1, 2)
    x = x + mlp(layer_norm(x, *channel_norm), *channel_mlp)
    return nn.with_logical_constraint(x, ACTIVATIONS)
