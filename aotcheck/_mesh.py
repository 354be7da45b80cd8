"""The device mesh: parallelism settings -> mesh axis sizes -> a `jax.sharding.Mesh` on the target."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

from aotcheck._config import PARALLELISM_KEYS, RunConfig, parallelism_key
from aotcheck._errors import UsageError
from aotcheck._topology import Target


@dataclass(frozen=True)
class MeshPlan:
    """Mesh axis names with their sizes inside a slice (ICI) and across slices (DCN)."""

    axis_names: tuple[str, ...]
    ici: tuple[int, ...]
    dcn: tuple[int, ...]

    @property
    def shape(self) -> dict[str, int]:
        return {a: i * d for a, i, d in zip(self.axis_names, self.ici, self.dcn, strict=True)}


def _fill(kind: str, sizes: dict[str, int], total: int, what: str) -> tuple[int, ...]:
    wild = [a for a, s in sizes.items() if s == -1]
    bad = [f"{a}={s}" for a, s in sizes.items() if s == 0 or s < -1]
    if bad:
        raise UsageError(f"mesh: {kind} parallelism must be positive or -1, got {', '.join(bad)}")
    if len(wild) > 1:
        keys = ", ".join(parallelism_key(kind.lower(), a) for a in wild)
        raise UsageError(f"mesh: at most one {kind} axis may be -1, got {keys}")
    fixed = prod(s for s in sizes.values() if s != -1)
    described = " x ".join(f"{a}={s}" for a, s in sizes.items() if s != 1) or "1"
    if total % fixed:
        raise UsageError(
            f"mesh: {kind} parallelism {described} = {fixed} does not divide the {total} {what}; "
            f"make the product a divisor of {total}"
        )
    if wild:
        sizes = {**sizes, wild[0]: total // fixed}
    elif fixed != total:
        raise UsageError(
            f"mesh: {kind} parallelism {described} = {fixed} but there are {total} {what}; "
            f"make the product {total} or set one axis to -1"
        )
    return tuple(sizes.values())


def plan_mesh(cfg: RunConfig, target: Target) -> MeshPlan:
    axes = cfg.core.mesh_axes
    unused = [a for a in PARALLELISM_KEYS if a not in axes and (cfg.ici(a) not in (1, -1) or cfg.dcn(a) not in (1, -1))]
    if unused:
        raise UsageError(f"mesh: parallelism is set for axis '{unused[0]}', which is not in mesh_axes")
    per_slice = target.topology.devices_per_slice
    ici = _fill("ICI", {a: cfg.ici(a) for a in axes}, per_slice, f"devices of one {target.topology.name} slice")
    dcn = _fill("DCN", {a: cfg.dcn(a) for a in axes}, target.num_slices, "slices")
    return MeshPlan(axis_names=tuple(axes), ici=ici, dcn=dcn)


def build_mesh(plan: MeshPlan, target: Target, allow_split_physical_axes: bool) -> Any:
    import numpy as np
    from jax.experimental import mesh_utils
    from jax.sharding import AxisType, Mesh

    devices = list(target.devices)
    if target.backend == "mock":
        # CPU devices have no torus: lay them out slice-major, as the hybrid mesh does.
        grid = np.array(devices, dtype=object).reshape(plan.dcn + plan.ici)
        n = len(plan.axis_names)
        order = [i for pair in zip(range(n), range(n, 2 * n), strict=True) for i in pair]
        array = grid.transpose(order).reshape(tuple(plan.shape.values()))
    else:
        try:
            if target.num_slices > 1:
                array = mesh_utils.create_hybrid_device_mesh(
                    plan.ici, plan.dcn, devices, allow_split_physical_axes=allow_split_physical_axes
                )
            else:
                array = mesh_utils.create_device_mesh(
                    plan.ici, devices, allow_split_physical_axes=allow_split_physical_axes
                )
        except (NotImplementedError, ValueError, AssertionError) as exc:
            sizes = " x ".join(f"{a}={s}" for a, s in zip(plan.axis_names, plan.ici, strict=True) if s > 1)
            torus = target.topology.libtpu_topology.split(":")[1]
            hint = "" if allow_split_physical_axes else "; set allow_split_physical_axes=true to allow it"
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"mesh: ICI mesh {sizes} cannot be laid on the {torus} torus of {target.topology.name} "
                f"without splitting physical axes{hint} ({reason})"
            ) from None
    # Auto axes: Linen's sharding constraints stay hints, as on a real training run
    # (Explicit axes, jax.make_mesh's default, would turn them into type assertions).
    return Mesh(array, plan.axis_names, axis_types=(AxisType.Auto,) * len(plan.axis_names))
