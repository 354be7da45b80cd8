"""Parse compiled (post-optimisation) HLO module text into computations and instructions.

The input is `compiled.as_text()` or an XLA dump file (`*.after_optimizations.txt`). Only
what the cost walk needs is parsed: names, opcodes, result shapes, operand names and the
attributes after the operand list, kept as raw text by key. Nothing here evaluates
anything; `aotcheck._cost` does the counting.

Shapes are logical: TPU layouts pad tiles (`T(8,128)`) physically, but the padding is the
compiler's business and XLA's own cost analysis also counts logical bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from math import prod

# Bytes per element. Sub-byte types round up: a byte-granular estimate is what we need.
DTYPE_BYTES: Mapping[str, float] = {
    "pred": 1, "s2": 0.25, "u2": 0.25, "s4": 0.5, "u4": 0.5, "s8": 1, "u8": 1,
    "f8e4m3fn": 1, "f8e5m2": 1, "f8e4m3": 1, "f8e4m3b11fnuz": 1, "f8e5m2fnuz": 1, "f8e4m3fnuz": 1,
    "f8e3m4": 1, "f8e8m0fnu": 1, "f4e2m1fn": 0.5,
    "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
    "f32": 4, "s32": 4, "u32": 4,
    "f64": 8, "s64": 8, "u64": 8, "c64": 8, "c128": 16,
    "token": 0,
}

_ARRAY_RE = re.compile(r"([a-z][a-z0-9]*)\[([^\]]*)\]")
_COMMENT_RE = re.compile(r"/\*.*?\*/")
_INSTR_RE = re.compile(r"^\s*(ROOT\s+)?%?([^\s=]+)\s*=\s*(.*)$")
_HEADER_RE = re.compile(r"^(ENTRY\s+)?%?([^\s(]+)\s*\(.*\{\s*$")
_OPCODE_RE = re.compile(r"([a-z][a-z0-9\-]*)\(")
_NAME_RE = re.compile(r"%([^\s,(){}]+)")


@dataclass(frozen=True)
class Array:
    """One array in a shape: element type and dimensions."""

    dtype: str
    dims: tuple[int, ...]

    @property
    def elements(self) -> int:
        return prod(self.dims)

    @property
    def bytes(self) -> float:
        return self.elements * DTYPE_BYTES.get(self.dtype, 4)


@dataclass(frozen=True)
class Instruction:
    """One HLO instruction.

    `arrays` is the result shape flattened (a tuple result gives several); `operands`
    are operand instruction names in order; `attributes` maps each `key=value` after the
    operand list to its raw value text (braces and quotes kept).
    """

    name: str
    opcode: str
    arrays: tuple[Array, ...]
    operands: tuple[str, ...]
    attributes: Mapping[str, str]
    is_root: bool = False
    literal: str = ""  # the text inside `constant(...)` or `parameter(...)`, else ""

    @property
    def bytes(self) -> float:
        return sum(a.bytes for a in self.arrays)

    @property
    def elements(self) -> int:
        return sum(a.elements for a in self.arrays)

    def called(self, key: str) -> tuple[str, ...]:
        """Computation names an attribute refers to (`calls=`, `body=`, `branch_computations={..}`)."""
        return tuple(_NAME_RE.findall(self.attributes.get(key, "")))

    @property
    def op_name(self) -> str:
        """The JAX name stack from the metadata, or ""."""
        m = re.search(r'op_name="([^"]*)"', self.attributes.get("metadata", ""))
        return m.group(1) if m else ""


@dataclass(frozen=True)
class Computation:
    name: str
    instructions: tuple[Instruction, ...]
    is_entry: bool = False
    by_name: Mapping[str, Instruction] = field(default_factory=dict, compare=False, repr=False)

    @property
    def root(self) -> Instruction | None:
        return next((i for i in self.instructions if i.is_root), self.instructions[-1] if self.instructions else None)


@dataclass(frozen=True)
class Module:
    name: str
    computations: Mapping[str, Computation]
    entry: str

    @property
    def entry_computation(self) -> Computation:
        return self.computations[self.entry]


def parse_shape(text: str) -> tuple[Array, ...]:
    """All arrays in a shape string, tuples flattened: `(f32[2]{0}, bf16[3,4])` -> 2 arrays.

    Arguments:
        text: the shape as HLO prints it, layouts and `/*index=N*/` comments allowed.
    Returns:
        The arrays in order; `token[]` and `s32[]` give zero-dimensional arrays.
    """
    text = _COMMENT_RE.sub("", text)
    # Layouts `{1,0:T(8,128)}` contain no `[`, so the array regex only sees dtype[dims].
    out = []
    for dtype, dims in _ARRAY_RE.findall(text):
        if dtype not in DTYPE_BYTES:
            continue
        sizes = tuple(int(d.replace("<=", "")) for d in dims.split(",") if d.strip())
        out.append(Array(dtype, sizes))
    return tuple(out)


# Only brackets, quotes, backslashes and the separator matter to the scanners below, so
# they jump from one such character to the next instead of walking every character.
_SPECIAL_RE = re.compile(r'[(){}\[\]"\\,]')


def _structure(text: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """(index, character, bracket depth after it) for each bracket or comma outside quotes."""
    depth, quote, skip = 0, False, -1
    for m in _SPECIAL_RE.finditer(text, start):
        i, c = m.start(), m.group()
        if i == skip:
            continue
        if quote:
            if c == "\\":
                skip = i + 1
            elif c == '"':
                quote = False
        elif c == '"':
            quote = True
        elif c in "({[":
            depth += 1
            yield i, c, depth
        elif c in ")}]":
            depth -= 1
            yield i, c, depth
        elif c == ",":
            yield i, c, depth


def _balanced(text: str, start: int) -> int:
    """Index just past the bracket group that opens at text[start]."""
    for i, c, depth in _structure(text, start):
        if depth == 0 and c in ")}]":
            return i + 1
    return len(text)


def split_top_level(text: str, sep: str = ",") -> Iterator[str]:
    """Split on commas outside brackets and quotes (attribute lists, operand lists)."""
    if sep != ",":
        raise ValueError("only ',' is supported")
    start = 0
    for i, c, depth in _structure(text):
        if c == "," and depth == 0:
            yield text[start:i].strip()
            start = i + 1
    tail = text[start:].strip()
    if tail:
        yield tail


def parse_attributes(text: str) -> dict[str, str]:
    """`a=1, b={x, y}, c="q"` -> {"a": "1", "b": "{x, y}", "c": '"q"'}."""
    out = {}
    for part in split_top_level(text):
        key, eq, value = part.partition("=")
        if eq:
            out[key.strip()] = value.strip()
    return out


def parse_instruction(line: str) -> Instruction | None:
    """One instruction line, or None if the line is not an instruction.

    Arguments:
        line: e.g. `  ROOT %add.1 = f32[4]{0} add(%a, %b), metadata={...}`.
    Returns:
        The instruction; operand names are taken from the text before the first `=`-free
        top-level part, so both `op(%a, %b)` and typed `op(f32[4] %a, ...)` work.
    """
    m = _INSTR_RE.match(line)
    if not m:
        return None
    is_root, name, rest = bool(m.group(1)), m.group(2).lstrip("%"), m.group(3)
    if rest.startswith("("):
        end = _balanced(rest, 0)
        shape_text, rest = rest[:end], rest[end:].lstrip()
    else:
        shape_text, _, rest = rest.partition(" ")
    op = _OPCODE_RE.match(rest)
    if not op:
        return None
    open_at = op.end() - 1
    close_at = _balanced(rest, open_at)
    inside = rest[open_at + 1 : close_at - 1]
    attrs = parse_attributes(rest[close_at:].lstrip(", "))
    opcode = op.group(1)
    literal = inside if opcode in ("constant", "parameter") else ""
    operands = () if opcode == "constant" else tuple(_NAME_RE.findall(inside))
    return Instruction(name, opcode, parse_shape(shape_text), operands, attrs, is_root, literal)


def parse_module(text: str) -> Module:
    """Parse a whole HLO module.

    Arguments:
        text: `compiled.as_text()` or a dump file's content.
    Returns:
        The module with every computation by name; `entry` names the ENTRY computation.
    Raises:
        ValueError: no ENTRY computation was found.
    """
    name = ""
    first = text.split("\n", 1)[0]
    if first.startswith("HloModule"):
        name = first.split()[1].rstrip(",")
    computations: dict[str, Computation] = {}
    entry = ""
    current: str | None = None
    is_entry = False
    body: list[Instruction] = []
    for line in text.splitlines():
        if current is None:
            h = _HEADER_RE.match(line)
            if h and not line.startswith(" "):
                current, is_entry, body = h.group(2), bool(h.group(1)), []
            continue
        if line.strip() == "}":
            by_name = {i.name: i for i in body}
            computations[current] = Computation(current, tuple(body), is_entry, by_name)
            if is_entry:
                entry = current
            current = None
            continue
        instr = parse_instruction(line)
        if instr is not None:
            body.append(instr)
    if not entry:
        raise ValueError("no ENTRY computation in the HLO text")
    return Module(name, computations, entry)


def integers(text: str) -> list[int]:
    """Every integer in a piece of attribute text, in order (`{1,0}` -> [1, 0])."""
    return [int(x) for x in re.findall(r"-?\d+", text)]
