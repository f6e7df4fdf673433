"""Fixtures for pipeline tests."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_dataset_manifest,
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)
from tests.support.project import project_parameters


@pytest.fixture(scope="session")
def parameters() -> dict[str, Any]:
    """The project's base parameters, loaded the way ``kedro run`` loads them."""
    return project_parameters()


@pytest.fixture(scope="module")
def splits(raw_csv_bytes, parameters) -> dict[str, Any]:
    """The committed data through data_engineering's nodes: the validated ``readings``, the
    ``train``/``validation``/``test`` splits and the ``dataset_manifest``."""
    readings, provenance = validate_raw_readings(*ingest_raw_data(raw_csv_bytes, None))
    train, validation, test = split_data(create_model_input_table(readings), parameters["split"])
    manifest = create_dataset_manifest(provenance, train, validation, test, parameters["split"])
    frames: dict[str, pd.DataFrame] = {
        "readings": readings,
        "train": train,
        "validation": validation,
        "test": test,
    }
    return {**frames, "dataset_manifest": manifest}
