"""The model protocol's own errors, each one line with its exact message (docs/models.md lists them)."""

from __future__ import annotations

from typing import Any

import pytest

import aotcheck
from aotcheck import _config, _state
from aotcheck._errors import BuildError, UsageError


def _linen(cfg: Any) -> Any:
    raise AssertionError("never built")


@pytest.mark.parametrize(("fields", "message"), [
    ({}, "ModelSpec 'm' gives neither linen nor nnx; give one factory or both"),
    ({"linen": _linen, "train_step": {"jax": print}},
     "ModelSpec 'm': train_step is keyed by path; 'jax' is not one of ['linen']"),
    ({"linen": _linen, "ignores": ("scan_layer",)},
     "ModelSpec 'm': ignores names 'scan_layer', which is not one of aotcheck's settings"),
    ({"linen": _linen, "rngs": ("params", "dropout")},
     "ModelSpec 'm': rngs names the streams the step draws; 'params' is init's, drop it"),
])
def test_a_spec_that_cannot_work_is_refused_when_it_is_made(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        aotcheck.ModelSpec(name="m", **fields)
    assert str(err.value) == message


@pytest.mark.parametrize(("axes", "message"), [
    (["data", "fsdp-2"], "config: mesh_axes: mesh axis 'fsdp-2' is not a name (letters, digits, underscores)"),
    (["data", "fsdp", "data"], "config: mesh_axes: mesh axes repeat"),
])
def test_mesh_axes_are_distinct_names(axes: list[str], message: str) -> None:
    with pytest.raises(UsageError) as err:
        _config.validate({"mesh_axes": axes}, _config.NoModelFields)
    assert str(err.value) == message


def test_a_batch_description_that_raises_is_the_model_s_failure() -> None:
    def batch(cfg: Any, n: int) -> Any:
        raise KeyError("image_size")

    spec = aotcheck.ModelSpec(name="m", linen=_linen, batch=batch)
    cfg = _config.validate({}, _config.NoModelFields)
    with pytest.raises(BuildError) as err:
        _state.abstract_batch(cfg, spec, 4)
    assert str(err.value) == "model 'm': batch() raised KeyError: 'image_size'"
