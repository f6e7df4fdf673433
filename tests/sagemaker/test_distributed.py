"""A remote node on several instances: XGBoost's collective over ShardedByS3Key parts.

``training_job.instance_count: 2`` with ``sharded_inputs: [train]``: the runner uploads ``train``
as two Parquet objects (a ``ShardedByS3Key`` channel) and ``validation`` whole
(``FullyReplicated``); the local backend runs the request as two hosts (two processes, each with
SageMaker's resourceconfig.json and only its part); the hosts form XGBoost's collective as the
stock image does, and rank 0 alone writes the model. The model equals single-process training on
the same rows (both ``hist`` with the project's ``large_data`` bins): measured here, predictions
agree to 0.0 and AUC exactly; the tolerance asserted is 1e-6 on any score.
"""

from __future__ import annotations

import copy
import json
import logging
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from sklearn.metrics import roc_auc_score

from predictive_maintenance.modeling import predict_scores
from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)
from predictive_maintenance.pipelines.training.nodes import train_model
from predictive_maintenance.sagemaker import SageMakerHooks, SageMakerRunner
from predictive_maintenance.sagemaker.archives import build_tar_gz
from predictive_maintenance.sagemaker.backends import FinishedJob
from predictive_maintenance.sagemaker.config import SageMakerConfigError, parse_settings
from predictive_maintenance.sagemaker.distributed import (
    Cluster,
    DistributedJobError,
    cluster_from_environment,
    split_rows,
)
from predictive_maintenance.sagemaker.job import JobError, main, read_parts
from predictive_maintenance.sagemaker.jobs import (
    RemoteNodeError,
    job_spec,
    prepare_job,
    spec_bytes,
    upload_parts,
)
from predictive_maintenance.sagemaker.local import LocalTrainingJobs, validate_request
from predictive_maintenance.sagemaker.storage import DirectoryStore
from predictive_maintenance.schema import TARGET_COLUMN
from tests.catalogs import RecordingDataset
from tests.sagemaker import distributed_nodes
from tests.support.project import PROJECT_ROOT

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
#: Largest difference allowed between a distributed and a single-process model's scores.
SCORE_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def parameters() -> dict[str, Any]:
    return OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )["parameters"]


@pytest.fixture(scope="module")
def splits(raw_csv_bytes: bytes, parameters: dict[str, Any]) -> SimpleNamespace:
    """The committed data set's splits; 3,000 training rows (~100 failures) keep the jobs short."""
    raw, raw_file = ingest_raw_data(raw_csv_bytes, None)
    readings, _ = validate_raw_readings(raw, raw_file)
    train, validation, test = split_data(create_model_input_table(readings), parameters["split"])
    return SimpleNamespace(train=train.iloc[:3000], validation=validation, test=test)


@pytest.fixture(scope="module")
def xgboost_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The project's XGBoost settings, on ``hist`` in one process too (``large_data`` from the
    first row), one thread per host (two hosts share this machine), at most 40 rounds.

    ``subsample`` 1: with row subsampling each host draws its own sample, so the models are
    alike but not equal (full splits, subsample 0.8: test AUC 0.9830 single, 0.9808 on two
    hosts, scores up to 0.215 apart); without it they are the same model.
    """
    settings = copy.deepcopy(parameters["xgboost"])
    settings["large_data"]["min_rows"] = 1
    settings["booster_params"].update(nthread=1, subsample=1.0)
    settings.update(num_boost_round=40, early_stopping_rounds=10)
    return settings


def _run(pipeline: Pipeline, catalog: DataCatalog, tmp_path: Path, runner: SageMakerRunner, **job):
    """Runs ``pipeline`` as ``kedro run --runner ...SageMakerRunner`` with these training_job
    settings, the store in ``tmp_path/s3``."""
    config = {
        "region": "eu-west-1",
        "bucket": "artifacts",
        "prefix": "tests/distributed",
        "execution_role_arn": ROLE,
        "remote_nodes": {"tags": ["training_job"]},
        "training_job": {"image_uri": IMAGE, "max_runtime_seconds": 300, **job},
        "local": {"store_directory": "s3", "poll_seconds": 0.1},
    }
    manager = _create_hook_manager()
    hooks = SageMakerHooks()
    hooks.after_context_created(
        SimpleNamespace(project_path=tmp_path, env="local", config_loader={"sagemaker": config})
    )
    manager.register(hooks)
    runner.run(pipeline, catalog, manager)


@pytest.fixture
def requests(monkeypatch) -> list[dict[str, Any]]:
    """Every CreateTrainingJob request the local backend receives."""
    submitted: list[dict[str, Any]] = []
    create = LocalTrainingJobs.create_training_job

    def recording(self, request):
        submitted.append(request)
        return create(self, request)

    monkeypatch.setattr(LocalTrainingJobs, "create_training_job", recording)
    return submitted


def _archive_members(tmp_path: Path) -> list[str]:
    (archive,) = (tmp_path / "s3").rglob("output/model.tar.gz")
    with tarfile.open(archive) as tar:
        return sorted(member.name for member in tar.getmembers() if member.isfile())


def _channels(request: dict[str, Any]) -> dict[str, str]:
    return {
        channel["ChannelName"]: channel["DataSource"]["S3DataSource"]["S3DataDistributionType"]
        for channel in request["InputDataConfig"]
    }


def test_two_hosts_train_the_single_process_model_from_their_own_shards(
    tmp_path, splits, xgboost_parameters, requests, caplog
):
    caplog.set_level(logging.INFO, logger="predictive_maintenance")
    model = RecordingDataset()
    catalog = DataCatalog(
        {
            "train": MemoryDataset(splits.train),
            "validation": MemoryDataset(splits.validation),
            "params:xgboost": MemoryDataset(xgboost_parameters),
            "model": model,
        }
    )
    pipeline = Pipeline(
        [
            Node(
                train_model,
                ["train", "validation", "params:xgboost"],
                "model",
                name="train.train_model",
                tags="training_job",
            )
        ]
    )

    _run(
        pipeline,
        catalog,
        tmp_path,
        SageMakerRunner(backend="local"),
        instance_count=2,
        sharded_inputs=["train"],
    )

    (request,) = requests
    validate_request("CreateTrainingJob", request)
    assert request["ResourceConfig"]["InstanceCount"] == 2
    assert _channels(request) == {
        "train": "ShardedByS3Key",
        "validation": "FullyReplicated",
        "kedro-job": "FullyReplicated",
    }
    lines = [r.getMessage().partition(" | ")[2] for r in caplog.records if " | " in r.getMessage()]
    half = len(splits.train) // 2
    # Each host read only its own part; both joined the collective; rank 0 wrote the outputs.
    for host, rank in (("algo-1", 0), ("algo-2", 1)):
        assert (
            f"{host}: kedro job: host {host} (rank {rank} of 2): input train: 1 of 2 parts "
            f"(part-0000{rank}.parquet), {half:,} rows" in lines
        ), lines
        assert any(
            line.startswith(f"{host}: kedro job: host {host} (rank {rank} of 2) joined XGBoost's")
            and line.endswith(f"as rank {rank}")
            for line in lines
        )
    assert (
        "algo-2: kedro job: host algo-2 (rank 1 of 2): rank 0 writes the outputs, not this host"
        in lines
    )
    assert _archive_members(tmp_path) == ["model/kedro_value.json", "model/model.ubj"]

    distributed = model.saved
    single = train_model(splits.train, splits.validation, xgboost_parameters)
    assert distributed.attr("tree_method") == single.attr("tree_method") == "hist"
    assert distributed.num_boosted_rounds() == single.num_boosted_rounds()
    labels = splits.test[TARGET_COLUMN]
    scores = predict_scores(distributed, splits.test)
    expected = predict_scores(single, splits.test)
    assert np.abs(scores - expected).max() <= SCORE_TOLERANCE
    assert roc_auc_score(labels, scores) == pytest.approx(roc_auc_score(labels, expected), abs=1e-9)
    # Not true of a model of one shard: the tolerance tells the two apart.
    alone = train_model(splits.train.iloc[:half], splits.validation, xgboost_parameters)
    assert np.abs(predict_scores(alone, splits.test) - expected).max() > 100 * SCORE_TOLERANCE


#: A host's program for the backend test below: each lists its shard; algo-2 then fails (once
#: algo-1 has printed, through a marker file) and algo-1 would run for a minute unless stopped.
HOST_PROGRAM = """
import os, pathlib, sys, time

marker = pathlib.Path(sys.argv[-1])
shard = sorted(p.name for p in pathlib.Path(os.environ["SM_CHANNEL_READINGS"]).iterdir())
print(os.environ["SM_CURRENT_HOST"], os.environ["SM_HOSTS"], shard, flush=True)
if os.environ["SM_CURRENT_HOST"] == "algo-1":
    marker.touch()
    time.sleep(60)
deadline = time.monotonic() + 30
while not marker.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
failure = pathlib.Path(os.environ["SM_OUTPUT_DIR"]) / "failure"
failure.write_text("node check failed: ValueError: torque_nm is negative in row 13")
sys.exit(1)
"""


def test_the_local_backend_shards_by_key_and_a_failing_host_stops_the_others(tmp_path):
    store = DirectoryStore(tmp_path / "s3")
    source = tmp_path / "sourcedir.tar.gz"
    source.write_bytes(build_tar_gz({"host.py": HOST_PROGRAM.encode()}))
    store.upload_file(source, "s3://b/code/sourcedir.tar.gz")
    for index in range(4):
        store.upload_file(source, f"s3://b/in/readings/part-0000{index}.parquet")
    jobs = LocalTrainingJobs(store, "eu-west-1")
    request = {
        "TrainingJobName": "two-hosts",
        "HyperParameters": {
            "sagemaker_program": '"host.py"',
            "sagemaker_submit_directory": '"s3://b/code/sourcedir.tar.gz"',
            "marker": json.dumps(str(tmp_path / "algo-1-listed")),
        },
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "readings",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://b/in/readings/",
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://b/jobs"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }

    started = time.monotonic()
    jobs.create_training_job(request)
    described = jobs.wait("two-hosts", 60)

    assert time.monotonic() - started < 30  # algo-1 was stopped, not waited for
    assert described["TrainingJobStatus"] == "Failed"
    assert described["FailureReason"] == (
        "AlgorithmError: node check failed: ValueError: torque_nm is negative in row 13"
    )
    lines = jobs.new_log_lines("two-hosts")
    hosts = '["algo-1", "algo-2"]'
    assert f"algo-1: algo-1 {hosts} ['part-00000.parquet', 'part-00002.parquet']" in lines
    assert f"algo-2: algo-2 {hosts} ['part-00001.parquet', 'part-00003.parquet']" in lines


# ---- units: settings, parts, shards -------------------------------------------------------------
def test_the_failing_nodes_line_of_a_host_leads_the_runners_reason():
    finished = FinishedJob(
        "Training",
        {
            "TrainingJobStatus": "Failed",
            "FailureReason": "AlgorithmError: ExecuteUserScriptError: exit code 1",
        },
        [],
        "algo-2: node check failed: ValueError: torque_nm is negative in row 13",
    )
    assert finished.reason == (
        "algo-2: node check failed: ValueError: torque_nm is negative in row 13 "
        "(AlgorithmError: ExecuteUserScriptError: exit code 1)"
    )
    # Where the job's own failure file got through, the line is not repeated.
    reason = "AlgorithmError: node check failed: ValueError: torque_nm is negative in row 13"
    finished.described["FailureReason"] = reason
    assert finished.reason == reason


def test_sharding_settings_are_typed_and_checked(tmp_path):
    base = {"bucket": "b", "execution_role_arn": ROLE}
    settings = parse_settings(
        {
            **base,
            "training_job": {"instance_count": 1, "sharded_inputs": ["train"]},
            "node_overrides": {
                "train.train_model": {"instance_count": 4, "shards_per_instance": 2}
            },
        },
        tmp_path,
    )
    job = settings.job_settings("train.train_model", [])
    assert (job.instance_count, job.sharded_inputs, job.shards_per_instance) == (4, ("train",), 2)
    with pytest.raises(SageMakerConfigError, match=r"training_job.sharded_inputs must be list"):
        parse_settings({**base, "training_job": {"sharded_inputs": "train"}}, tmp_path)
    with pytest.raises(SageMakerConfigError, match=r"shards_per_instance must be at least 1"):
        parse_settings({**base, "training_job": {"shards_per_instance": 0}}, tmp_path)


def _prepare(tmp_path: Path, node: Node, args: tuple, **job: Any):
    settings = parse_settings({"bucket": "b", "execution_role_arn": ROLE}, tmp_path)
    job_settings = settings.job_settings(node.name, node.tags)
    return prepare_job(
        node,
        args,
        {},
        settings=settings,
        job_settings=type(job_settings)(**{**job_settings.__dict__, **job}),
        image_uri=IMAGE,
        code_uri="s3://b/code/sourcedir.tar.gz",
        store=DirectoryStore(tmp_path / "s3"),
    )


def test_several_instances_need_a_sharded_input_the_node_reads(tmp_path):
    node = Node(distributed_nodes.check_torque, "readings", "checked", name="check")
    frame = pd.DataFrame({"torque_nm": [1.0, 2.0]})

    with pytest.raises(RemoteNodeError, match=r"none of its inputs is sharded.*: readings\)$"):
        _prepare(tmp_path, node, (frame,), instance_count=2)
    with pytest.raises(RemoteNodeError, match=r"sharded_inputs names train, which the node"):
        _prepare(tmp_path, node, (frame,), instance_count=2, sharded_inputs=("train",))
    with pytest.raises(RemoteNodeError, match=r"input readings: a sharded input must be a pandas"):
        _prepare(tmp_path, node, ([1.0, 2.0],), instance_count=2, sharded_inputs=("readings",))
    with pytest.raises(RemoteNodeError, match=r"2 rows cannot be split into 4 non-empty parts"):
        _prepare(
            tmp_path,
            node,
            (frame,),
            instance_count=2,
            sharded_inputs=("readings",),
            shards_per_instance=2,
        )
    single = _prepare(tmp_path, node, (frame,), sharded_inputs=("readings",))
    assert set(_channels(single.request).values()) == {"FullyReplicated"}


def test_parts_are_contiguous_and_give_the_frame_back():
    frame = pd.DataFrame({"x": range(10)}, index=range(100, 110))

    parts = split_rows(frame, 3)

    assert [len(part) for part in parts] == [4, 3, 3]
    pd.testing.assert_frame_equal(pd.concat(parts), frame)
    with pytest.raises(DistributedJobError, match="not list"):
        split_rows([1, 2, 3], 2)


def test_a_host_reads_only_listed_parts_with_their_sha256(tmp_path):
    store = DirectoryStore(tmp_path / "s3")
    frame = pd.DataFrame({"x": np.arange(6.0)})
    listed = upload_parts(store, frame, "readings", 3, "s3://b/in/readings/")
    directory = store.path_of("s3://b/in/readings/x").parent

    pd.testing.assert_frame_equal(read_parts(directory, "readings", listed, "host algo-1"), frame)
    (directory / "part-00001.parquet").unlink()
    pd.testing.assert_frame_equal(
        read_parts(directory, "readings", listed, "host algo-1"), frame.iloc[[0, 1, 4, 5]]
    )
    (directory / "part-00002.parquet").write_bytes(b"tampered")
    with pytest.raises(JobError, match=r"part-00002.parquet has sha256 \w+, the job spec says"):
        read_parts(directory, "readings", listed, "host algo-1")
    (directory / "stray.csv").write_text("x\n")
    with pytest.raises(JobError, match=r"holds stray.csv, which the job spec does not list"):
        read_parts(directory, "readings", listed, "host algo-1")
    for path in directory.iterdir():
        path.unlink()
    with pytest.raises(JobError, match=r"host algo-2 received none of its 3 parts"):
        read_parts(directory, "readings", listed, "host algo-2")


def test_a_job_spec_without_distribution_refuses_several_instances(tmp_path, monkeypatch):
    spec = job_spec("check", [], inputs={}, outputs={}, parameters={})
    (tmp_path / "input" / "data" / "kedro-job").mkdir(parents=True)
    (tmp_path / "input" / "data" / "kedro-job" / "job.json").write_bytes(spec_bytes(spec))
    monkeypatch.setenv("SM_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("SM_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("SM_MODEL_DIR", str(tmp_path / "model"))
    monkeypatch.setenv("SM_HOSTS", '["algo-1", "algo-2"]')
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-1")

    assert main([], tmp_path) == 1

    assert (tmp_path / "output" / "failure").read_text() == (
        "JobError: job check runs on 2 instances, but its spec does not say how to distribute "
        "it: give it one instance (instance_count: 1)"
    )


def test_the_cluster_comes_from_the_toolkit_variables_or_resourceconfig(tmp_path):
    environ = {"SM_HOSTS": '["algo-2", "algo-1"]', "SM_CURRENT_HOST": "algo-2"}
    assert cluster_from_environment(environ, tmp_path) == Cluster(("algo-1", "algo-2"), "algo-2")
    (tmp_path / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1", "algo-2", "algo-3"]})
    )
    cluster = cluster_from_environment({}, tmp_path)
    assert (cluster.rank, cluster.size) == (0, 3)
    with pytest.raises(DistributedJobError, match="'algo-9' is not among the hosts"):
        Cluster(("algo-1",), "algo-9")
