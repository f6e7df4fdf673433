"""``tracking_run``: the MLflow run of the ``kedro run`` in progress, as a read-only dataset."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DatasetError

from predictive_maintenance.tracking.runs import active, current_run


class TrackingRunDataset(AbstractDataset[None, "dict[str, str] | None"]):
    """Loads ``{"run_id", "experiment_id", "experiment", "tracking_uri"}`` of this ``kedro
    run``'s parent MLflow run, or ``None`` when tracking is off or failed.

    The tracking hooks make the run in the background; ``load`` waits for it at most
    ``wait_seconds``. Read-only: ``save`` raises :class:`DatasetError`.

    Example (``conf/base/catalog.yml``)::

        tracking_run:
          type: predictive_maintenance.tracking.TrackingRunDataset
    """

    def __init__(self, wait_seconds: float = 60.0, metadata: dict[str, Any] | None = None) -> None:
        self._wait_seconds = float(wait_seconds)
        self.metadata = metadata

    def load(self) -> dict[str, str] | None:
        return current_run(self._wait_seconds)

    def save(self, data: None) -> None:
        raise DatasetError("tracking_run is read-only: the MLflow tracking hooks make the run")

    def _describe(self) -> dict[str, Any]:
        return {"wait_seconds": self._wait_seconds}

    def _exists(self) -> bool:
        run = active()
        return run is not None and run.peek() is not None
