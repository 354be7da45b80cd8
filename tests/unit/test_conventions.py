"""Pure pieces of the CLI conventions: -k expressions, compiler policy, portable golden paths,
[tool.aotcheck] found upwards, and tables that fit a width."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from aotcheck import _matrix, _policy, _select, _settings
from aotcheck._compare import Category, Finding
from aotcheck._errors import UsageError
from aotcheck._portable import is_portable, portable_path, portable_segment
from aotcheck.render._width import fitted_table, shorten_middle, wrap_path

NAMES = ["tiny/v5p-8/linen", "tiny/v5p-8/nnx", "tiny/v6e-8/linen", "mixer/v5p-128/nnx"]


def chosen(expr: str) -> list[str]:
    match = _select.compile_expression(expr)
    return [n for n in NAMES if match([n])]


@pytest.mark.parametrize(("expr", "want"), [
    ("v5p", ["tiny/v5p-8/linen", "tiny/v5p-8/nnx", "mixer/v5p-128/nnx"]),
    ("tiny and not nnx", ["tiny/v5p-8/linen", "tiny/v6e-8/linen"]),
    ("v6e or mixer", ["tiny/v6e-8/linen", "mixer/v5p-128/nnx"]),
    ("not (tiny and linen)", ["tiny/v5p-8/nnx", "mixer/v5p-128/nnx"]),
    ("nnx and (v6e or mixer)", ["mixer/v5p-128/nnx"]),
    ("not not LINEN", ["tiny/v5p-8/linen", "tiny/v6e-8/linen"]),  # substring matches ignore case, as pytest's
    ("tiny/*/nnx", ["tiny/v5p-8/nnx"]),  # a word with a glob character matches the whole name
    ("a or b and c", []),  # and binds tighter than or: a or (b and c)
])
def test_k_expressions_select_as_pytest_does(expr: str, want: list[str]) -> None:
    assert chosen(expr) == want


@pytest.mark.parametrize("bad", ["", "tiny and", "(tiny", "tiny)", "and tiny", "not", "tiny nnx"])
def test_malformed_k_expressions_are_usage_errors(bad: str) -> None:
    with pytest.raises(UsageError, match="^-k"):
        _select.compile_expression(bad)


def test_select_takes_k_expressions() -> None:
    m = _matrix.parse({"cases": [{"topology": "v5p-8"}, {"topology": "v6e-8"}]}, Path("/r/m.yml"))
    assert [u.name for u in _matrix.select(m, pattern="v5p or (v6e and not linen)")] == [
        "tiny/v5p-8/linen", "tiny/v5p-8/nnx", "tiny/v6e-8/nnx"]


MEMORY = Finding(Category.MEMORY, None, {"peak": 100}, {"peak": 110})
FLOPS = Finding(Category.FLOPS, None, 1.0, 2.0)
SPEC = Finding(Category.PARTITION_SPEC, "param/x", ["fsdp"], [])
STOPS = Finding(Category.FIT_VERDICT, None, "fits", "does not fit")


def test_compiler_change_names_the_compiler_versions_that_differ() -> None:
    was = {"jax": "0.10.2", "jaxlib": "0.10.2", "libtpu": "0.0.42", "flax": "0.12.7"}
    assert _policy.compiler_change(was, {**was, "flax": "0.12.9"}) == ""
    assert _policy.compiler_change(was, {**was, "libtpu": "0.0.46"}) == "libtpu 0.0.42 -> 0.0.46"


def test_a_compiler_change_sets_program_figures_apart_but_not_sharding_or_a_lost_fit() -> None:
    split = _policy.split([SPEC, MEMORY, FLOPS, STOPS], "libtpu 0.0.42 -> 0.0.46")
    assert split.compiler == (MEMORY, FLOPS)
    assert split.regressions == (SPEC, STOPS)
    assert split.label == "compiler changed (libtpu 0.0.42 -> 0.0.46)"
    # The same compiler: everything stays a regression.
    assert _policy.split([SPEC, MEMORY], "").regressions == (SPEC, MEMORY)


def test_a_program_figure_added_later_joins_the_compiler_group_without_being_listed() -> None:
    later = Finding(Category.COLLECTIVES, None, {"all-gather": 18}, {"all-gather": 16})
    assert _policy.split([later], "jax 0.10.2 -> 0.12.0").compiler == (later,)


def test_a_newly_unmatched_logical_name_stays_a_regression_under_a_compiler_change() -> None:
    unmatched = Finding(Category.UNMATCHED_AXIS, None, None, {"name": "heads", "leaves": 2, "bytes_per_device": 64})
    split = _policy.split([unmatched, FLOPS], "libtpu 0.0.42 -> 0.0.46")
    assert split.regressions == (unmatched,) and split.compiler == (FLOPS,)


def test_a_leaf_the_new_compiler_reshards_is_set_apart_with_the_program_figures() -> None:
    # Drift names a leaf, but it is the compiled step's doing: which compiler is a cause to name.
    drift = Finding(Category.SHARDING_DRIFT, "param/x", "P('fsdp')", "P()")
    split = _policy.split([drift, SPEC], "libtpu 0.0.42 -> 0.0.46")
    assert split.compiler == (drift,) and split.regressions == (SPEC,)
    assert _policy.split([drift], "").regressions == (drift,)


def test_backend_notes_say_why_figures_were_not_compared() -> None:
    assert _policy.backend_note("libtpu", "mock", "auto") == (
        "compile figures not compared: golden from libtpu; this run is mock: libtpu is not installed here")
    assert _policy.backend_note("libtpu", "mock", "mock").endswith("this run is mock: --backend mock was asked")
    assert _policy.keeps_compile("libtpu", "mock", force=False)
    assert not _policy.keeps_compile("libtpu", "mock", force=True)
    assert not _policy.keeps_compile("mock", "libtpu", force=False)


@pytest.mark.parametrize(("name", "want"), [
    ("my_mlp:MLP", "my_mlp.MLP"),
    ("pkg.models:Model", "pkg.models.Model"),
    ('a<b>c|d?e*f"g\\h', "a_b_c_d_e_f_g_h"),
    ("trailing. ", "trailing"),
    ("CON", "CON_"),
    ("nul.txt", "nul.txt_"),
])
def test_portable_segments(name: str, want: str) -> None:
    assert portable_segment(name) == want


def test_a_module_attr_model_gets_a_portable_golden_directory_and_built_in_ones_keep_theirs() -> None:
    m = _matrix.parse({"cases": [{"model": "my_mlp:MLP", "topology": "v5p-8"},
                                 {"model": "llama2-7b", "topology": "v5p-128", "num_slices": 2}]}, Path("/r/m.yml"))
    assert [c.golden for c in m.cases] == ["my_mlp.MLP/v5p-8", "llama2-7b/v5p-128-x2"]
    assert m.cases[0].name == "my_mlp:MLP/v5p-8"  # names are not paths: unchanged
    assert is_portable("tiny/v5p-8") and portable_path("a:b/c") == "a.b/c"
    with pytest.raises(UsageError, match="is not a portable path.*use 'x.y'"):
        _matrix.parse({"cases": [{"topology": "v5p-8", "golden": "x:y"}]}, Path("/r/m.yml"))


def test_tool_aotcheck_is_found_from_a_subdirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.aotcheck]\nbackend = "mock"\njobs = 2\ncompiler_changes = "warn"\ngolden_dir = "g"\n'
        '[[tool.aotcheck.cases]]\ntopology = "v5p-8"\nmemory_tolerance = 0.05\n')
    deep = tmp_path / "src" / "pkg"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    settings = _settings.find()
    assert settings.pyproject == tmp_path / "pyproject.toml"
    assert _settings.choice("backend", None, settings, "auto", ("auto", "libtpu", "mock")) == "mock"
    assert _settings.choice("backend", "libtpu", settings, "auto", ("auto", "libtpu", "mock")) == "libtpu"
    assert _settings.count("jobs", None, settings, 1) == 2
    m = _matrix.load()
    assert m.golden_dir == tmp_path.resolve() / "g" and m.compiler_changes == "warn"
    assert m.cases[0].memory_tolerance == 0.05


def test_tool_aotcheck_may_point_at_a_matrix_file_and_refine_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "matrix.yml").write_text("golden_dir: golden\ncases: [{topology: v5p-8}]\n")
    (tmp_path / "pyproject.toml").write_text('[tool.aotcheck]\nmatrix = "ci/matrix.yml"\ncompiler_changes = "warn"\n')
    monkeypatch.chdir(tmp_path)
    m = _matrix.load()
    assert m.golden_dir == (tmp_path / "ci" / "golden").resolve() and m.compiler_changes == "warn"


def test_bad_settings_are_usage_errors(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.aotcheck]\nbackend = "gpu"\njobs = 0\n')
    settings = _settings.find(tmp_path)
    with pytest.raises(UsageError, match=r"\[tool.aotcheck\] backend = 'gpu'; choose one of auto, libtpu, mock"):
        _settings.choice("backend", None, settings, "auto", ("auto", "libtpu", "mock"))
    with pytest.raises(UsageError, match="jobs = 0; expected a positive integer"):
        _settings.count("jobs", None, settings, 1)


def test_paths_wrap_after_a_slash_and_long_segments_are_shortened_in_the_middle() -> None:
    assert shorten_middle("abcdefghij", 5) == "ab…ij"
    wrapped = wrap_path("opt_state/0/mu/decoder/layers/post_self_attention_layer_norm/scale", 20)
    assert all(len(line) <= 20 for line in wrapped.splitlines())
    assert "post_self…ayer_norm/" in wrapped.splitlines()


def _render(table: object, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), soft_wrap=False)
    console.print(table)
    return console.file.getvalue().splitlines()  # type: ignore[attr-defined]


def test_a_table_fits_its_width_and_says_which_columns_it_left_out() -> None:
    headers = ("path", "shape", "dtype", "logical axes", "spec", "per device", "bytes/device")
    row = ("params/decoder/layers/self_attention/query/kernel", "[256, 4, 8, 32]", "float32",
           "(embed, layers, q_heads, kv)", "P(None, None, None, 'fsdp')", "[256, 4, 8, 8]", "256.00 KiB")
    for width in (80, 100, 140):
        lines = _render(fitted_table("t", headers, [row], width, optional=("logical axes", "per device")), width)
        assert max(map(len, lines)) <= width
        assert "float32" in "\n".join(lines) and "256.00 KiB" in "\n".join(lines)
    narrow = "\n".join(_render(fitted_table("t", headers, [row], 80, optional=("logical axes", "per device")), 80))
    assert "logical axes and per device left out at 80 columns" in narrow
    full = "\n".join(_render(fitted_table("t", headers, [row], None), 400))
    assert row[0] in full and "(embed, layers, q_heads, kv)" in full  # piped: every column, the full path
