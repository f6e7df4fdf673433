"""``kedro run`` tracked by the project's hooks into a real sqlite store (in-process sessions).

The data engineering pipeline runs once untracked (which must leave no store); the training
pipeline then runs twice with different ``max_depth``; slices of one node show that a failing
store never fails the run.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from kedro.framework.project import pipelines

from predictive_maintenance.tracking.hooks import node_group
from predictive_maintenance.tracking.recorder import PARENT_TAG, metric_values
from tests.support.cli import invoke, run_session
from tests.support.net import free_port
from tests.support.project import copy_project

DEPTHS = (2, 5)
MAX_DEPTH = "xgboost.booster_params.max_depth"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after the data engineering pipeline, tracking off (the test default)."""
    project = copy_project(tmp_path_factory.mktemp("prepared") / "project")
    with pytest.MonkeyPatch.context() as monkeypatch:
        run_session(project, monkeypatch, pipeline_names=["data_engineering"])
    return project


def _copy(prepared: Path, destination: Path, mlflow_yml: str) -> Path:
    project = shutil.copytree(prepared, destination)
    (project / "conf/local/mlflow.yml").write_text(mlflow_yml)
    return project


@pytest.fixture(scope="module")
def two_runs(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The training pipeline run twice with tracking on, max_depth 2 then 5."""
    project = _copy(prepared, tmp_path_factory.mktemp("two-runs") / "project", "enabled: true\n")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for depth in DEPTHS:
            params = {"xgboost": {"booster_params": {"max_depth": depth}}}
            run_session(project, monkeypatch, pipeline_names=["training"], runtime_params=params)
        yield project


def _client(project: Path) -> tuple[Any, str]:
    client = mlflow.MlflowClient(f"sqlite:///{project / 'data/09_tracking/mlflow.db'}")
    return client, client.get_experiment_by_name("predictive-maintenance").experiment_id


def _parents(client: Any, experiment_id: str) -> list[Any]:
    runs = client.search_runs([experiment_id], order_by=["attributes.start_time ASC"])
    return [run for run in runs if PARENT_TAG not in run.data.tags]


def test_an_untracked_run_leaves_no_store(prepared):
    assert (prepared / "data/05_model_input/dataset_manifest.json").exists()
    assert sorted(path.name for path in (prepared / "data/09_tracking").iterdir()) == [
        "run_timings.json"
    ]


def test_two_runs_are_both_there_with_their_parameters_and_metrics(two_runs):
    client, experiment_id = _client(two_runs)
    parents = _parents(client, experiment_id)

    assert [run.data.params[MAX_DEPTH] for run in parents] == [str(depth) for depth in DEPTHS]
    assert {run.info.status for run in parents} == {"FINISHED"}
    for run in parents:
        assert run.info.run_name.startswith("training 20")
        assert run.data.tags["kedro.pipelines"] == "training"
        assert run.data.tags["kedro.runner"] == "SequentialRunner"
        assert run.data.params["decision_threshold.prior"]  # all parameters, not only training's
        assert {"roc_auc", "pr_auc", "at_chosen_threshold.f1"} <= set(run.data.metrics)
    assert parents[0].data.tags["kedro.run_id"] != parents[1].data.tags["kedro.run_id"]
    # The second run's metrics are the metrics files it left (conf/base/mlflow.yml log.metrics).
    written = {
        key: value
        for name in ("metrics.json", "calibration.json", "failure_modes.json")
        for key, value in metric_values(
            json.loads((two_runs / "data/08_reporting" / name).read_text())
        ).items()
    }
    assert parents[1].data.metrics == pytest.approx(written)


def test_each_run_has_a_nested_run_per_group_with_what_it_made(two_runs):
    client, experiment_id = _client(two_runs)

    for parent, depth in zip(_parents(client, experiment_id), DEPTHS, strict=True):
        nested = client.search_runs(
            [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'"
        )
        groups = {run.info.run_name: run for run in nested}
        assert set(groups) == {node_group(node) for node in pipelines["training"].nodes}
        assert {"train", "evaluate"} <= set(groups)
        assert {run.info.status for run in nested} == {"FINISHED"}
        # The runs are made in the background but keep the pipeline's times: the groups ran
        # one after the other (train before evaluate), inside the parent's span.
        for run in nested:
            assert parent.info.start_time <= run.info.start_time <= run.info.end_time
            assert run.info.end_time <= parent.info.end_time
        assert groups["train"].info.end_time <= groups["evaluate"].info.start_time
        assert groups["train"].data.params[MAX_DEPTH] == str(depth)
        assert groups["evaluate"].data.metrics == parent.data.metrics
        evaluate = groups["evaluate"].info.run_id
        assert {item.path for item in client.list_artifacts(evaluate)} == {
            "model_spec.json",
            "calibration.json",
            "plots",
        }
        plots = {Path(item.path).name for item in client.list_artifacts(evaluate, "plots")}
        assert {"roc_curve_plot.html", "feature_importance_plot.json"} <= plots
        (model,) = client.search_logged_models(
            experiment_ids=[experiment_id],
            filter_string=f"source_run_id = '{groups['train'].info.run_id}'",
        )
        files = {path.name for path in Path(model.artifact_location[7:]).iterdir()}
        assert {"MLmodel", "model.ubj"} <= files


def test_the_model_is_logged_in_xgboosts_format_and_nothing_is_pickled(two_runs):
    client, experiment_id = _client(two_runs)
    last_train = client.search_runs(
        [experiment_id],
        filter_string="attributes.run_name = 'train'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]
    (model,) = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{last_train.info.run_id}'",
    )
    directory = Path(model.artifact_location[7:])

    assert "model_format: ubj" in (directory / "MLmodel").read_text()
    assert (directory / "model.ubj").read_bytes() == (
        two_runs / "data/06_models/model.ubj"
    ).read_bytes()
    assert directory.is_relative_to(two_runs / "data/09_tracking/mlartifacts")
    pickled = [p for p in two_runs.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib"}]
    assert pickled == []


def test_kedro_tracking_compare_shows_the_parameter_that_differs(two_runs, monkeypatch):
    compared = invoke(two_runs, monkeypatch, "tracking", "compare")
    listed = invoke(two_runs, monkeypatch, "tracking", "runs")

    assert compared.exit_code == 0, compared.output
    differing = compared.output.split("parameters that differ")[1].split("metrics:")[0]
    assert [line.split() for line in differing.splitlines() if MAX_DEPTH in line] == [
        [MAX_DEPTH, "2", "5"]
    ]
    assert "roc_auc" in compared.output.split("metrics:")[1]
    assert listed.exit_code == 0, listed.output
    assert MAX_DEPTH in listed.output.splitlines()[0]
    assert len(listed.output.splitlines()) == 1 + len(DEPTHS)


@pytest.mark.parametrize("store", ["unwritable", "unreachable"])
def test_a_failing_store_warns_once_and_the_run_goes_on(
    prepared, tmp_path, monkeypatch, tracking_warnings, store
):
    if store == "unwritable":
        (tmp_path / "a-file").write_text("not a directory")
        uri = f"sqlite:///{tmp_path / 'a-file' / 'mlflow.db'}"
    else:
        uri = f"http://127.0.0.1:{free_port()}"
    project = _copy(prepared, tmp_path / "project", f"tracking_uri: {uri}\n")
    manifest = project / "data/05_model_input/dataset_manifest.json"
    manifest.unlink()

    started = time.perf_counter()
    run_session(project, monkeypatch, node_names=["prepare.create_dataset_manifest"])

    assert time.perf_counter() - started < 30
    assert json.loads(manifest.read_text())["splits"]["test"]["rows"] > 0
    (warning,) = tracking_warnings.tracking_off()
    assert uri.split("/mlflow.db")[0].rstrip("/") in warning
