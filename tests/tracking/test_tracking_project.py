"""The session's one ``kedro run`` (``finished_run``, tracking on as the project ships it) is an
MLflow run in the project's own store: the README's path."""

from __future__ import annotations

import json

import mlflow
from kedro.framework.project import pipelines
from kedro.framework.startup import bootstrap_project

from predictive_maintenance.tracking.hooks import node_group
from predictive_maintenance.tracking.recorder import PARENT_TAG
from tests.support.project import PROJECT_ROOT


def test_kedro_run_is_tracked_in_the_projects_store_with_the_data_fingerprint(finished_run):
    project = finished_run.project
    database = project / "data/09_tracking/mlflow.db"
    assert database.exists()
    client = mlflow.MlflowClient(f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("predictive-maintenance")
    runs = client.search_runs([experiment.experiment_id])
    (parent,) = [run for run in runs if PARENT_TAG not in run.data.tags]
    nested = {run.info.run_name: run for run in runs if PARENT_TAG in run.data.tags}
    bootstrap_project(PROJECT_ROOT)
    provenance = json.loads((project / "data/02_intermediate/raw_data_provenance.json").read_text())
    manifest = json.loads((project / "data/05_model_input/dataset_manifest.json").read_text())

    assert experiment.artifact_location == (project / "data/09_tracking/mlartifacts").as_uri()
    assert parent.info.run_name.startswith("__default__ ")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["kedro.env"] == "local"
    # The run says where it went.
    assert (
        f"MLflow run {parent.info.run_id} in experiment predictive-maintenance "
        "(data/09_tracking/mlflow.db)" in finished_run.stdout + finished_run.stderr
    )
    assert set(nested) == {node_group(node) for node in pipelines["__default__"].nodes}
    assert {run.data.tags[PARENT_TAG] for run in nested.values()} == {parent.info.run_id}
    # The data fingerprint: the raw file's sha256 and the split sizes, on the parent too.
    params = parent.data.params
    assert params["data.raw_data_provenance.sha256"] == provenance["sha256"]
    for split in ("train", "validation", "test"):
        rows = str(manifest["splits"][split]["rows"])
        assert params[f"data.dataset_manifest.splits.{split}.rows"] == rows
    assert nested["prepare"].data.params["data.raw_data_provenance.sha256"] == provenance["sha256"]
    artifacts = {item.path for item in client.list_artifacts(nested["gate"].info.run_id)}
    assert artifacts == {"quality_gate_report.json"}
    models = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert [model.source_run_id for model in models] == [nested["train"].info.run_id]
