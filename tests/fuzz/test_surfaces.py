"""Fuzzing every input surface: config files, `--set`, matrix files, golden files, saved reports,
MaxText files, cache entries and whole argument lists.

The property (tests/fuzz/_props.py): the exit code is documented, no traceback, one `error:` line
on failure, and nothing is written outside the place the command writes to. Cheap by design: no
example compiles (`--no-compile`, sharding-only cases), so the `fuzz` profile can run thousands.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from aotcheck import _cache
from aotcheck._analysis import Compile
from tests.fuzz._props import CONFIG_KEYS, VALUES, files_under, invoke, sandbox, yaml_text

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "golden/tiny/v5p-8/linen"
COMPILE = ["compile", "--no-compile", "--topology", "v5p-8"]


@pytest.fixture(scope="module")
def report_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.json"
    invoke([*COMPILE, "--format", "json", "--out", str(path)], allowed={0})
    return path


def _fresh() -> Path:
    return Path(tempfile.mkdtemp(prefix="aotcheck-fuzz-"))


def _mutate(data: Any, path: list[int], value: Any) -> Any:
    """`data` with the node reached by walking `path` (indices into keys/items) replaced by `value`."""
    if not path or not isinstance(data, dict | list) or not data:
        return value
    if isinstance(data, dict):
        key = sorted(data)[path[0] % len(data)]
        return {**data, key: _mutate(data[key], path[1:], value)}
    i = path[0] % len(data)
    return [*data[:i], _mutate(data[i], path[1:], value), *data[i + 1:]]


MUTATION = st.tuples(st.lists(st.integers(0, 50), max_size=6), VALUES)
RAW = st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode))


# ---- config files and --set


@given(st.one_of(
    RAW,
    st.dictionaries(CONFIG_KEYS, VALUES, max_size=5).map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode()),
    st.dictionaries(CONFIG_KEYS, VALUES, max_size=5).map(lambda d: yaml_text(d).encode()),
))
def test_config_files(content: bytes) -> None:
    root = _fresh()
    with sandbox(root):
        (root / "c.yml").write_bytes(content)
        invoke([*COMPILE, "--config", "c.yml"])
        assert files_under(root) == {"c.yml"}
    shutil.rmtree(root)


@given(st.lists(st.tuples(CONFIG_KEYS, st.one_of(VALUES.map(yaml_text), st.text(max_size=40))), max_size=3))
def test_set_overrides(pairs: list[tuple[str, str]]) -> None:
    root = _fresh()
    with sandbox(root):
        args = [a for k, v in pairs for a in ("--set", f"{k}={v}")]
        invoke([*COMPILE, *args])
        assert files_under(root) == set()
    shutil.rmtree(root)


# ---- the matrix


CASE = st.fixed_dictionaries(
    {"topology": st.sampled_from(["v5p-8", "v6e-8", "v5p-100", ""])},
    optional={
        "model": st.sampled_from(["tiny", "", "nosuch", "../../x:M", "tiny:x"]),
        "name": VALUES, "num_slices": VALUES, "paths": st.one_of(VALUES, st.just(["linen"])),
        "overrides": st.one_of(VALUES, st.lists(st.text(max_size=20), max_size=2)),
        "slow": VALUES, "golden": st.one_of(VALUES, st.sampled_from(["../../x", "a/b", "/abs", ".."])),
    },
).map(lambda c: {**c, "compile": False})
MATRIX = st.fixed_dictionaries(
    {"cases": st.one_of(st.lists(CASE, max_size=2), VALUES)},
    optional={"golden_dir": st.just("golden"), "memory_tolerance": VALUES, "large_leaf_bytes": VALUES,
              "other": VALUES},
)


@given(st.one_of(MATRIX.map(lambda m: yaml_text(m).encode()), RAW), st.booleans())
def test_matrix_files(content: bytes, update: bool) -> None:
    root = _fresh()
    with sandbox(root):
        (root / "matrix.yml").write_bytes(content)
        command = ["golden", "update"] if update else ["check"]
        invoke([*command, "--matrix", "matrix.yml", "--golden", "golden", "--backend", "mock"], gate=True)
        assert {f.split("/")[0] for f in files_under(root)} <= {"matrix.yml", "golden"}
    shutil.rmtree(root)


# ---- golden files, saved reports and MaxText files for diff


@given(st.sampled_from(["named_shardings.json", "logical_annotations.json", "state_dtypes.json", "compile.json"]),
       st.one_of(MUTATION, RAW))
def test_golden_files(name: str, change: Any) -> None:
    root = _fresh()
    golden = root / "g"
    shutil.copytree(GOLDEN, golden)
    if isinstance(change, bytes):
        (golden / name).write_bytes(change)
    else:
        (golden / name).write_text(yaml_text(_mutate(json.loads((golden / name).read_text()), *change)))
    before = files_under(root)
    invoke(["diff", str(golden), str(GOLDEN)], allowed={0, 1, 2})
    assert files_under(root) == before
    shutil.rmtree(root)


@given(st.one_of(MUTATION, RAW))
def test_saved_reports(report_json: Path, change: Any) -> None:
    root = _fresh()
    path = root / "r.json"
    if isinstance(change, bytes):
        path.write_bytes(change)
    else:
        path.write_text(yaml_text(_mutate(json.loads(report_json.read_text()), *change)))
    invoke(["diff", str(path), str(report_json)], allowed={0, 1, 2})
    assert files_under(root) == {"r.json"}
    shutil.rmtree(root)


MESH = {"axis_names": ["data", "fsdp"], "shape": {"data": 1, "fsdp": 4}}
MAXTEXT = {
    ".params/['params']/['w']": {"mesh": MESH, "partition_spec": [["fsdp"], None], "shape": [8, 4]},
    ".step": {"mesh": MESH, "partition_spec": [], "shape": []},
}


@given(st.sampled_from(["named_shardings.json", "logical_shardings.json"]), st.one_of(MUTATION, RAW))
def test_maxtext_files(name: str, change: Any) -> None:
    root = _fresh()
    path = root / name
    if isinstance(change, bytes):
        path.write_bytes(change)
    else:
        path.write_text(yaml_text(_mutate(MAXTEXT, *change)))
    invoke(["diff", str(path), str(GOLDEN)], allowed={0, 1, 2})
    assert files_under(root) == {name}
    shutil.rmtree(root)


# ---- cache entries: read back as a compile section or discarded, never raised


@given(st.one_of(MUTATION, RAW))
def test_cache_entries(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    root = _fresh()
    monkeypatch.setenv("AOTCHECK_CACHE_DIR", str(root))
    good = json.loads((GOLDEN / "compile.json").read_text())
    entry = {k: v for k, v in good.items() if k not in ("backend", "versions")}
    text = change if isinstance(change, bytes) else yaml_text(_mutate(entry, *change)).encode()
    (root / "c-k.json").write_bytes(text)
    got = _cache.get("c", "k", Compile)
    assert got is not None or not (root / "c-k.json").exists()  # a bad entry is removed, to be recompiled
    shutil.rmtree(root)


# ---- whole argument lists


WORDS = st.sampled_from([
    "--topology", "-t", "v5p-8", "v5p-128", "--num-slices", "0", "2", "2147483648", "-1", "--model", "", "tiny",
    "x:y", "--set", "ici_fsdp_parallelism=4", "a=&b [*b]", "=", "--format", "json", "markdown", "xml", "--out",
    "o.json", "/dev/null", ".", "--backend", "mock", "tpu", "--leaves", "--pure-nnx", "--linen", "--config",
    "missing.yml", "--memory-tolerance", "nan", "inf", "1e308", "--debug", "--rewrites", "--help",
])
COMMANDS = st.sampled_from([
    [*COMPILE, "--backend", "mock"], ["diff", "linen", "nnx", "--no-compile", "-t", "v5p-8", "--backend", "mock"],
    ["diff", str(GOLDEN), str(GOLDEN)], ["topologies"], ["models"], ["schema"], ["golden"],
])


@given(COMMANDS, st.lists(st.one_of(WORDS, st.text(max_size=10)), max_size=6))
def test_argument_lists(command: list[str], words: list[str]) -> None:
    root = _fresh()
    with sandbox(root):
        invoke([*command, *words])
        named = {words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--out", "-o")}  # what the user asked for
        assert files_under(root) <= {"o.json", *named}
    shutil.rmtree(root)
