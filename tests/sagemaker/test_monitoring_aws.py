"""Baselines in the SageMaker Model Registry, endpoint data capture and the Model Monitor
data-quality schedule, against moto in server mode.

moto 5.2 has model packages (with ``DriftCheckBaselines`` and ``ModelMetrics``), endpoint configs
with ``DataCaptureConfig`` and data-quality job definitions, but no monitoring schedules
(``*MonitoringSchedule`` answer HTTP 500). :class:`MonitoringSchedules` answers those five
operations in this process from botocore's ``before-call`` event, which botocore emits after it
has validated the request against the service model: a request of the wrong shape still fails
here, as it would against AWS (``test_schedule_requests_are_validated_by_botocore``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ParamValidationError
from kedro.io import DatasetError

from predictive_maintenance.integrity import ChecksumMismatchError
from predictive_maintenance.pipelines.deployment.nodes import select_deployment
from predictive_maintenance.registry.sagemaker import SageMakerRegistry
from predictive_maintenance.registry.sagemaker_datasets import SageMakerModelRegistryDataset
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.sagemaker_endpoint import (
    SageMakerEndpointDataset,
    delete_monitoring,
    render_preprocessor,
    schedule_name,
)
from tests.sagemaker.conftest import BUCKET
from tests.sagemaker.test_deployment_datasets import (
    _register_like_the_exported_pipeline,
    _step_output,
)
from tests.test_registry_baseline import baseline

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
GROUP = "predictive-maintenance"
ENDPOINT = "predictive-maintenance"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
CAPTURE = {
    "enabled": True,
    "sampling_percentage": 25,
    "destination": f"s3://{BUCKET}/pm/data-capture",
}
#: The region's analyzer image, as sagemaker.core.image_uris.retrieve("model-monitor",
#: region="eu-west-1") names it (given here: importing the SDK to look it up takes seconds).
ANALYZER = "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"
MONITORING = {
    "output_uri": f"s3://{BUCKET}/pm/monitoring/reports",
    "code_uri": f"s3://{BUCKET}/pm/monitoring/code",
    "image_uri": ANALYZER,
}
SCHEDULE_OPERATIONS = (
    "CreateMonitoringSchedule",
    "DescribeMonitoringSchedule",
    "UpdateMonitoringSchedule",
    "DeleteMonitoringSchedule",
    "ListMonitoringSchedules",
)


class MonitoringSchedules:
    """SageMaker's monitoring schedules, answered in this process after botocore validated the
    request (the ``before-call`` event comes after parameter validation)."""

    def __init__(self) -> None:
        self.schedules: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[Any, dict]:
        request = json.loads(params["body"] or b"{}")
        self.requests.append((model.name, request))
        name = request.get("MonitoringScheduleName")
        if model.name == "ListMonitoringSchedules":
            summaries = [
                {"MonitoringScheduleName": key, "MonitoringScheduleStatus": "Scheduled"}
                for key in self.schedules
            ]
            return self._answer({"MonitoringScheduleSummaries": summaries})
        if model.name != "CreateMonitoringSchedule" and name not in self.schedules:
            return self._answer(
                {"Error": {"Code": "ResourceNotFound", "Message": f"{name} does not exist"}}, 400
            )
        if model.name == "DescribeMonitoringSchedule":
            return self._answer(self.schedules[name])
        if model.name == "DeleteMonitoringSchedule":
            del self.schedules[name]
            return self._answer({})
        arn = f"arn:aws:sagemaker:eu-west-1:123456789012:monitoring-schedule/{name}"
        self.schedules[name] = {
            "MonitoringScheduleArn": arn,
            "MonitoringScheduleName": name,
            "MonitoringScheduleStatus": "Scheduled",
            "MonitoringScheduleConfig": request["MonitoringScheduleConfig"],
        }
        return self._answer({"MonitoringScheduleArn": arn})

    @staticmethod
    def _answer(body: dict[str, Any], status: int = 200) -> tuple[AWSResponse, dict]:
        return AWSResponse("https://sagemaker", status, {}, None), {
            **body,
            "ResponseMetadata": {"HTTPStatusCode": status},
        }


@pytest.fixture
def schedules(aws) -> MonitoringSchedules:
    """Monitoring schedules for every boto3 client made by this test (boto3's default session
    hands its event handlers to the clients it makes)."""
    fake = MonitoringSchedules()
    events = boto3._get_default_session().events
    for operation in SCHEDULE_OPERATIONS:
        events.register(f"before-call.sagemaker.{operation}", fake, unique_id=operation)
    yield fake
    for operation in SCHEDULE_OPERATIONS:
        events.unregister(f"before-call.sagemaker.{operation}", unique_id=operation)


@pytest.fixture
def registry(aws) -> SageMakerModelRegistryDataset:
    return SageMakerModelRegistryDataset(
        group=GROUP,
        artifact_uri=f"s3://{BUCKET}/pm/model-registry",
        region="eu-west-1",
        image_uri=IMAGE,
    )


def registration(archive: bytes, mean: float = 300.0, **changes) -> dict:
    return {
        "archive": archive,
        "metrics": {"roc_auc": 0.98},
        "lineage": {"raw_data_sha256": "ab" * 32},
        "approval_status": "Approved",
        "description": "test model",
        "baseline": baseline(mean),
        **changes,
    }


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _s3_bytes(uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_the_baseline_is_the_packages_drift_check_baseline_and_data_quality_metrics(registry):
    registry.save(registration(b"archive one"))

    (version,) = registry.load()["versions"]
    package = boto3.client("sagemaker").describe_model_package(
        ModelPackageName=version["model_package_arn"]
    )

    files = baseline()
    drift = package["DriftCheckBaselines"]["ModelDataQuality"]
    assert drift == package["ModelMetrics"]["ModelDataQuality"]
    assert drift["Statistics"]["ContentType"] == "application/json"
    statistics_uri = drift["Statistics"]["S3Uri"]
    folder = f"s3://{BUCKET}/pm/model-registry/{GROUP}/{_sha(b'archive one')}"
    assert statistics_uri == f"{folder}/baseline/{_sha(files['statistics'])}/statistics.json"
    assert _s3_bytes(drift["Constraints"]["S3Uri"]) == files["constraints"]
    properties = package["CustomerMetadataProperties"]
    assert properties["baseline_statistics_sha256"] == _sha(files["statistics"])
    assert version["baseline"]["statistics"] == {
        "uri": statistics_uri,
        "sha256": _sha(files["statistics"]),
        "sha256_source": "customer metadata baseline_statistics_sha256",
    }
    assert SageMakerRegistry(registry).read_baseline(GROUP, 1) == files


def test_a_new_baseline_registers_an_unchanged_archive_again(registry, caplog):
    caplog.set_level(logging.INFO, logger="predictive_maintenance")

    registry.save(registration(b"archive one"))
    registry.save(registration(b"archive one"))
    registry.save(registration(b"archive one", mean=305.0))

    assert [v["version"] for v in registry.load()["versions"]] == [1, 2]
    assert any(r.getMessage().startswith("model unchanged, version 1") for r in caplog.records)


def test_a_baseline_changed_in_s3_fails_its_check(registry):
    registry.save(registration(b"archive one"))
    uri = registry.load()["versions"][0]["baseline"]["constraints"]["uri"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b'{"features": []}')

    with pytest.raises(ChecksumMismatchError, match=r"constraints\.json: sha256 is"):
        SageMakerRegistry(registry).read_baseline(GROUP, 1)


def test_a_baseline_the_exported_pipeline_registered_is_verified_by_its_step_manifests(registry):
    """The exported RegisterModel step sets no customer metadata: the baseline step's value
    manifests (kedro_value.json beside each file) vouch for the files' sha256."""
    files = baseline()
    quality = {
        source: {
            "ContentType": "application/json",
            "S3Uri": _step_output(
                "baseline", f"baseline_{part}", f"baseline_{part}.json", files[part]
            ),
        }
        for part, source in (("statistics", "Statistics"), ("constraints", "Constraints"))
    }
    _register_like_the_exported_pipeline(b"archive one")
    sagemaker = boto3.client("sagemaker")
    arn = sagemaker.list_model_packages(ModelPackageGroupName=GROUP)["ModelPackageSummaryList"]
    # moto cannot update a package's baselines: register the step's request once more with them.
    package = sagemaker.describe_model_package(ModelPackageName=arn[0]["ModelPackageArn"])
    sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        InferenceSpecification=package["InferenceSpecification"],
        DriftCheckBaselines={"ModelDataQuality": quality},
        ModelMetrics={**package["ModelMetrics"], "ModelDataQuality": quality},
    )

    version = registry.load()["versions"][1]

    assert version["baseline"]["constraints"]["sha256"] == _sha(files["constraints"])
    assert version["baseline"]["constraints"]["sha256_source"].startswith("pipeline step")
    assert SageMakerRegistry(registry).read_baseline(GROUP, 2) == files


# ---- data capture and the monitoring schedule ---------------------------------------------------


def _endpoint(**settings) -> SageMakerEndpointDataset:
    return SageMakerEndpointDataset(
        execution_role_arn=ROLE,
        region="eu-west-1",
        image_uri=IMAGE,
        **{"data_capture": CAPTURE, "monitoring": MONITORING, **settings},
    )


def _deploy(registry, endpoint: SageMakerEndpointDataset) -> dict:
    request = select_deployment(registry.load(), True, {"name": ENDPOINT})
    endpoint.save(request)
    return request


def _definition(schedules: MonitoringSchedules) -> dict:
    config = schedules.schedules[schedule_name(ENDPOINT)]["MonitoringScheduleConfig"]
    return boto3.client("sagemaker").describe_data_quality_job_definition(
        JobDefinitionName=config["MonitoringJobDefinitionName"]
    )


def test_capture_and_a_baseline_make_an_hourly_data_quality_schedule(
    registry, schedules, monkeypatch
):
    registry.save(registration(b"archive one"))
    looked_up = []

    def stock_image(image_uri, framework, version, region):
        looked_up.append((image_uri, framework, region))
        return ANALYZER

    # Without image_uri, the region's model-monitor analyzer from sagemaker.core.image_uris.
    monkeypatch.setattr(
        "predictive_maintenance.serving.sagemaker_endpoint.resolve_image_uri", stock_image
    )
    request = _deploy(registry, _endpoint(monitoring={**MONITORING, "image_uri": None}))

    sagemaker = boto3.client("sagemaker")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    assert config["DataCaptureConfig"] == {
        "EnableCapture": True,
        "InitialSamplingPercentage": 25,
        "DestinationS3Uri": CAPTURE["destination"],
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
    }
    schedule = schedules.schedules[schedule_name(ENDPOINT)]["MonitoringScheduleConfig"]
    assert schedule["ScheduleConfig"] == {"ScheduleExpression": "cron(0 * ? * * *)"}
    assert schedule["MonitoringType"] == "DataQuality"
    definition = _definition(schedules)
    assert definition["DataQualityBaselineConfig"] == {
        "ConstraintsResource": {"S3Uri": request["model_baseline"]["constraints"]["uri"]},
        "StatisticsResource": {"S3Uri": request["model_baseline"]["statistics"]["uri"]},
    }
    app = definition["DataQualityAppSpecification"]
    assert app["ImageUri"] == ANALYZER
    assert (None, "model-monitor", "eu-west-1") in looked_up
    assert _s3_bytes(app["RecordPreprocessorSourceUri"]) == render_preprocessor()
    assert definition["DataQualityJobInput"]["EndpointInput"]["EndpointName"] == ENDPOINT
    assert definition["RoleArn"] == ROLE


def test_a_redeploy_points_the_schedule_at_the_new_baseline_and_capture_off_deletes_it(
    registry, schedules, caplog
):
    caplog.set_level(logging.INFO, logger="predictive_maintenance")
    registry.save(registration(b"archive one"))
    _deploy(registry, _endpoint())
    first = _definition(schedules)["JobDefinitionName"]
    registry.save(registration(b"archive two", mean=310.0))

    second_request = _deploy(registry, _endpoint())
    second = _definition(schedules)
    _deploy(registry, _endpoint())  # the same again: nothing changes
    operations = [operation for operation, _ in schedules.requests]
    _deploy(registry, _endpoint(data_capture={**CAPTURE, "enabled": False}))

    assert second["JobDefinitionName"] != first
    assert (
        second["DataQualityBaselineConfig"]["StatisticsResource"]["S3Uri"]
        == (second_request["model_baseline"]["statistics"]["uri"])
    )
    assert operations.count("CreateMonitoringSchedule") == 1
    assert operations.count("UpdateMonitoringSchedule") == 1
    assert schedules.schedules == {}
    definitions = boto3.client("sagemaker").list_data_quality_job_definitions()
    assert definitions["JobDefinitionSummaries"] == []
    config = boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)
    assert not config.get("DataCaptureConfig", {}).get("EnableCapture")
    messages = [record.getMessage() for record in caplog.records]
    assert f"Deleted monitoring schedule {schedule_name(ENDPOINT)}: data capture is off" in (
        " ".join(messages)
    )


def test_a_version_without_baseline_gets_no_schedule_and_a_warning(registry, schedules, caplog):
    registry.save(registration(b"archive one", baseline=None))

    with caplog.at_level(logging.WARNING, logger="predictive_maintenance"):
        _deploy(registry, _endpoint())

    assert schedules.schedules == {}
    assert "has no data-quality baseline" in caplog.text
    assert boto3.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"]


def test_a_baseline_changed_after_registration_is_not_monitored_against(registry, schedules):
    registry.save(registration(b"archive one"))
    request = select_deployment(registry.load(), True, {"name": ENDPOINT})
    uri = request["model_baseline"]["statistics"]["uri"]
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"{}")

    with pytest.raises(DatasetError, match="baseline that changed after registration"):
        _endpoint().save(request)

    assert schedules.schedules == {}


def test_cleanup_deletes_the_schedule_and_its_job_definitions(registry, schedules):
    registry.save(registration(b"archive one"))
    _deploy(registry, _endpoint())

    deleted = delete_monitoring(boto3.client("sagemaker"), ENDPOINT)

    assert deleted[0] == f"monitoring schedule {schedule_name(ENDPOINT)}"
    assert deleted[1].startswith(f"data-quality job definition {ENDPOINT}-dq-")
    assert schedules.schedules == {}


def test_schedule_requests_are_validated_by_botocore(schedules):
    sagemaker = boto3.client("sagemaker")

    with pytest.raises(ParamValidationError, match="MonitoringScheduleConfig"):
        sagemaker.create_monitoring_schedule(MonitoringScheduleName="x")
    with pytest.raises(ParamValidationError, match="ScheduleExpression"):
        sagemaker.create_monitoring_schedule(
            MonitoringScheduleName="x",
            MonitoringScheduleConfig={"ScheduleConfig": {"ScheduleExpression": 3600}},
        )

    assert schedules.requests == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"data_capture": {**CAPTURE, "sampling_percentage": 120}}, "a percentage, 0-100"),
        ({"data_capture": {**CAPTURE, "destination": "bucket/x"}}, "not an s3://bucket"),
        ({"monitoring": {**MONITORING, "schedule_cron": "hourly"}}, "not a SageMaker schedule"),
        ({"monitoring": {**MONITORING, "cron": "x"}}, r"monitoring: unknown keys \['cron'\]"),
    ],
)
def test_bad_capture_or_monitoring_settings_are_named(settings, message):
    with pytest.raises(DatasetError, match=message):
        _endpoint(**settings)


# ---- the record preprocessor the analyzer runs ---------------------------------------------------
def _preprocess(endpoint_input: dict) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(render_preprocessor(), "preprocessor.py", "exec"), namespace)
    record = {"captureData": {"endpointInput": endpoint_input}, "eventVersion": "0"}
    return namespace["preprocess_handler"](record)


def test_the_preprocessor_names_the_readings_of_csv_json_and_base64_records():
    row = ["L", "298.1", "308.6", "1551", "42.8", "0"]
    csv = {"observedContentType": "text/csv", "data": ",".join(row), "encoding": "CSV"}
    instances = {"instances": [dict(zip(READING_COLUMNS, row, strict=True))] * 2}
    as_json = {
        "observedContentType": "application/json",
        "data": json.dumps(instances),
        "encoding": "JSON",
    }
    as_base64 = {
        "observedContentType": "text/plain",
        "data": base64.b64encode(",".join(row).encode()).decode(),
        "encoding": "BASE64",
    }

    assert _preprocess(csv) == dict(zip(READING_COLUMNS, row, strict=True))
    assert _preprocess(as_json) == instances["instances"]
    assert _preprocess(as_base64) == dict(zip(READING_COLUMNS, row, strict=True))
