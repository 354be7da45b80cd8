"""Where the HBM goes: the buffers live at the compiler's memory peak, grouped by source.

The TPU compiler writes what we need when asked to dump (`xla_dump_to`):

- `*.after_optimizations-live-range.txt`: a section `Live ranges at T (peak):` listing
  every buffer live at the peak as `name{index}: B bytes (cumulative: C bytes)`;
- `*.after_optimizations-buffer-assignment.txt`: allocations, each tagged `parameter`,
  `output shape is`/`maybe-live-out`, `constant`, `preallocated-temp` or `thread-local`,
  with `color N` for on-chip memories (VMEM, SMEM): color 0 is HBM;
- `*.after_optimizations.txt`: the module, whose metadata `op_name` is the JAX name stack
  (`jit(step)/.../layers/mlp/wi_0/dot_general`) or, for parameters, the argument path
  (`ts.params['decoder']...`).

The dump can be requested per compile, without touching the process environment:
`lowered.compile(compiler_options={"xla_dump_to": DIR})` works on the deviceless TPU
target (checked with this environment's jax and libtpu); `XLA_FLAGS=--xla_dump_to=DIR` in
the environment of the process also works (checked) but XLA reads it once, at backend
start, and then dumps every compile of the process.
`dump_peak_buffers` uses the first way, in a private temporary folder it removes.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aotcheck._record import Record

_PEAK_RE = re.compile(r"^\s*Live ranges at (\d+) \(peak\):")
_LIVE_RE = re.compile(r"^\s+(\S+?)(\{[\d,]*\})?: (\d+) bytes")
_ALLOC_RE = re.compile(r"^allocation (\d+): size (\d+)(.*)$")


@dataclass(frozen=True)
class PeakBuffer:
    """One buffer live at the peak: HLO value name, bytes, share of the peak, source group."""

    name: str
    bytes: int
    share: float
    source: str


@dataclass(frozen=True)
class PeakGroup:
    """Buffers live at the peak that share a source (name stack without its last op)."""

    source: str
    bytes: int
    share: float
    buffers: int


@dataclass(frozen=True)
class MemorySplit:
    """HBM (color 0) allocation bytes by kind, from the buffer assignment."""

    argument: int
    output: int
    constant: int
    temp: int
    code: int | None = None  # generated code, from `compiled.memory_analysis()` when given


@dataclass(frozen=True)
class PeakReport:
    """Largest buffers at the peak, the same grouped by source, and the allocation split."""

    peak_bytes: int
    peak_time: int
    buffers: tuple[PeakBuffer, ...]
    groups: tuple[PeakGroup, ...]
    split: MemorySplit


def parse_live_at_peak(text: str) -> tuple[int, list[tuple[str, int]]]:
    """The `Live ranges at T (peak):` section of a live-range dump.

    Arguments:
        text: content of `*.after_optimizations-live-range.txt`.
    Returns:
        (schedule time of the peak, [(value name with `{index}`, bytes)...]) in file order;
        (-1, []) when the file has no peak section.
    """
    time, out, inside = -1, [], False
    for line in text.splitlines():
        m = _PEAK_RE.match(line)
        if m:
            time, inside = int(m.group(1)), True
            continue
        if inside:
            v = _LIVE_RE.match(line)
            if not v:
                break
            out.append((v.group(1) + (v.group(2) or ""), int(v.group(3))))
    return time, out


def parse_allocations(text: str) -> MemorySplit:
    """Argument / output / constant / temp bytes of the HBM allocations.

    Arguments:
        text: content of `*.after_optimizations-buffer-assignment.txt`.
    Returns:
        The split; allocations with a `color N` (N != 0) live in on-chip memories and are
        left out. `thread-local` ones count as temp, so that the four add up to the
        memory-usage report's "Total bytes" of memory space 0. Outputs aliased to donated
        arguments are allocated as parameters, so `output` holds only the rest. (On the
        tiny model, v5p-8, `compiled.memory_analysis()` reports a larger temp, 10.70 MB
        against 6.56 MB here; its definition differs and is not reproduced.)
    """
    arg = out = const = temp = 0
    for line in text.splitlines():
        m = _ALLOC_RE.match(line)
        if not m:
            continue
        size, tags = int(m.group(2)), m.group(3)
        color = re.search(r"color (\d+)", tags)
        if color and color.group(1) != "0":
            continue
        if "parameter" in tags:
            arg += size
        elif "output shape is" in tags or "maybe-live-out" in tags:
            out += size
        elif "constant" in tags:
            const += size
        else:
            temp += size
    return MemorySplit(arg, out, const, temp)


def source_of(op_name: str) -> str:
    """Group key of a name stack: drop `jit(...)/` wrappers' first level and the final op.

    `jit(step)/transpose(jvp(Transformer))/decoder/layers/mlp/wi_0/dot_general` ->
    `transpose(jvp(Transformer))/decoder/layers/mlp/wi_0`; an argument path such as
    `ts.params['decoder']` is kept whole.
    """
    if "/" not in op_name:
        return op_name
    parts = op_name.split("/")
    if parts[0].startswith("jit("):
        parts = parts[1:]
    return "/".join(parts[:-1]) if len(parts) > 1 else parts[0]


def peak_report(live_range: str, buffer_assignment: str, hlo: str, top: int = 20, code: int | None = None) -> PeakReport:
    """Where the HBM goes at the peak.

    Arguments:
        live_range: the live-range dump text.
        buffer_assignment: the buffer-assignment dump text.
        hlo: the optimised module text (for each value's name stack).
        top: how many buffers and groups to keep, largest first.
        code: generated code bytes, if known, for the split.
    Returns:
        The report; shares are of the live-range peak (logical buffer bytes live at once).
    """
    from aotcheck._hlo import parse_module  # the HLO parser loads for a compile, not to read a report

    time, live = parse_live_at_peak(live_range)
    names: dict[str, str] = {}
    operand_of: dict[str, str] = {}
    for comp in parse_module(hlo).computations.values():
        for instr in comp.instructions:
            names[instr.name] = instr.op_name.replace("\\'", "'")
            if instr.operands:
                operand_of[instr.name] = instr.operands[0]
    # Prefetch copies (`copy-start`) carry no metadata: name them after what they copy.
    for name, op_name in list(names.items()):
        if not op_name and name in operand_of:
            names[name] = names.get(operand_of[name], "")
    peak = sum(b for _, b in live) or 1
    buffers = []
    groups: dict[str, list[int]] = {}
    for value, nbytes in live:
        base = value.split("{", 1)[0]
        source = source_of(names.get(base, "")) or base
        buffers.append(PeakBuffer(value, nbytes, nbytes / peak, source))
        g = groups.setdefault(source, [0, 0])
        g[0] += nbytes
        g[1] += 1
    buffers.sort(key=lambda b: (-b.bytes, b.name))
    ranked = sorted(groups.items(), key=lambda kv: (-kv[1][0], kv[0]))
    split = parse_allocations(buffer_assignment)
    return PeakReport(
        peak_bytes=sum(b for _, b in live),
        peak_time=time,
        buffers=tuple(buffers[:top]),
        groups=tuple(PeakGroup(s, b, b / peak, n) for s, (b, n) in ranked[:top]),
        split=MemorySplit(split.argument, split.output, split.constant, split.temp, code),
    )


def read_dump(directory: str | Path, module_contains: str = "") -> Mapping[str, str]:
    """The three dump files of the (largest matching) module in an XLA dump folder.

    Arguments:
        directory: the `xla_dump_to` folder.
        module_contains: substring the module file name must contain (e.g. "train_step").
    Returns:
        {"live_range", "buffer_assignment", "hlo"} -> text.
    Raises:
        FileNotFoundError: no module in the folder has a live-range dump.
    """
    root = Path(directory)
    candidates = [p for p in root.glob("*after_optimizations-live-range.txt") if module_contains in p.name]
    if not candidates:
        raise FileNotFoundError(f"no live-range dump in {root}")
    live = max(candidates, key=lambda p: p.stat().st_size)
    stem = live.name[: -len("-live-range.txt")]
    return {
        "live_range": live.read_text(),
        "buffer_assignment": (root / f"{stem}-buffer-assignment.txt").read_text(),
        "hlo": (root / f"{stem}.txt").read_text(),
    }


def dump_peak_buffers(lowered: Any, top: int = 20) -> tuple[Any, PeakReport]:
    """Compile a jax `Lowered` with an XLA dump in a private temporary folder, then report.

    This is a second compile of the same program (the dump cannot be added to an
    existing executable); the folder is removed whatever happens.

    Arguments:
        lowered: `jax.jit(f).lower(...)` (aotcheck's `step.Lowered.lowered`).
        top: buffers and groups to keep.
    Returns:
        (the compiled executable, the report).
    """
    folder = tempfile.mkdtemp(prefix="aotcheck-dump-")
    try:
        compiled = lowered.compile(compiler_options={"xla_dump_to": folder})
        texts = read_dump(folder)
        code = getattr(compiled.memory_analysis(), "generated_code_size_in_bytes", None)
        return compiled, peak_report(texts["live_range"], texts["buffer_assignment"], texts["hlo"], top, code)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class PeakShare(Record):
    """A buffer, or a group of buffers sharing a name stack, live at the peak."""

    source: str  # the JAX name stack (or argument path) it comes from
    name: str | None = None  # the HLO value, for a single buffer
    bytes: int
    share: float  # of the live bytes at the peak
    buffers: int = 1


class MemoryDetail(Record):
    """Where the HBM goes at the peak (`--memory-detail N`), from the compiler's buffer assignment."""

    peak_bytes: int
    groups: tuple[PeakShare, ...]  # the N largest, by name stack
    buffers: tuple[PeakShare, ...]  # the N largest single buffers
    argument: int
    output: int
    temp: int  # constants included
    code: int | None = None


def memory_detail(report: PeakReport) -> MemoryDetail:
    """The report's record of a PeakReport (shares rounded to 4 digits, so reports stay stable)."""
    return MemoryDetail(
        peak_bytes=report.peak_bytes,
        groups=tuple(PeakShare(source=g.source, bytes=g.bytes, share=round(g.share, 4), buffers=g.buffers)
                     for g in report.groups),
        buffers=tuple(PeakShare(source=b.source, name=b.name, bytes=b.bytes, share=round(b.share, 4))
                      for b in report.buffers),
        argument=report.split.argument, output=report.split.output,
        temp=report.split.temp + report.split.constant, code=report.split.code,
    )
