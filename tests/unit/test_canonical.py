"""Canonical leaf paths: Linen, NNX and MaxText names of one leaf meet on one path."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aotcheck import _canonical
from aotcheck._errors import UsageError

# (Linen path, NNX path, role, canonical path)
SAME_LEAF = [
    ("params/decoder/layers/mlp/wi_0/kernel", "model/decoder/layers/mlp/wi_0/kernel/value", "param",
     "param/decoder/layers/mlp/wi_0/kernel"),
    ("params/decoder/layers_3/self_attention/query/kernel", "model/decoder/layers/3/self_attention/query/kernel/value",
     "param", "param/decoder/layers/3/self_attention/query/kernel"),
    ("params/decoder/layers_12/mlp/wo/kernel", "model/decoder/layers/12/mlp/wo/kernel/value", "param",
     "param/decoder/layers/12/mlp/wo/kernel"),
    ("opt_state/0/mu/decoder/layers_3/mlp/wo/kernel", "optimizer/opt_state/0/mu/decoder/layers/3/mlp/wo/kernel/value",
     "optimizer", "opt/0/mu/decoder/layers/3/mlp/wo/kernel"),
    ("opt_state/0/nu/token_embedder/embedding", "optimizer/opt_state/0/nu/token_embedder/embedding/value",
     "optimizer", "opt/0/nu/token_embedder/embedding"),
    ("opt_state/0/count", "optimizer/opt_state/0/count/value", "optimizer", "opt/0/count"),
    ("step", "optimizer/step/value", "step", "step"),
    ("step", "optimizer/step", "step", "step"),
]


@pytest.mark.parametrize(("linen", "nnx", "role", "canonical"), SAME_LEAF)
def test_linen_and_nnx_names_of_a_leaf_map_to_one_canonical_path(linen, nnx, role, canonical):
    rewrites = _canonical.defaults()
    assert rewrites.canonical(linen, role, "linen") == canonical
    assert rewrites.canonical(nnx, role, "nnx") == canonical
    assert _canonical.role_of(canonical) == role


def test_maxtext_paths_map_to_the_same_canonical_paths():
    rewrites = _canonical.defaults()
    assert rewrites.canonical(".params/['params']/['decoder']/['layers']/['mlp']/['wo']/['kernel']", "other",
                              "maxtext") == "param/decoder/layers/mlp/wo/kernel"
    assert rewrites.canonical(".opt_state/[0]/.mu/['params']/['decoder']/['layers_3']/['kernel']", "other",
                              "maxtext") == "opt/0/mu/decoder/layers/3/kernel"
    assert rewrites.canonical(".step", "other", "maxtext") == "step"


def test_nnx_rng_and_other_variables_get_their_own_heads():
    rewrites = _canonical.defaults()
    assert rewrites.canonical("model/rngs/default/key/value", "rng", "nnx") == "rng/rngs/default/key"
    assert rewrites.canonical("model/decoder/cache/index/value", "other", "nnx") == "other/decoder/cache/index"
    assert _canonical.role_of("rng/rngs/default/key") == "rng"
    assert _canonical.role_of("other/decoder/cache/index") == "other"


def test_layers_rewrite_matches_whole_path_components_only():
    rewrites = _canonical.defaults()
    assert rewrites.canonical("params/decoder/layers_3", "param", "linen") == "param/decoder/layers/3"
    assert rewrites.canonical("params/decoder/my_layers_3/kernel", "param", "linen") == "param/decoder/my_layers_3/kernel"
    assert rewrites.canonical("params/decoder/layers_3x/kernel", "param", "linen") == "param/decoder/layers_3x/kernel"


def test_user_rules_run_after_the_defaults_on_canonical_paths():
    user = _canonical.parse({"nnx": [[r"^(param|opt/\d+/\w+)/backbone/", r"\1/decoder/"]]}, "user.yml")
    rewrites = _canonical.defaults().then(user)
    assert rewrites.canonical("model/backbone/norm/scale/value", "param", "nnx") == "param/decoder/norm/scale"
    assert rewrites.canonical("optimizer/opt_state/0/mu/backbone/norm/scale/value", "optimizer",
                              "nnx") == "opt/0/mu/decoder/norm/scale"
    # Linen paths are untouched by nnx rules.
    assert rewrites.canonical("params/backbone/norm/scale", "param", "linen") == "param/backbone/norm/scale"


def test_the_same_rules_given_twice_apply_once():
    # Both sides of a diff of saved reports record their model's rules; a rule that is not
    # idempotent shows whether they ran twice.
    data = {"all": [["^param/", "param/x/"]]}
    twice = _canonical.defaults().then(_canonical.parse(data, "a.json")).then(_canonical.parse(data, "b.json"))
    assert twice.canonical("params/w", "param", "linen") == "param/x/w"
    other = _canonical.parse({"all": [["^param/x/", "param/y/"]]}, "c.yml")
    assert twice.then(other).canonical("params/w", "param", "linen") == "param/y/w"


def test_recorded_rules_are_the_rules_as_data_and_bad_ones_are_refused():
    assert _canonical.recordable({"nnx": [["^net/", "param/", "param"]]}, "spec") == {"nnx": (("^net/", "param/", "param"),)}
    with pytest.raises(UsageError, match=r"^spec: nnx rule 1: expected \[pattern, replacement\]"):
        _canonical.recordable({"nnx": [["^net/"]]}, "spec")


def test_a_rule_with_a_role_applies_only_to_that_role():
    rewrites = _canonical.parse({"all": [["^x/", "y/", "rng"]]}, "r.yml")
    assert rewrites.canonical("x/a", "rng", "linen") == "y/a"
    assert rewrites.canonical("x/a", "param", "linen") == "x/a"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (["^a", "b"], r"^bad\.yml: expected a mapping of linen, nnx, maxtext, all to rule lists$"),
        ({"jax": []}, r"^bad\.yml: unknown source kind 'jax' \(one of linen, nnx, maxtext, all\)$"),
        ({"nnx": "^a"}, r"^bad\.yml: 'nnx' must be a list of \[pattern, replacement\] rules$"),
        ({"nnx": [["^a"]]}, r"^bad\.yml: nnx rule 1: expected \[pattern, replacement\] or \[pattern, replacement, role\]"),
        ({"linen": [["^a", "b"], ["(", "x"]]}, r"^bad\.yml: linen rule 2: bad pattern '\(': "),
        ({"linen": [["^(a)", r"\2"]]}, r"^bad\.yml: linen rule 1: bad replacement '\\\\2': "),
        ({"linen": [["^a", "b", "weights"]]}, r"^bad\.yml: linen rule 1: unknown role 'weights' \(one of param, "),
    ],
)
def test_a_bad_rule_is_a_one_line_usage_error(data, expected):
    with pytest.raises(UsageError, match=expected) as info:
        _canonical.parse(data, "bad.yml")
    assert "\n" not in str(info.value)


def test_a_bad_rewrites_file_is_a_one_line_usage_error_naming_it(tmp_path):
    bad = tmp_path / "rewrites.yml"
    bad.write_text("nnx:\n  - ['^model/(', 'param/']\n")
    with pytest.raises(UsageError, match=rf"^{bad}: nnx rule 1: bad pattern") as info:
        _canonical.read(bad)
    assert "\n" not in str(info.value)
    broken = tmp_path / "broken.yml"
    broken.write_text("nnx: [\n")
    with pytest.raises(UsageError, match=rf"^rewrites file {broken} line \d+ is not valid YAML") as info:
        _canonical.read(broken)
    assert "\n" not in str(info.value)
    with pytest.raises(UsageError, match="does not exist"):
        _canonical.read(tmp_path / "missing.yml")


def test_an_empty_rewrites_file_changes_nothing(tmp_path):
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    assert _canonical.read(empty).canonical("params/a", "param", "linen") == "params/a"


PIECES = ["a", "b", "/", "_", "x", ".", "*", "+", "?", "{0,2}", "|", "(", ")", "[ab]", "[]a]", "[^/]", "\\d", "\\.",
          "$", "^", "(?=", "(?:", "(?i)", "(?i:"]


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(PIECES), max_size=9), st.text(alphabet="aAb/_x.01]", max_size=12))
@example(["^", "a", "b", "*"], "a")  # a quantified last literal may be absent
@example(["^", "a", "b", "{0,2}"], "a_")
@example(["^", "a", "|", "x"], "x")  # an alternative is not anchored
@example(["(", "a", "|", "b", ")", "x"], "bx")  # one inside a group is
@example(["(?i)", "a", "b"], "AB")  # a flag changes what a literal matches
@example(["[]a]", "b"], "]b")  # `]` first in a class is literal
def test_a_path_without_a_rules_required_text_is_one_the_rule_cannot_change(pieces, path):
    # The shortcut that skips a rule for paths without its prefix or text must never skip a match.
    pattern = "".join(pieces)
    try:
        compiled = re.compile(pattern)
    except re.error:
        return
    if compiled.search(path) is not None:
        prefix, infix = _canonical.required_text(pattern)
        assert path.startswith(prefix) and infix in path


def test_rewritten_paths_equal_plain_substitution_in_turn():
    rewrites = _canonical.defaults().then(_canonical.parse({"all": [["^param/decoder/", "param/dec/"]]}, "u.yml"))
    for linen, nnx, role, _ in SAME_LEAF:
        for path, kind in ((linen, "linen"), (nnx, "nnx")):
            plain = path
            for stage in rewrites.stages:
                for rule in (*stage.get(kind, ()), *stage.get("all", ())):
                    plain = rule.apply(plain, role)
            assert rewrites.canonical(path, role, kind) == plain


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from(["^", "", "$"]), st.text(alphabet="ab/_.", min_size=1, max_size=4),
                          st.sampled_from(["", "x/", r"\g<0>", "a"])), max_size=4),
       st.text(alphabet="ab/_.\n", max_size=12))
@example([("$", "b", "")], "ab\n")  # `b$` matches before a final newline
def test_a_plan_of_rules_rewrites_as_substitution_in_turn_does(rules, path):
    data = [[(f"^{re.escape(text)}" if anchor == "^" else f"{re.escape(text)}$" if anchor == "$" else re.escape(text)),
             replacement] for anchor, text, replacement in rules]
    rewrites = _canonical.parse({"all": data}, "r.yml")
    plain = path
    for rule in rewrites.stages[0]["all"]:
        plain = rule.apply(plain, "param")
    assert rewrites.canonical(path, "param", "linen") == plain


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.sampled_from([r"a+", r"(a|b)(/|$)", r"^(\w+)/", r"(?<=/)b*", r"_(\d+)", r"(x)?a"]),
                          st.sampled_from(["", r"\g<0>!", r"\1-", r"[\g<0>]\n", "z"]),
                          st.sampled_from([None, "param", "optimizer"])), min_size=1, max_size=4),
       st.lists(st.tuples(st.text(alphabet="ab/_x1\n", max_size=10), st.sampled_from(["param", "optimizer"])),
                max_size=12))
@example([(r"a+", r"\g<0>!", None)], [("a/aa", "param"), ("aa/a", "param")])  # same groups, other match text
def test_many_leaves_at_once_rewrite_as_each_leaf_alone_does(rules, leaves):
    data = [[pattern, replacement, *([role] if role else [])] for pattern, replacement, role in rules]
    try:
        rewrites = _canonical.parse({"linen": data}, "r.yml")
    except UsageError:  # a replacement naming a group its pattern lacks
        return
    one_by_one = []
    for path, role in leaves:
        for rule in rewrites.stages[0]["linen"]:
            path = rule.apply(path, role)
        one_by_one.append(path)
    assert rewrites.canonical_all(leaves, "linen") == one_by_one
