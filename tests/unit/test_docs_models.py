"""docs/models.md stays true: its walkthrough quotes the example's adapter, and every error it lists is asserted by a test."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODELS_MD = (REPO / "docs" / "models.md").read_text()
_FIELD = "\0"  # where an f-string in a test puts a value


def section(title: str) -> str:
    found = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", MODELS_MD, re.S | re.M)
    assert found is not None, f"no '## {title}' section in docs/models.md"
    return found.group(1)


def documented_errors() -> list[str]:
    """The message column of the errors table, as written (backticks removed)."""
    rows = [line for line in section("Errors").splitlines() if line.startswith("| ") and not line.startswith("| problem")]
    messages = [re.fullmatch(r"\| .* \| (`+) ?(.*?) ?\1 \| \d \|", row) for row in rows]
    assert all(messages), [r for r, m in zip(rows, messages, strict=True) if m is None]
    return [m.group(2) for m in messages if m is not None]


def pattern(message: str) -> re.Pattern[str]:
    """`<path>` and the like stand for any text; a closing `…` for jax's or Flax's own words."""
    tail = message.endswith(" …")
    parts = re.split(r"<[a-z ]+>", message.removesuffix(" …") if tail else message)
    return re.compile(".+?".join(re.escape(p) for p in parts) + (" .*" if tail else ""))


def strings_in_tests() -> list[str]:
    """Every string literal in the tests (adjacent literals joined, f-string values marked)."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        if path == Path(__file__):  # this file's own examples assert nothing
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                found.append("".join(v.value if isinstance(v, ast.Constant) else _FIELD for v in node.values))
    return found


def test_every_documented_error_is_asserted_by_a_test() -> None:
    messages = documented_errors()
    assert len(messages) >= 30
    strings = [s for s in strings_in_tests() if len(s) > 20]
    missing = [m for m in messages if not any(pattern(m).search(s) for s in strings)]
    assert not missing, f"documented in docs/models.md but asserted by no test: {missing}"


def test_the_matcher_finds_a_message_only_where_its_words_are() -> None:
    factory = pattern("model 'mixer': the <path> factory raised ValueError: hidden_dim must be even")
    assert factory.search(f"error: model 'mixer': the {_FIELD} factory raised ValueError: hidden_dim must be even")
    assert not factory.search(f"error: model 'mixer': the {_FIELD} factory raised ValueError: hidden_dim must be odd")
    jax_tail = pattern("does batch() fit the model? TypeError: …")
    assert jax_tail.search("does batch() fit the model? TypeError: dot_general requires")
    assert not jax_tail.search("does batch() fit the model? ValueError: dot_general requires")


def test_the_walkthrough_quotes_the_example_s_adapter_as_it_is() -> None:
    adapter = (REPO / "examples" / "vit" / "aotcheck_vit" / "__init__.py").read_text()
    walkthrough = section("From a Linen/NNX pair to `compile`, `diff` and `check`")
    quoted = re.findall(r"^```python\n(.*?)^```$", walkthrough, re.S | re.M)
    assert len(quoted) == 3
    for block in quoted:
        assert block in adapter, f"docs/models.md quotes what examples/vit/aotcheck_vit/__init__.py does not say:\n{block}"
