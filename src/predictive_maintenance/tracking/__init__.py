"""Experiment tracking with MLflow: one parent run per ``kedro run``, a nested run per step group.

- :mod:`.settings`: ``conf/<env>/mlflow.yml`` (:class:`TrackingSettings`).
- :mod:`.hooks`: :class:`MlflowTrackingHooks`, the Kedro hooks (registered in ``settings.py``).
- :mod:`.recorder`: what is logged for a node's outputs, shared by the hooks and the jobs.
- :mod:`.jobs`: tracking inside a SageMaker job (Python 3.10, no Kedro).
- :mod:`.datasets`: ``tracking_run`` (:class:`TrackingRunDataset`), the run of this ``kedro run``.

Generic: nothing here imports the project's pipelines, registry or serving code. ``mlflow`` is
imported lazily (seconds), never by importing this package.
"""

from __future__ import annotations

from typing import Any

from predictive_maintenance.tracking.runs import current_run, record_registration
from predictive_maintenance.tracking.settings import (
    TrackingConfigError,
    TrackingSettings,
    settings_from_config,
)

__all__ = [
    "MlflowTrackingHooks",
    "TrackingConfigError",
    "TrackingRunDataset",
    "TrackingSettings",
    "current_run",
    "record_registration",
    "settings_from_config",
]


def __getattr__(name: str) -> Any:
    # Kedro-dependent classes on first use: a SageMaker job imports .jobs without Kedro.
    if name == "TrackingRunDataset":
        from predictive_maintenance.tracking.datasets import TrackingRunDataset  # noqa: PLC0415

        return TrackingRunDataset
    if name == "MlflowTrackingHooks":
        from predictive_maintenance.tracking.hooks import MlflowTrackingHooks  # noqa: PLC0415

        return MlflowTrackingHooks
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
