"""SageMakerRunner in-process against moto in server mode (the ``sagemaker`` backend).

moto records each CreateTrainingJob and the test server (tests/support/moto_server.py) executes
it with the ``local`` backend, logging to CloudWatch Logs and reporting status through
DescribeTrainingJob; so what runs here is the runner's real submit, poll, log, stop and
download code over boto3, with botocore validating every request.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pandas as pd
import pytest
from kedro.framework.hooks import hook_impl
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline

from predictive_maintenance.sagemaker import SageMakerHooks, SageMakerRunner
from predictive_maintenance.sagemaker.config import SageMakerConfigError
from predictive_maintenance.sagemaker.runner import TrainingJobFailedError
from tests.catalogs import RecordingDataset
from tests.sagemaker import runner_nodes
from tests.sagemaker.conftest import BUCKET, scale_and_total
from tests.support.aws import REGION

READINGS = pd.DataFrame({"torque_nm": [40.0, 55.5, 70.7], "tool_wear_min": [0.0, 108.0, 216.0]})


def bridge_config(**overrides: Any) -> dict[str, Any]:
    return {
        "region": REGION,
        "bucket": BUCKET,
        "prefix": "tests/runner",
        "execution_role_arn": "arn:aws:iam::123456789012:role/SageMakerExecutionRole",
        "remote_nodes": {"tags": ["training_job"]},
        "training_job": {"image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/xgb:3.0-5"},
        "poll_seconds": 0.1,
        **overrides,
    }


class RecordingHooks:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @hook_impl
    def before_node_run(self, node: Node) -> None:
        self.events.append(("before_node_run", node.name))

    @hook_impl
    def after_node_run(self, node: Node) -> None:
        self.events.append(("after_node_run", node.name))

    @hook_impl
    def on_node_error(self, node: Node) -> None:
        self.events.append(("on_node_error", node.name))


def run(pipeline: Pipeline, catalog: DataCatalog, tmp_path: Path, **config: Any) -> RecordingHooks:
    """Runs ``pipeline`` as ``kedro run --runner ...SageMakerRunner backend=sagemaker`` would."""
    manager = _create_hook_manager()
    bridge_hooks = SageMakerHooks()
    context = SimpleNamespace(
        project_path=tmp_path, env="local", config_loader={"sagemaker": bridge_config(**config)}
    )
    bridge_hooks.after_context_created(context)
    recording = RecordingHooks()
    manager.register(bridge_hooks)
    manager.register(recording)
    SageMakerRunner(backend="sagemaker").run(pipeline, catalog, manager)
    return recording


def training_jobs() -> list[dict[str, Any]]:
    sagemaker = boto3.client("sagemaker")
    names = [
        job["TrainingJobName"] for job in sagemaker.list_training_jobs()["TrainingJobSummaries"]
    ]
    return [sagemaker.describe_training_job(TrainingJobName=name) for name in names]


def test_remote_node_runs_as_a_job_and_the_pipeline_cannot_tell(aws, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="predictive_maintenance")
    caplog.set_level(logging.DEBUG, logger="botocore.retries")
    scaled = RecordingDataset()
    catalog = DataCatalog(
        {
            "readings": MemoryDataset(READINGS),
            "params:factor": MemoryDataset(2.5),
            "scaled": scaled,
            "total": MemoryDataset(),
        }
    )
    pipeline = scale_and_total()

    hooks = run(pipeline, catalog, tmp_path)

    pd.testing.assert_frame_equal(scaled.saved, READINGS * 2.5)
    assert catalog.load("total") == pytest.approx(float((READINGS * 2.5).to_numpy().sum()))
    assert hooks.events == [
        ("before_node_run", "scale"),
        ("after_node_run", "scale"),
        ("before_node_run", "total"),
        ("after_node_run", "total"),
    ]
    (job,) = training_jobs()
    assert job["TrainingJobStatus"] == "Completed"
    assert job["HyperParameters"]["kedro_job"] == '"scale"'
    assert "factor" not in job["HyperParameters"]  # parameters travel in the job spec
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == (
        f"s3://{BUCKET}/tests/runner/jobs/{job['TrainingJobName']}/output/model.tar.gz"
    )
    channels = {channel["ChannelName"]: channel for channel in job["InputDataConfig"]}
    assert set(channels) == {"readings", "kedro-job"}
    assert channels["readings"]["ContentType"] == "application/x-parquet"
    spec_uri = channels["kedro-job"]["DataSource"]["S3DataSource"]["S3Uri"] + "job.json"
    bucket, key = spec_uri.removeprefix("s3://").split("/", 1)
    spec = json.loads(boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert (spec["job"], spec["parameters"]) == ("scale", {"factor": 2.5})
    messages = [record.getMessage() for record in caplog.records]
    # The job's own output, read back from CloudWatch Logs.
    assert any(f"{job['TrainingJobName']} | kedro node scale: done in " in m for m in messages)
    # Status changes are logged as polled (a poll may fall between two transitions); the job
    # itself went through them all.
    assert any(f"Training job {job['TrainingJobName']}: Completed" in m for m in messages)
    transitions = [item["Status"] for item in job["SecondaryStatusTransitions"]]
    assert "Training" in transitions
    # moto's first DescribeTrainingJob of each job is throttled: the client retried it.
    assert any("ThrottlingException" in m or "Retry needed" in m for m in messages)


def test_a_failed_job_names_its_reason_and_log_and_saves_nothing(aws, tmp_path):
    rejected = RecordingDataset()
    catalog = DataCatalog({"readings": MemoryDataset(READINGS), "rejected": rejected})
    pipeline = Pipeline(
        [Node(runner_nodes.reject, "readings", "rejected", name="reject", tags="training_job")]
    )

    with pytest.raises(TrainingJobFailedError) as raised:
        run(pipeline, catalog, tmp_path)

    message = str(raised.value)
    assert "Node reject: training job reject-" in message
    assert (
        "failed: AlgorithmError: node reject failed: ValueError: torque_nm is negative in row 7"
        in message
    )
    assert "checking 3 rows" in message  # the job's last log lines
    assert "Traceback" in message
    assert "None of the node's outputs were saved" in message
    assert rejected.saved is None
    (job,) = training_jobs()
    assert job["TrainingJobStatus"] == "Failed"


def a_minute_long_node(tag: str) -> tuple[RecordingDataset, DataCatalog, Pipeline]:
    """A node that waits 60 s, tagged ``tag``; its output records whether it was saved."""
    waited = RecordingDataset()
    catalog = DataCatalog(
        {"readings": MemoryDataset(READINGS), "params:seconds": MemoryDataset(60), "waited": waited}
    )
    node = Node(runner_nodes.wait, ["readings", "params:seconds"], "waited", name="wait", tags=tag)
    return waited, catalog, Pipeline([node])


def test_max_runtime_is_enforced(aws, tmp_path):
    waited, catalog, pipeline = a_minute_long_node(tag="slow")

    started = time.monotonic()
    with pytest.raises(TrainingJobFailedError, match=r"stopped: .*MaxRuntimeInSeconds"):
        run(
            pipeline,
            catalog,
            tmp_path,
            remote_nodes={"names": ["wait"]},
            node_overrides={"tag:slow": {"max_runtime_seconds": 2}},
        )

    assert time.monotonic() - started < 45
    assert waited.saved is None
    (job,) = training_jobs()
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")
    assert job["StoppingCondition"]["MaxRuntimeInSeconds"] == 2


def test_ctrl_c_stops_the_job(aws, tmp_path):
    waited, catalog, pipeline = a_minute_long_node(tag="training_job")
    sagemaker = boto3.client("sagemaker")

    def interrupt_once_training() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            jobs = sagemaker.list_training_jobs()["TrainingJobSummaries"]
            if jobs:
                described = sagemaker.describe_training_job(
                    TrainingJobName=jobs[0]["TrainingJobName"]
                )
                if described.get("SecondaryStatus") == "Training":
                    break
            time.sleep(0.2)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)

    interrupter = threading.Thread(target=interrupt_once_training, daemon=True)
    interrupter.start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run(pipeline, catalog, tmp_path)
    interrupter.join()

    assert time.monotonic() - started < 45
    assert waited.saved is None
    (job,) = training_jobs()
    assert job["TrainingJobStatus"] == "Stopped"


def test_without_the_hooks_the_runner_says_what_to_register(tmp_path):
    catalog = DataCatalog({"readings": MemoryDataset(READINGS), "total": MemoryDataset()})
    pipeline = Pipeline([Node(runner_nodes.total, "readings", "total", name="total")])
    with pytest.raises(SageMakerConfigError, match="add SageMakerHooks"):
        SageMakerRunner(backend="sagemaker").run(pipeline, catalog, _create_hook_manager())


def test_an_unknown_backend_is_refused():
    with pytest.raises(
        SageMakerConfigError,
        match=r"unknown backend 'docker'; use backend=local .* or backend=sagemaker",
    ):
        SageMakerRunner(backend="docker")
