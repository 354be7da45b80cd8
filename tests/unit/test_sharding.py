"""Logical axis rules -> PartitionSpecs: first-match resolution, normalisation, divisibility, bytes."""

from __future__ import annotations

import jax
import pytest

from aotcheck import _sharding
from aotcheck._errors import UsageError

MESH = {"data": 1, "fsdp": 4, "tensor": 2}


def test_each_logical_name_takes_its_first_rule():
    rules = (("embed", ("fsdp",)), ("embed", ("tensor",)), ("mlp", ("tensor",)))
    assert _sharding.resolve(("embed", "mlp"), rules) == (("fsdp",), ("tensor",))


def test_a_repeated_name_is_a_fallback_when_its_mesh_axis_is_taken():
    # `mlp` wants fsdp, but `embed` took it first: the second `mlp` rule applies.
    rules = (("embed", ("fsdp",)), ("mlp", ("fsdp",)), ("mlp", ("tensor",)))
    assert _sharding.resolve(("embed", "mlp"), rules) == (("fsdp",), ("tensor",))
    # Alone, `mlp` gets its first choice.
    assert _sharding.resolve(("mlp",), rules) == (("fsdp",),)


def test_a_rule_of_several_mesh_axes_is_skipped_when_one_is_taken():
    rules = (("heads", ("tensor",)), ("batch", ("data", "tensor")), ("batch", ("data",)))
    assert _sharding.resolve(("batch", "heads"), rules) == (("data",), ("tensor",))


def test_unknown_and_none_logical_names_are_replicated():
    rules = (("embed", ("fsdp",)),)
    assert _sharding.resolve((None, "nobody", "embed"), rules) == ((), (), ("fsdp",))


def test_normalise_drops_size_one_axes_and_trailing_replicated_dimensions():
    mesh = {"data": 1, "fsdp": 4, "tensor": 2}
    assert _sharding.normalise([("fsdp",), ("data",), ()], mesh) == ("fsdp",)
    assert _sharding.normalise([(), ("data", "tensor"), ("fsdp", "tensor")], mesh) == (None, "tensor", ("fsdp", "tensor"))
    assert _sharding.normalise([("data",), ()], mesh) == ()


def test_specs_that_mean_the_same_compare_equal_after_normalising():
    a = _sharding.normalise(_sharding.resolve(("embed", None), (("embed", ("data", "fsdp")),)), MESH)
    b = _sharding.normalise(_sharding.resolve(("embed",), (("embed", ("fsdp",)),)), MESH)
    assert a == b == ("fsdp",)


def test_spec_json_round_trip():
    spec = ("fsdp", None, ("data", "tensor"))
    assert _sharding.spec_to_json(spec) == ["fsdp", None, ["data", "tensor"]]
    assert _sharding.spec_from_json(_sharding.spec_to_json(spec), {"fsdp": 4, "data": 2, "tensor": 2}) == spec


def test_spec_from_json_normalises_against_the_mesh():
    # MaxText writes size-1 axes and trailing Nones; they carry no meaning.
    assert _sharding.spec_from_json([["data", "fsdp"], None, None], {"data": 1, "fsdp": 8}) == ("fsdp",)
    assert _sharding.spec_from_json([], {"fsdp": 8}) == ()


def test_shard_shape_divides_the_sharded_dimensions():
    assert _sharding.shard_shape((64, 8), ("fsdp",), MESH) == (16, 8)
    assert _sharding.shard_shape((64, 8, 6), (None, ("fsdp", "tensor")), MESH) == (64, 1, 6)
    assert _sharding.shard_shape((), (), MESH) == ()


def test_indivisible_names_the_first_bad_dimension():
    assert _sharding.indivisible((64, 8), ("fsdp", "tensor"), MESH) is None
    assert _sharding.indivisible((64, 6, 3), (None, ("fsdp", "tensor"), "tensor"), MESH) == (1, 6, ("fsdp", "tensor"))


def test_leaf_spec_of_an_unannotated_leaf_is_replicated():
    assert _sharding.leaf_spec((7, 5), None, (("embed", ("fsdp",)),), MESH, "params/bias") == ()


def test_leaf_spec_resolves_and_normalises():
    rules = (("embed", ("data", "fsdp")), ("mlp", ("tensor",)))
    assert _sharding.leaf_spec((64, 32), ("embed", "mlp"), rules, MESH, "w") == ("fsdp", "tensor")


def test_leaf_spec_indivisible_error_names_leaf_dimension_logical_name_and_mesh_axes():
    rules = (("embed", ("fsdp",)), ("mlp", ("fsdp", "tensor")))
    with pytest.raises(UsageError) as info:
        _sharding.leaf_spec((64, 12), (None, "mlp"), rules, MESH, "params/decoder/mlp/kernel")
    message = str(info.value)
    assert message == (
        "sharding: params/decoder/mlp/kernel dimension 1 (size 12, logical 'mlp') is not divisible by mesh axes "
        "fsdp=4xtensor=2; change the rule for 'mlp' or the parallelism"
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    ("dtype", "size"),
    [("float32", 4), ("bfloat16", 2), ("int32", 4), ("uint32", 4), ("int8", 1), ("float16", 2), ("bool", 1)],
)
def test_itemsize_of_numeric_dtypes(dtype, size):
    assert _sharding.itemsize(dtype) == size


def test_itemsize_of_typed_prng_keys_is_what_jax_says():
    known = {}
    for impl in ("threefry2x32", "rbg", "unsafe_rbg"):
        key = jax.eval_shape(lambda impl=impl: jax.random.key(0, impl=impl))
        assert _sharding.itemsize(str(key.dtype)) == key.dtype.itemsize
        known[str(key.dtype)] = key.dtype.itemsize
    assert _sharding._KEY_ITEMSIZES == known  # the table read without jax is jax's, for every key type
    assert _sharding.itemsize("key<fry>") == 8


def test_nbytes():
    assert _sharding.nbytes((128, 64), "bfloat16") == 128 * 64 * 2
    assert _sharding.nbytes((), "float32") == 4
    assert _sharding.nbytes((4,), "key<fry>") == 32
    assert _sharding.nbytes((0, 5), "float32") == 0


def test_unknown_dtype_is_a_one_line_usage_error():
    with pytest.raises(UsageError, match=r"^unknown dtype 'float33'; give a jax dtype") as info:
        _sharding.itemsize("float33")
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="unknown dtype 'key<nope>'"):
        _sharding.itemsize("key<nope>")


def test_constrain_outside_aotcheck_is_the_identity():
    x = object()
    assert _sharding.constrain(x, ("batch", "embed")) is x


@pytest.mark.parametrize("dtype", sorted(_sharding._COMMON_ITEMSIZES))
def test_the_common_itemsizes_are_jax_s(dtype):
    import jax.numpy as jnp

    assert _sharding.itemsize(dtype) == jnp.dtype(dtype).itemsize


@pytest.mark.parametrize(("shape", "spec"), [((64, 8), ("fsdp",)), ((64, 8, 3), (None, ("fsdp", "tensor"))),
                                             ((8,), ()), ((), ()), ((16, 16), ("tensor", "fsdp"))])
def test_shard_shape_is_jax_s(shape, spec):
    from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec

    mesh_shape = {"data": 1, "fsdp": 4, "tensor": 2}
    mesh = AbstractMesh(tuple(mesh_shape.values()), tuple(mesh_shape))
    expected = NamedSharding(mesh, PartitionSpec(*spec)).shard_shape(shape)
    assert _sharding.shard_shape(shape, spec, mesh_shape) == expected
