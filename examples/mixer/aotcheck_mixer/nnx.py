"""The Mixer in `flax.nnx`, with the Linen version's parameter tree (logical axes in `out_sharding`)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import nnx

from aotcheck import RunConfig
from aotcheck_mixer import ops

_INIT = jax.nn.initializers.lecun_normal()
_ZEROS = jax.nn.initializers.zeros
_ONES = jax.nn.initializers.ones


def _param(cfg: RunConfig, rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], init: Any = _INIT) -> nnx.Param:
    return nnx.Param(init(rngs.params(), shape, jnp.dtype(cfg.core.weight_dtype)), out_sharding=axes)


class Dense(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs, features_in: int, features: int, axes: tuple[str, str]):
        self.kernel = _param(cfg, rngs, (features_in, features), axes)
        self.bias = _param(cfg, rngs, (features,), axes[1:], _ZEROS)

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.dense(x, self.kernel[...], self.bias[...])


class Mlp(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs, features: int, hidden: int, axes: tuple[str, str]):
        io, mid = axes
        self.wi = _param(cfg, rngs, (features, hidden), (io, mid))
        self.bi = _param(cfg, rngs, (hidden,), (mid,), _ZEROS)
        self.wo = _param(cfg, rngs, (hidden, features), (mid, io))
        self.bo = _param(cfg, rngs, (features,), (io,), _ZEROS)

    def __call__(self) -> ops.Arrays:
        return self.wi[...], self.bi[...], self.wo[...], self.bo[...]


class Norm(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs, features: int):
        self.scale = _param(cfg, rngs, (features,), ("hidden",), _ONES)
        self.bias = _param(cfg, rngs, (features,), ("hidden",), _ZEROS)

    def __call__(self) -> ops.Arrays:
        return self.scale[...], self.bias[...]


class Block(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs, patches: int):
        m = cfg.model
        self.token_norm = Norm(cfg, rngs, m.hidden_dim)
        self.token_mixing = Mlp(cfg, rngs, patches, m.tokens_mlp_dim, ("patch", "token_mlp"))
        self.channel_norm = Norm(cfg, rngs, m.hidden_dim)
        self.channel_mixing = Mlp(cfg, rngs, m.hidden_dim, m.channels_mlp_dim, ("hidden", "channel_mlp"))

    def __call__(self, x: jax.Array) -> jax.Array:
        return ops.mixer_block(x, self.token_norm(), self.token_mixing(), self.channel_norm(), self.channel_mixing())


class Mixer(nnx.Module):
    def __init__(self, cfg: RunConfig, rngs: nnx.Rngs):
        m = cfg.model
        self.cfg = cfg
        patches = (m.image_size // m.patch_size) ** 2
        self.stem = Dense(cfg, rngs, m.patch_size * m.patch_size * 3, m.hidden_dim, ("pixel", "hidden"))
        # Named attributes, not a list, so the tree reads `block_0/...` exactly as Linen's does.
        for i in range(m.num_blocks):
            setattr(self, f"block_{i}", Block(cfg, rngs, patches))
        self.head_norm = Norm(cfg, rngs, m.hidden_dim)
        self.head = Dense(cfg, rngs, m.hidden_dim, m.num_classes, ("hidden", "classes"))

    def __call__(self, images: jax.Array) -> jax.Array:
        m = self.cfg.model
        x = ops.patchify(images.astype(jnp.dtype(self.cfg.core.dtype)), m.patch_size)
        x = nn.with_logical_constraint(self.stem(x), ops.ACTIVATIONS)
        for i in range(m.num_blocks):
            x = getattr(self, f"block_{i}")(x)
        x = ops.layer_norm(x, *self.head_norm())
        return self.head(x.mean(axis=1))
