"""The property every input surface must hold, and strategies for hostile values."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from typer.testing import CliRunner

from aotcheck._cli import app

DOCUMENTED = {0, 1, 2, 3, 4}  # 5 (internal error) is documented too, but for the fuzzer it is a bug found
runner = CliRunner()

# Scalars YAML and JSON can carry, including the ones that broke aotcheck before.
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["-1", "0", "4", "fsdp", "tensor", "embed", "bfloat16", ".inf", ".nan", "&a x", "*a", "v5p-8"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.one_of(st.text(max_size=8), st.integers()),
                                                                         inner, max_size=4)),
    max_leaves=12,
)
CONFIG_KEYS = st.one_of(st.sampled_from([
    "ici_fsdp_parallelism", "ici_tensor_parallelism", "dcn_data_parallelism", "logical_axis_rules", "mesh_axes",
    "weight_dtype", "per_device_batch_size", "max_target_length", "learning_rate", "scan_layers", "remat_policy",
    "base_emb_dim", "base_num_decoder_layers", "allow_split_physical_axes", "model_name", "pure_nnx",
]), st.text(max_size=12))


def yaml_text(value: Any) -> str:
    """Flow-style text of a value (JSON is YAML), or its str when JSON cannot carry it."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


@contextmanager
def sandbox(directory: Path) -> Iterator[Path]:
    """Run in `directory` (fresh per example); the caller checks what it holds afterwards."""
    old = os.getcwd()
    os.chdir(directory)
    try:
        yield directory
    finally:
        os.chdir(old)


def invoke(args: list[str], allowed: set[int] = DOCUMENTED, gate: bool = False) -> Any:
    """Run the CLI in this process and check the property: a documented exit code, no traceback,
    and on failure exactly one `error:` line (typer's boxed usage errors: exit 2, their convention;
    a gate's failing rows are in its table instead, with no `error:` line)."""
    result = runner.invoke(app, args)
    out = result.stdout + result.stderr
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        args, repr(result.exception))
    assert result.exit_code in allowed, (args, result.exit_code, out[-2000:])
    assert "Traceback" not in out, (args, out[-2000:])
    if result.exit_code not in (0, 1):
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        boxed = result.exit_code == 2 and ("Usage:" in out or "─ Error ─" in out)  # typer: its usage box, or help
        assert boxed or (gate and not errors) or (len(errors) == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")), (
            args, result.stderr[-2000:])
    return result


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}
