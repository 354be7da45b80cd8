"""Replica groups of a collective, and the mesh axes they run along.

The members of a replica group in SPMD programs (`use_global_device_ids=true`, one replica,
N partitions) are *logical* ids: partition ids. jax assigns partition p to
`mesh.devices.flat[p]`, so logical id p sits at mesh coordinate `unravel_index(p, mesh
shape)`. A group therefore runs along the mesh axes whose coordinate differs among its
members, whatever the physical device ids are.

Three printed forms are parsed:

- explicit: `{{0,1,2,3},{4,5,6,7}}` (and `{}`: one group of every device);
- iota: `[2,4]<=[8]` or `[4,2]<=[2,4]T(1,0)`: iota(N) reshaped to the second list,
  transposed by T, reshaped to the first list; each row is a group;
- mesh axes (newer XLA): `mesh['a'=4,'b'=2] {'a'}`, optionally with `device_ids=(...)`
  after the mesh, and sub-axes `'a':(pre)size`: the device array reshaped to the mesh,
  one group per assignment of the axes not listed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_IOTA_RE = re.compile(r"^\[([\d,\s]*)\]<=\[([\d,\s]*)\](?:T\(([\d,\s]*)\))?")
# The axis set may be absent (seen on a ViT compile): no axis named, so every device is its own group.
_MESH_RE = re.compile(r"^mesh\[([^\]]*)\](?:\s*,?\s*device_ids=\(([^)]*)\))?\s*(?:\{([^}]*)\})?")
_AXIS_RE = re.compile(r"'([^']+)'\s*=\s*(\d+)")
_REF_RE = re.compile(r"'([^']+)'(?::\((\d+)\)(\d+))?")


def _ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def parse_replica_groups(text: str, num_devices: int) -> list[list[int]]:
    """The groups of a `replica_groups=` value, as lists of logical ids.

    Arguments:
        text: the attribute value as printed (explicit, iota or mesh-axes form).
        num_devices: devices in the program, for `{}` (all devices, one group).
    Returns:
        One list per group; members in the order the text gives them.
    Raises:
        ValueError: the text is in none of the three forms.
    """
    text = text.strip().rstrip(",")
    if text.startswith("{"):
        inner = re.findall(r"\{([\d,\s]*)\}", text[1:-1] if text.endswith("}") else text)
        groups = [_ints(g) for g in inner if g.strip()]
        return groups or [list(range(num_devices))]
    m = _IOTA_RE.match(text)
    if m:
        shape, reshape = _ints(m.group(1)), _ints(m.group(2))
        ids = np.arange(int(np.prod(reshape))).reshape(reshape)
        if m.group(3):
            ids = ids.transpose(_ints(m.group(3)))
        return ids.reshape(shape).tolist()
    m = _MESH_RE.match(text)
    if m:
        return _mesh_groups(m.group(1), m.group(2), m.group(3) or "")
    raise ValueError(f"unrecognised replica_groups form: {text[:80]}")


def _mesh_groups(axes_text: str, device_ids: str | None, refs_text: str) -> list[list[int]]:
    names, sizes = zip(*((n, int(s)) for n, s in _AXIS_RE.findall(axes_text)), strict=True)
    total = int(np.prod(sizes))
    ids = np.array(_ints(device_ids), dtype=np.int64) if device_ids else np.arange(total)
    # Split every axis into (pre, size, post) pieces for the sub-axes named on it, then
    # group by the coordinates of the pieces that are not named.
    split: dict[int, list[tuple[int, int]]] = {}
    for name, pre, size in _REF_RE.findall(refs_text):
        dim = names.index(name)
        if pre:
            split.setdefault(dim, []).append((int(pre), int(size)))
        else:
            split.setdefault(dim, []).append((1, sizes[dim]))
    dims: list[int] = []
    grouped: list[int] = []
    for d, full in enumerate(sizes):
        pieces = sorted(split.get(d, []))
        if not pieces:
            dims.append(full)
            continue
        done = 1
        for pre, size in pieces:
            if pre != done:
                dims.append(pre // done)
                done = pre
            grouped.append(len(dims))
            dims.append(size)
            done *= size
        if done != full:
            dims.append(full // done)
    arr = ids.reshape(dims)
    keep = [d for d in range(len(dims)) if d not in grouped]
    per_group = int(np.prod([dims[d] for d in grouped])) if grouped else 1
    return arr.transpose(keep + grouped).reshape(-1, per_group).tolist()


@dataclass(frozen=True)
class MeshLayout:
    """What the attribution needs to know about the mesh.

    `axis_names`/`shape` are the jax mesh's; `slice_of` gives, for each logical id (flat
    mesh position), its slice index. `per_slice_shape`, when given, is the mesh shape one
    slice's program sees: multi-slice TPU programs are compiled per slice, with ids
    0..devices_per_slice-1 laid out over the ICI parts of the axes (DCN goes through
    send/recv instead).
    """

    axis_names: tuple[str, ...]
    shape: tuple[int, ...]
    slice_of: tuple[int, ...] = ()
    per_slice_shape: tuple[int, ...] = ()

    @property
    def num_devices(self) -> int:
        return int(np.prod(self.shape))


def layout_from_mesh(mesh: object, ici_shape: Sequence[int] | None = None) -> MeshLayout:
    """A MeshLayout from a `jax.sharding.Mesh` (slice index from each device, 0 if absent).

    Arguments:
        mesh: the jax mesh the step was compiled for.
        ici_shape: per-axis ICI sizes (aotcheck's MeshPlan.ici) for multi-slice targets.
    Returns:
        The layout.
    """
    devices = np.asarray(mesh.devices)  # type: ignore[attr-defined]
    slices = tuple(int(getattr(d, "slice_index", 0) or 0) for d in devices.flat)
    multi = len(set(slices)) > 1
    return MeshLayout(
        axis_names=tuple(mesh.axis_names),  # type: ignore[attr-defined]
        shape=tuple(devices.shape),
        slice_of=slices,
        per_slice_shape=tuple(ici_shape) if multi and ici_shape is not None else (),
    )


def layout_from_plan(
    axis_names: Sequence[str], ici: Sequence[int], dcn: Sequence[int], per_slice_program: bool = True
) -> MeshLayout:
    """A MeshLayout from per-axis ICI and DCN sizes (aotcheck's MeshPlan, or a report header).

    Arguments:
        axis_names: mesh axis names.
        ici: per-axis sizes inside a slice.
        dcn: per-axis sizes across slices.
        per_slice_program: the compiled program is one slice's (libtpu: ids are within a
            slice, DCN is send/recv); False for one program over all devices (the mock
            backend), whose groups may cross slices.
    Returns:
        The layout, with slices laid out DCN-major along each axis as
        `mesh_utils.create_hybrid_device_mesh` (and aotcheck's mock mesh) does: coordinate
        c on an axis is slice part c // ici, in-slice part c % ici.
    """
    shape = tuple(i * d for i, d in zip(ici, dcn, strict=True))
    if int(np.prod(dcn)) == 1:
        return MeshLayout(tuple(axis_names), shape)
    coords = np.array(np.unravel_index(np.arange(int(np.prod(shape))), shape))
    parts = coords // np.asarray(ici)[:, None]
    slices = np.ravel_multi_index(tuple(parts), tuple(dcn))
    return MeshLayout(tuple(axis_names), shape, tuple(int(x) for x in slices), tuple(ici) if per_slice_program else ())


def group_axes(group: Sequence[int], layout: MeshLayout, per_slice: bool = False) -> tuple[str, ...]:
    """Mesh axes along which a group's members differ, in mesh order.

    Arguments:
        group: logical ids of one replica group.
        layout: the mesh.
        per_slice: ids are within one slice's program (see MeshLayout.per_slice_shape).
    Returns:
        Axis names; empty for a one-member group.
    """
    shape = layout.per_slice_shape if per_slice and layout.per_slice_shape else layout.shape
    coords = np.array(np.unravel_index(np.asarray(group, dtype=np.int64), shape))
    varying = [bool(np.any(row != row[0])) for row in coords]
    return tuple(n for n, v in zip(layout.axis_names, varying, strict=True) if v)


def crosses_slices(group: Sequence[int], layout: MeshLayout) -> bool:
    """Whether a group's members sit on more than one slice (so the traffic is DCN)."""
    if not layout.slice_of:
        return False
    return len({layout.slice_of[i] for i in group if i < len(layout.slice_of)}) > 1


def axis_label(axes: Sequence[str]) -> str:
    """`("data", "fsdp")` -> "data+fsdp"; no axes -> "none"."""
    return "+".join(axes) if axes else "none"


def attribute(groups: Sequence[Sequence[int]], layout: MeshLayout) -> tuple[str, bool]:
    """Axis label and DCN flag for a collective's groups (the first group decides the
    label: SPMD groups are translates of one another).

    Arguments:
        groups: the parsed replica groups.
        layout: the mesh.
    Returns:
        (label such as "fsdp" or "data+fsdp", whether any group crosses slices).
    """
    if not groups:
        return "none", False
    per_slice = bool(layout.per_slice_shape)
    label = axis_label(group_axes(groups[0], layout, per_slice))
    dcn = False if per_slice else any(crosses_slices(g, layout) for g in groups)
    return label, dcn


def dcn_axes(layout: MeshLayout) -> tuple[str, ...]:
    """Axes whose size is larger than its per-slice size: the axes DCN traffic runs along."""
    if not layout.per_slice_shape:
        return ()
    return tuple(n for n, s, p in zip(layout.axis_names, layout.shape, layout.per_slice_shape, strict=True) if s != p)


def axis_sizes(layout: MeshLayout) -> Mapping[str, int]:
    return dict(zip(layout.axis_names, layout.shape, strict=True))
