"""The process environment that lets libtpu describe a TPU slice on a machine without one.

libtpu reads these when it loads, so they must be in place before jax is imported. Nothing
sets them on `import aotcheck`: the `aotcheck` command and the gate's worker processes call
`setup_libtpu_env()` first, and so may a program that wants the same behaviour.
"""

from __future__ import annotations

import os

_DEFAULTS = {
    # No metadata server on a laptop or CI runner: without this libtpu waits for one.
    "TPU_SKIP_MDS_QUERY": "1",
    # Compile for TPU, execute nothing: the only runtime backend needed is the CPU.
    "JAX_PLATFORMS": "cpu",
    # Two aotcheck processes (parallel check, tests) would otherwise fight over a lockfile.
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
    # These two only silence libtpu's warnings about a missing TPU host; results are unchanged.
    "TPU_ACCELERATOR_TYPE": "v5p-8",
    "TPU_WORKER_HOSTNAMES": "localhost",
    # Otherwise every process leaves log files in /tmp/tpu_logs.
    "TPU_MIN_LOG_LEVEL": "3",
    "TPU_LOG_DIR": "disabled",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def setup_libtpu_env() -> dict[str, str]:
    """Set libtpu's environment for deviceless compiles; call it before jax is imported.

    Values the user already set are kept. It is what the `aotcheck` command does first;
    a program on a TPU or GPU host that wants to keep its accelerator should not call it
    (aotcheck compiles for the described slice either way).

    Returns:
        The variables this call set (name -> value).

    Example:
        >>> import aotcheck
        >>> _ = aotcheck.setup_libtpu_env()  # before `import jax`
    """
    added = {k: v for k, v in _DEFAULTS.items() if k not in os.environ}
    os.environ.update(added)
    return added
