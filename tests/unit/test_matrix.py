"""The matrix of guarded cases: parsing, selection and sharding across CI runners."""

from __future__ import annotations

from pathlib import Path

import pytest

from aotcheck import _canonical, _matrix
from aotcheck._errors import UsageError

SOURCE = Path("/repo/configs/matrix.yml")


def matrix(**changes) -> _matrix.Matrix:
    data = {
        "cases": [
            {"model": "tiny", "topology": "v5p-8"},
            {"model": "tiny", "topology": "v5p-8", "num_slices": 2},
            {"model": "tiny", "topology": "v6e-8", "paths": ["nnx"]},
            {"model": "llama2-7b", "topology": "v5p-128", "compile": False},
            {"name": "llama2-7b/v5p-128/compile", "model": "llama2-7b", "topology": "v5p-128", "slow": True},
        ],
        **changes,
    }
    return _matrix.parse(data, SOURCE)


def test_defaults():
    m = _matrix.parse({"cases": [{"topology": "v5p-8"}]}, SOURCE)
    assert m.golden_dir == Path("/repo/configs/golden")
    assert m.memory_tolerance == 0.01 and m.large_leaf_bytes == 1 << 20
    (case,) = m.cases
    assert case == _matrix.Case(name="tiny/v5p-8", model="tiny", topology="v5p-8", num_slices=1, paths=("linen", "nnx"),
                                overrides=(), compile=True, slow=False, golden="tiny/v5p-8")


def test_golden_dir_is_relative_to_the_matrix_file():
    assert matrix(golden_dir="../golden").golden_dir == Path("/repo/golden")


def test_names_and_golden_directories_default_from_model_topology_and_slices():
    m = matrix()
    assert [c.name for c in m.cases] == ["tiny/v5p-8", "tiny/v5p-8-x2", "tiny/v6e-8", "llama2-7b/v5p-128",
                                         "llama2-7b/v5p-128/compile"]
    assert [c.golden for c in m.cases] == ["tiny/v5p-8", "tiny/v5p-8-x2", "tiny/v6e-8", "llama2-7b/v5p-128",
                                           "llama2-7b/v5p-128"]
    unit = m.units()[0]
    assert unit.name == "tiny/v5p-8/linen"
    assert unit.golden_dir(Path("/g")) == Path("/g/tiny/v5p-8/linen")


def test_a_given_golden_subdirectory_is_used():
    m = _matrix.parse({"cases": [{"topology": "v5p-8", "golden": "/custom/dir/"}]}, SOURCE)
    assert m.cases[0].golden == "custom/dir"


def test_overrides_as_a_mapping_become_set_items():
    m = _matrix.parse({"cases": [{"topology": "v5p-8", "overrides": {"ici_expert_parallelism": 4,
                                                                     "scan_layers": False}}]}, SOURCE)
    assert m.cases[0].overrides == ("ici_expert_parallelism=4", "scan_layers=false")


def test_an_override_that_is_not_key_value_is_refused():
    with pytest.raises(UsageError, match="^matrix: override 'scan_layers' is not key=value$"):
        _matrix.parse({"cases": [{"topology": "v5p-8", "overrides": ["scan_layers"]}]}, SOURCE)


def test_empty_cases_are_refused():
    with pytest.raises(UsageError, match=rf"^matrix {SOURCE}: cases: ") as info:
        _matrix.parse({"cases": []}, SOURCE)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match=rf"^matrix {SOURCE}: cases: Field required"):
        _matrix.parse({}, SOURCE)


def test_unknown_keys_are_refused():
    with pytest.raises(UsageError, match=rf"^matrix {SOURCE}: golden: Extra inputs are not permitted$"):
        _matrix.parse({"golden": "x", "cases": [{"topology": "v5p-8"}]}, SOURCE)
    with pytest.raises(UsageError, match=rf"^matrix {SOURCE}: cases\.0\.slowly: Extra inputs are not permitted$"):
        _matrix.parse({"cases": [{"topology": "v5p-8", "slowly": True}]}, SOURCE)


def test_bad_values_are_refused():
    with pytest.raises(UsageError, match=r"cases\.0\.paths: .*non-empty list of distinct paths"):
        _matrix.parse({"cases": [{"topology": "v5p-8", "paths": ["nnx", "nnx"]}]}, SOURCE)
    with pytest.raises(UsageError, match=r"cases\.0\.num_slices: "):
        _matrix.parse({"cases": [{"topology": "v5p-8", "num_slices": 0}]}, SOURCE)
    with pytest.raises(UsageError, match=r"memory_tolerance: "):
        _matrix.parse({"memory_tolerance": float("nan"), "cases": [{"topology": "v5p-8"}]}, SOURCE)
    with pytest.raises(UsageError, match=r"expected a mapping with a 'cases' list"):
        _matrix.parse([{"topology": "v5p-8"}], SOURCE)


def test_a_case_carries_its_own_rewrites_inline_or_from_a_file_beside_the_matrix(tmp_path):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "body.yml").write_text("nnx:\n  - ['^(param|opt/\\d+/\\w+)/body/', '\\1/']\n")
    inline = {"nnx": [[r"^(param|opt/\d+/\w+)/body/", r"\1/"]]}
    m = _matrix.parse({"cases": [{"topology": "v5p-8", "rewrites": inline},
                                 {"topology": "v5p-128", "rewrites": "rules/body.yml"},
                                 {"topology": "v6e-8"}]}, tmp_path / "matrix.yml")
    from_data, from_file, none = (c.rewrites for c in m.cases)
    assert none is None
    for rules in (from_data, from_file):
        assert rules.canonical("param/body/w", "param", "nnx") == "param/w"
        assert rules.canonical("param/body/w", "param", "linen") == "param/body/w"


@pytest.mark.parametrize(("rewrites", "message"), [
    ({"nnx": [["(a)", "\\2"]]}, "case 'mine' rewrites: nnx rule 1: bad replacement '\\\\2': invalid group reference 2 at position 1"),
    ({"jax": []}, "case 'mine' rewrites: unknown source kind 'jax' (one of linen, nnx, maxtext, all)"),
    (5, "case 'mine' rewrites: expected a mapping of linen, nnx, maxtext, all to rule lists"),
    ("missing.yml", "case 'mine' rewrites: rewrites file /repo/configs/missing.yml does not exist"),
])
def test_bad_case_rewrites_are_one_line_errors_naming_the_case(rewrites, message):
    with pytest.raises(UsageError) as info:
        _matrix.parse({"cases": [{"name": "mine", "topology": "v5p-8", "rewrites": rewrites}]}, SOURCE)
    assert str(info.value) == f"matrix {SOURCE}: cases.0: {message}"


def test_duplicate_names_are_refused():
    with pytest.raises(UsageError, match="two cases are named 'tiny/v5p-8'"):
        _matrix.parse({"cases": [{"topology": "v5p-8"}, {"topology": "v5p-8", "paths": ["nnx"]}]}, SOURCE)


def test_cases_sharing_a_golden_directory_must_build_the_same_model():
    with pytest.raises(UsageError, match="cases 'tiny/v5p-8' and 'other' differ but share the golden directory"):
        _matrix.parse({"cases": [{"topology": "v5p-8"},
                                 {"name": "other", "topology": "v5p-8", "overrides": ["scan_layers=false"],
                                  "golden": "tiny/v5p-8"}]}, SOURCE)


def names(units) -> list[str]:
    return [u.name for u in units]


def test_select_all_skips_slow_cases_unless_asked():
    m = matrix()
    assert "llama2-7b/v5p-128/compile/linen" not in names(_matrix.select(m))
    assert len(_matrix.select(m)) == 7
    assert names(_matrix.select(m, slow=True))[-2:] == ["llama2-7b/v5p-128/compile/linen",
                                                       "llama2-7b/v5p-128/compile/nnx"]


def test_select_by_name_takes_slow_cases_too():
    m = matrix()
    assert names(_matrix.select(m, names=["llama2-7b/v5p-128/compile", "tiny/v6e-8"])) == [
        "tiny/v6e-8/nnx", "llama2-7b/v5p-128/compile/linen", "llama2-7b/v5p-128/compile/nnx"]


def test_select_by_an_unknown_name_suggests_close_ones():
    with pytest.raises(UsageError, match=r"^no case named 'tiny/v5p8' in .*; did you mean tiny/v5p-8"):
        _matrix.select(matrix(), names=["tiny/v5p8"])


def test_select_by_pattern_substring_or_glob():
    m = matrix()
    assert names(_matrix.select(m, pattern="x2")) == ["tiny/v5p-8-x2/linen", "tiny/v5p-8-x2/nnx"]
    assert names(_matrix.select(m, pattern="tiny/*/nnx")) == ["tiny/v5p-8/nnx", "tiny/v5p-8-x2/nnx", "tiny/v6e-8/nnx"]
    # A glob may match the case name alone, selecting all its paths.
    assert names(_matrix.select(m, pattern="llama2-7b/v5p-128")) == ["llama2-7b/v5p-128/linen",
                                                                     "llama2-7b/v5p-128/nnx"]
    with pytest.raises(UsageError, match="^no case matches 'mixtral' in "):
        _matrix.select(m, pattern="mixtral")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 10])
def test_shards_are_disjoint_and_complete(n):
    units = _matrix.select(matrix(), slow=True)
    shards = [_matrix.shard(units, i, n) for i in range(1, n + 1)]
    together = [u for s in shards for u in s]
    assert sorted(names(together)) == sorted(names(units))
    assert len(together) == len(set(names(together)))
    # Whole cases (both paths on one runner, so they share its compile cache), balanced to within a case.
    for s in shards:
        for u in s:
            assert all(other in s for other in units if other.case == u.case)
    assert max(map(len, shards)) - min(map(len, shards)) <= max(len(c.paths) for c in matrix().cases)
    # Deterministic, and in matrix order within a shard.
    assert shards == [_matrix.shard(units, i, n) for i in range(1, n + 1)]
    for s in shards:
        assert s == sorted(s, key=units.index)


def test_parse_shard():
    assert _matrix.parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "1/0"):
        with pytest.raises(UsageError, match=rf"^--shard {bad}: need 1 <= i <= n$"):
            _matrix.parse_shard(bad)
    for bad in ("2", "a/b", "1/2/3"):
        with pytest.raises(UsageError, match=rf"^--shard expects i/n such as 1/4, got '{bad}'$"):
            _matrix.parse_shard(bad)


def test_the_repositorys_matrix_loads(repo):
    m = _matrix.load(Path(repo) / "configs" / "matrix.yml")
    assert m.golden_dir == Path(repo).resolve() / "golden"
    assert all((m.golden_dir / c.golden).is_dir() for c in m.cases)


def test_a_toml_matrix_is_read_from_tool_aotcheck(tmp_path):
    path = tmp_path / "pyproject.toml"
    path.write_text('[tool.aotcheck]\ngolden_dir = "g"\n[[tool.aotcheck.cases]]\ntopology = "v5p-8"\n')
    m = _matrix.load(path)
    assert m.golden_dir == tmp_path.resolve() / "g" and m.cases[0].name == "tiny/v5p-8"
    path.write_text("[tool.other]\n")
    with pytest.raises(UsageError, match=r"no \[tool\.aotcheck\] table"):
        _matrix.load(path)


def test_the_case_rewrites_example_in_docs_ci_parses(tmp_path):
    import re

    import yaml

    docs = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text()
    (example,) = [b for b in re.findall(r"```yaml\n(.*?)```", docs, flags=re.S) if "rewrites" in b]
    (tmp_path / "rewrites").mkdir()
    (tmp_path / "rewrites" / "my_model.yml").write_text("nnx:\n  - ['^net/', 'param/', param]\n")
    inline, from_file = _matrix.parse(yaml.safe_load(example), tmp_path / "matrix.yml").cases
    for case in (inline, from_file):
        rules = _canonical.defaults().then(case.rewrites)  # as the gate applies them
        assert rules.canonical("net/dense/kernel/value", "param", "nnx") == "param/dense/kernel"
