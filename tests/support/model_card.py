"""The training pipeline's real reports on the committed data, for the model card's tests.

Trained once per test process (:func:`trained_reports` is cached): the failure model, its
threshold, spec, test metrics, calibration and report, the failure-mode model and its report,
each made by the training pipeline's own nodes with the project's parameters.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any

from kedro.config import OmegaConfigLoader

from predictive_maintenance.integrity import sha256_hex
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
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE
from tests.support.project import PROJECT_ROOT, RAW_CSV


@cache
def project_parameters() -> dict[str, Any]:
    """The project's base parameters, loaded the way ``kedro run`` loads them."""
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )
    return loader["parameters"]


def _model_spec(available: dict[str, Any]) -> dict[str, Any]:
    """``create_model_spec`` with the inputs its signature names (the lead is adding the
    calibration and the failure-mode model to it), plus the spec's ``failure_modes`` entry
    (shared interface) while it does not make one yet."""
    wanted = inspect.signature(create_model_spec).parameters
    spec = create_model_spec(**{name: available[name] for name in wanted})
    mode_bytes = bytes(available["failure_mode_model"].save_raw(raw_format="ubj"))
    spec.setdefault(
        "failure_modes",
        {
            "classes": available["failure_mode_model"].attr("classes").split(","),
            "model_file": FAILURE_MODE_MODEL_FILE,
            "model_sha256": sha256_hex(mode_bytes),
        },
    )
    return spec


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
    available = {
        "model": model,
        "decision_threshold": threshold,
        "dataset_manifest": manifest,
        "xgboost": parameters["xgboost"],
        "calibration": calibration,
        "failure_mode_model": mode_model,
        "failure_modes": parameters["failure_modes"],
    }
    return {
        "parameters": parameters,
        "model": model,
        "failure_mode_model": mode_model,
        "model_spec": _model_spec(available),
        "metrics": evaluate_model(predictions, threshold),
        "calibration": calibration,
        "calibration_report": evaluate_calibration(
            predictions, calibration, parameters["calibration"]
        ),
        "failure_mode_report": evaluate_failure_modes(
            mode_model, test, parameters["failure_modes"]
        ),
    }
