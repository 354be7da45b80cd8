"""How many times a compiled `while` runs, read from the HLO text.

CPU compiles print `known_trip_count` in the loop's backend_config; TPU compiles do not,
so the count is read from the condition computation: `compare(counter, N)` against the
constant the init tuple starts the counter at.
"""

from __future__ import annotations

import re

from aotcheck._hlo import Computation, Instruction, Module, integers


def _const_value(comp: Computation, name: str, depth: int = 0) -> int | None:
    """The integer a scalar instruction holds, looking through copies and converts."""
    instr = comp.by_name.get(name)
    if instr is None or depth > 8:
        return None
    if instr.opcode == "constant":
        vals = integers(instr.literal)
        return vals[0] if len(vals) == 1 else None
    if instr.opcode in ("copy", "convert", "bitcast", "reshape") and instr.operands:
        return _const_value(comp, instr.operands[0], depth + 1)
    return None


def _tuple_index(comp: Computation, name: str, depth: int = 0) -> int | None:
    """Which loop-state element an instruction reads: gte(param, index=i) -> i."""
    instr = comp.by_name.get(name)
    if instr is None or depth > 8:
        return None
    if instr.opcode == "get-tuple-element":
        src = comp.by_name.get(instr.operands[0])
        if src is not None and src.opcode == "parameter":
            return integers(instr.attributes.get("index", ""))[0]
        return None
    if instr.opcode in ("copy", "convert", "bitcast", "reshape") and instr.operands:
        return _tuple_index(comp, instr.operands[0], depth + 1)
    return None


def trip_count(module: Module, caller: Computation, loop: Instruction) -> int | None:
    """A while's trip count, or None when it cannot be read.

    Arguments:
        module: the parsed module.
        caller: the computation holding the while (for its init tuple).
        loop: the `while` instruction.
    Returns:
        `known_trip_count` from backend_config if present; else, from the condition's
        root `compare(i, N)`: LT -> N - start, LE -> N + 1 - start, and GT/GE with the
        operands swapped likewise; NE -> N - start. `start` is the constant the init
        tuple holds at the induction index (0 when it is not a constant, as for
        `lax.scan`, which starts at 0).
    """
    cfg = loop.attributes.get("backend_config", "")
    m = re.search(r'"known_trip_count"\s*:\s*\{\s*"n"\s*:\s*"?(\d+)', cfg)
    if m:
        return int(m.group(1))
    cond = module.computations.get(next(iter(loop.called("condition")), ""))
    root = cond.root if cond else None
    if cond is None or root is None:
        return None
    if root.opcode == "fusion":  # the compare may sit in a fused condition
        fused = module.computations.get(next(iter(root.called("calls")), ""))
        froot = fused.root if fused else None
        if fused is None or froot is None or froot.opcode != "compare":
            return None
        mapped = []
        for o in froot.operands:
            inner = fused.by_name.get(o)
            if inner is not None and inner.opcode == "parameter":
                o = root.operands[integers(inner.literal)[0]]
            mapped.append(o)
        root = Instruction(froot.name, "compare", froot.arrays, tuple(mapped), froot.attributes, True)
    if root.opcode != "compare" or len(root.operands) != 2:
        return None
    direction = root.attributes.get("direction", "")
    a, b = root.operands
    ia, ib = _tuple_index(cond, a), _tuple_index(cond, b)
    ca, cb = _const_value(cond, a), _const_value(cond, b)
    if ia is not None and cb is not None:
        index, bound, op = ia, cb, direction
    elif ib is not None and ca is not None:
        index, bound = ib, ca
        op = {"GT": "LT", "GE": "LE", "LT": "GT", "LE": "GE"}.get(direction, direction)
    else:
        return None
    start = 0
    init = caller.by_name.get(loop.operands[0]) if loop.operands else None
    if init is not None and init.opcode == "tuple" and index < len(init.operands):
        value = _const_value(caller, init.operands[index])
        start = value if value is not None else 0
    if op in ("LT", "NE"):
        return max(bound - start, 0)
    if op == "LE":
        return max(bound + 1 - start, 0)
    return None  # counting down or other forms: not recognised
