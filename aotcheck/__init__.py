"""aotcheck: what will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod.

The public surface. A model package implements `ModelSpec` (see `aotcheck.model`); a
program builds a report with `build_report(Request(...))`. Importing aotcheck does not
import jax: libtpu's environment must be in place first, and is set here.
"""

from aotcheck import _env

_env.configure()

from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from aotcheck.config import RunConfig  # noqa: E402
from aotcheck.errors import AotcheckError, BuildError, UsageError  # noqa: E402
from aotcheck.model import BatchField, ModelSpec, next_token_loss, token_batch  # noqa: E402
from aotcheck.pipeline import Request, build_report  # noqa: E402
from aotcheck.report import Report  # noqa: E402
from aotcheck.rules import constrain  # noqa: E402

try:
    __version__ = version("aotcheck")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AotcheckError",
    "BatchField",
    "BuildError",
    "ModelSpec",
    "Report",
    "Request",
    "RunConfig",
    "UsageError",
    "__version__",
    "build_report",
    "constrain",
    "next_token_loss",
    "token_batch",
]
