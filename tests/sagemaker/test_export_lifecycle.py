"""``kedro sagemaker upsert|start|status|cleanup`` against moto, in one project copy.

The module shares one moto state and runs its tests in file order, the way the commands are
used: compile + upsert, start, status, a second upsert, cleanup, cleanup --data. ``compile``,
``upsert`` and ``start`` run as ``kedro`` in a subprocess, two at a time, as a user runs them; the
other commands run the same click group in this process: ``status`` (without the retry backoff,
see its test), the second upsert (with the inline-definition limit lowered, so that the
definition goes through S3 as one over 100 KB does) and the cleanups (one process start less
each).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

import predictive_maintenance.sagemaker.cli as sagemaker_cli
from tests.sagemaker.conftest import BUCKET
from tests.support.aws import REGION, aws_environment, reset
from tests.support.cli import launch
from tests.support.project import RAW_CSV, copy_project

pytestmark = pytest.mark.slow

PIPELINE = "predictive-maintenance"
ENDPOINT = "predictive-maintenance"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
PIPELINE_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/{PIPELINE}"
RUNNER_PREFIX = "predictive-maintenance/runner/"
INPUT_PREFIX = f"{RUNNER_PREFIX}inputs/ai4i2020_raw/"
#: Objects outside ``predictive-maintenance/runner/`` that ``cleanup --data`` must keep.
FOREIGN_KEYS = (
    "elsewhere/keep.txt",
    "predictive-maintenance/model-registry/keep.txt",
    "predictive-maintenance/runner-archive/keep.txt",  # shares the prefix but not the folder
)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def kedro_sagemaker(project: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """``kedro sagemaker ARGS`` started in ``project``."""
    return launch(project, "sagemaker", *args, env=env)


def finish(process: subprocess.Popen, timeout: float = 180) -> Run:
    stdout, stderr = process.communicate(timeout=timeout)
    return Run(process.returncode, stdout or "", stderr or "")


def succeeded(run: Run) -> str:
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "Traceback" not in run.output, run.output[-4000:]
    return run.output


def all_keys(prefix: str = "") -> set[str]:
    pages = (
        boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    )
    return {item["Key"] for page in pages for item in page.get("Contents", [])}


def read_object(key: str) -> bytes:
    return boto3.client("s3").get_object(Bucket=BUCKET, Key=key)["Body"].read()


def endpoint_config_names() -> set[str]:
    pages = boto3.client("sagemaker").get_paginator("list_endpoint_configs").paginate()
    return {item["EndpointConfigName"] for page in pages for item in page["EndpointConfigs"]}


def model_names() -> set[str]:
    return {item["ModelName"] for item in boto3.client("sagemaker").list_models()["Models"]}


def create_model(name: str) -> None:
    boto3.client("sagemaker").create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5",
            "ModelDataUrl": f"s3://{BUCKET}/models/{name}/model.tar.gz",
        },
    )


def create_endpoint_config(name: str, model: str) -> None:
    boto3.client("sagemaker").create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": model,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )


def parse_described_definition(text: str) -> Any:
    """DescribePipeline's definition: JSON, except that moto 5.2 keeps a definition read from S3
    as a dict and answers its ``repr()``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return ast.literal_eval(text)


def invoke_in_process(project: Path, monkeypatch, *args: str):
    """The ``sagemaker`` click group in this process, with the project copy as cwd."""
    monkeypatch.chdir(project)
    return CliRunner().invoke(sagemaker_cli.sagemaker, list(args), catch_exceptions=False)


def succeeded_in_process(project: Path, monkeypatch, *args: str) -> str:
    """``kedro sagemaker ARGS`` in this process, which must succeed; its output."""
    result = invoke_in_process(project, monkeypatch, *args)
    assert result.exit_code == 0, result.output[-4000:]
    assert "Traceback" not in result.output, result.output[-4000:]
    return result.output


@pytest.fixture(scope="module")
def aws_env(moto_url) -> Iterator[dict[str, str]]:
    """A clean moto with the artifact bucket, for the whole module (this process and the CLI)."""
    reset(moto_url)
    env = {
        **aws_environment(moto_url),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "NO_COLOR": "1",
        "COLUMNS": "250",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        boto3.client("s3").create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield env


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("lifecycle") / "project")


@pytest.fixture(scope="module")
def created(project, aws_env, tmp_path_factory) -> tuple[str, Run]:
    """``compile --output F`` and the first ``upsert``, side by side: (F's text, upsert's run)."""
    compiled = tmp_path_factory.mktemp("compiled") / "pipeline.json"
    compiling = kedro_sagemaker(project, aws_env, "compile", "--output", str(compiled))
    upserting = kedro_sagemaker(project, aws_env, "upsert")
    succeeded(finish(compiling))
    return compiled.read_text(), finish(upserting)


@pytest.fixture(scope="module")
def code_sha(created) -> str:
    definition, _ = created
    (sha,) = set(re.findall(rf"{RUNNER_PREFIX}code/([0-9a-f]{{64}})/", definition))
    return sha


@pytest.fixture(scope="module")
def started(project, aws_env, created) -> tuple[Run, Run]:
    """A started execution (``--wait``) and, side by side, a start with an unknown parameter."""
    good = kedro_sagemaker(
        project,
        aws_env,
        "start",
        "--parameters",
        "MaxDepth=3",
        "--parameters",
        "DeployModel=false",
        "--wait",
    )
    unknown = kedro_sagemaker(project, aws_env, "start", "--parameters", "Nope=1")
    return finish(good), finish(unknown)


# -- upsert -----------------------------------------------------------------------------------


def test_upsert_creates_the_pipeline_with_the_compiled_definition(created):
    definition, upsert = created

    assert f"Created pipeline {PIPELINE_ARN}" in succeeded(upsert)
    described = boto3.client("sagemaker").describe_pipeline(PipelineName=PIPELINE)
    assert described["PipelineDefinition"] == definition  # byte for byte what compile writes
    assert described["RoleArn"] == ROLE
    assert described["PipelineDescription"] == (
        "AI4I 2020 machine-failure model, exported from the Kedro project"
    )


def test_upsert_uploads_the_code_archive_and_tree(created, code_sha):
    definition, _ = created
    root = f"{RUNNER_PREFIX}code/{code_sha}/"
    archive = read_object(f"{root}sourcedir.tar.gz")
    tree = {key.removeprefix(f"{root}tree/") for key in all_keys(f"{root}tree/")}
    steps = [step["Name"] for step in json.loads(definition)["Steps"]]

    assert hashlib.sha256(archive).hexdigest() == code_sha  # content-addressed
    assert {"kedro_job_entry.py", "pyproject.toml", "kedro_jobs/train/job.json"} <= tree
    assert {f"kedro_jobs/{name}/job.json" for name in ("prepare", "train", "evaluate")} <= tree
    assert set(steps) >= {"prepare", "train", "evaluate"}
    assert not [name for name in tree if name.endswith(".whl")]  # the wheels have their own
    train = next(step for step in json.loads(definition)["Steps"] if step["Name"] == "train")
    (wheels,) = [
        channel
        for channel in train["Arguments"]["InputDataConfig"]
        if channel["ChannelName"] == "kedro-wheels"
    ]
    prefix = wheels["DataSource"]["S3DataSource"]["S3Uri"].removeprefix(f"s3://{BUCKET}/")
    shipped = {key.removeprefix(prefix) for key in all_keys(prefix)}
    assert any(name.startswith("kedro-") and name.endswith(".whl") for name in shipped)
    assert "wheels.json" in shipped  # written last: the set is complete
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        files = {member.name for member in tar.getmembers() if member.isfile()}
        assert files == tree
        entry = tar.extractfile("kedro_job_entry.py").read()
        spec = json.loads(tar.extractfile("kedro_jobs/train/job.json").read())
    assert read_object(f"{root}tree/kedro_job_entry.py") == entry
    assert json.loads(read_object(f"{root}tree/kedro_jobs/train/job.json")) == spec
    assert spec["job"] == "train"
    assert [item["node"] for item in spec["nodes"]] == [
        "train.train_failure_mode_model",
        "train.train_model",
    ]


def test_upsert_stages_the_pipeline_input(created, raw_csv_bytes):
    definition, _ = created
    staged = all_keys(INPUT_PREFIX)
    manifest = json.loads(read_object(f"{INPUT_PREFIX}kedro_value.json"))

    assert staged == {f"{INPUT_PREFIX}kedro_value.json", f"{INPUT_PREFIX}{manifest['file']}"}
    assert manifest["dataset"] == "ai4i2020_raw"
    assert read_object(f"{INPUT_PREFIX}{manifest['file']}") == raw_csv_bytes == RAW_CSV.read_bytes()
    parameters = {item["Name"]: item for item in json.loads(definition)["Parameters"]}
    assert parameters["InputDataUri"]["DefaultValue"] == f"s3://{BUCKET}/{INPUT_PREFIX}"


# -- start ------------------------------------------------------------------------------------


def test_start_passes_the_parameters_and_waits(started):
    run, _ = started
    output = succeeded(run)

    (arn,) = re.findall(rf"Started ({re.escape(PIPELINE_ARN)}/execution/\S+)", output)
    assert "Execution Succeeded" in output
    sagemaker = boto3.client("sagemaker")
    executions = sagemaker.list_pipeline_executions(PipelineName=PIPELINE)
    assert [item["PipelineExecutionArn"] for item in executions["PipelineExecutionSummaries"]] == [
        arn
    ]  # only this one: the start with an unknown parameter started nothing
    execution = sagemaker.describe_pipeline_execution(PipelineExecutionArn=arn)
    assert execution["PipelineExecutionStatus"] == "Succeeded"
    parameters = sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
    assert parameters["PipelineParameters"] == [
        {"Name": "MaxDepth", "Value": "3"},
        {"Name": "DeployModel", "Value": "false"},
    ]


def test_start_rejects_an_unknown_parameter(started, created):
    _, run = started
    definition, _ = created
    declared = sorted(item["Name"] for item in json.loads(definition)["Parameters"])

    assert run.returncode != 0
    assert "Traceback" not in run.output
    assert "Started" not in run.output
    assert "unknown pipeline parameter(s) Nope; the pipeline has " + ", ".join(declared) in (
        run.stderr
    )


# -- status -----------------------------------------------------------------------------------


def test_status_lists_the_executions_and_says_the_steps_are_not_available(
    project, aws_env, started, monkeypatch
):
    """In-process: moto answers ListPipelineExecutionSteps with HTTP 500 (not implemented);
    `status` asks once and says so, rather than retrying for a minute."""
    run, _ = started
    (arn,) = re.findall(r"Started (\S+)", run.output)
    session = boto3.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    attempts: list[str] = []
    session.events.register(
        "before-send.sagemaker.ListPipelineExecutionSteps",
        lambda request, **_: attempts.append(request.url),
    )

    result = invoke_in_process(project, monkeypatch, "status")

    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    (line,) = [line for line in result.output.splitlines() if "/execution/" in line]
    assert re.fullmatch(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  Succeeded   {re.escape(arn)}", line)
    assert "Steps of the newest execution: not available (500)" in result.output
    assert len(attempts) == 1


# -- a second upsert, in-process, with the definition through S3 --------------------------------


def test_second_upsert_updates_with_a_definition_in_s3(project, aws_env, created, monkeypatch):
    """The definition goes through S3 because the inline limit is lowered to 1,000 characters."""
    monkeypatch.setattr(sagemaker_cli, "INLINE_DEFINITION_LIMIT", 1000)
    session = boto3.Session()
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    calls: list[tuple[str, dict]] = []

    def record(params, model, **_):
        calls.append((model.name, dict(params)))

    session.events.register("provide-client-params.sagemaker.CreatePipeline", record)
    session.events.register("provide-client-params.sagemaker.UpdatePipeline", record)

    result = invoke_in_process(project, monkeypatch, "upsert")

    assert result.exit_code == 0, result.output
    assert f"Updated pipeline {PIPELINE_ARN}" in result.output
    ((operation, params),) = calls
    assert operation == "UpdatePipeline"
    assert "PipelineDefinition" not in params
    location = params["PipelineDefinitionS3Location"]
    assert location["Bucket"] == BUCKET
    (digest,) = re.fullmatch(
        rf"{RUNNER_PREFIX}definitions/([0-9a-f]{{64}})\.json", location["ObjectKey"]
    ).groups()
    uploaded = read_object(location["ObjectKey"])
    assert hashlib.sha256(uploaded).hexdigest() == digest
    assert len(uploaded) > 1000
    described = boto3.client("sagemaker").describe_pipeline(PipelineName=PIPELINE)
    assert parse_described_definition(described["PipelineDefinition"]) == json.loads(uploaded)
    assert described["RoleArn"] == ROLE
    # The same pipeline as compiled (not byte for byte: this process packages the code of
    # predictive_maintenance as imported here, not the project copy's).
    compiled, _ = created
    steps = [step["Name"] for step in json.loads(compiled)["Steps"]]
    assert [step["Name"] for step in json.loads(uploaded)["Steps"]] == steps
    assert json.loads(uploaded)["Parameters"] == json.loads(compiled)["Parameters"]


# -- cleanup ----------------------------------------------------------------------------------


def test_cleanup_deletes_the_pipeline_and_the_endpoint_but_keeps_the_data(
    project, aws_env, created, monkeypatch
):
    sagemaker = boto3.client("sagemaker")
    deployed = f"{ENDPOINT}-v1-abcdef12"
    create_model(deployed)
    create_model("other-model")
    create_endpoint_config(deployed, deployed)
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=deployed)
    for key in FOREIGN_KEYS:
        boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=b"keep")
    objects = all_keys()

    output = succeeded_in_process(project, monkeypatch, "cleanup")

    assert f"Deleted pipeline {PIPELINE}" in output
    assert f"Deleted endpoint {ENDPOINT}" in output
    assert f"Deleted endpoint config {deployed}" in output
    assert f"Deleted model {deployed}" in output
    assert "objects under" not in output  # no --data: S3 is left alone
    assert sagemaker.list_pipelines()["PipelineSummaries"] == []
    assert sagemaker.list_endpoints()["Endpoints"] == []
    assert endpoint_config_names() == set()
    assert model_names() == {"other-model"}
    assert all_keys() == objects


def test_cleanup_data_deletes_only_the_runner_prefix(project, aws_env, monkeypatch):
    runner_objects = all_keys(RUNNER_PREFIX)
    assert runner_objects  # code, inputs and the S3 definition of the tests above

    output = succeeded_in_process(project, monkeypatch, "cleanup", "--data")

    assert (
        f"Deleted {len(runner_objects)} objects under s3://{BUCKET}/predictive-maintenance/runner/"
        in output
    )
    assert all_keys(RUNNER_PREFIX) == set()
    assert all_keys() == set(FOREIGN_KEYS)
    assert model_names() == {"other-model"}


def test_cleanup_deletes_every_page_of_endpoint_configs(project, aws_env, monkeypatch):
    create_model(f"{ENDPOINT}-v0-base")
    names = {f"{ENDPOINT}-v{index}-abcdef12" for index in range(1, 102)}
    for name in names:
        create_endpoint_config(name, f"{ENDPOINT}-v0-base")

    result = invoke_in_process(project, monkeypatch, "cleanup")

    assert result.exit_code == 0, result.output
    assert f"Deleted model {ENDPOINT}-v0-base" in result.output
    assert endpoint_config_names() == set()
