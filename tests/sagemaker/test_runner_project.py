"""``kedro run --runner predictive_maintenance.sagemaker.SageMakerRunner`` on the real project.

The training pipeline runs once in-process and then with ``train.train_model`` as a training job, on
the ``local`` backend (no Docker, a directory standing in for S3) and on the ``sagemaker`` backend
(moto in server mode executing the recorded job): the metrics and the model must be the same.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import copy_project
from tests.sagemaker.conftest import BUCKET

pytestmark = pytest.mark.slow

KEDRO = str(Path(sys.executable).with_name("kedro"))
RUNNER = "predictive_maintenance.sagemaker.SageMakerRunner"
TRAINING_OUTPUTS = ("06_models/model_spec.json", "08_reporting/metrics.json")


def kedro(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [KEDRO, *args],
        cwd=project,
        env={
            **os.environ,
            **(env or {}),
            "KEDRO_DISABLE_TELEMETRY": "true",
            "NO_COLOR": "1",
            "COLUMNS": "250",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout + result.stderr


def outputs(project: Path) -> dict[str, dict]:
    return {name: json.loads((project / "data" / name).read_text()) for name in TRAINING_OUTPUTS}


@pytest.fixture(scope="module")
def trained_in_process(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """A project copy with features and splits, and the in-process training run's outputs."""
    project = copy_project(tmp_path_factory.mktemp("runner") / "project")
    kedro(project, "run", "--pipeline", "data_engineering")
    kedro(project, "run", "--pipeline", "training")
    expected = outputs(project)
    for name in TRAINING_OUTPUTS:
        (project / "data" / name).unlink()
    return project, expected


def test_local_backend_trains_the_same_model(trained_in_process):
    project, expected = trained_in_process

    log = kedro(
        project,
        "run",
        "--pipeline",
        "training",
        "--runner",
        RUNNER,
        "--runner-params",
        "backend=local",
    )

    assert "train.train_model run as training jobs; 9 other nodes in-process" in log
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


def test_sagemaker_backend_against_moto_trains_the_same_model(trained_in_process, aws, monkeypatch):
    project, expected = trained_in_process
    (project / "conf/local/sagemaker.yml").write_text("poll_seconds: 0.2\n")
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")

    log = kedro(
        project,
        "run",
        "--pipeline",
        "training",
        "--runner",
        RUNNER,
        "--runner-params",
        "backend=sagemaker",
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
