"""The cache: keys that miss whenever an input changes, bounded size with LRU eviction, info and clear."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aotcheck import _cache, _fingerprint
from aotcheck._pipeline import Request, configure
from aotcheck._topology import get_topology

from ._reports import compile_section, report


@pytest.fixture(autouse=True)
def cache_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def compile_key(**changes: Any) -> str:
    args: dict[str, Any] = {"mesh": {"axes": ("data", "fsdp"), "ici": (1, 64), "dcn": (1, 1)},
                            "allow_split_physical_axes": False, "compiler_options": {}}
    return _cache.key("module @jit_step {}", "v5p-128", "libtpu", **{**args, **changes})


def test_the_compile_key_holds_what_the_lowered_text_does_not():
    base = compile_key()
    assert compile_key() == base
    assert compile_key(allow_split_physical_axes=True) != base
    # Same mesh shape, another split between slices and chips: another device order.
    assert compile_key(mesh={"axes": ("data", "fsdp"), "ici": (1, 32), "dcn": (1, 2)}) != base
    assert compile_key(compiler_options={"exec_time_optimization_effort": -1.0}) != base


def test_an_entry_round_trips_and_a_corrupt_one_is_removed(cache_in: Path):
    section = compile_section()
    assert _cache.get("c", "k", type(section)) is None
    assert _cache.put("c", "k", section) is None
    assert _cache.get("c", "k", type(section)) == section
    (cache_in / "c-k.json").write_text("{not json")
    assert _cache.get("c", "k", type(section)) is None
    assert not (cache_in / "c-k.json").exists()


def test_a_whole_report_round_trips_with_its_mesh_order(cache_in: Path):
    r = report()
    _cache.put("r", "k", r)
    back = _cache.get("r", "k", type(r))
    assert back == r and list(back.header.mesh.shape) == list(r.header.mesh.shape)


def test_eviction_removes_the_least_recently_used_first(cache_in: Path):
    for i, name in enumerate(("old", "mid", "new")):
        _cache.put("c", name, compile_section())
        os.utime(cache_in / f"c-{name}.json", (1000 + i, 1000 + i))
    _cache.get("c", "old", type(compile_section()))  # a hit makes it the most recent
    size = (cache_in / "c-new.json").stat().st_size
    assert _cache.evict(2 * size) == 1
    assert sorted(p.name for p in cache_in.glob("*.json")) == ["c-new.json", "c-old.json"]


def test_eviction_tolerates_entries_another_process_removed(cache_in: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("a", "b"):
        _cache.put("c", name, compile_section())
    listed = _cache._entries()
    for path, _ in listed:
        path.unlink()  # a concurrent writer evicted them between listing and removal
    monkeypatch.setattr(_cache, "_entries", lambda: listed)
    assert _cache.evict(0) == 0


def test_the_size_cap_is_kept_on_every_write(cache_in: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AOTCHECK_CACHE_MAX_MB", "0")
    _cache.put("c", "k", compile_section())
    assert list(cache_in.glob("*.json")) == []


def test_info_counts_and_clear_empties(cache_in: Path):
    _cache.put("c", "a", compile_section())
    _cache.put("r", "b", report())
    (cache_in / ".c-x.json.123.tmp").write_text("half")  # an interrupted write
    info = _cache.info()
    assert (info.directory, info.reports, info.compiles) == (cache_in, 1, 1) and info.bytes > 0
    assert _cache.clear() == 2
    assert _cache.info().bytes == 0 and list(cache_in.iterdir()) == []


TINY = Request(topology="v5p-128")


def inputs(request: Request = TINY, **changes: Any) -> str:
    cfg, entry = configure(request)
    args: dict[str, Any] = {"cfg": cfg, "model": entry.name, "model_source": entry.source, "spec": entry.spec,
                            "topology": get_topology(request.topology), "num_slices": 1, "backend": "libtpu",
                            "compile": True, "compiler_options": {}}
    return _fingerprint.inputs_key(**{**args, **changes})


def test_the_inputs_key_misses_on_each_changed_input(monkeypatch: pytest.MonkeyPatch):
    base = inputs()
    assert inputs() == base
    assert inputs(Request(topology="v5p-128", overrides=("per_device_batch_size=4",))) != base  # a config value
    assert inputs(Request(topology="v5p-128", overrides=("ici_fsdp_parallelism=32", "ici_data_parallelism=2"))) != base  # the mesh
    assert inputs(Request(topology="v5p-128", overrides=("allow_split_physical_axes=true",))) != base
    assert inputs(topology=get_topology("v5p-256")) != base
    assert inputs(num_slices=2) != base
    assert inputs(backend="mock") != base
    assert inputs(compile=False) != base
    assert inputs(compiler_options={"exec_time_optimization_effort": -1.0}) != base
    monkeypatch.setenv("LIBTPU_INIT_ARGS", "--xla_jf_internal_num_threads=2")
    assert inputs() != base
    monkeypatch.delenv("LIBTPU_INIT_ARGS")
    real = _fingerprint.versions
    monkeypatch.setattr(_fingerprint, "versions", lambda: {**real(), "jax": "0.0.1"})  # a library version
    assert inputs() != base


def test_the_inputs_key_misses_when_a_model_source_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "speedmodel"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "layers.py").write_text("WIDTH = 4\n")
    (package / "spec.py").write_text(textwrap.dedent("""
        from aotcheck import ModelSpec
        def linen(cfg):
            raise NotImplementedError
        SPEC = ModelSpec(name="speedmodel", linen=linen)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = importlib.import_module("speedmodel.spec").SPEC
    try:
        assert "speedmodel.spec" in _fingerprint.spec_modules(spec)
        before = inputs(spec=spec)
        (package / "layers.py").write_text("WIDTH = 8\n")  # a file of the package the spec does not name
        assert inputs(spec=spec) != before
    finally:
        for name in [m for m in sys.modules if m.startswith("speedmodel")]:
            del sys.modules[name]


def test_the_built_in_decoder_is_keyed_by_aotcheck_s_own_files():
    files = _fingerprint._package_files("aotcheck")
    assert any(p.name == "decoder.py" or "decoder" in p.parts for p in files)
    assert any(p.name == "_program.py" for p in files)


def test_a_model_with_no_source_file_has_no_inputs_key():
    from aotcheck import ModelSpec

    def linen(cfg):
        raise NotImplementedError

    linen.__module__ = "__aotcheck_interactive__"  # as in a notebook: a module with no file
    sys.modules["__aotcheck_interactive__"] = type(sys)("__aotcheck_interactive__")
    try:
        assert inputs(spec=ModelSpec(name="typed-in", linen=linen)) is None
    finally:
        del sys.modules["__aotcheck_interactive__"]


def test_a_model_given_as_an_object_is_never_served_from_the_report_cache():
    from aotcheck._pipeline import _report_key

    cfg, entry = configure(TINY)
    assert _report_key(TINY, cfg, entry) is not None
    as_object = Request(topology="v5p-128", model=entry.spec)
    assert _report_key(as_object, *configure(as_object)) is None
