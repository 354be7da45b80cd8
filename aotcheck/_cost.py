"""The true per-step, per-device cost of a compiled program, from its HLO text.

XLA's `cost_analysis()` counts a `while` body once, so a scanned model's FLOPs come out
divided by its layer count. This walk starts at ENTRY and multiplies:

- `while`: body and condition run `trip count` times. The trip count comes from
  `backend_config` `known_trip_count` (CPU prints it) or else from the condition
  (`compare(gte(param, i), constant(N))`, see `trip_count`). An unknown trip count counts
  once and is listed in `CostSummary.unknown_trip_counts`.
- `conditional`: the most expensive branch (an upper bound; we cannot know which runs).
- `call`, `async-start`: their computation once, inline.
- `fusion`: FLOPs of the fused instructions; bytes accessed at the fusion boundary only
  (operands + results), as XLA does, since fused intermediates never touch HBM.

FLOPs follow XLA's HloCostAnalysis conventions: dot 2 x output elements x contracted size;
convolution 2 x output elements x input features per group x the kernel taps that land on
real (unpadded) input, which matters on TPU where matmuls are printed as convolutions with
padded windows; elementwise arithmetic (and `convert`) 1 per output element;
transcendentals counted separately; reduce (input - output elements) x the reducer's FLOPs;
reduce-window the same over the taps that land on real input, with a window spanning the
whole input counted as the reduction it is (see `reduce_window_applications`).
Custom calls (Pallas kernels among them) have no cost model and are listed, not guessed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aotcheck._collectives import CollectiveTotals, collective_record, empty_collectives
from aotcheck._hlo import Computation, Instruction, Module, integers, parse_module
from aotcheck._loops import trip_count
from aotcheck._replica_groups import MeshLayout

TRANSCENDENTAL = frozenset({
    "exponential", "exponential-minus-one", "log", "log-plus-one", "tanh", "logistic", "rsqrt", "sqrt", "cbrt",
    "power", "sine", "cosine", "tan", "atan2", "erf",
})
ELEMENTWISE = frozenset({
    "add", "subtract", "multiply", "divide", "remainder", "maximum", "minimum", "negate", "abs", "sign",
    "compare", "select", "clamp", "and", "or", "xor", "not", "shift-left", "shift-right-logical",
    "shift-right-arithmetic", "floor", "ceil", "round-nearest-afz", "round-nearest-even", "is-finite",
    "convert", "popcnt", "count-leading-zeros", "real", "imag", "complex", "stochastic-convert",
})
# No HBM traffic of their own: views, tuple plumbing, control flow whose bodies are walked.
_NO_BYTES = frozenset({
    "parameter", "get-tuple-element", "tuple", "bitcast", "while", "conditional", "call", "after-all",
    "partition-id", "replica-id", "constant", "opt-barrier", "add-dependency", "domain",
    "async-start", "async-update", "async-done",
})


@dataclass(frozen=True)
class CostSummary:
    """Per-step, per-device totals of one compiled program (estimates from the HLO text).

    `matmul_flops` is the dot/convolution share of `flops`; `uncosted_ops` counts
    custom-call targets (executions per step) that carry no FLOP model; `unknown_trip_counts` names whiles counted once because their trip count could
    not be read; `loops` maps each while to the trip count used.
    """

    flops: float
    transcendentals: float
    bytes_accessed: float
    collectives: Mapping[str, CollectiveTotals]
    matmul_flops: float = 0.0  # the part of `flops` in dot and convolution (MXU work)
    uncosted_ops: Mapping[str, int] = field(default_factory=dict)
    unknown_trip_counts: tuple[str, ...] = ()
    loops: Mapping[str, int] = field(default_factory=dict)


class _Acc:
    def __init__(self) -> None:
        self.flops = 0.0
        self.matmul = 0.0
        self.trans = 0.0
        self.bytes = 0.0
        self.collectives = empty_collectives()
        self.uncosted: Counter[str] = Counter()
        self.unknown: list[str] = []
        self.loops: dict[str, int] = {}


def _operand_arrays(comp: Computation, instr: Instruction, k: int) -> tuple:
    src = comp.by_name.get(instr.operands[k]) if k < len(instr.operands) else None
    return src.arrays if src is not None else ()


def dot_flops(comp: Computation, instr: Instruction) -> float:
    """2 x output elements x product of the lhs contracting dimensions."""
    lhs = _operand_arrays(comp, instr, 0)
    if not lhs:
        return 0.0
    dims = integers(instr.attributes.get("lhs_contracting_dims", ""))
    contracted = int(np.prod([lhs[0].dims[d] for d in dims])) if dims else 1
    return 2.0 * instr.elements * contracted


def _window(text: str) -> dict[str, list[list[int]]]:
    out: dict[str, list[list[int]]] = {}
    for part in text.strip("{}").split():
        key, _, value = part.partition("=")
        out[key] = [[int(x) for x in re.findall(r"-?\d+", piece)] for piece in value.split("x")]
    return out


def _valid_taps(out_size: int, win: int, stride: int, pad_lo: int, lhs_dil: int, rhs_dil: int, in_size: int) -> int:
    """(output position, kernel tap) pairs that read a real input element on one spatial dim."""
    o = np.arange(out_size)[:, None]
    k = np.arange(win)[None, :]
    pos = o * stride + k * rhs_dil - pad_lo
    ok = (pos >= 0) & (pos <= (in_size - 1) * lhs_dil) & (pos % lhs_dil == 0)
    return int(ok.sum())


def convolution_flops(comp: Computation, instr: Instruction) -> float:
    """2 x batch x output features x input features per group x valid kernel taps.

    Arguments:
        comp: the computation holding the instruction (for operand shapes).
        instr: a `convolution` with `dim_labels=` like `b01f_01io->b01f` and `window=`.
    Returns:
        FLOPs; the taps that fall into padding are skipped, as XLA's cost analysis does.
    """
    lhs, rhs = _operand_arrays(comp, instr, 0), _operand_arrays(comp, instr, 1)
    labels = instr.attributes.get("dim_labels", "")
    if not lhs or not rhs or "->" not in labels or not instr.arrays:
        return 0.0
    ins, out_l = labels.split("->")
    lhs_l, rhs_l = ins.split("_")
    lhs_d, rhs_d, out_d = lhs[0].dims, rhs[0].dims, instr.arrays[0].dims
    win = _window(instr.attributes.get("window", "{}"))
    taps = 1
    for s in range(sum(c.isdigit() for c in rhs_l)):
        c = str(s)
        size = rhs_d[rhs_l.index(c)]

        def pick(key: str, default: int, j: int = 0, s: int = s) -> int:
            vals = win.get(key)
            return vals[s][j] if vals and s < len(vals) else default

        taps *= _valid_taps(out_d[out_l.index(c)], size, pick("stride", 1), pick("pad", 0),
                            pick("lhs_dilate", 1), pick("rhs_dilate", 1), lhs_d[lhs_l.index(c)])
    batch = out_d[out_l.index("b")]
    out_features = out_d[out_l.index("f")]
    in_features = rhs_d[rhs_l.index("i")]
    return 2.0 * batch * out_features * in_features * taps


def reduce_window_applications(comp: Computation, instr: Instruction) -> int:
    """How many times a `reduce-window` applies its reducer, counting only real input.

    Each output combines the window taps that land on real (unpadded) input, k taps
    taking k - 1 applications. A window dimension that covers the whole input from every
    output position is a reduction followed by a broadcast: TPU compilers print a
    softmax's row max that way (`size=2N-1`, `pad=(N-1)_(N-1)`), and it costs one
    reduction per row, not one per output element.
    """
    operand = _operand_arrays(comp, instr, 0)
    if not operand or not instr.arrays:
        return 0
    in_dims, out_dims = operand[0].dims, instr.arrays[0].dims
    win = _window(instr.attributes.get("window", "{}"))

    def pick(key: str, d: int, default: int, j: int = 0) -> int:
        vals = win.get(key)
        return vals[d][j] if vals and d < len(vals) else default

    taps, outputs = 1, 1
    for d, (n_in, n_out) in enumerate(zip(in_dims, out_dims, strict=False)):
        valid = _valid_taps(n_out, pick("size", d, 1), pick("stride", d, 1), pick("pad", d, 0),
                            pick("lhs_dilate", d, 1), pick("rhs_dilate", d, 1), n_in)
        if n_in > 1 and valid == n_out * n_in:  # every output sees the whole input
            taps *= n_in
        else:
            taps *= valid
            outputs *= n_out
    return max(taps - outputs, 0)


def _computation_flops(module: Module, name: str) -> tuple[float, float]:
    """FLOPs and transcendentals of one application of a small computation (a reducer)."""
    comp = module.computations.get(name)
    if comp is None:
        return 0.0, 0.0
    acc = _Acc()
    _walk(module, comp, 1.0, acc, None, fused=True)
    return acc.flops, acc.trans


def _instruction_cost(module: Module, comp: Computation, instr: Instruction, acc: _Acc, mult: float) -> None:
    op = instr.opcode
    if op in ("dot", "convolution"):
        flops = mult * (dot_flops(comp, instr) if op == "dot" else convolution_flops(comp, instr))
        acc.flops += flops
        acc.matmul += flops
    elif op in TRANSCENDENTAL:
        acc.trans += mult * instr.elements
    elif op in ELEMENTWISE:
        acc.flops += mult * instr.elements
    elif op in ("reduce", "reduce-window", "scatter", "select-and-scatter", "map", "all-reduce", "reduce-scatter"):
        per, per_t = _computation_flops(module, next(iter(instr.called("to_apply")), ""))
        if op == "reduce":
            first = _operand_arrays(comp, instr, 0)
            n = max((first[0].elements if first else 0) - (instr.arrays[0].elements if instr.arrays else 0), 0)
        elif op == "reduce-window":
            n = reduce_window_applications(comp, instr)
        elif op == "scatter":
            n = _operand_arrays(comp, instr, len(instr.operands) - 1)[0].elements if instr.operands else 0
        else:
            n = instr.elements
        acc.flops += mult * n * per
        acc.trans += mult * n * per_t
    elif op == "custom-call":
        target = instr.attributes.get("custom_call_target", '"?"').strip('"')
        acc.uncosted[target] += int(mult)


def _boundary_bytes(comp: Computation, instr: Instruction) -> float:
    operands = sum(a.bytes for k in range(len(instr.operands)) for a in _operand_arrays(comp, instr, k))
    return operands + instr.bytes


def _walk(module: Module, comp: Computation, mult: float, acc: _Acc, layout: MeshLayout | None, fused: bool) -> None:
    for instr in comp.instructions:
        op = instr.opcode
        if op == "while":
            n = trip_count(module, comp, instr)
            if n is None:
                acc.unknown.append(instr.name)
                n = 1
            acc.loops[instr.name] = n
            for key in ("body", "condition"):
                for name in instr.called(key):
                    if name in module.computations:
                        _walk(module, module.computations[name], mult * n, acc, layout, fused)
            continue
        if op == "conditional":
            branches = instr.called("branch_computations") or (
                instr.called("true_computation") + instr.called("false_computation"))
            best: _Acc | None = None
            for name in branches:
                trial = _Acc()
                _walk(module, module.computations[name], mult, trial, layout, fused)
                if best is None or (trial.flops, trial.bytes) > (best.flops, best.bytes):
                    best = trial
            if best is not None:
                _merge(acc, best)
        elif op in ("call", "async-start"):
            for name in instr.called("calls") or instr.called("to_apply"):
                if name in module.computations:
                    _walk(module, module.computations[name], mult, acc, layout, fused)
        elif op == "fusion":
            for name in instr.called("calls"):
                if name in module.computations:
                    _walk(module, module.computations[name], mult, acc, layout, fused=True)
        else:
            _instruction_cost(module, comp, instr, acc, mult)
            record = collective_record(comp, instr, layout)
            if record is not None:
                kind, nbytes, label, dcn = record
                acc.collectives[kind].add(mult, nbytes, label, dcn)
        if not fused and op not in _NO_BYTES and not op.endswith("-done"):
            acc.bytes += mult * _boundary_bytes(comp, instr)


def _merge(acc: _Acc, other: _Acc) -> None:
    acc.flops += other.flops
    acc.matmul += other.matmul
    acc.trans += other.trans
    acc.bytes += other.bytes
    acc.uncosted.update(other.uncosted)
    acc.unknown.extend(other.unknown)
    acc.loops.update(other.loops)
    for kind, totals in other.collectives.items():
        acc.collectives[kind].merge(totals)


def step_cost(hlo: str | Module, layout: MeshLayout | None = None) -> CostSummary:
    """Per-step, per-device FLOPs, transcendentals, bytes accessed and collectives.

    Arguments:
        hlo: compiled HLO text (`compiled.as_text()`) or an already parsed module.
        layout: the mesh, to attribute collective bytes to mesh axes and DCN; without it
            every collective is labelled "unknown".
    Returns:
        The summary; every figure is an estimate from the program text.
    """
    module = parse_module(hlo) if isinstance(hlo, str) else hlo
    acc = _Acc()
    _walk(module, module.entry_computation, 1.0, acc, layout, fused=False)
    return CostSummary(
        flops=acc.flops,
        transcendentals=acc.trans,
        bytes_accessed=acc.bytes,
        collectives={k: v.freeze() for k, v in acc.collectives.items()},
        matmul_flops=acc.matmul,
        uncosted_ops=dict(sorted(acc.uncosted.items())),
        unknown_trip_counts=tuple(acc.unknown),
        loops=dict(acc.loops),
    )


def summary_json(summary: CostSummary) -> dict[str, Any]:
    """A JSON-ready dict of a CostSummary (plain floats, ints, strings, lists and dicts)."""
    return {
        "flops": summary.flops,
        "matmul_flops": summary.matmul_flops,
        "transcendentals": summary.transcendentals,
        "bytes_accessed": summary.bytes_accessed,
        "collectives": {k: v.to_json() for k, v in summary.collectives.items()},
        "uncosted_ops": dict(summary.uncosted_ops),
        "unknown_trip_counts": list(summary.unknown_trip_counts),
        "loops": dict(summary.loops),
    }
