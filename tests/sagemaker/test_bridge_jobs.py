"""Kedro nodes as training jobs: prepare_job -> LocalTrainingJobs -> read_outputs.

A directory in ``tmp_path`` stands in for S3; each job runs the job entry script
(``kedro_job_entry.py`` -> ``job.main``) in a subprocess, in an ``/opt/ml``-shaped tree, with the
code of a real ``sourcedir.tar.gz`` and its spec in the ``kedro-job`` channel.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ParamValidationError
from kedro.pipeline import Node

from predictive_maintenance.sagemaker.archives import build_tar_gz, directory_files, extract_tar_gz
from predictive_maintenance.sagemaker.config import BridgeSettings, parse_settings
from predictive_maintenance.sagemaker.job import JOB_FILE, JOB_INPUT, VALUE_MANIFEST
from predictive_maintenance.sagemaker.jobs import (
    JOB_ENVIRONMENT,
    MAX_CHANNELS,
    NodeJob,
    RemoteNodeError,
    prepare_job,
    read_outputs,
)
from predictive_maintenance.sagemaker.local import (
    LocalJobError,
    LocalTrainingJobs,
    validate_request,
)
from predictive_maintenance.sagemaker.packaging import ENTRY_SCRIPT, code_files
from predictive_maintenance.sagemaker.storage import DirectoryStore
from tests.sagemaker import bridge_nodes
from tests.support.project import PROJECT_ROOT

BUCKET = "bridge-tests"
ROLE = "arn:aws:iam::000000000000:role/SageMakerExecution"
IMAGE = "000000000000.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
RUN_ID = "2024-05-01T10.00.00.000Z"
#: Generous: a job that imports pandas takes about two seconds on a slow machine.
JOB_TIMEOUT = 60.0
#: Modules a training container does not have (or the entry script must not need).
NOT_IN_CONTAINER = (
    "kedro",
    "kedro_datasets",
    "pandera",
    "plotly",
    "boto3",
    "botocore",
    "sagemaker",
    "moto",
    "sklearn",
)

#: Runs as the job's "python": blocks the modules above, then runs the program as a script.
BLOCKING_PYTHON = """
import importlib.abc, json, runpy, sys

blocked = set(sys.argv[1].split(","))
report = sys.argv[2]


class NotInContainer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is not installed in the training container")
        return None


sys.meta_path.insert(0, NotInContainer())
arguments = [argument for argument in sys.argv[3:] if argument != "-u"]
sys.argv = arguments
try:
    runpy.run_path(arguments[0], run_name="__main__")
finally:
    with open(report, "w") as file:
        json.dump(
            {
                "loaded": sorted(n for n in sys.modules if n.partition(".")[0] in blocked),
                "files": {
                    name: getattr(sys.modules.get(name), "__file__", None)
                    for name in (
                        "predictive_maintenance.sagemaker.job",
                        "tests.sagemaker.bridge_nodes",
                    )
                },
            },
            file,
        )
"""


@dataclass
class Bridge:
    """A store, a local backend and the settings, as the runner would hold them."""

    store: DirectoryStore
    jobs: LocalTrainingJobs
    settings: BridgeSettings
    code_uri: str
    started: list[str] = field(default_factory=list)

    def spec(self, job: NodeJob) -> dict[str, Any]:
        """The job spec the job's kedro-job channel holds."""
        (channel,) = [c for c in job.request["InputDataConfig"] if c["ChannelName"] == JOB_INPUT]
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"] + JOB_FILE
        return json.loads(self.store.path_of(uri).read_text())

    def prepare(self, node: Node, args: tuple = (), kwargs: dict | None = None, **job) -> NodeJob:
        return prepare_job(
            node,
            tuple(args),
            dict(kwargs or {}),
            settings=self.settings,
            job_settings=replace(self.settings.training_job, **job),
            image_uri=IMAGE,
            code_uri=self.code_uri,
            store=self.store,
            run_id=RUN_ID,
        )

    def submit(self, job: NodeJob) -> None:
        self.jobs.create_training_job(job.request)
        self.started.append(job.name)

    def run(self, node: Node, args: tuple = (), kwargs: dict | None = None, **job):
        """Prepares, submits and waits for a job; returns it and its final description."""
        prepared = self.prepare(node, args, kwargs, **job)
        self.submit(prepared)
        return prepared, self.jobs.wait(prepared.name, JOB_TIMEOUT)

    def outputs(self, job: NodeJob, described: dict[str, Any]) -> Any:
        assert described["TrainingJobStatus"] == "Completed", (
            described.get("FailureReason"),
            self.jobs.new_log_lines(job.name),
        )
        return read_outputs(job, described["ModelArtifacts"]["S3ModelArtifacts"], self.store)


@pytest.fixture(scope="module")
def source_archive() -> bytes:
    return build_tar_gz(code_files(["tests"]))


def make_bridge(tmp_path: Path, source_archive: bytes, **backend: Any) -> Bridge:
    store = DirectoryStore(tmp_path / "s3")
    settings = parse_settings(
        {
            "bucket": BUCKET,
            "prefix": "runs",
            "region": "eu-west-1",
            "execution_role_arn": ROLE,
            "training_job": {"max_runtime_seconds": 120},
        },
        tmp_path,
    )
    staged = tmp_path / "sourcedir.tar.gz"
    staged.write_bytes(source_archive)
    code_uri = f"{settings.s3_root}/code/{hashlib.sha256(source_archive).hexdigest()}/{staged.name}"
    store.upload_file(staged, code_uri)
    jobs = LocalTrainingJobs(store, settings.region, **backend)
    return Bridge(store=store, jobs=jobs, settings=settings, code_uri=code_uri)


@pytest.fixture
def bridge(tmp_path, source_archive) -> Iterator[Bridge]:
    bridge = make_bridge(tmp_path, source_archive)
    yield bridge
    for name in bridge.started:  # nothing outlives its test
        bridge.jobs.stop_training_job(name)
        bridge.jobs.wait(name, JOB_TIMEOUT)


def _statuses(described: dict[str, Any]) -> list[str]:
    return [item["Status"] for item in described["SecondaryStatusTransitions"]]


def _wait_for_log(bridge: Bridge, name: str, text: str) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + JOB_TIMEOUT
    while not any(text in line for line in lines):
        assert time.monotonic() < deadline, lines
        assert bridge.jobs.describe_training_job(name)["TrainingJobStatus"] == "InProgress", lines
        lines += bridge.jobs.new_log_lines(name)
        time.sleep(0.05)
    return lines


# ---- inputs, parameters and outputs ------------------------------------------------------------
def test_list_inputs_and_a_parameter_run_as_a_job(bridge):
    node = Node(bridge_nodes.scale_total, ["numbers", "params:factor"], "total", name="scale")

    job, described = bridge.run(node, ([1, 2, 3.5], 2))

    assert bridge.outputs(job, described) == 13.0
    request = job.request
    validate_request("CreateTrainingJob", request)
    assert request["TrainingJobName"] == job.name
    assert job.name.startswith("scale-")
    # Only what the training toolkit needs and the job's name: parameters travel in the spec.
    assert request["HyperParameters"] == {
        "sagemaker_program": json.dumps(ENTRY_SCRIPT),
        "sagemaker_submit_directory": json.dumps(bridge.code_uri),
        "sagemaker_container_log_level": "20",
        "sagemaker_region": '"eu-west-1"',
        "kedro_job": '"scale"',
    }
    assert bridge.spec(job) == {
        "job": "scale",
        "nodes": [
            {
                "node": "scale",
                "function": "tests.sagemaker.bridge_nodes:scale_total",
                "inputs": {
                    "kind": "list",
                    "items": [
                        {"arg": None, "dataset": "numbers"},
                        {"arg": None, "dataset": "params:factor"},
                    ],
                },
                "outputs": {"kind": "single", "names": ["total"]},
            }
        ],
        "inputs": {"numbers": "numbers"},
        "outputs": {"total": "total"},
        "files": {},
        "parameters": {"factor": 2},
        "catalog": {},
    }
    assert job.outputs == {"total": "total"}
    assert job.shape == {"kind": "single", "names": ["total"]}
    job_root = f"s3://{BUCKET}/runs/jobs/{job.name}"
    assert request["InputDataConfig"] == [
        {
            "ChannelName": "numbers",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{job_root}/input/numbers/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/json",
            "InputMode": "File",
        },
        {
            "ChannelName": "kedro-job",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{job_root}/input/kedro-job/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "ContentType": "application/json",
            "InputMode": "File",
        },
    ]
    assert bridge.store.list_keys(f"{job_root}/input/numbers/") == [
        f"{job_root}/input/numbers/{VALUE_MANIFEST}",
        f"{job_root}/input/numbers/numbers.json",
    ]
    manifest = json.loads(
        bridge.store.path_of(f"{job_root}/input/numbers/{VALUE_MANIFEST}").read_text()
    )
    uploaded = bridge.store.path_of(f"{job_root}/input/numbers/numbers.json")
    assert json.loads(uploaded.read_text()) == [1, 2, 3.5]
    assert manifest == {
        "dataset": "numbers",
        "file": "numbers.json",
        "codec": "json",
        "sha256": hashlib.sha256(uploaded.read_bytes()).hexdigest(),
    }
    assert request["AlgorithmSpecification"] == {
        "TrainingImage": IMAGE,
        "TrainingInputMode": "File",
    }
    assert request["RoleArn"] == ROLE
    assert request["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/runs/jobs"}
    assert request["ResourceConfig"] == {
        "InstanceType": "ml.m5.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 120}
    assert request["Tags"] == [
        {"Key": "kedro:node", "Value": "scale"},
        {"Key": "kedro:run-id", "Value": RUN_ID},
    ]
    assert JOB_ENVIRONMENT == {
        "PIP_NO_INDEX": "1",
        "KEDRO_DISABLE_TELEMETRY": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    assert request["Environment"] == JOB_ENVIRONMENT
    assert "VpcConfig" not in request
    assert "EnableNetworkIsolation" not in request
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"{job_root}/output/model.tar.gz"
    assert _statuses(described) == ["Starting", "Downloading", "Training", "Uploading", "Completed"]
    assert "FailureReason" not in described


def test_keyword_inputs_and_dict_outputs_of_every_format(bridge):
    frame = pd.DataFrame(
        {
            "torque": np.array([42.8, 70.7, 3.8, 55.1], dtype="float32"),
            "speed": np.array([1551, 1582, 2861, 1408], dtype="int16"),
            "type": pd.Categorical(["M", "L", "H", "L"]),
        },
        index=pd.Index([101, 7, 55, 9999], name="udi"),
    )
    weights = np.array([0.5, -0.25])
    limits = {"torque": 50.0}
    node = Node(
        bridge_nodes.split_readings,
        {"frame": "readings", "limits": "params:limits", "weights": "weights"},
        {"high": "high_torque", "low": "low_torque", "weighted": "scores", "counts": "counts"},
        name="split_readings",
    )

    job, described = bridge.run(node, kwargs={"frame": frame, "limits": limits, "weights": weights})

    result = bridge.outputs(job, described)
    expected = bridge_nodes.split_readings(frame, limits, weights)
    assert sorted(result) == ["counts", "high", "low", "weighted"]
    pd.testing.assert_frame_equal(result["high"], expected["high"], check_exact=True)
    pd.testing.assert_frame_equal(result["low"], expected["low"], check_exact=True)
    assert list(result["high"].index) == [7, 9999]
    assert result["weighted"].dtype == expected["weighted"].dtype
    np.testing.assert_array_equal(result["weighted"], expected["weighted"])
    assert result["counts"] == {"high": 2, "low": 2}

    request = job.request
    validate_request("CreateTrainingJob", request)
    assert "limits" not in request["HyperParameters"]
    assert {c["ChannelName"]: c["ContentType"] for c in request["InputDataConfig"]} == {
        "readings": "application/x-parquet",
        "weights": "application/x-npy",
        "kedro-job": "application/json",
    }
    spec = bridge.spec(job)
    assert spec["parameters"] == {"limits": {"torque": 50.0}}
    (call,) = spec["nodes"]
    assert call["inputs"]["kind"] == "dict"
    assert [(i["arg"], i["dataset"]) for i in call["inputs"]["items"]] == [
        ("frame", "readings"),
        ("limits", "params:limits"),
        ("weights", "weights"),
    ]
    assert call["outputs"] == {
        "kind": "dict",
        "names": {
            "high": "high_torque",
            "low": "low_torque",
            "weighted": "scores",
            "counts": "counts",
        },
    }
    assert spec["outputs"] == {
        "high_torque": "high_torque",
        "low_torque": "low_torque",
        "scores": "scores",
        "counts": "counts",
    }


def test_list_outputs_and_no_outputs(bridge, tmp_path):
    listed = Node(bridge_nodes.summarise, ["numbers", "params:label"], ["summary", "tag"])
    silent = Node(bridge_nodes.remember, "numbers", None, name="remember")

    listed_job = bridge.prepare(listed, ([4, 9, 2], "pump"))
    silent_job = bridge.prepare(silent, ([4, 9, 2],))
    for job in (listed_job, silent_job):  # both at once: the backend runs jobs in parallel
        bridge.submit(job)
    described = {
        job.name: bridge.jobs.wait(job.name, JOB_TIMEOUT) for job in (listed_job, silent_job)
    }

    assert bridge.outputs(listed_job, described[listed_job.name]) == [
        {"label": "pump", "count": 3},
        b"pump:9",
    ]
    assert listed_job.shape == {"kind": "list", "names": ["summary", "tag"]}
    uri = described[listed_job.name]["ModelArtifacts"]["S3ModelArtifacts"]
    listed_files = directory_files(
        extract_tar_gz(bridge.store.path_of(uri).read_bytes(), tmp_path / "listed")
    )
    # One directory per output: its value and the manifest naming it.
    assert sorted(listed_files) == [
        f"summary/{VALUE_MANIFEST}",
        "summary/summary.json",
        f"tag/{VALUE_MANIFEST}",
        "tag/tag.bin",
    ]
    tag_manifest = json.loads(listed_files[f"tag/{VALUE_MANIFEST}"])
    assert tag_manifest == {
        "dataset": "tag",
        "file": "tag.bin",
        "codec": "bytes",
        "sha256": hashlib.sha256(b"pump:9").hexdigest(),
    }
    assert bridge.outputs(silent_job, described[silent_job.name]) is None
    assert silent_job.shape == {"kind": "none", "names": []}
    assert silent_job.outputs == {}
    logs = bridge.jobs.new_log_lines(silent_job.name)
    assert "remembered [4, 9, 2]" in logs
    assert any(line.startswith("kedro node remember: done in ") for line in logs)
    uri = described[silent_job.name]["ModelArtifacts"]["S3ModelArtifacts"]
    extracted = extract_tar_gz(bridge.store.path_of(uri).read_bytes(), tmp_path / "silent")
    assert directory_files(extracted) == {}


def test_parameters_of_any_size_travel_in_the_job_spec_not_as_hyperparameters(bridge):
    values = list(range(1000))  # far more than a hyperparameter's 2,500 characters
    assert len(json.dumps(values)) > 2500
    node = Node(bridge_nodes.count_items, ["params:values", "params:extra"], "counts", name="count")

    job, described = bridge.run(node, (values, 5))

    assert bridge.outputs(job, described) == {"count": 1000, "total": sum(values) + 5}
    request = job.request
    validate_request("CreateTrainingJob", request)
    assert set(request["HyperParameters"]) == {
        "sagemaker_program",
        "sagemaker_submit_directory",
        "sagemaker_container_log_level",
        "sagemaker_region",
        "kedro_job",
    }
    assert [c["ChannelName"] for c in request["InputDataConfig"]] == ["kedro-job"]
    assert bridge.spec(job)["parameters"] == {"values": values, "extra": 5}


@pytest.mark.filterwarnings("ignore:One or more dataset names contain '.'")
def test_nested_parameters_and_the_whole_parameters_dict_reach_the_node(bridge):
    node = Node(
        bridge_nodes.echo, ["params:model.depth", "parameters"], ["depth", "everything"], name="p"
    )
    everything = {"model": {"depth": 4, "eta": 0.3}, "seed": 42}

    job, described = bridge.run(node, (4, everything))

    assert bridge.outputs(job, described) == [4, everything]
    assert bridge.spec(job)["parameters"] == everything


def test_more_dataset_inputs_than_channels_fail_before_submitting(bridge):
    inputs = [f"reading_{index}" for index in range(MAX_CHANNELS)]  # + kedro-job: one too many
    node = Node(bridge_nodes.remember_all, inputs, None, name="wide")

    with pytest.raises(RemoteNodeError) as caught:
        bridge.prepare(node, tuple(range(MAX_CHANNELS)))

    assert str(caught.value) == (
        "node wide has 20 dataset inputs; a training job takes at most 20 channels, and the "
        "job spec and the shipped wheels take 1"
    )
    assert bridge.store.list_keys(f"s3://{BUCKET}/") == [bridge.code_uri]


def test_as_many_dataset_inputs_as_channels_allow_are_accepted(bridge):
    inputs = [f"reading_{index}" for index in range(MAX_CHANNELS - 1)]
    node = Node(bridge_nodes.remember_all, inputs, None, name="wide")

    request = bridge.prepare(node, tuple(range(MAX_CHANNELS - 1))).request

    validate_request("CreateTrainingJob", request)
    assert len(request["InputDataConfig"]) == MAX_CHANNELS
    assert request["InputDataConfig"][-1]["ChannelName"] == "kedro-job"


@pytest.mark.parametrize(
    ("inputs", "args", "pattern"),
    [
        (
            ["params:split"],
            ((0.8, 0.2),),
            r"^node bad: parameter input params:split is not plain JSON data \(tuple\)",
        ),
        (
            ["params:columns"],
            ({"torque", "speed"},),
            r"^node bad: parameter input params:columns is not plain JSON data \(set\)",
        ),
        (
            ["params:limits"],
            ({"torque": float("nan")},),
            r"^node bad: parameter input params:limits is not plain JSON data \(dict\)",
        ),
        (["readings"], ({1, 2},), r"^node bad: input readings is a builtins.set, "),
    ],
)
def test_inputs_without_an_open_format_fail_before_submitting(bridge, inputs, args, pattern):
    node = Node(bridge_nodes.remember, inputs, None, name="bad")

    with pytest.raises(RemoteNodeError, match=pattern):
        bridge.prepare(node, args)

    assert bridge.store.list_keys(f"s3://{BUCKET}/runs/jobs/") == []  # nothing uploaded


def test_a_node_function_the_job_cannot_import_fails_before_submitting(bridge):
    node = Node(lambda value: value, "numbers", "copy", name="anonymous")

    with pytest.raises(RemoteNodeError, match=r"node anonymous: .*module-level function"):
        bridge.prepare(node, ([1],))


# ---- failures, timeouts and stops --------------------------------------------------------------
def test_a_failing_node_fails_its_job_with_the_exception_as_reason(bridge):
    node = Node(bridge_nodes.explode, "reading", "never", name="explode")

    job, described = bridge.run(node, (42,))

    assert described["TrainingJobStatus"] == "Failed"
    assert described["SecondaryStatus"] == "Failed"
    assert described["FailureReason"] == (
        "AlgorithmError: node explode failed: ValueError: bad reading 42"
    )
    assert "ModelArtifacts" not in described
    logs = bridge.jobs.new_log_lines(job.name)
    assert "Traceback (most recent call last):" in logs
    assert any("bridge_nodes.py" in line and "in explode" in line for line in logs)
    assert 'raise ValueError(f"bad reading {value!r}")' in "\n".join(logs)
    assert logs[-1] == "node explode failed: ValueError: bad reading 42"


def test_a_job_over_its_max_runtime_is_stopped(bridge):
    node = Node(bridge_nodes.sleep_for, "params:seconds", "slept", name="sleepy")
    started = time.monotonic()

    job, described = bridge.run(node, (60,), max_runtime_seconds=1)

    assert time.monotonic() - started < 30
    assert job.request["StoppingCondition"] == {"MaxRuntimeInSeconds": 1}
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert "MaxRuntimeInSeconds" in described["FailureReason"]
    assert "Stopping" in _statuses(described)


def test_stopping_a_running_job(bridge):
    node = Node(bridge_nodes.sleep_for, "params:seconds", "slept", name="sleepy")
    job = bridge.prepare(node, (60,))
    bridge.submit(job)
    _wait_for_log(bridge, job.name, "sleeping 60 s")

    stopping = time.monotonic()
    bridge.jobs.stop_training_job(job.name)
    described = bridge.jobs.wait(job.name, JOB_TIMEOUT)

    assert time.monotonic() - stopping < 15
    assert described["TrainingJobStatus"] == "Stopped"
    assert described["SecondaryStatus"] == "Stopped"
    assert _statuses(described)[-2:] == ["Stopping", "Stopped"]
    assert "FailureReason" not in described
    bridge.jobs.stop_training_job(job.name)  # stopping an ended job changes nothing
    assert bridge.jobs.describe_training_job(job.name)["TrainingJobStatus"] == "Stopped"


def test_tampered_or_missing_outputs_are_refused(bridge, tmp_path):
    node = Node(bridge_nodes.summarise, ["numbers", "params:label"], ["summary", "tag"], name="s")
    job, described = bridge.run(node, ([1, 5], "valve"))
    assert bridge.outputs(job, described) == [{"label": "valve", "count": 2}, b"valve:5"]
    uri = described["ModelArtifacts"]["S3ModelArtifacts"]
    files = directory_files(
        extract_tar_gz(bridge.store.path_of(uri).read_bytes(), tmp_path / "model")
    )
    entry = json.loads(files[f"tag/{VALUE_MANIFEST}"])
    tampered = bytearray(files[f"tag/{entry['file']}"])
    tampered[0] ^= 0x01
    files[f"tag/{entry['file']}"] = bytes(tampered)
    staged = tmp_path / "model.tar.gz"
    staged.write_bytes(build_tar_gz(files))
    bridge.store.upload_file(staged, uri)

    with pytest.raises(RemoteNodeError) as caught:
        read_outputs(job, uri, bridge.store)

    message = str(caught.value)
    assert message.startswith(f"job {job.name}: output tag (dataset tag) of {uri} is unusable: ")
    assert f"{entry['file']} has sha256 {hashlib.sha256(tampered).hexdigest()}" in message
    assert f"its manifest says {entry['sha256']}" in message

    # An archive without one of the outputs.
    staged.write_bytes(build_tar_gz({k: v for k, v in files.items() if not k.startswith("tag/")}))
    bridge.store.upload_file(staged, uri)
    with pytest.raises(RemoteNodeError) as caught:
        read_outputs(job, uri, bridge.store)
    assert str(caught.value) == f"job {job.name}: {uri} has no output tag (dataset tag)"


def _pipe_mode(request):
    request["InputDataConfig"][0]["InputMode"] = "Pipe"


def _no_role(request):
    del request["RoleArn"]


def _no_output_path(request):
    del request["OutputDataConfig"]["S3OutputPath"]


def _no_program(request):
    del request["HyperParameters"]["sagemaker_program"]


@pytest.mark.parametrize(
    ("break_request", "error", "pattern"),
    [
        (_pipe_mode, LocalJobError, "InputDataConfig.numbers.InputMode"),
        (_no_role, ParamValidationError, "RoleArn"),
        (_no_output_path, ParamValidationError, "S3OutputPath"),
        (_no_program, LocalJobError, "HyperParameters.sagemaker_program"),
    ],
)
def test_requests_the_backend_cannot_run_are_refused_before_anything_runs(
    bridge, break_request, error, pattern
):
    node = Node(bridge_nodes.remember, "numbers", None, name="remember")
    request = copy.deepcopy(bridge.prepare(node, ([1],)).request)
    break_request(request)

    with pytest.raises(error, match=pattern):
        bridge.jobs.create_training_job(request)

    with pytest.raises(LocalJobError, match="Could not find training job"):
        bridge.jobs.describe_training_job(request["TrainingJobName"])
    job_root = f"s3://{BUCKET}/runs/jobs/{request['TrainingJobName']}"
    assert bridge.store.list_keys(f"{job_root}/output") == []


# ---- the entry script needs nothing a training container lacks ---------------------------------
def test_a_training_node_runs_where_kedro_boto3_and_sagemaker_are_missing(tmp_path, source_archive):
    report = tmp_path / "imports.json"
    program = tmp_path / "blocking_python.py"
    program.write_text(BLOCKING_PYTHON)
    python = tmp_path / "python"
    python.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{program}" '
        f'"{",".join(NOT_IN_CONTAINER)}" "{report}" "$@"\n'
    )
    python.chmod(0o755)
    bridge = make_bridge(tmp_path, source_archive, python=str(python))
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "torque": rng.normal(40, 10, 48).round(1),
            "speed": rng.integers(1200, 2900, 48),
            "failure": rng.integers(0, 2, 48),
        },
        index=pd.RangeIndex(1000, 1048, name="udi"),
    )
    node = Node(bridge_nodes.train_booster, ["model_input", "params:rounds"], ["model", "scores"])

    job, described = bridge.run(node, (frame, 3))

    model, scores = bridge.outputs(job, described)
    imports = json.loads(report.read_text())
    assert imports["loaded"] == []
    code_dir = f"sagemaker-{job.name}-"
    for name, file in imports["files"].items():  # the shipped copies, not the project's
        assert code_dir in file, name
        assert "/opt/ml/code/" in file, name
        assert not file.startswith(str(PROJECT_ROOT))
    import xgboost as xgb  # noqa: PLC0415 -- slow import, this test only

    expected_model, expected_scores = bridge_nodes.train_booster(frame, 3)
    features = xgb.DMatrix(frame[["torque", "speed"]])
    assert isinstance(model, xgb.Booster)
    np.testing.assert_array_equal(model.predict(features), expected_model.predict(features))
    np.testing.assert_array_equal(scores, expected_scores)


# ---- bugs --------------------------------------------------------------------------------------
def test_inputs_whose_names_extend_each_other_by_one_character(bridge):
    node = Node(bridge_nodes.echo, ["reading", "readings"], ["first", "second"], name="echo")

    job, described = bridge.run(node, ({"one": 1}, [1, 2]))

    assert bridge.outputs(job, described) == [{"one": 1}, [1, 2]]


@pytest.mark.filterwarnings("ignore:One or more dataset names contain '.'")
def test_inputs_whose_channel_variables_collide(bridge):
    node = Node(
        bridge_nodes.echo, ["sensor.readings", "sensor_readings"], ["first", "second"], name="e"
    )

    job, described = bridge.run(node, ({"one": 1}, [1, 2]))

    assert bridge.outputs(job, described) == [{"one": 1}, [1, 2]]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_request_without_a_stopping_condition_still_ends(bridge):
    node = Node(bridge_nodes.remember, "numbers", None, name="remember")
    request = copy.deepcopy(bridge.prepare(node, ([1],)).request)
    del request["StoppingCondition"]
    validate_request("CreateTrainingJob", request)  # optional in the service model

    bridge.jobs.create_training_job(request)
    described = bridge.jobs.wait(request["TrainingJobName"], JOB_TIMEOUT)

    assert described["TrainingJobStatus"] == "Completed"
    assert described["StoppingCondition"] == {"MaxRuntimeInSeconds": 86_400}  # the API's default
