"""mlflow.yml checked and resolved; what becomes parameters and metrics (no store, no mlflow)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml
from kedro.pipeline import node

from predictive_maintenance.tracking.hooks import _runner_name, node_group
from predictive_maintenance.tracking.recorder import (
    MAX_PARAM_LENGTH,
    metric_values,
    param_values,
)
from predictive_maintenance.tracking.settings import (
    TrackingConfigError,
    TrackingSettings,
    settings_from_config,
)
from tests.support.project import PROJECT_ROOT


def _identity(value: object) -> object:
    return value


def test_the_shipped_configuration_tracks_into_a_sqlite_store_under_the_project(tmp_path):
    config = yaml.safe_load((PROJECT_ROOT / "conf/base/mlflow.yml").read_text())
    config["experiment"] = "predictive-maintenance"  # ${globals:...} is the config loader's

    settings = settings_from_config(config, tmp_path)

    assert settings.enabled
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve()}/data/09_tracking/mlflow.db"
    assert settings.local_store_path() == tmp_path.resolve() / "data/09_tracking/mlflow.db"
    assert settings.artifact_location == (tmp_path / "data/09_tracking/mlartifacts").as_uri()
    assert settings.store_is_local
    assert settings.kind_of("metrics") == ("metrics",)
    assert settings.kind_of("roc_curve_plot") == ("artifacts",)
    assert settings.kind_of("dataset_manifest") == ("artifacts", "data")
    assert settings.kind_of("model") == ("models",)
    assert settings.kind_of("train") == ()
    assert settings.http_environment() == {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    }


def test_a_job_spec_carries_what_to_log_but_no_store(tmp_path):
    settings = settings_from_config(
        {"tracking_uri": "sqlite:///mlflow.db", "experiment": "e", "log": {"models": ["model"]}},
        tmp_path,
    )

    spec = settings.job_spec()
    job = TrackingSettings.from_job_spec(json.loads(json.dumps(spec)), tracking_uri="arn:x")

    assert "sqlite" not in json.dumps(spec)
    assert job.tracking_uri == "arn:x"
    assert not job.store_is_local
    assert (job.experiment, job.models, job.metrics) == ("e", ("model",), ())
    assert job.job_spec() == spec


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"tracking_uri": "sqlite:///x.db", "enable": False}, "unknown key(s) enable"),
        ({"tracking_uri": "sqlite:///x.db", "enabled": "no"}, "enabled must be true or false"),
        ({"tracking_uri": "data/mlflow.db"}, "tracking_uri 'data/mlflow.db' has no scheme"),
        ({}, "tracking_uri is required"),
        ({"tracking_uri": "sqlite:///x.db", "log": {"metric": []}}, "log.metric"),
        ({"tracking_uri": "sqlite:///x.db", "log": {"models": "model"}}, "log.models must be"),
        ({"tracking_uri": "sqlite:///x.db", "request_timeout_seconds": -1}, "request_timeout"),
    ],
)
def test_a_bad_configuration_names_the_file_and_key(tmp_path, config, named):
    with pytest.raises(TrackingConfigError, match=r"conf/<env>/mlflow\.yml") as raised:
        settings_from_config(config, tmp_path)
    assert named in str(raised.value)


def test_other_stores_and_absolute_paths_are_kept(tmp_path):
    http = settings_from_config({"tracking_uri": "https://user:secret@mlflow.example"}, tmp_path)
    absolute = settings_from_config(
        {"tracking_uri": "sqlite:////srv/mlflow.db", "artifact_location": "s3://b/a"}, tmp_path
    )

    assert http.tracking_uri == "https://user:secret@mlflow.example"
    assert not http.store_is_local
    assert "secret" not in http.store_label()
    assert absolute.tracking_uri == "sqlite:////srv/mlflow.db"
    assert absolute.artifact_location == "s3://b/a"


def test_parameters_are_flattened_with_dotted_keys_and_json_for_the_rest(caplog):
    caplog.set_level(logging.WARNING)
    params = param_values(
        {
            "xgboost": {"booster_params": {"max_depth": 6, "eta": 0.1, "objective": "b:l"}},
            "columns": ["a", "b"],
            "unset": None,
            "flag": True,
            "empty": {},
            "long": "x" * (MAX_PARAM_LENGTH + 10),
        }
    )

    assert params["xgboost.booster_params.max_depth"] == "6"
    assert params["xgboost.booster_params.eta"] == "0.1"
    assert params["xgboost.booster_params.objective"] == "b:l"
    assert params["columns"] == '["a", "b"]'
    assert (params["unset"], params["flag"], params["empty"]) == ("null", "true", "{}")
    assert len(params["long"]) == MAX_PARAM_LENGTH
    assert [record.getMessage() for record in caplog.records if "long" in record.getMessage()]


def test_metrics_are_the_numeric_leaves():
    metrics = metric_values(
        {"roc_auc": 0.98, "rows": 1000, "passed": True, "none": None, "at": {"f1": 0.9, "t": "x"}}
    )

    assert metrics == {"roc_auc": 0.98, "rows": 1000.0, "at.f1": 0.9}


def test_a_node_group_is_its_top_level_namespace_else_its_name():
    assert node_group(node(_identity, "a", "b", name="train_model", namespace="train")) == "train"
    assert node_group(node(_identity, "a", "c", name="x", namespace="evaluate.plots")) == "evaluate"
    assert node_group(node(_identity, "a", "d", name="lonely")) == "lonely"


def test_importing_the_job_side_imports_neither_kedro_nor_mlflow(tmp_path: Path):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys; import predictive_maintenance.tracking.jobs as jobs; "
        "assert jobs.job_tracking({'log': {}}, {}, 'job') is None; "
        "print(sorted(m for m in ('kedro', 'mlflow') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )

    assert result.stdout.strip() == "[]"


def test_switched_off_needs_nothing_else(tmp_path):
    settings = settings_from_config({"enabled": False}, tmp_path)

    assert not settings.enabled
    assert settings.tracking_uri is None


@pytest.mark.parametrize(
    ("runner", "name"),
    [
        (
            "<predictive_maintenance.sagemaker.runner.SageMakerRunner object at 0x7f>",
            "SageMakerRunner",
        ),
        ("ThreadRunner", "ThreadRunner"),
        ("None", "SequentialRunner"),  # session.run() without a runner
        (None, "SequentialRunner"),
    ],
)
def test_the_runner_tag_is_the_runners_class_name(runner, name):
    assert _runner_name(runner) == name
