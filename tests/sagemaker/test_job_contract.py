"""The job contract's new behaviour: typed parameter overrides, named node failures, the value
reader, shipped wheels (job.py); the clean job environment, processing failure reasons and the
interpreter check (local.py); the network settings in the runner's requests; and the runner
running jobs with the stock image's stand-in (Python 3.10 and the image's training toolkit).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import json
import logging
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ParamValidationError
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from predictive_maintenance.sagemaker import SageMakerHooks, SageMakerRunner
from predictive_maintenance.sagemaker.archives import build_tar_gz, directory_files
from predictive_maintenance.sagemaker.config import parse_settings
from predictive_maintenance.sagemaker.job import (
    JOB_FILE,
    JOB_INPUT,
    VALUE_MANIFEST,
    JobError,
    NodeFailedError,
    apply_overrides,
    install_shipped_wheels,
    main,
    parameter_overrides,
    read_dataset,
    run_job,
    typed_like,
    write_dataset,
)
from predictive_maintenance.sagemaker.jobs import JOB_ENVIRONMENT, job_spec, spec_bytes
from predictive_maintenance.sagemaker.local import (
    LocalJobError,
    LocalTrainingJobs,
    check_interpreter,
    validate_request,
)
from predictive_maintenance.sagemaker.runner import TrainingJobFailedError
from predictive_maintenance.sagemaker.storage import DirectoryStore
from tests.catalogs import RecordingDataset
from tests.sagemaker import bridge_nodes, runner_nodes
from tests.sagemaker.conftest import scale_and_total

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
JOB_TIMEOUT = 60.0
READINGS = pd.DataFrame({"torque_nm": [40.0, 55.5, 70.7], "tool_wear_min": [0.0, 108.0, 216.0]})


def _spec(name: str, nodes: list[Node], **parts: Any) -> dict[str, Any]:
    """A job spec as the submitting side writes it (through JSON, as the job reads it)."""
    spec = job_spec(
        name,
        nodes,
        inputs=parts.get("inputs", {}),
        outputs=parts.get("outputs", {}),
        parameters=parts.get("parameters", {}),
        files=parts.get("files"),
    )
    return json.loads(spec_bytes(spec))


# ---- typed parameter overrides -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("current", "raw", "expected"),
    [
        (True, "False", False),
        (True, "false", False),
        (False, "TRUE", True),
        (False, " true ", True),
        ("2023", "2024", "2024"),  # a String parameter that looks like a number stays a string
        ("PendingManualApproval", "Approved", "Approved"),
        (None, "anything", "anything"),
        (6, "12", 12),
        (6, "-3", -3),
        (0.3, "0.05", 0.05),
        (0.3, "1e-3", 0.001),
        (0.3, "2", 2.0),
        ([1, 2], "[3, 4]", [3, 4]),
        ({"a": 1}, '{"b": 2}', {"b": 2}),
    ],
)
def test_overrides_take_the_type_of_the_kedro_parameter(current, raw, expected):
    value = typed_like(current, raw, "KEDRO_PARAM_0 (parameter p)")

    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("current", "raw", "message"),
    [
        (True, "maybe", "'maybe' is not a boolean (true or false)"),
        (True, "1", "'1' is not a boolean (true or false)"),
        (6, "6.5", "'6.5' is not an integer"),
        (6, "six", "'six' is not an integer"),
        (0.3, "fast", "'fast' is not a number"),
        ([1], "[1,", "'[1,' is not JSON"),
    ],
)
def test_an_override_that_does_not_parse_is_named(current, raw, message):
    with pytest.raises(JobError) as caught:
        typed_like(current, raw, "KEDRO_PARAM_3 (parameter deploy_model)")

    assert str(caught.value) == f"KEDRO_PARAM_3 (parameter deploy_model): {message}"


def test_override_variables_are_read_in_number_order():
    environ = {
        "KEDRO_PARAM_10": '["b"]=2',
        "KEDRO_PARAM_2": '["a", "x"]=0.1',
        "KEDRO_PARAM_0": '["flag"]=False',
        "PATH": "/usr/bin",
    }

    assert parameter_overrides(environ) == [
        ("KEDRO_PARAM_0", ["flag"], "False"),
        ("KEDRO_PARAM_2", ["a", "x"], "0.1"),
        ("KEDRO_PARAM_10", ["b"], "2"),
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KEDRO_PARAM_X", '["a"]=1', "KEDRO_PARAM_X: expected KEDRO_PARAM_<number>"),
        ("KEDRO_PARAM_1", "a=1", "KEDRO_PARAM_1='a=1' is not <JSON key path>=<value>"),
        ("KEDRO_PARAM_1", '{"a": 1}=1', "is not <JSON key path>=<value>"),
        ("KEDRO_PARAM_1", '["a"]', "is not <JSON key path>=<value>"),
    ],
)
def test_malformed_override_variables_are_named(variable, value, message):
    with pytest.raises(JobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parameter_overrides({variable: value})


def test_overrides_reach_the_nodes_typed_and_other_jobs_paths_are_ignored():
    nodes = [
        Node(bridge_nodes.identify, "params:deploy_model", "deploy", name="deploy"),
        Node(bridge_nodes.identify, "params:registration", "registration", name="register"),
        Node(bridge_nodes.identify, "params:xgboost", "xgboost", name="xgb"),
    ]
    parameters = {
        "deploy_model": True,
        "registration": {"year": "2023", "approval_status": "PendingManualApproval"},
        "xgboost": {"booster_params": {"eta": 0.3, "max_depth": 6}},
    }
    spec = _spec(
        "job",
        nodes,
        outputs={"deploy": "deploy", "registration": "registration", "xgboost": "xgboost"},
        parameters=parameters,
    )
    environ = {
        "KEDRO_PARAM_0": '["deploy_model"]=false',
        "KEDRO_PARAM_1": '["registration", "year"]=2024',
        "KEDRO_PARAM_2": '["xgboost", "booster_params", "eta"]=0.05',
        "KEDRO_PARAM_3": '["xgboost", "booster_params", "max_depth"]=4',
        "KEDRO_PARAM_4": '["quality_gate", "minimums", "recall"]=0.9',  # another job's
        "KEDRO_PARAM_5": '["xgboost", "missing", "deep"]=1',  # not in this job either
    }

    outputs = run_job(spec, {}, environ)

    assert outputs["deploy"] == {"type": "bool", "value": False}
    assert outputs["registration"] == {
        "type": "dict",
        "value": {"year": "2024", "approval_status": "PendingManualApproval"},
    }
    booster = outputs["xgboost"]["value"]["booster_params"]
    assert booster == {"eta": 0.05, "max_depth": 4}
    assert type(booster["max_depth"]) is int
    assert spec["parameters"] == parameters  # the spec itself is not modified


def test_an_override_that_does_not_parse_names_the_variable_and_the_parameter():
    parameters = {"deploy_model": True}

    with pytest.raises(JobError) as caught:
        apply_overrides(parameters, [("KEDRO_PARAM_0", ["deploy_model"], "maybe")])

    assert str(caught.value) == (
        "KEDRO_PARAM_0 (parameter deploy_model): 'maybe' is not a boolean (true or false)"
    )
    assert parameters == {"deploy_model": True}


# ---- main(): processing and training layouts, failures -----------------------------------------
def _job_inputs(root: Path, spec: dict[str, Any], values: dict[str, Any]) -> None:
    """``root/<input name>/``: the spec and each dataset input, as SageMaker lays them out."""
    (root / JOB_INPUT).mkdir(parents=True)
    (root / JOB_INPUT / JOB_FILE).write_bytes(spec_bytes(spec))
    for dataset, value in values.items():
        name = spec["inputs"][dataset]
        write_dataset(value, root / name, dataset, name)


def _processing_argv(job: str, tmp_path: Path) -> list[str]:
    return [
        "--kedro_job",
        job,
        "--input-dir",
        str(tmp_path / "input"),
        "--output-dir",
        str(tmp_path / "output"),
        "--message-file",
        str(tmp_path / "message"),
    ]


@pytest.fixture
def code_dir(tmp_path) -> Path:
    """The code directory of a job run in this process: no wheels to install."""
    directory = tmp_path / "code"
    directory.mkdir()
    return directory


def test_a_processing_job_writes_each_output_with_its_manifest(tmp_path, code_dir):
    nodes = [
        Node(bridge_nodes.scale_total, ["numbers", "params:factor"], "total", name="scale"),
        Node(bridge_nodes.summarise, ["numbers", "params:label"], ["summary", "tag"], name="sum"),
    ]
    spec = _spec(
        "evaluate",
        nodes,
        inputs={"numbers": "numbers"},
        outputs={"total": "total", "tag": "tag"},  # summary stays inside the job
        parameters={"factor": 2, "label": "pump"},
        files={"tag": "model.tar.gz"},  # a fixed name, as ModelDataUrl needs
    )
    _job_inputs(tmp_path / "input", spec, {"numbers": [1, 2, 4.5]})

    assert main(_processing_argv("evaluate", tmp_path), code_dir) == 0

    written = directory_files(tmp_path / "output")
    assert sorted(written) == [
        f"tag/{VALUE_MANIFEST}",
        "tag/model.tar.gz",
        f"total/{VALUE_MANIFEST}",
        "total/total.json",
    ]
    assert written["tag/model.tar.gz"] == b"pump:4.5"
    assert json.loads(written[f"tag/{VALUE_MANIFEST}"]) == {
        "dataset": "tag",
        "file": "model.tar.gz",
        "codec": "bytes",
        "sha256": hashlib.sha256(b"pump:4.5").hexdigest(),
    }
    assert read_dataset(tmp_path / "output" / "total", "total") == 15.0
    assert not (tmp_path / "message").exists()


def test_a_failing_node_is_named_in_the_processing_message_file(tmp_path, code_dir, capsys):
    spec = _spec(
        "prepare",
        [Node(bridge_nodes.explode, "reading", "never", name="prepare.explode")],
        inputs={"reading": "reading"},
        outputs={"never": "never"},
    )
    _job_inputs(tmp_path / "input", spec, {"reading": 42})

    assert main(_processing_argv("prepare", tmp_path), code_dir) == 1

    expected = "node prepare.explode failed: ValueError: bad reading 42"
    assert (tmp_path / "message").read_text() == expected
    assert not (tmp_path / "output").exists()
    errors = capsys.readouterr().err
    assert "Traceback (most recent call last):" in errors
    assert errors.rstrip().endswith(expected)


def test_a_failing_node_is_named_in_the_training_failure_file(tmp_path, code_dir, monkeypatch):
    spec = _spec(
        "train",
        [Node(bridge_nodes.explode, "reading", "never", name="train.explode")],
        inputs={"reading": "reading"},
        outputs={"never": "never"},
    )
    _job_inputs(tmp_path / "input" / "data", spec, {"reading": [1]})
    for variable, directory in (
        ("SM_INPUT_DIR", "input"),
        ("SM_MODEL_DIR", "model"),
        ("SM_OUTPUT_DIR", "output"),
    ):
        monkeypatch.setenv(variable, str(tmp_path / directory))

    assert main(["--kedro_job", "train"], code_dir) == 1

    failure = tmp_path / "output" / "failure"
    assert failure.read_text() == "node train.explode failed: ValueError: bad reading [1]"
    assert not (tmp_path / "model").exists()


def test_a_job_asked_to_run_another_jobs_spec_fails_naming_both(tmp_path, code_dir):
    spec = _spec(
        "evaluate",
        [Node(bridge_nodes.remember, "numbers", None, name="r")],
        inputs={"numbers": "n"},
    )
    _job_inputs(tmp_path / "input", spec, {"numbers": [1]})

    assert main(_processing_argv("train", tmp_path), code_dir) == 1

    assert (tmp_path / "message").read_text() == (
        "JobError: asked to run job 'train', but its spec is of 'evaluate'"
    )


def test_a_missing_job_spec_is_named(tmp_path, code_dir):
    (tmp_path / "input").mkdir()

    assert main(_processing_argv("train", tmp_path), code_dir) == 1

    message = (tmp_path / "message").read_text()
    assert message.startswith("JobError: the job spec ")
    assert message.endswith(f"{JOB_INPUT}/{JOB_FILE} is missing (the job's 'kedro-job' input)")


def test_a_very_long_failure_is_cut_to_what_sagemaker_shows(tmp_path, code_dir):
    spec = _spec(
        "long",
        [Node(bridge_nodes.explode, "reading", "never", name="long")],
        inputs={"reading": "reading"},
        outputs={"never": "never"},
    )
    _job_inputs(tmp_path / "input", spec, {"reading": "x" * 5000})

    assert main(_processing_argv("long", tmp_path), code_dir) == 1

    message = (tmp_path / "message").read_text()
    assert len(message) == 1024
    assert message.startswith("node long failed: ValueError: bad reading 'xxx")


def test_a_node_returning_the_wrong_shape_is_named():
    spec = _spec(
        "job",
        [Node(bridge_nodes.identify, "params:label", ["a", "b", "c"], name="single")],
        outputs={"a": "a"},
        parameters={"label": "x"},
    )

    with pytest.raises(
        NodeFailedError, match=r"^node single failed: it returned dict, not 3 values"
    ):
        run_job(spec, {}, {})


# ---- reading values ------------------------------------------------------------------------------
def test_read_dataset_refuses_a_tampered_value(tmp_path):
    frame = pd.DataFrame({"torque": [1.5, 2.5]})
    manifest = write_dataset(frame, tmp_path / "readings", "readings", "readings")
    path = tmp_path / "readings" / manifest["file"]
    assert manifest["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "readings", "readings"), frame)
    tampered = bytearray(path.read_bytes())
    tampered[-10] ^= 0x01
    path.write_bytes(bytes(tampered))

    with pytest.raises(JobError) as caught:
        read_dataset(tmp_path / "readings", "readings")

    assert str(caught.value) == (
        f"input readings: readings.parquet has sha256 {hashlib.sha256(tampered).hexdigest()}, "
        f"its manifest says {manifest['sha256']}"
    )


def test_read_dataset_refuses_a_manifest_pointing_elsewhere(tmp_path):
    write_dataset([1], tmp_path / "values", "values", "values")
    (tmp_path / "secret.json").write_text("[2]")
    manifest_path = tmp_path / "values" / VALUE_MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "file": "../secret.json"}))

    with pytest.raises(JobError, match=r"input values: '../secret.json' is missing from "):
        read_dataset(tmp_path / "values", "values")


def test_read_dataset_finds_a_dataset_inside_a_training_jobs_model_archive(tmp_path):
    model = tmp_path / "model"  # what a training job leaves in SM_MODEL_DIR
    scores = np.array([0.1, 0.9], dtype=np.float32)
    write_dataset(scores, model / "scores", "test_scores", "scores")
    write_dataset({"recall": 0.8}, model / "metrics", "metrics", "metrics")
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "model.tar.gz").write_bytes(build_tar_gz(directory_files(model)))

    np.testing.assert_array_equal(read_dataset(channel, "test_scores"), scores)
    assert read_dataset(channel, "metrics") == {"recall": 0.8}
    with pytest.raises(JobError, match=r"^input model: model.tar.gz does not hold it$"):
        read_dataset(channel, "model")


def test_read_dataset_of_a_plain_file_is_its_bytes_and_of_anything_else_an_error(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "ai4i2020.csv").write_bytes(b"UDI,Type\n1,M\n")
    assert read_dataset(tmp_path / "raw", "ai4i2020_raw") == b"UDI,Type\n1,M\n"

    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "a.csv").write_text("a")
    (tmp_path / "two" / "b.csv").write_text("b")
    with pytest.raises(JobError, match=r"input x: .*/two holds a.csv, b.csv; expected kedro_value"):
        read_dataset(tmp_path / "two", "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobError, match=r"input y: .*/empty holds nothing; "):
        read_dataset(tmp_path / "empty", "y")


# ---- shipped wheels ------------------------------------------------------------------------------
FAKE_DISTRIBUTION = "kedro_contract_fake_dist"


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _tiny_wheel(directory: Path, name: str, version: str) -> Path:
    """A real, installable pure-Python wheel of one module ``<name>.py``."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": f"VALUE = {version!r}\n".encode(),
        f"{dist_info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{dist_info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = [_record_line(path, data) for path, data in files.items()]
    files[f"{dist_info}/RECORD"] = ("\n".join([*record, f"{dist_info}/RECORD,,"]) + "\n").encode()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for name_in_wheel, data in files.items():
            wheel.writestr(name_in_wheel, data)
    return path


@pytest.fixture
def isolated_sys_path(tmp_path, monkeypatch) -> Iterator[None]:
    """sys.path and the module cache restored after the test; the directories
    install_shipped_wheels makes go to ``tmp_path``."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    yield
    sys.modules.pop(FAKE_DISTRIBUTION, None)
    importlib.invalidate_caches()


def test_shipped_wheels_already_installed_at_their_version_are_not_installed(tmp_path):
    wheels = tmp_path / "kedro-wheels"
    wheels.mkdir(parents=True)
    for distribution in ("pandas", "numpy", "python_dateutil"):
        version = importlib.metadata.version(distribution)
        # Never opened: the distribution is installed at exactly this version.
        (wheels / f"{distribution}-{version}-py3-none-any.whl").write_bytes(b"not a zip")

    assert install_shipped_wheels(tmp_path / "kedro-wheels") is None
    assert install_shipped_wheels(tmp_path / "no-wheels-here") is None


def test_a_missing_wheel_is_installed_into_a_fresh_directory_and_importable(
    tmp_path, isolated_sys_path
):
    _tiny_wheel(tmp_path / "kedro-wheels", FAKE_DISTRIBUTION, "1.0")
    with pytest.raises(ImportError):
        __import__(FAKE_DISTRIBUTION)

    target = install_shipped_wheels(tmp_path / "kedro-wheels")

    assert target is not None
    assert target.parent == tmp_path
    assert sys.path[0] == str(target)
    assert (target / f"{FAKE_DISTRIBUTION}.py").is_file()
    module = __import__(FAKE_DISTRIBUTION)
    assert module.VALUE == "1.0"
    assert Path(module.__file__).parent == target
    assert importlib.metadata.version(FAKE_DISTRIBUTION) == "1.0"
    # Now installed at that version: nothing more to do.
    assert install_shipped_wheels(tmp_path / "kedro-wheels") is None


def test_a_wheel_of_another_version_than_the_installed_one_is_installed(
    tmp_path, isolated_sys_path
):
    wheels = tmp_path / "kedro-wheels"
    wheels.mkdir(parents=True)
    (wheels / "pandas-0.0.1-py3-none-any.whl").write_bytes(b"not a zip")

    with pytest.raises(JobError, match=r"^installing 1 shipped wheels failed: "):
        install_shipped_wheels(tmp_path / "kedro-wheels")


def test_local_jobs_install_a_wheel_set_once_into_the_cache_and_reuse_it(
    tmp_path, isolated_sys_path, monkeypatch, capsys
):
    from predictive_maintenance.sagemaker.job import PACKAGES_CACHE_VARIABLE  # noqa: PLC0415

    cache = tmp_path / "job-packages"
    monkeypatch.setenv(PACKAGES_CACHE_VARIABLE, str(cache))
    _tiny_wheel(tmp_path / "kedro-wheels", FAKE_DISTRIBUTION, "1.0")

    first = install_shipped_wheels(tmp_path / "kedro-wheels")
    # A later job (a fresh process: the distribution not importable yet) of the same set.
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry != str(first)])
    importlib.invalidate_caches()
    second = install_shipped_wheels(tmp_path / "kedro-wheels")

    assert first == second
    assert first.parent == cache
    assert [entry.name for entry in cache.iterdir()] == [first.name]  # no scratch left behind
    assert (first / f"{FAKE_DISTRIBUTION}.py").is_file()
    printed = capsys.readouterr().out
    assert "installed 1 shipped wheels" in printed
    assert "reused 1 shipped wheels" in printed
    # Another wheel set (another version) is another entry, installed by pip.
    (tmp_path / "kedro-wheels" / f"{FAKE_DISTRIBUTION}-1.0-py3-none-any.whl").unlink()
    _tiny_wheel(tmp_path / "kedro-wheels", FAKE_DISTRIBUTION, "2.0")
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry != str(first)])
    sys.modules.pop(FAKE_DISTRIBUTION, None)
    importlib.invalidate_caches()
    third = install_shipped_wheels(tmp_path / "kedro-wheels")
    assert third != first
    assert sorted(entry.name for entry in cache.iterdir()) == sorted([first.name, third.name])


# ---- the local backend: environment, failure reasons, interpreter -------------------------------
PROBE = """\
import json, os, pathlib, sys

print("ENV " + json.dumps(dict(os.environ), sort_keys=True), flush=True)
if "--fail" in sys.argv:
    message = pathlib.Path(sys.argv[sys.argv.index("--fail") + 1])
    message.parent.mkdir(parents=True, exist_ok=True)
    message.write_text("probe refused: torque_nm is negative\\n")
    (message.parent / "failure").write_text("not the processing job's reason")
    sys.exit(3)
"""


@pytest.fixture
def probe_jobs(tmp_path, monkeypatch) -> SimpleNamespace:
    """A local backend, its store holding the probe as code (archive and tree), and host
    variables a job must not see (and AWS ones it must)."""
    monkeypatch.setenv("FOO_SECRET", "host-only")
    monkeypatch.setenv("PYTHONPATH", "/host/pythonpath/must/not/leak")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONTRACT_MARKER", "from-the-host")
    store = DirectoryStore(tmp_path / "s3")
    code = tmp_path / "code"
    code.mkdir()
    (code / "probe.py").write_text(PROBE)
    (tmp_path / "sourcedir.tar.gz").write_bytes(build_tar_gz({"probe.py": PROBE.encode()}))
    store.upload_file(tmp_path / "sourcedir.tar.gz", "s3://bucket/code/sourcedir.tar.gz")
    store.upload_file(code / "probe.py", "s3://bucket/code/tree/probe.py")
    settings = parse_settings(
        {"bucket": "bucket", "execution_role_arn": ROLE, "region": "eu-west-1"}, tmp_path
    )
    return SimpleNamespace(
        jobs=LocalTrainingJobs(store, "eu-west-1"), store=store, settings=settings
    )


def _job_environment(lines: list[str]) -> dict[str, str]:
    (line,) = [line for line in lines if line.startswith("ENV ")]
    return json.loads(line.removeprefix("ENV "))


def _processing_request(name: str, arguments: list[str]) -> dict[str, Any]:
    app: dict[str, Any] = {
        "ImageUri": IMAGE,
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/probe.py"],
    }
    if arguments:
        app["ContainerArguments"] = arguments
    return {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": app,
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": "ml.m5.large",
                "VolumeSizeInGB": 30,
            }
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": "s3://bucket/code/tree/",
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            }
        ],
        "Environment": {**JOB_ENVIRONMENT, "FROM_REQUEST": "processing"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def _wait_for_processing(jobs: LocalTrainingJobs, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT
    while (described := jobs.describe_processing_job(name))["ProcessingJobStatus"] in {
        "InProgress",
        "Stopping",
    }:
        assert time.monotonic() < deadline, described
        time.sleep(0.05)
    return described


def _assert_clean(environment: dict[str, str], from_request: str) -> None:
    assert "FOO_SECRET" not in environment
    assert "/host/pythonpath" not in environment.get("PYTHONPATH", "")
    assert environment["AWS_REGION"] == "eu-west-1"
    assert environment["AWS_CONTRACT_MARKER"] == "from-the-host"
    assert environment["FROM_REQUEST"] == from_request
    assert environment["PIP_NO_INDEX"] == "1"
    assert environment["KEDRO_DISABLE_TELEMETRY"] == "true"
    assert environment["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert environment["PATH"]


def test_a_training_job_gets_a_clean_environment_with_aws_and_the_requests(probe_jobs):
    from predictive_maintenance.sagemaker.jobs import training_request  # noqa: PLC0415

    settings = probe_jobs.settings
    request = training_request(
        "probe-training",
        settings=settings,
        job_settings=replace(settings.training_job, environment={"FROM_REQUEST": "training"}),
        image_uri=IMAGE,
        hyperparameters={
            "sagemaker_program": json.dumps("probe.py"),
            "sagemaker_submit_directory": json.dumps("s3://bucket/code/sourcedir.tar.gz"),
        },
        output_path="s3://bucket/jobs",
    )

    probe_jobs.jobs.create_training_job(request)
    described = probe_jobs.jobs.wait("probe-training", JOB_TIMEOUT)

    assert described["TrainingJobStatus"] == "Completed", described
    environment = _job_environment(probe_jobs.jobs.new_log_lines("probe-training"))
    _assert_clean(environment, "training")
    # The imitation of the training toolkit points PYTHONPATH at the job's code only.
    assert environment["PYTHONPATH"].endswith("/opt/ml/code")
    assert environment["SM_MODEL_DIR"].endswith("/opt/ml/model")


def test_a_processing_job_gets_a_clean_environment_with_aws_and_the_requests(probe_jobs):
    probe_jobs.jobs.create_processing_job(_processing_request("probe-processing", []))
    described = _wait_for_processing(probe_jobs.jobs, "probe-processing")

    assert described["ProcessingJobStatus"] == "Completed", described
    environment = _job_environment(probe_jobs.jobs.new_log_lines("probe-processing"))
    _assert_clean(environment, "processing")
    assert "PYTHONPATH" not in environment


def test_a_failing_processing_jobs_reason_comes_from_its_message_file(probe_jobs):
    request = _processing_request("probe-failing", ["--fail", "/opt/ml/output/message"])

    probe_jobs.jobs.create_processing_job(request)
    described = _wait_for_processing(probe_jobs.jobs, "probe-failing")

    assert described["ProcessingJobStatus"] == "Failed"
    assert described["FailureReason"] == "AlgorithmError: probe refused: torque_nm is negative"
    assert described["ExitMessage"] == described["FailureReason"]


def test_check_interpreter_refuses_another_python_version_naming_the_path():
    with pytest.raises(LocalJobError) as caught:
        check_interpreter(sys.executable, "3.10")

    message = str(caught.value)
    assert message.startswith(f"--python {sys.executable}: ")
    assert "jobs run on the image's Python 3.10, but this is 3.11" in message


def test_check_interpreter_refuses_a_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "no" / "python3.10"

    with pytest.raises(LocalJobError, match=rf"^--python {missing}: cannot run it \("):
        check_interpreter(str(missing), "3.10")


def test_check_interpreter_accepts_the_image_stand_in(image_python):
    assert check_interpreter(str(image_python), "3.10") == str(image_python.absolute())


# ---- the runner: network settings, the image's Python -------------------------------------------
def _run(
    pipeline: Pipeline, catalog: DataCatalog, tmp_path: Path, runner: SageMakerRunner, **config
) -> None:
    """Runs ``pipeline`` with ``runner`` and the bridge configured as in sagemaker.yml."""
    bridge_config = {
        "region": "eu-west-1",
        "bucket": "artifacts",
        "prefix": "tests/contract",
        "execution_role_arn": ROLE,
        "remote_nodes": {"tags": ["training_job"]},
        "training_job": {"image_uri": IMAGE, "max_runtime_seconds": 300},
        "local": {"store_directory": "s3", "poll_seconds": 0.1},
        **config,
    }
    manager = _create_hook_manager()
    hooks = SageMakerHooks()
    hooks.after_context_created(
        SimpleNamespace(
            project_path=tmp_path, env="local", config_loader={"sagemaker": bridge_config}
        )
    )
    manager.register(hooks)
    runner.run(pipeline, catalog, manager)


def _scale_and_total() -> tuple[Pipeline, DataCatalog]:
    pipeline = scale_and_total()
    catalog = DataCatalog(
        {
            "readings": MemoryDataset(READINGS),
            "params:factor": MemoryDataset(2.5),
            "scaled": RecordingDataset(),
            "total": MemoryDataset(),
        }
    )
    return pipeline, catalog


@pytest.fixture(scope="module")
def in_process() -> tuple[pd.DataFrame, float]:
    """The pipeline's results with Kedro's own runner: the scaled frame and the total."""
    pipeline, catalog = _scale_and_total()
    SequentialRunner().run(pipeline, catalog)
    return catalog.get("scaled").saved, catalog.load("total")


def test_the_network_block_reaches_the_runners_request_and_botocore_validates_it(
    tmp_path, monkeypatch, in_process
):
    submitted: list[dict[str, Any]] = []
    create = LocalTrainingJobs.create_training_job

    def recording(self, request):
        submitted.append(request)
        return create(self, request)  # validate_request, then the job runs

    monkeypatch.setattr(LocalTrainingJobs, "create_training_job", recording)
    pipeline, catalog = _scale_and_total()

    _run(
        pipeline,
        catalog,
        tmp_path,
        SageMakerRunner(backend="local"),
        network={
            "enable_network_isolation": True,
            "subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
            "security_group_ids": ["sg-0123456789abcdef0"],
        },
    )

    assert catalog.load("total") == in_process[1]
    (request,) = submitted
    assert request["EnableNetworkIsolation"] is True
    assert request["VpcConfig"] == {
        "Subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
    }
    validate_request("CreateTrainingJob", request)
    broken = {**request, "VpcConfig": {"Subnets": request["VpcConfig"]["Subnets"]}}
    with pytest.raises(ParamValidationError, match="SecurityGroupIds"):
        validate_request("CreateTrainingJob", broken)
    broken = {**request, "EnableNetworkIsolation": "yes"}
    with pytest.raises(ParamValidationError, match="EnableNetworkIsolation"):
        validate_request("CreateTrainingJob", broken)


def test_the_runner_on_the_image_python_gets_the_in_process_result(
    tmp_path, image_python, in_process, caplog
):
    caplog.set_level(logging.INFO, logger="predictive_maintenance")
    pipeline, catalog = _scale_and_total()

    _run(pipeline, catalog, tmp_path, SageMakerRunner(backend="local", python=str(image_python)))

    scaled, total = in_process
    pd.testing.assert_frame_equal(catalog.get("scaled").saved, scaled, check_exact=True)
    pd.testing.assert_frame_equal(scaled, READINGS * 2.5)
    assert catalog.load("total") == total
    messages = [record.getMessage() for record in caplog.records]
    # The job ran as in the image: its training toolkit started the entry script.
    assert any(f"{image_python} -m kedro_job_entry --kedro_job scale" in m for m in messages)
    assert any(" | kedro node scale: done in " in m for m in messages)


def test_a_failing_node_on_the_image_python_is_named_in_the_runners_error(tmp_path, image_python):
    pipeline = Pipeline(
        [Node(runner_nodes.reject, "readings", "rejected", name="reject", tags="training_job")]
    )
    catalog = DataCatalog({"readings": MemoryDataset(READINGS), "rejected": MemoryDataset()})

    with pytest.raises(TrainingJobFailedError) as raised:
        _run(
            pipeline, catalog, tmp_path, SageMakerRunner(backend="local", python=str(image_python))
        )

    headline = str(raised.value).splitlines()[0]
    # The toolkit replaced the job's failure file with its ExecuteUserScriptError; the runner
    # names the node's own reason, from the job's log.
    assert headline.startswith("Node reject: training job reject-")
    assert (
        " failed: node reject failed: ValueError: torque_nm is negative in row 7 "
        "(AlgorithmError: ExecuteUserScriptError:" in headline
    )
    assert "None of the node's outputs were saved." in str(raised.value)
