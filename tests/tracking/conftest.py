"""Fixtures of the tracking tests: a real MLflow sqlite store, warnings of the tracking code."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from predictive_maintenance.tracking.settings import TrackingSettings, settings_from_config

#: What conf/base/mlflow.yml logs, for stores made by the tests themselves.
LOG = {
    "metrics": ["metrics"],
    "artifacts": ["model_spec", "*_plot"],
    "models": ["model"],
    "data": ["raw_data_provenance"],
}

#: The warning every tracking failure starts with.
TRACKING_OFF = "MLflow tracking off for the rest of this run"


class Warnings(logging.Handler):
    """Collects the warnings of ``predictive_maintenance.tracking`` (Kedro's logging
    configuration replaces the root logger's handlers, so pytest's caplog would miss them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def tracking_off(self) -> list[str]:
        return [message for message in self.messages if message.startswith(TRACKING_OFF)]


@pytest.fixture
def tracking_warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("predictive_maintenance.tracking")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def store_settings(
    directory: Path, experiment: str = "tests", **config: object
) -> TrackingSettings:
    """Settings of a sqlite store in ``directory`` (artifacts beside it)."""
    return settings_from_config(
        {
            "tracking_uri": "sqlite:///mlflow.db",
            "artifact_location": "mlartifacts",
            "experiment": experiment,
            "log": LOG,
            **config,
        },
        directory,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TrackingSettings:
    """One sqlite store per test module (a new store's migrations cost seconds): each test
    logs into its own experiment."""
    return store_settings(tmp_path_factory.mktemp("mlflow"))
