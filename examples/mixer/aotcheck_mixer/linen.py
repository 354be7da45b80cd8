"""The Mixer in `flax.linen`. Parameters carry logical axes via `nn.with_logical_partitioning`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from aotcheck import RunConfig
from aotcheck_mixer import ops

_INIT = nn.initializers.lecun_normal()


class _Module(nn.Module):
    cfg: RunConfig

    def _param(self, name: str, shape: tuple[int, ...], axes: tuple[str, ...], init: Any = _INIT) -> jax.Array:
        return self.param(name, nn.with_logical_partitioning(init, axes), shape, jnp.dtype(self.cfg.core.weight_dtype))


class Dense(_Module):
    # Shapes come from the config, never from the input, as in the NNX version: a batch that
    # does not fit the model is then an error, not a different model.
    features_in: int
    features: int
    axes: tuple[str, str]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self._param("kernel", (self.features_in, self.features), self.axes)
        return ops.dense(x, kernel, self._param("bias", (self.features,), self.axes[1:], nn.initializers.zeros))


class Mlp(_Module):
    """Weights only: the block applies them (token mixing runs on transposed activations)."""

    features: int
    hidden: int
    axes: tuple[str, str]  # (input/output axis, hidden axis)

    @nn.compact
    def __call__(self) -> ops.Arrays:
        io, mid = self.axes
        return (
            self._param("wi", (self.features, self.hidden), (io, mid)),
            self._param("bi", (self.hidden,), (mid,), nn.initializers.zeros),
            self._param("wo", (self.hidden, self.features), (mid, io)),
            self._param("bo", (self.features,), (io,), nn.initializers.zeros),
        )


class Norm(_Module):
    features: int

    @nn.compact
    def __call__(self) -> ops.Arrays:
        return (
            self._param("scale", (self.features,), ("hidden",), nn.initializers.ones),
            self._param("bias", (self.features,), ("hidden",), nn.initializers.zeros),
        )


class Block(_Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        m = self.cfg.model
        patches, d = (m.image_size // m.patch_size) ** 2, m.hidden_dim
        return ops.mixer_block(
            x,
            Norm(self.cfg, d, name="token_norm")(),
            Mlp(self.cfg, patches, m.tokens_mlp_dim, ("patch", "token_mlp"), name="token_mixing")(),
            Norm(self.cfg, d, name="channel_norm")(),
            Mlp(self.cfg, d, m.channels_mlp_dim, ("hidden", "channel_mlp"), name="channel_mixing")(),
        )


class Mixer(_Module):
    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        m = self.cfg.model
        x = ops.patchify(images.astype(jnp.dtype(self.cfg.core.dtype)), m.patch_size)
        x = nn.with_logical_constraint(Dense(self.cfg, m.patch_size * m.patch_size * 3, m.hidden_dim, ("pixel", "hidden"), name="stem")(x), ops.ACTIVATIONS)
        for i in range(m.num_blocks):
            x = Block(self.cfg, name=f"block_{i}")(x)
        x = ops.layer_norm(x, *Norm(self.cfg, m.hidden_dim, name="head_norm")())
        return Dense(self.cfg, m.hidden_dim, m.num_classes, ("hidden", "classes"), name="head")(x.mean(axis=1))
