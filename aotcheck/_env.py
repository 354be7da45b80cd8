"""Process environment that lets libtpu describe a TPU slice on a machine without one.

libtpu reads these at load time, so they must be in place before jax is imported.
`setdefault` keeps any value the user set on purpose.
"""

import os

_DEFAULTS = {
    # No metadata server on a laptop or CI runner: without this libtpu waits for one.
    "TPU_SKIP_MDS_QUERY": "1",
    # Compile for TPU, execute nothing: the only runtime backend we need is the CPU.
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


def configure() -> None:
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
