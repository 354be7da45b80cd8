"""pytest-style `-k` expressions over case names: `a and not b`, `or`, parentheses.

A bare word matches a name that contains it (case-insensitive, as pytest's `-k`); a word
with `*`, `?` or `[` is a glob over the whole name. Precedence is pytest's: `not` binds
tighter than `and`, which binds tighter than `or`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable

from aotcheck._errors import UsageError

Matcher = Callable[[Iterable[str]], bool]
_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
_KEYWORDS = ("and", "or", "not")


def compile_expression(text: str) -> Matcher:
    """A predicate over a unit's names (e.g. `tiny/v5p-8/linen` and `tiny/v5p-8`) for a `-k` expression.

    Arguments:
        text: the expression, e.g. `v5p and not nnx`.

    Returns:
        A function of the names that is true when the expression holds for any of them per word.

    Example:
        >>> compile_expression("v5p and not nnx")(["tiny/v5p-8/linen"])
        True
    """
    tokens = _TOKEN.findall(text)
    if not tokens or "".join(tokens).strip() == "":
        raise UsageError("-k: empty expression")
    parser = _Parser(tokens, text)
    matcher = parser.expr()
    if parser.pos != len(tokens):
        raise UsageError(f"-k '{text}': unexpected '{tokens[parser.pos]}'")
    return matcher


def _word(word: str) -> Matcher:
    if any(ch in word for ch in "*?["):
        return lambda names: any(fnmatch.fnmatchcase(n, word) for n in names)
    low = word.lower()
    return lambda names: any(low in n.lower() for n in names)


class _Parser:
    def __init__(self, tokens: list[str], text: str) -> None:
        self.tokens, self.text, self.pos = tokens, text, 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self) -> str:
        token = self._peek()
        if token is None:
            raise UsageError(f"-k '{self.text}': the expression ends too early")
        self.pos += 1
        return token

    def expr(self) -> Matcher:
        left = self.term()
        while self._peek() == "or":
            self.pos += 1
            right = self.term()
            left = (lambda a, b: lambda names: a(names) or b(names))(left, right)
        return left

    def term(self) -> Matcher:
        left = self.factor()
        while self._peek() == "and":
            self.pos += 1
            right = self.factor()
            left = (lambda a, b: lambda names: a(names) and b(names))(left, right)
        return left

    def factor(self) -> Matcher:
        token = self._take()
        if token == "not":
            inner = self.factor()
            return lambda names: not inner(names)
        if token == "(":
            inner = self.expr()
            if self._take() != ")":
                raise UsageError(f"-k '{self.text}': missing ')'")
            return inner
        if token == ")" or token in _KEYWORDS:
            raise UsageError(f"-k '{self.text}': unexpected '{token}'")
        return _word(token)
