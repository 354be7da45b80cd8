"""TPU slices by their public names, and the devices aotcheck compiles for.

The table is `data/tpu_topologies.csv` (one row per public slice name). With libtpu
installed the devices come from `jax.experimental.topologies.get_topology_desc`: real
TPU device descriptions, good for a real TPU compile, with no hardware. Without libtpu
the same number of CPU devices stands in, and every report says so.
"""

from __future__ import annotations

import csv
import difflib
import functools
import importlib.util
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from aotcheck._errors import BuildError, UsageError

Backend = Literal["libtpu", "mock"]
MOCK_LABEL = "mock (CPU devices)"
MAX_SLICES = 4096
MAX_MOCK_DEVICES = 16384

_GIB = 1024**3


@dataclass(frozen=True)
class Topology:
    """One public TPU slice type, e.g. `v5p-128` = 64 chips in a 4x4x4 torus."""

    name: str
    family: str
    libtpu_topology: str
    chip_config: str
    chips_per_host_bounds: tuple[int, ...]
    devices_per_slice: int
    chips_per_slice: int
    wrap: tuple[bool, ...]
    hbm_gib_per_chip: float

    @property
    def physical_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.libtpu_topology.split(":")[1].split("x"))

    @property
    def hbm_bytes_per_device(self) -> int:
        """HBM one JAX device may use: tpu7x has two devices per chip, sharing its HBM."""
        per_chip = self.hbm_gib_per_chip * _GIB
        return int(per_chip * self.chips_per_slice / self.devices_per_slice)


@functools.cache
def all_topologies() -> dict[str, Topology]:
    text = resources.files("aotcheck").joinpath("data/tpu_topologies.csv").read_text()
    table = {}
    for row in csv.DictReader(text.splitlines()):
        table[row["name"]] = Topology(
            name=row["name"],
            family=row["family"],
            libtpu_topology=row["libtpu_topology"],
            chip_config=row["chip_config"],
            chips_per_host_bounds=tuple(int(d) for d in row["chips_per_host_bounds"].split("x")),
            devices_per_slice=int(row["devices_per_slice"]),
            chips_per_slice=int(row["chips_per_slice"]),
            wrap=tuple(c == "1" for c in row["wrap"]),
            hbm_gib_per_chip=float(row["hbm_gib_per_chip"]),
        )
    return table


def _close_names(name: str, table: dict[str, Topology]) -> list[str]:
    # For `v5p-100` the useful suggestions are the nearest sizes of the same family,
    # which string similarity alone does not find.
    match = re.fullmatch(r"([a-z0-9]+)-(\d+)", name)
    if match:
        family, size = match.group(1), int(match.group(2))
        same = [t for t in table.values() if t.name.startswith(family + "-")]
        if same:
            same.sort(key=lambda t: (abs(int(t.name.rsplit("-", 1)[1]) - size), t.name))
            return [t.name for t in same[:3]]
    return difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)


def get_topology(name: str) -> Topology:
    """Look a slice up by public name (`v5p-128`) or libtpu string (`v5:4x4x4`)."""
    table = all_topologies()
    if name in table:
        return table[name]
    by_libtpu = [t for t in table.values() if t.libtpu_topology == name]
    if by_libtpu:
        return by_libtpu[0]
    close = _close_names(name, table)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise UsageError(f"unknown topology '{name}'{hint} (`aotcheck topologies` lists all)")


def libtpu_available() -> bool:
    return importlib.util.find_spec("libtpu") is not None


@dataclass(frozen=True)
class Target:
    """What a program is compiled for: a slice type, how many slices, and its devices."""

    topology: Topology
    num_slices: int
    backend: Backend
    devices: tuple[Any, ...]

    @property
    def device_kind(self) -> str:
        return MOCK_LABEL if self.backend == "mock" else self.devices[0].device_kind

    @property
    def name(self) -> str:
        suffix = f"-x{self.num_slices}" if self.num_slices > 1 else ""
        return self.topology.name + suffix


def resolve_backend(requested: str) -> Backend:
    if requested == "auto":
        return "libtpu" if libtpu_available() else "mock"
    if requested == "libtpu" and not libtpu_available():
        raise UsageError("backend 'libtpu' requested but libtpu is not installed; install jax[tpu] or use --backend mock")
    if requested not in ("libtpu", "mock"):
        raise UsageError(f"unknown backend '{requested}'; choose auto, libtpu or mock")
    return requested  # type: ignore[return-value]


def make_target(topology: Topology, num_slices: int = 1, backend: str = "auto") -> Target:
    if not 1 <= num_slices <= MAX_SLICES:  # libtpu aborts the process (SIGABRT) on out-of-range counts
        raise UsageError(f"--num-slices must be 1..{MAX_SLICES}, got {num_slices}")
    chosen = resolve_backend(backend)
    if chosen == "mock" and topology.devices_per_slice * num_slices > MAX_MOCK_DEVICES:
        raise UsageError(f"the mock backend simulates at most {MAX_MOCK_DEVICES} devices; {topology.name} x "
                         f"{num_slices} slices has {topology.devices_per_slice * num_slices}: use fewer slices or libtpu")
    if chosen == "libtpu":
        devices = _libtpu_devices(topology, num_slices)
    else:
        devices = _mock_devices(topology.devices_per_slice * num_slices)
    return Target(topology=topology, num_slices=num_slices, backend=chosen, devices=tuple(devices))


def _libtpu_devices(topology: Topology, num_slices: int) -> list[Any]:
    from jax.experimental import topologies

    try:
        desc = topologies.get_topology_desc(
            platform="tpu",
            topology_name=topology.libtpu_topology,
            chip_config_name=topology.chip_config,
            chips_per_host_bounds=topology.chips_per_host_bounds,
            num_slices=num_slices,
            wrap=topology.wrap,
        )
    except Exception as exc:  # libtpu raises bare runtime errors; keep their first line
        raise BuildError(f"libtpu could not describe {topology.name} ({topology.libtpu_topology}): "
                         f"{libtpu_message(exc)}") from exc
    return list(desc.devices)


def libtpu_message(exc: BaseException) -> str:
    """libtpu's error in one line; its lock-file advice (`sudo rm` of a file another process holds) replaced."""
    text = str(exc).strip()
    if "lockfile" in text or "lock file" in text:
        return ("another process holds libtpu's lock file (/tmp/libtpu_lockfile); let it finish, "
                "or set ALLOW_MULTIPLE_LIBTPU_LOAD=1 (aotcheck sets it unless you override it)")
    return text.splitlines()[0] if text else type(exc).__name__


def _mock_devices(count: int) -> list[Any]:
    import jax

    try:
        # Only possible before the CPU backend starts; afterwards the count is fixed.
        jax.config.update("jax_num_cpu_devices", max(count, getattr(jax.config, "jax_num_cpu_devices", 1) or 1))
    except RuntimeError:
        pass
    devices = jax.devices("cpu")
    if len(devices) < count:
        raise UsageError(
            f"the mock backend needs {count} CPU devices but this process started jax with {len(devices)}; "
            f"run aotcheck in a fresh process or set jax_num_cpu_devices={count} before jax starts"
        )
    return devices[:count]
