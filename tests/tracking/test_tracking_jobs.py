"""The job side (``tracking.jobs``) and the hooks' side of a job, against a real sqlite store.

What a SageMaker job logs: into the runner's nested run (``MLFLOW_RUN_ID``), or into one parent
run per pipeline execution (``KEDRO_MLFLOW_EXECUTION``), whatever the number of jobs and even
when two make the parent at once. The hooks hand a job its run (``job_environment``) and then do
not log that node's outputs themselves.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import mlflow
import numpy as np
import plotly.graph_objects as go
import pytest
import xgboost as xgb
from kedro.io import DatasetError
from kedro.pipeline import node

from predictive_maintenance import tracking
from predictive_maintenance.tracking import jobs
from predictive_maintenance.tracking.datasets import TrackingRunDataset
from predictive_maintenance.tracking.hooks import MlflowTrackingHooks
from predictive_maintenance.tracking.recorder import PARENT_TAG, Recorder, open_client
from predictive_maintenance.tracking.settings import TrackingSettings
from tests.support.net import free_port

EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/pm/execution/{}"


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    features = rng.random((60, 3))
    data = xgb.DMatrix(features, label=(features[:, 0] > 0.5).astype(int))
    return xgb.train({"max_depth": 2, "nthread": 1}, data, num_boost_round=3)


def _outputs(booster: xgb.Booster, roc_auc: float) -> dict[str, Any]:
    return {
        "model": booster,
        "metrics": {"roc_auc": roc_auc, "at_chosen_threshold": {"f1": 0.5, "passed": True}},
        "model_spec": {"model_format": "ubj"},
        "roc_curve_plot": go.Figure(go.Scatter(x=[0, 1], y=[0, 1])),
        "raw_data_provenance": {"sha256": "ab" * 32, "rows": 10},
        "unlisted": {"not": "logged"},
    }


def _client(settings: TrackingSettings) -> Any:
    return mlflow.MlflowClient(settings.tracking_uri)


def _experiment(settings: TrackingSettings, name: str) -> TrackingSettings:
    return replace(settings, experiment=name)


def _artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    return {item.path for item in client.list_artifacts(run_id, path)}


def _model_files(client: Any, run_id: str) -> tuple[Any, set[str]]:
    run = client.get_run(run_id)
    (model,) = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    directory = Path(model.artifact_location.removeprefix("file://"))
    return model, {path.name for path in directory.iterdir()}


def test_a_runner_job_logs_into_the_run_it_is_given_and_leaves_it_open(store, booster):
    settings = _experiment(store, "runner-job")
    recorder = Recorder(settings, open_client(settings))
    experiment_id = recorder.experiment_id()
    parent = recorder.create_run(experiment_id, "kedro run")
    nested = recorder.create_run(experiment_id, "train", parent_id=parent)
    environ = jobs.job_environment_of(settings, experiment_id, nested)

    job = jobs.job_tracking(settings.job_spec(), environ, "train")
    assert job is not None
    job.log_parameters({"xgboost": {"booster_params": {"max_depth": 4}}})
    job.log_outputs("train.train_model", _outputs(booster, 0.75))
    job.finish(failed=False)

    client = _client(settings)
    run, parent_run = client.get_run(nested), client.get_run(parent)
    assert run.info.status == "RUNNING"  # the kedro run that made it ends it
    assert run.data.params["xgboost.booster_params.max_depth"] == "4"
    assert run.data.params["data.raw_data_provenance.rows"] == "10"
    assert run.data.metrics == {"roc_auc": 0.75, "at_chosen_threshold.f1": 0.5}
    assert parent_run.data.metrics == run.data.metrics  # metrics compare on parents too
    assert _artifacts(client, nested) == {"model_spec.json", "plots"}
    assert _artifacts(client, nested, "plots") == {
        "plots/roc_curve_plot.html",
        "plots/roc_curve_plot.json",
    }
    model, files = _model_files(client, nested)
    assert "model.ubj" in files
    assert not {name for name in files if name.endswith((".pkl", ".pickle", ".joblib"))}
    assert "model_format: ubj" in (Path(model.artifact_location[7:]) / "MLmodel").read_text()
    loaded = mlflow.xgboost.load_model(model.artifact_location)
    assert bytes(loaded.save_raw("ubj")) == bytes(booster.save_raw("ubj"))


def test_the_jobs_of_one_execution_share_one_parent_run(store, booster):
    settings = _experiment(store, "exported")
    execution = EXECUTION.format("two-jobs")
    environ = {
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": "exported-pipeline",
        jobs.ENV_EXECUTION: execution,
    }

    prepare = jobs.job_tracking(settings.job_spec(), environ, "prepare")
    assert prepare is not None
    prepare.log_parameters({"split": {"seed": 42}})
    prepare.finish(failed=False)
    train = jobs.job_tracking(settings.job_spec(), environ, "train")
    assert train is not None
    train.log_parameters({"split": {"seed": 42}, "xgboost": {"max_depth": 3}})
    train.log_outputs("train.train_model", {"model": booster, "metrics": {"roc_auc": 0.5}})
    train.finish(failed=False)

    client = _client(settings)
    experiment = client.get_experiment_by_name("exported-pipeline")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if PARENT_TAG not in run.data.tags]
    assert len(parents) == 1
    (parent,) = parents
    assert parent.data.tags[jobs.EXECUTION_TAG] == execution
    assert parent.info.status == "FINISHED"
    assert parent.data.params == {"split.seed": "42", "xgboost.max_depth": "3"}
    assert parent.data.metrics == {"roc_auc": 0.5}
    nested = {run.info.run_name: run for run in runs if PARENT_TAG in run.data.tags}
    assert set(nested) == {"prepare", "train"}
    assert {run.data.tags[PARENT_TAG] for run in nested.values()} == {parent.info.run_id}
    assert {run.info.status for run in nested.values()} == {"FINISHED"}
    assert nested["train"].data.params == {"split.seed": "42", "xgboost.max_depth": "3"}
    assert "model.ubj" in _model_files(client, nested["train"].info.run_id)[1]
    # Artifacts beside the sqlite file, not in ./mlruns of the job's working directory.
    assert experiment.artifact_location.startswith(Path(store.local_store_path()).parent.as_uri())


def test_two_jobs_making_the_parent_at_once_keep_the_oldest(store, monkeypatch):
    settings = _experiment(store, "race")
    execution = EXECUTION.format("race")
    environ = {"MLFLOW_TRACKING_URI": settings.tracking_uri, jobs.ENV_EXECUTION: execution}
    first = jobs.job_tracking(settings.job_spec(), environ, "prepare")
    assert first is not None
    # The second job looks before the first one's parent is visible, so it makes its own.
    real = jobs._parents
    calls: list[int] = []

    def not_yet_visible(*args: Any) -> list[str]:
        calls.append(1)
        return [] if len(calls) == 1 else real(*args)

    monkeypatch.setattr(jobs, "_parents", not_yet_visible)
    second = jobs.job_tracking(settings.job_spec(), environ, "baseline")
    assert second is not None

    assert second.parent_id == first.parent_id
    client = _client(settings)
    experiment_id = client.get_experiment_by_name(settings.experiment).experiment_id
    deleted = client.search_runs([experiment_id], run_view_type=mlflow.entities.ViewType.ALL)
    parents = [run for run in deleted if PARENT_TAG not in run.data.tags]
    assert sorted(run.info.lifecycle_stage for run in parents) == ["active", "deleted"]


def test_a_job_without_a_store_or_a_run_is_not_tracked(store, tracking_warnings):
    spec = store.job_spec()
    closed = f"http://127.0.0.1:{free_port()}"

    assert jobs.job_tracking(None, {"MLFLOW_TRACKING_URI": store.tracking_uri}, "j") is None
    assert jobs.job_tracking(spec, {"MLFLOW_RUN_ID": "abc"}, "j") is None
    assert jobs.job_tracking(spec, {"MLFLOW_TRACKING_URI": store.tracking_uri}, "j") is None
    assert tracking_warnings.tracking_off() == []
    unreachable = {"MLFLOW_TRACKING_URI": closed, jobs.ENV_EXECUTION: EXECUTION.format("x")}
    assert jobs.job_tracking(spec, unreachable, "j") is None
    assert len(tracking_warnings.tracking_off()) == 1
    assert closed in tracking_warnings.tracking_off()[0]


def _context(settings: TrackingSettings, project: Path) -> SimpleNamespace:
    config = {
        "tracking_uri": settings.tracking_uri,
        "experiment": settings.experiment,
        "log": json.loads(json.dumps(settings.job_spec()["log"])),
    }
    return SimpleNamespace(
        config_loader={"mlflow": config},
        params={"xgboost": {"max_depth": 3}},
        project_path=project,
        env="local",
    )


def test_the_hooks_hand_a_job_its_groups_run_and_do_not_log_its_outputs_twice(
    store, booster, tmp_path
):
    settings = _experiment(store, "hooks-and-job")
    hooks = MlflowTrackingHooks()
    hooks.after_context_created(_context(settings, tmp_path))
    train = node(lambda data: data, "train", "model", name="train_model", namespace="train")
    evaluate = node(lambda model: model, "model", "metrics", name="evaluate", namespace="evaluate")

    hooks.before_pipeline_run({"run_id": "session-1", "pipeline_names": ["training"]})
    run = TrackingRunDataset(wait_seconds=60).load()
    assert hooks.job_environment(train, remote=True) == {}  # sqlite: not reachable from AWS
    environ = hooks.job_environment(train, remote=False)
    job = jobs.job_tracking(hooks.settings().job_spec(), environ, "train")
    assert job is not None
    job.log_outputs("train.train_model", {"model": booster, "metrics": {"roc_auc": 0.25}})
    job.finish(failed=False)
    hooks.after_node_run(train, {"model": booster, "metrics": {"roc_auc": 0.99}})
    hooks.after_node_run(evaluate, {"metrics": {"f1": 0.5}})
    hooks.after_pipeline_run()

    assert run is not None
    assert run["experiment"] == "hooks-and-job"
    assert TrackingRunDataset(wait_seconds=0).load() is None  # no run in progress any more
    client = _client(settings)
    parent = client.get_run(run["run_id"])
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kedro.run_id"] == "session-1"
    assert parent.data.tags["kedro.pipelines"] == "training"
    assert parent.data.params == {"xgboost.max_depth": "3"}
    assert parent.data.metrics == {"roc_auc": 0.25, "f1": 0.5}
    nested = client.search_runs(
        [run["experiment_id"]], filter_string=f"tags.`{PARENT_TAG}` = '{run['run_id']}'"
    )
    by_group = {item.info.run_name: item for item in nested}
    assert set(by_group) == {"train", "evaluate"}
    assert by_group["train"].info.run_id == environ["MLFLOW_RUN_ID"]
    assert by_group["train"].data.metrics == {"roc_auc": 0.25}  # the job's, once
    assert by_group["evaluate"].data.metrics == {"f1": 0.5}
    assert {item.info.status for item in nested} == {"FINISHED"}
    assert len(client.search_logged_models(experiment_ids=[run["experiment_id"]])) == 1

    tracking.record_registration(run, {"model_registry.version": "3"})
    tracking.record_registration(None, {"model_registry.version": "4"})
    assert client.get_run(run["run_id"]).data.tags["model_registry.version"] == "3"
    with pytest.raises(DatasetError, match="read-only"):
        TrackingRunDataset().save(run)


def test_a_sagemaker_mlflow_store_gets_its_routing_header(monkeypatch):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/pm"
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    from mlflow.tracking.request_header.registry import resolve_request_headers  # noqa: PLC0415

    try:
        client = open_client(TrackingSettings(tracking_uri=arn))
        headers = resolve_request_headers()
    finally:
        mlflow.set_tracking_uri(None)  # no global URI left for the next tests

    assert type(client._tracking_client.store).__name__ == "MlflowSageMakerStore"
    assert headers["x-mlflow-sm-tracking-server-arn"] == arn
