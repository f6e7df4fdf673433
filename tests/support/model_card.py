"""The training pipeline's real reports on the committed data, for the model card's tests.

Trained once per test process (:func:`trained_reports` is cached): the failure model, its
threshold, spec, test metrics, calibration and report, the failure-mode model and its report,
each made by the training pipeline's own nodes with the project's parameters.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_dataset_manifest,
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)
from predictive_maintenance.pipelines.training.failure_modes import (
    evaluate_failure_modes,
    train_failure_mode_model,
)
from predictive_maintenance.pipelines.training.nodes import (
    create_model_spec,
    evaluate_calibration,
    evaluate_model,
    fit_calibration,
    score_test_set,
    select_threshold,
    train_model,
)
from tests.support.project import RAW_CSV, project_parameters


@cache
def trained_reports() -> dict[str, Any]:
    """``model``, ``failure_mode_model``, ``model_spec``, ``metrics``, ``calibration``,
    ``calibration_report``, ``failure_mode_report`` and ``parameters``."""
    parameters = project_parameters()
    readings, provenance = validate_raw_readings(*ingest_raw_data(RAW_CSV.read_bytes(), None))
    train, validation, test = split_data(create_model_input_table(readings), parameters["split"])
    manifest = create_dataset_manifest(provenance, train, validation, test, parameters["split"])
    model = train_model(train, validation, parameters["xgboost"])
    threshold = select_threshold(model, validation, parameters["decision_threshold"])
    predictions = score_test_set(model, test)
    calibration = fit_calibration(model, validation, parameters["calibration"])
    mode_model = train_failure_mode_model(train, validation, parameters["failure_modes"])
    spec = create_model_spec(
        model,
        threshold,
        manifest,
        parameters["xgboost"],
        calibration=calibration,
        failure_mode_model=mode_model,
    )
    return {
        "parameters": parameters,
        "model": model,
        "failure_mode_model": mode_model,
        "model_spec": spec,
        "metrics": evaluate_model(predictions, threshold),
        "calibration": calibration,
        "calibration_report": evaluate_calibration(
            predictions, calibration, parameters["calibration"]
        ),
        "failure_mode_report": evaluate_failure_modes(
            mode_model, test, parameters["failure_modes"]
        ),
    }
