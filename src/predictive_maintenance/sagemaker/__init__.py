"""The generic Kedro <-> Amazon SageMaker bridge.

Nothing here imports the project's pipelines, so the subpackage could ship as a Kedro plugin. The
SageMaker Python SDK is imported lazily, where it is needed: importing parts of it needs an AWS
region and costs seconds, which ``kedro run`` on the local path should never pay. The names below
are loaded on first use too, because the job entry script imports this package inside the
training container, where Kedro may be absent.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SageMakerRunner": "predictive_maintenance.sagemaker.runner",
    "SageMakerHooks": "predictive_maintenance.sagemaker.hooks",
}

__all__ = ["SageMakerHooks", "SageMakerRunner"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
