"""``kedro run --runner predictive_maintenance.sagemaker.SageMakerRunner`` on the real project.

The session's ``kedro run`` (``finished_run``: every node in-process) gives the expected metrics and
model; copies of it then run the training pipeline with ``train.train_model`` as a training job,
on the ``local`` backend (no Docker, a directory standing in for S3) and on the ``sagemaker``
backend (moto in server mode executing the recorded job): the metrics and the model must be the
same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest

from tests.sagemaker.conftest import BUCKET
from tests.support.aws import aws_environment
from tests.support.cli import kedro
from tests.support.project import project_pipeline

pytestmark = pytest.mark.slow

RUNNER = "predictive_maintenance.sagemaker.SageMakerRunner"
TRAINING_OUTPUTS = ("06_models/model_spec.json", "08_reporting/metrics.json")


def succeeded(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """``kedro ARGS`` in ``project``, which must succeed; its output."""
    result = kedro(project, *args, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def outputs(project: Path) -> dict[str, dict]:
    return {name: json.loads((project / "data" / name).read_text()) for name in TRAINING_OUTPUTS}


def trained(finished_run, destination: Path, *, tracking: bool) -> tuple[Path, dict[str, dict]]:
    """A copy of the project after ``kedro run`` (features and splits saved), without the
    training outputs and node timings the runner under test must write again; and those
    outputs. With ``tracking``, MLflow tracking on in the copy (a store of its own)."""
    assert finished_run.returncode == 0, finished_run.stdout[-3000:] + finished_run.stderr[-3000:]
    project = finished_run.copy(destination, tracking=tracking)
    expected = outputs(project)
    for name in (*TRAINING_OUTPUTS, "09_tracking/run_timings.json"):
        (project / "data" / name).unlink()
    return project, expected


@pytest.fixture
def trained_in_process(finished_run, tmp_path) -> tuple[Path, dict[str, dict]]:
    return trained(finished_run, tmp_path / "project", tracking=False)


def test_local_backend_trains_the_same_model(finished_run, tmp_path):
    project, expected = trained(finished_run, tmp_path / "project", tracking=True)

    log = succeeded(
        project,
        "run",
        "--pipelines",
        "training",
        "--runner",
        RUNNER,
        "--runner-params",
        "backend=local",
    )

    others = len(project_pipeline("training").nodes) - 1
    assert f"train.train_model run as training jobs; {others} other nodes in-process" in log
    assert "Completed - Completed" in log
    assert "| kedro node train.train_model: done in " in log
    assert outputs(project) == expected
    job_dirs = sorted((project / "data/12_sagemaker").glob("*/*/runner/jobs/train-train-model-*"))
    assert len(job_dirs) == 1
    assert (job_dirs[0] / "output" / "model.tar.gz").is_file()
    assert {path.name for path in (job_dirs[0] / "input").iterdir()} == {
        "train",
        "validation",
        "kedro-job",
    }
    timings = json.loads((project / "data/09_tracking/run_timings.json").read_text())
    assert "train.train_model" in timings["nodes"]  # project hooks fired for the remote node too
    # MLflow: the job logged into the nested run `train` of this kedro run; the hooks, which
    # log every other group, left the remote node's outputs to it (one model, not two).
    client, experiment = tracking_store(project)
    training = "tags.`kedro.pipelines` = 'training'"
    (parent,) = client.search_runs([experiment], filter_string=training)
    nested = {
        run.info.run_name: run
        for run in client.search_runs(
            [experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        )
    }
    assert {"train", "evaluate"} <= set(nested)
    train = nested["train"]
    assert f"Node train.train_model: its job logs to MLflow run {train.info.run_id}" in log
    assert "shipped wheels are for Python 3.10; this is Python 3.11" in log  # the project's env
    depth = "xgboost.booster_params.max_depth"
    assert train.data.params[depth] == parent.data.params[depth]
    assert set(nested["evaluate"].data.metrics) <= set(parent.data.metrics)
    models = [
        model
        for model in client.search_logged_models([experiment])
        if model.source_run_id == train.info.run_id
    ]
    assert len(models) == 1
    files = {path.name for path in Path(local_path(models[0].artifact_location)).rglob("*")}
    assert "model.ubj" in files
    assert not [name for name in files if name.endswith((".pkl", ".pickle"))]


def tracking_store(project: Path) -> tuple[Any, str]:
    """The project's MLflow store (conf/base/mlflow.yml: sqlite under data/09_tracking) and the
    experiment's id."""
    from mlflow import MlflowClient  # noqa: PLC0415 -- seconds; only the tests that read runs

    client = MlflowClient(f"sqlite:///{project / 'data/09_tracking/mlflow.db'}")
    return client, client.get_experiment_by_name("predictive-maintenance").experiment_id


def local_path(uri: str) -> str:
    return unquote(urlsplit(uri).path) if uri.startswith("file:") else uri


def test_sagemaker_backend_against_moto_trains_the_same_model(trained_in_process, aws):
    project, expected = trained_in_process
    (project / "conf/local/sagemaker.yml").write_text("poll_seconds: 0.2\n")

    log = succeeded(
        project,
        "run",
        "--pipelines",
        "training",
        "--runner",
        RUNNER,
        "--runner-params",
        "backend=sagemaker",
        env=aws_environment(aws),
    )

    assert outputs(project) == expected
    sagemaker = boto3.client("sagemaker")
    (summary,) = sagemaker.list_training_jobs()["TrainingJobSummaries"]
    job = sagemaker.describe_training_job(TrainingJobName=summary["TrainingJobName"])
    assert job["TrainingJobStatus"] == "Completed"
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("/sagemaker-xgboost:3.0-5")
    assert job["HyperParameters"]["kedro_job"] == '"train.train_model"'
    spec_uri = next(
        channel["DataSource"]["S3DataSource"]["S3Uri"]
        for channel in job["InputDataConfig"]
        if channel["ChannelName"] == "kedro-job"
    )
    spec_key = f"{spec_uri.removeprefix(f's3://{BUCKET}/')}job.json"
    spec = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key=spec_key)["Body"].read())
    assert spec["parameters"]["xgboost"]["booster_params"]["seed"] == 42
    key = job["ModelArtifacts"]["S3ModelArtifacts"].removeprefix(f"s3://{BUCKET}/")
    assert boto3.client("s3").head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    assert f"{job['TrainingJobName']} | kedro node train.train_model: done in" in log
