"""An MLP-Mixer image classifier for aotcheck, in Linen and in NNX: a model brought from outside.

Everything aotcheck needs is in `MIXER`: the two module factories, the config fields, the
batch (images and labels, without data), the loss, and the rules for this model's own
logical axis names. `pip install -e examples/mixer` registers it as `--model mixer`
through the `aotcheck.models` entry point; `--model aotcheck_mixer:MIXER` works without
installing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pydantic

from aotcheck import BatchField, ModelSpec, RunConfig


class MixerFields(pydantic.BaseModel):
    """The Mixer's own settings, validated like aotcheck's (`--set patch_size=4`)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    image_size: int = pydantic.Field(32, gt=0)
    patch_size: int = pydantic.Field(8, gt=0)
    hidden_dim: int = pydantic.Field(64, gt=0)
    tokens_mlp_dim: int = pydantic.Field(32, gt=0)
    channels_mlp_dim: int = pydantic.Field(128, gt=0)
    num_blocks: int = pydantic.Field(2, gt=0)
    num_classes: int = pydantic.Field(10, gt=0)

    @pydantic.model_validator(mode="after")
    def _patches_tile_the_image(self) -> MixerFields:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        return self


# Weights use this model's own logical names; these rules go in front of base.yml's, whose
# activation names (`activation_batch`, `activation_embed`) the batch and activations reuse.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pixel", ()),
    ("patch", ()),
    ("hidden", ("fsdp",)),
    ("token_mlp", ("tensor",)),
    ("channel_mlp", ("tensor",)),
    ("classes", ()),
)


def batch(cfg: RunConfig, global_batch: int) -> dict[str, BatchField]:
    size = cfg.model.image_size
    return {
        "images": BatchField((global_batch, size, size, 3), "float32", ("activation_batch", None, None, None)),
        "labels": BatchField((global_batch,), "int32", ("activation_batch",)),
    }


def classification_loss(apply: Callable[..., Any], batch: Mapping[str, Any]) -> Any:
    import jax.numpy as jnp
    import optax

    logits = apply(batch["images"]).astype(jnp.float32)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["labels"]).mean()


def _linen(cfg: RunConfig) -> Any:
    from aotcheck_mixer.linen import Mixer

    return Mixer(cfg)


def _nnx(cfg: RunConfig, rngs: Any) -> Any:
    from aotcheck_mixer.nnx import Mixer

    return Mixer(cfg, rngs)


MIXER = ModelSpec(
    name="mixer",
    linen=_linen,
    nnx=_nnx,
    batch=batch,
    loss=classification_loss,
    config=MixerFields,
    logical_axis_rules=RULES,
    description="MLP-Mixer image classifier (example package)",
)
