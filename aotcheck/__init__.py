"""aotcheck: what will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod.

The public surface. A model package implements `ModelSpec`; a program builds a report with
`build_report(Request(...))`. Importing aotcheck changes nothing in the process: a program
that wants the `aotcheck` command's environment for deviceless TPU compiles calls
`setup_libtpu_env()` before it imports jax.
"""

from importlib.metadata import PackageNotFoundError, version

from aotcheck._analysis import Compile, Memory
from aotcheck._compare import Category, Finding, compare, failing
from aotcheck._config import RunConfig
from aotcheck._env import setup_libtpu_env
from aotcheck._errors import AotcheckError, BuildError, UsageError
from aotcheck._fit import FitResult, FitRow, Recommendation, fit
from aotcheck._model import BatchField, ModelSpec, next_token_loss, token_batch
from aotcheck._pipeline import Request, build_report
from aotcheck._report import Leaf, Report, read_report
from aotcheck._sharding import constrain  # an alias of flax.linen.with_logical_constraint

try:
    __version__ = version("aotcheck")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AotcheckError",
    "BatchField",
    "BuildError",
    "Category",
    "Compile",
    "Finding",
    "FitResult",
    "FitRow",
    "Leaf",
    "Memory",
    "ModelSpec",
    "Recommendation",
    "Report",
    "Request",
    "RunConfig",
    "UsageError",
    "__version__",
    "build_report",
    "compare",
    "constrain",
    "failing",
    "fit",
    "next_token_loss",
    "read_report",
    "setup_libtpu_env",
    "token_batch",
]
