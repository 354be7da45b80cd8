"""aotcheck: what will my Flax training step do on a TPU pod? Ahead-of-time answers, without the pod.

The public surface. A model package implements `ModelSpec`; a program builds a report with
`build_report(Request(...))`. Importing aotcheck changes nothing in the process: a program
that wants the `aotcheck` command's environment for deviceless TPU compiles calls
`setup_libtpu_env()` before it imports jax. Each name loads its module on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aotcheck._lazy import Exports

if TYPE_CHECKING:
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

    __version__: str

_EXPORTS = Exports(__name__, {
    "_analysis": ("Compile", "Memory"),
    "_compare": ("Category", "Finding", "compare", "failing"),
    "_config": ("RunConfig",),
    "_env": ("setup_libtpu_env",),
    "_errors": ("AotcheckError", "BuildError", "UsageError"),
    "_fit": ("FitResult", "FitRow", "Recommendation", "fit"),
    "_model": ("BatchField", "ModelSpec", "next_token_loss", "token_batch"),
    "_pipeline": ("Request", "build_report"),
    "_report": ("Leaf", "Report", "read_report"),
    "_sharding": ("constrain",),
})

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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # ~50 ms of imports: only when asked

    try:
        return version("aotcheck")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = value = _version()
        return value
    return _EXPORTS.load(name, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
