"""Why two states or programs of one model differ: cause notes, each given only where its premise holds.

A cause note is a claim about the two sides being compared. One whose premise the reports
do not show sends a user after the wrong fix (an `nnx.scan` note for a model without scan),
so each note here comes with the test of its premise, made on what the reports record: the
kind of each side, the source paths of its leaves, the settings it ran with, and the
compiled figures.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from aotcheck._report import Header

STEP_NOTE = "NNX's optimizer counts steps in uint32, Linen's TrainState in int32; harmless"
RNG_NOTE = "NNX keeps rng state in the module; Linen's train state has none"
KEY_NOTE = "Linen's train state holds one key that the step folds into its rng streams; NNX keeps the streams in the module"
ORDER_NOTE = (
    "unscanned Linen layers are named layers_N and flatten in string order (layers_10 before layers_2), "
    "unlike NNX's numbered list, so the step's arguments come in a different order and XLA assigns buffers differently"
)
GRAPH_UPDATES_NOTE = (
    "the NNX side needs more temp: nnx.scan / nnx.remat / nnx.vmap with graph updates thread extra loop values; "
    "pass graph_updates=False"
)

_LINEN_LAYER = re.compile(r"layers_(?<![^/]layers_)(\d+)(?=/|$)")  # as configs/canonical.yml's rule
_NUMBERED_LAYER = re.compile(r"(^|/)layers/\d+(/|$)")
# The settings that make the built-in step scan or rematerialise its layers, and their "off" values.
_TRANSFORMS = {"scan_layers": False, "remat_policy": "none"}


def step_dtype_explained(path: str, a: tuple[str, str], b: tuple[str, str]) -> bool:
    """The step counter differs only as Linen's TrainState (int32) and NNX's optimizer (uint32) count it.

    `a` and `b` are each side's (kind, dtype); a flip between two sides of one kind is a real change.
    """
    return path == "step" and {a, b} == {("linen", "int32"), ("nnx", "uint32")}


def rng_note(holder: str, other: str, other_has_rng: bool) -> str:
    """Why an rng leaf held by side kind `holder` is missing on side kind `other` ("" when nothing explains it).

    NNX keeps its streams in the module; a Linen state (aotcheck's or MaxText's) has none, or
    one step key when the model draws streams. Between two sides of one kind it is a real change.
    """
    if holder == "nnx" and other in ("linen", "maxtext"):
        return KEY_NOTE if other_has_rng else RNG_NOTE
    if holder == "linen" and other == "nnx" and other_has_rng:
        return KEY_NOTE
    return ""


def misordered_layers(linen_paths: Iterable[str], nnx_paths: Iterable[str]) -> bool:
    """Linen's unscanned `layers_N` flatten in an order other than NNX's numbered `layers/N` do.

    Holds when some Linen container has `layers_N` siblings whose string order is not their
    numeric order (`layers_10` before `layers_2`: eleven layers or more) and the NNX side
    numbers its layers as a list; only then do the step's arguments come in another order.

    Example:
        >>> misordered_layers(["params/layers_2/w", "params/layers_10/w"], ["model/layers/2/w/value"])
        True
        >>> misordered_layers(["params/layers_2/w", "params/layers_3/w"], ["model/layers/2/w/value"])
        False
    """
    siblings: dict[str, set[int]] = {}
    for path in linen_paths:
        if "layers_" not in path:
            continue
        for m in _LINEN_LAYER.finditer(path):
            siblings.setdefault(path[:m.start(1)], set()).add(int(m.group(1)))
    misordered = any(sorted(ns) != sorted(ns, key=str) for ns in siblings.values())
    return misordered and any(_NUMBERED_LAYER.search(p) for p in nnx_paths)


def graph_updates_premise(nnx: Header, linen: Header) -> bool:
    """Both paths of one model ran with the same scan/remat settings, and they transform the layers.

    A setting the model declares it ignores is not in its header, so a model without scan or
    remat never qualifies; settings that differ between the sides explain a temp difference
    themselves.
    """
    if nnx.path != "nnx" or linen.path != "linen" or nnx.model != linen.model:
        return False
    own = {k: nnx.config[k] for k in _TRANSFORMS if k in nnx.config}
    if any(linen.config.get(k) != v for k, v in own.items()):
        return False
    return any(v not in (_TRANSFORMS[k], None) for k, v in own.items())


def resolution_change(a: Header, b: Header) -> str:
    """What differs between the sides' resolution of logical names: their rules, their mesh, or both.

    "" when neither is known to differ (a MaxText side records no rules), so a PartitionSpec
    change under the same logical axes is not blamed on either.
    """
    rules = bool(a.rules) and bool(b.rules) and a.rules != b.rules
    mesh = _sized(a.mesh.shape) != _sized(b.mesh.shape) and bool(a.mesh.shape) and bool(b.mesh.shape)
    return {(True, True): "the rules and the mesh differ", (True, False): "the rules differ",
            (False, True): f"the mesh differs ({_mesh_text(a.mesh.shape)} -> {_mesh_text(b.mesh.shape)})"}.get(
        (rules, mesh), "")


def _sized(shape: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in shape.items() if v != 1}  # size-1 axes shard nothing


def _mesh_text(shape: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in _sized(shape).items()) or "one device"
