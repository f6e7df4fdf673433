"""``kedro sagemaker run-local`` of the batch-scoring export: its Model and Transform steps.

The acceptance test compiles the project's batch definition, executes it with run-local on the
stock image's stand-in (the model-choice step with the local registry, the Model step made from
the chosen version's archive, the Transform step serving it with the image's own gunicorn app and
posting mini-batches of a headerless 14-column CSV, joined with the input and filtered to
``UDI,Product ID,score``) and compares every score with ``kedro run --pipelines batch_scoring``
(the endpoint's code in this process) on the same rows with the same registered model.

The Batch Transform semantics (JSONPath filters, mini-batches under MaxPayloadInMB, join and
assembly, answers kept in input order, failures naming the lines) are checked in-process against
a stand-in container that answers like the model would, so they need no image.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from botocore.stub import Stubber

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.registry import LocalModelRegistry
from predictive_maintenance.sagemaker.aws import client
from predictive_maintenance.sagemaker.storage import DirectoryStore, upload_bytes
from predictive_maintenance.sagemaker.workflow import local_native
from predictive_maintenance.sagemaker.workflow.executor import (
    ExecutionError,
    PipelineExecutor,
    StepResult,
)
from predictive_maintenance.sagemaker.workflow.transform import (
    FilterError,
    LocalModel,
    LocalTransformJob,
    TransformJobError,
    TransformSummary,
    apply_filter,
    mini_batches,
)
from tests.pipelines.test_batch_scoring import GROUP, small_archive
from tests.support.cli import invoke, run_session
from tests.support.project import RAW_CSV, copy_project

INPUT = "s3://bucket/batch-input/"
OUTPUT = "s3://bucket/out"
FIELDS = ["1", "M14860", "M", "298.1", "308.6", "1551", "42.8", "0", "0", "0", "0", "0", "0", "0"]


# ---- JSONPath filters, as SageMaker applies them to a CSV record (an array of fields) ------------
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("$", FIELDS),
        ("$[2,3,4,5,6,7]", FIELDS[2:8]),
        ("$[0,1,-1]", ["1", "M14860", "0"]),
        ("$[0,5:]", [FIELDS[0], *FIELDS[5:]]),
        ("$[1:3]", FIELDS[1:3]),  # the end is excluded
        ("$[*]", FIELDS),
    ],
)
def test_csv_filters_select_fields(expression: str, expected: list[str]):
    assert apply_filter(expression, FIELDS) == expected


def test_json_filters_select_members():
    record = {"id": 7, "features": [1, 2], "SageMakerOutput": {"score": 0.5}}
    assert apply_filter("$.features", record) == [1, 2]
    assert apply_filter("$['id','SageMakerOutput']", record) == {
        "id": 7,
        "SageMakerOutput": {"score": 0.5},
    }
    assert apply_filter("$.features[-1]", record) == [2]


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("$[0,14]", r"index 14 is outside the record's 14 fields"),
        ("[0]", r"must start with \$"),
        ("$[a-b]", r"neither indexes nor names"),
        ("$.id", r"not an object|has no 'id'"),
    ],
)
def test_a_filter_that_cannot_apply_names_itself(expression: str, message: str):
    with pytest.raises(FilterError, match=message):
        apply_filter(expression, FIELDS)


def test_multi_record_batches_fill_max_payload_and_single_records_go_alone():
    records = [(number, b"x" * 9) for number in range(1, 8)]  # 9 bytes each
    # 3 records and 2 separators = 29 bytes fit in 30; a 4th would make 39.
    multi = list(
        mini_batches(
            iter(records), strategy="MultiRecord", max_payload_bytes=30, transform_record=bytes
        )
    )
    assert [batch.lines for batch in multi] == [[1, 2, 3], [4, 5, 6], [7]]
    assert multi[0].body == b"xxxxxxxxx\nxxxxxxxxx\nxxxxxxxxx"
    single = mini_batches(
        iter(records), strategy="SingleRecord", max_payload_bytes=30, transform_record=bytes
    )
    assert [batch.lines for batch in single] == [[n] for n in range(1, 8)]
    too_big = mini_batches(
        iter([(1, b"ok"), (2, b"y" * 31)]),
        strategy="MultiRecord",
        max_payload_bytes=30,
        transform_record=bytes,
    )
    with pytest.raises(TransformJobError, match="line 2: the record is 31 bytes, more than"):
        list(too_big)


# ---- the job against a stand-in container --------------------------------------------------------
class FakeContainer:
    """Answers each CSV line of a request with one score: its air temperature / 1000 (the fifth
    field of what was sent), after ``delays[its air temperature]`` seconds; a request with the
    record ``fail`` is answered 400."""

    def __init__(self, delays: dict[str, float] | None = None, fail: str | None = None) -> None:
        self.delays = delays or {}
        self.fail = fail
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def request(self, method, path, body, headers, timeout):
        assert (method, path, headers["Content-Type"]) == ("POST", "/invocations", "text/csv")
        with self.lock:
            self.bodies.append(body)
        rows = list(csv.reader(io.StringIO(body.decode())))
        time.sleep(self.delays.get(rows[0][1], 0))
        if self.fail and self.fail in body.decode().splitlines():
            return 400, b'{"error": "bad reading"}'
        return 200, "".join(f"{float(row[1]) / 1000:.4f}\n" for row in rows).encode()


def transform_request(**changes: Any) -> dict[str, Any]:
    request = {
        "TransformJobName": "t",
        "ModelName": "m",
        "BatchStrategy": "MultiRecord",
        "MaxPayloadInMB": 6,
        "DataProcessing": {
            "InputFilter": "$[2,3,4,5,6,7]",
            "JoinSource": "Input",
            "OutputFilter": "$[0,1,-1]",
        },
        "TransformInput": {
            "ContentType": "text/csv",
            "SplitType": "Line",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": INPUT}},
        },
        "TransformOutput": {"S3OutputPath": OUTPUT, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    request.update(changes)
    return request


RAW_ROWS = RAW_CSV.read_text(encoding="utf-8-sig").splitlines()[1:7]


def run_job(tmp_path: Path, container: FakeContainer, **changes: Any) -> tuple[str, Any]:
    store = DirectoryStore(tmp_path / "store")
    upload_bytes(store, ("\r\n".join(RAW_ROWS) + "\r\n\r\n").encode(), f"{INPUT}day/1.csv")
    job = LocalTransformJob(
        transform_request(**changes), LocalModel("m", "i", "s3://b/m"), store, ""
    )
    ((uri, relative),) = job.inputs()
    summary = TransformSummary()
    output = job.transform_object(container, uri, relative, summary)
    assert output == f"{OUTPUT}/day/1.csv.out"
    return store.path_of(output).read_text(), summary


def test_records_are_filtered_sent_joined_and_assembled_by_line(tmp_path: Path):
    container = FakeContainer()
    text, summary = run_job(tmp_path, container)

    rows = [row.split(",") for row in RAW_ROWS]
    assert text == "".join(f"{r[0]},{r[1]},{float(r[3]) / 1000:.4f}\n" for r in rows)
    # One request: the six filtered records; the CRLF and the blank line never reach the model.
    assert container.bodies == ["\n".join(",".join(r[2:8]) for r in rows).encode()]
    assert (summary.records, summary.requests) == (6, 1)


def test_concurrent_requests_keep_the_input_order(tmp_path: Path):
    # SingleRecord, three requests in flight; the first answers last.
    first_air = RAW_ROWS[0].split(",")[3]
    text, summary = run_job(
        tmp_path,
        FakeContainer(delays={first_air: 0.3}),
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=3,
    )
    assert [line.split(",")[0] for line in text.splitlines()] == ["1", "2", "3", "4", "5", "6"]
    assert summary.requests == 6


def test_without_join_or_filters_the_answers_are_written_as_they_come(tmp_path: Path):
    text, _ = run_job(tmp_path, FakeContainer(), DataProcessing={"InputFilter": "$[2:8]"})
    assert text.splitlines() == [f"{float(row.split(',')[3]) / 1000:.4f}" for row in RAW_ROWS]


def test_a_refused_mini_batch_fails_the_job_naming_its_lines(tmp_path: Path):
    bad = ",".join(RAW_ROWS[4].split(",")[2:8])
    with pytest.raises(TransformJobError, match=r"day/1.csv: line 5: the model answered 400"):
        run_job(tmp_path, FakeContainer(fail=bad), BatchStrategy="SingleRecord")
    with pytest.raises(TransformJobError, match=r"lines 1-6: the model answered 400 .*bad reading"):
        run_job(tmp_path, FakeContainer(fail=bad))


def test_an_interpreter_without_the_images_serving_stack_is_refused(tmp_path: Path):
    store = DirectoryStore(tmp_path / "store")
    archive = small_archive()
    upload_bytes(store, archive, "s3://bucket/model.tar.gz")
    upload_bytes(store, b"L,298.1,308.6,1551,42.8,0\n", f"{INPUT}1.csv")
    model = LocalModel("m", "i", "s3://bucket/model.tar.gz", {}, sha256_hex(archive))
    job = LocalTransformJob(transform_request(), model, store, sys.executable)
    with pytest.raises(TransformJobError, match=r"lacks one of gunicorn, gevent, sagemaker_xgb"):
        job.run(tmp_path / "work")
    changed = LocalModel("m", "i", "s3://bucket/model.tar.gz", {}, "0" * 64)
    with pytest.raises(Exception, match="sha256"):
        LocalTransformJob(transform_request(), changed, store, sys.executable).run(tmp_path / "w")


# ---- the Model step ------------------------------------------------------------------------------
MODEL_STEP = {
    "Name": "score-model",
    "Type": "Model",
    "Arguments": {
        "Containers": [{"ModelPackageName": {"Get": "Parameters.ModelPackageArn"}}],
        "ExecutionRoleArn": "arn:aws:iam::123456789012:role/Role",
    },
}
ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/predictive-maintenance/3"


def test_a_model_package_arn_is_described_as_create_model_finds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    sagemaker = client("sagemaker", "eu-west-1")
    stubber = Stubber(sagemaker)
    stubber.add_response(
        "describe_model_package",
        {
            "ModelPackageName": "predictive-maintenance",
            "ModelPackageArn": ARN,
            "CreationTime": "2026-12-03T00:00:00Z",
            "ModelPackageStatus": "Completed",
            "ModelPackageStatusDetails": {"ValidationStatuses": []},
            "InferenceSpecification": {
                "Containers": [
                    {
                        "Image": "683313688378.dkr.ecr.eu-west-1.amazonaws.com/xgboost:3.0-5",
                        "ModelDataUrl": "s3://bucket/models/model.tar.gz",
                        "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                    }
                ],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        },
        {"ModelPackageName": ARN},
    )
    monkeypatch.setattr(local_native, "client", lambda *_: sagemaker)
    store = DirectoryStore(tmp_path)
    upload_bytes(store, b"the package's archive", "s3://bucket/models/model.tar.gz")
    export = SimpleNamespace(
        plan=SimpleNamespace(steps=()),
        bridge=SimpleNamespace(region="eu-west-1", s3_root="s3://bucket/runner"),
    )
    native = local_native.KedroNativeSteps(export, [], store)
    definition = {
        "Parameters": [{"Name": "ModelPackageArn", "Type": "String", "DefaultValue": ARN}],
        "Steps": [MODEL_STEP],
    }
    executor = PipelineExecutor(definition, store, None, native=native, execution_id="e1")

    with stubber:
        assert executor.run() == "Succeeded", executor.failure_reason
    (model,) = executor.models.values()
    # The package's archive, copied into the execution's data, served with its environment.
    copied = "s3://bucket/runner/executions/e1/score-model/model.tar.gz"
    assert (model.model_data_url, model.environment) == (
        copied,
        {"SAGEMAKER_PROGRAM": "inference.py"},
    )
    assert store.path_of(copied).read_bytes() == b"the package's archive"
    assert executor.results["score-model"].properties["ModelName"] == model.name

    # Without anything to describe packages, the step says so.
    bare = PipelineExecutor(definition, DirectoryStore(tmp_path), None)
    assert bare.run() == "Failed"
    assert "cannot be described here" in bare.failure_reason
    with pytest.raises(ExecutionError, match="no parameter"):
        bare.resolve({"Get": "Parameters.Missing"}, "x")


def test_a_local_registry_archive_changed_since_it_was_chosen_fails_the_model_step(
    tmp_path: Path,
):
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"changed after the choice")
    store = DirectoryStore(tmp_path / "store")
    export = SimpleNamespace(plan=SimpleNamespace(steps=()), bridge=SimpleNamespace())
    step = {
        **MODEL_STEP,
        "Arguments": {
            **MODEL_STEP["Arguments"],
            "Containers": [
                {
                    "ModelPackageName": {
                        "Std:JsonGet": {
                            "PropertyFile": {"Get": "Steps.choose.PropertyFiles.choice"},
                            "Path": "model_package_arn",
                        }
                    }
                }
            ],
        },
    }
    executor = PipelineExecutor(
        {"Steps": [step]},
        store,
        None,
        native=local_native.KedroNativeSteps(export, [], store),
    )
    choice = {"model_package_arn": "", "archive_uri": str(archive), "archive_sha256": "0" * 64}
    # What the model-choice step left (a catalog step, run before).
    executor.results["choose"] = StepResult(
        "choose", "Processing", "Succeeded", property_files={"choice": choice}
    )

    assert executor.run() == "Failed"
    assert "sha256" in executor.results["score-model"].reason
    assert str(archive) in executor.results["score-model"].reason


# ---- acceptance: run-local of the project's batch export on the image's stand-in -----------------
def test_run_local_of_the_batch_export_gives_the_scores_of_kedro_run(
    image_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    project = copy_project(tmp_path / "project")
    LocalModelRegistry(project / "data" / "10_model_registry").register(
        GROUP, small_archive(), metrics={}, lineage={}, approval_status="Approved"
    )
    # Rows of the data set, failures among them (their scores differ), headerless as the
    # export's filters expect them.
    lines = RAW_CSV.read_text(encoding="utf-8-sig").splitlines()[1:]
    rows = [line for number, line in enumerate(lines) if number % 97 == 0 or line.endswith(",1")]
    rows = rows[:150]
    batch_input = "data/12_sagemaker/predictive-maintenance-artifacts/predictive-maintenance/runner"
    (project / batch_input / "batch-input").mkdir(parents=True)
    (project / batch_input / "batch-input" / "fleet.csv").write_text("\n".join(rows) + "\n")
    (project / "fleet.csv").write_text("\n".join(rows) + "\n")

    compiled = invoke(
        project, monkeypatch, "sagemaker", "compile", "-p", "batch_scoring", "-o", "b.json"
    )
    assert compiled.exit_code == 0, compiled.output
    result = invoke(
        project,
        monkeypatch,
        "sagemaker",
        "run-local",
        "b.json",
        "-p",
        "batch_scoring",
        "--python",
        str(image_python),
    )

    assert result.exit_code == 0, result.output
    assert "batch-score_batch                Transform      Succeeded" in result.output
    (out,) = (project / batch_input / "executions").glob("*/batch-score_batch/fleet.csv.out")
    transformed = pd.read_csv(out, header=None, names=["udi", "product_id", "score"], dtype=str)

    run_session(
        project,
        monkeypatch,
        pipeline_names=["batch_scoring"],
        runtime_params={"batch_input": "fleet.csv"},
    )
    local = pd.read_csv(project / "data" / "15_batch" / "predictions.csv", dtype=str)
    assert len(transformed) == len(local) == len(rows)
    assert transformed["udi"].tolist() == local["udi"].tolist()
    assert transformed["product_id"].tolist() == local["product_id"].tolist()
    assert (
        transformed["score"].tolist() == local["score"].tolist()
    )  # the same text, digit for digit
    assert local["score"].nunique() > 3  # scores that tell rows apart
    assert json.loads((project / "data" / "15_batch" / "model.json").read_text())["version"] == 1
