"""A small Vision Transformer, in Linen and NNX, written the way teams write their models.

The model files know nothing of aotcheck: they shard activations with
`nn.with_logical_constraint`, annotate parameters partly with logical names
(`nn.with_logical_partitioning`, `out_sharding=`) and partly with mesh axis names
(`nn.with_partitioning`, `nnx.with_partitioning`), use dropout, and take the mesh in their
constructor. `aotcheck_vit.train` holds the team's own train state (with EMA parameters)
and train step (gradient accumulation over microbatches, an auxiliary accuracy output).
`VIT` below is the whole adapter.
"""

from __future__ import annotations

from typing import Any

import pydantic

from aotcheck import BatchField, ModelSpec, RunConfig
from aotcheck_vit import train


class ViTFields(pydantic.BaseModel):
    """The model's own settings (`--set num_layers=4`)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    image_size: int = pydantic.Field(32, gt=0)
    patch_size: int = pydantic.Field(8, gt=0)
    hidden_dim: int = pydantic.Field(128, gt=0)
    num_heads: int = pydantic.Field(4, gt=0)
    mlp_dim: int = pydantic.Field(256, gt=0)
    num_layers: int = pydantic.Field(2, gt=0)
    num_classes: int = pydantic.Field(16, gt=0)
    dropout_rate: float = pydantic.Field(0.1, ge=0, lt=1)
    train: bool = True  # dropout on; `--set train=false` compiles the deterministic forward pass
    microbatches: int = pydantic.Field(2, gt=0)
    ema_decay: float = pydantic.Field(0.999, gt=0, lt=1)

    @pydantic.model_validator(mode="after")
    def _shapes(self) -> ViTFields:
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim={self.hidden_dim} is not a multiple of num_heads={self.num_heads}")
        return self


# The model's logical names; its mesh-axis-named parameters need no rule.
RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("vit_embed", ("fsdp",)),
    ("vit_mlp", ("tensor",)),
    ("vit_heads", ("tensor",)),
    ("vit_head_dim", ()),
)


def batch(cfg: RunConfig, global_batch: int) -> dict[str, BatchField]:
    size = cfg.model.image_size
    return {
        "images": BatchField((global_batch, size, size, 3), "float32", ("activation_batch", None, None, None)),
        "labels": BatchField((global_batch,), "int32", ("activation_batch",)),
    }


def _linen(cfg: RunConfig, mesh: Any) -> Any:
    from aotcheck_vit.linen import ViT

    return ViT(cfg.model, mesh)


def _nnx(cfg: RunConfig, rngs: Any, mesh: Any) -> Any:
    from aotcheck_vit.nnx import ViT

    return ViT(cfg.model, mesh, rngs=rngs)


VIT = ModelSpec(
    name="vit",
    linen=_linen,
    nnx=_nnx,
    batch=batch,
    loss=train.loss,
    config=ViTFields,
    defaults={"per_device_batch_size": 4},
    logical_axis_rules=RULES,
    rngs=("dropout",),
    # No scan, no remat, and the model keeps its parameters and activations in float32.
    ignores=("scan_layers", "remat_policy", "weight_dtype", "dtype"),
    init_state={"linen": train.linen_init_state, "nnx": train.nnx_init_state},
    train_step={"linen": train.linen_train_step, "nnx": train.nnx_train_step},
    description="Vision Transformer with dropout, EMA and gradient accumulation (example package)",
)
