"""The SageMaker Model Registry and endpoint datasets against moto in server mode."""

from __future__ import annotations

import hashlib
import json
import logging

import boto3
import pytest
from kedro.io import DatasetError

from predictive_maintenance.integrity import ChecksumMismatchError
from predictive_maintenance.pipelines.deployment.nodes import select_deployment
from predictive_maintenance.registry.sagemaker import SageMakerRegistry
from predictive_maintenance.registry.sagemaker_datasets import (
    FROM_STEP_MANIFEST,
    SageMakerModelRegistryDataset,
)
from predictive_maintenance.sagemaker.job import VALUE_MANIFEST
from predictive_maintenance.serving.sagemaker_endpoint import SageMakerEndpointDataset
from tests.sagemaker.conftest import BUCKET

ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
GROUP = "predictive-maintenance"


def registration(archive: bytes, status: str = "PendingManualApproval") -> dict:
    return {
        "archive": archive,
        "metrics": {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.91}},
        "lineage": {
            "raw_data_sha256": "ab" * 32,
            "decision_threshold": 0.53,
            "parameters": {"eta": 0.1},
        },
        "approval_status": status,
        "description": "test model",
    }


@pytest.fixture
def registry(aws) -> SageMakerModelRegistryDataset:
    return SageMakerModelRegistryDataset(
        group=GROUP, artifact_uri=f"s3://{BUCKET}/pm/model-registry", region="eu-west-1"
    )


def test_registering_creates_group_versions_and_immutable_artifacts(registry):
    registry.save(registration(b"first archive"))
    registry.save(registration(b"second archive", status="Approved"))

    state = registry.load()

    assert [v["version"] for v in state["versions"]] == [1, 2]
    assert [v["approval_status"] for v in state["versions"]] == [
        "PendingManualApproval",
        "Approved",
    ]
    second = state["versions"][1]
    digest = hashlib.sha256(b"second archive").hexdigest()
    assert second["archive_sha256"] == digest
    assert second["archive_uri"] == f"s3://{BUCKET}/pm/model-registry/{GROUP}/{digest}/model.tar.gz"
    s3 = boto3.client("s3")
    stored = s3.get_object(Bucket=BUCKET, Key=f"pm/model-registry/{GROUP}/{digest}/model.tar.gz")
    assert stored["Body"].read() == b"second archive"
    metrics = s3.get_object(Bucket=BUCKET, Key=f"pm/model-registry/{GROUP}/{digest}/metrics.json")
    assert json.loads(metrics["Body"].read())["roc_auc"] == 0.98
    package = boto3.client("sagemaker").describe_model_package(
        ModelPackageName=second["model_package_arn"]
    )
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"].endswith("/sagemaker-xgboost:3.0-5")
    assert container["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    assert package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"].endswith("/metrics.json")
    # Only scalar lineage fits SageMaker's string metadata map; nested values stay in S3.
    assert package["CustomerMetadataProperties"]["raw_data_sha256"] == "ab" * 32
    assert "parameters" not in package["CustomerMetadataProperties"]


def test_empty_group_loads_as_no_versions(registry):
    assert registry.load() == {"group": GROUP, "versions": []}


def test_approval_updates_the_model_package(registry):
    registry.save(registration(b"archive"))

    registry.update_approval(1, "Approved", note="looks good")

    assert registry.load()["versions"][0]["approval_status"] == "Approved"


def test_approving_an_unknown_version_names_it(registry):
    with pytest.raises(Exception, match="no version 7"):
        registry.update_approval(7, "Approved")


ONE, TWO = b"archive one", b"archive two"


def _sha(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _name(version: int, payload: bytes) -> str:
    return f"predictive-maintenance-v{version}-{_sha(payload)[:8]}"


def _upload(key: str, payload: bytes) -> str:
    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=payload)
    return f"s3://{BUCKET}/{key}"


def _request(version: int, payload: bytes) -> dict:
    """A deployment request for an artifact stored the way the registry stores it."""
    uri = _upload(f"pm/model-registry/{GROUP}/{_sha(payload)}/model.tar.gz", payload)
    return {
        "endpoint_name": "predictive-maintenance",
        "model_group": GROUP,
        "model_version": version,
        "model_archive": uri,
        "model_archive_sha256": _sha(payload),
    }


def test_first_deploy_creates_then_a_new_version_updates_blue_green(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    sagemaker = boto3.client("sagemaker")

    endpoint.save(_request(1, ONE))
    first = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    endpoint.save(_request(2, TWO))
    second = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")

    assert first["EndpointConfigName"] == _name(1, ONE)
    assert second["EndpointConfigName"] == _name(2, TWO)
    assert second["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName=_name(2, TWO))
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith(f"/{_sha(TWO)}/model.tar.gz")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"]["MODEL_VERSION"] == "2"
    assert endpoint.load()["endpoint_config"] == _name(2, TWO)


def test_redeploying_the_same_version_changes_nothing(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    endpoint.save(_request(1, ONE))
    before = boto3.client("sagemaker").describe_endpoint(EndpointName="predictive-maintenance")

    endpoint.save(_request(1, ONE))

    after = boto3.client("sagemaker").describe_endpoint(EndpointName="predictive-maintenance")
    assert after["LastModifiedTime"] == before["LastModifiedTime"]


def test_a_request_without_version_leaves_the_endpoint_alone(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")

    endpoint.save(
        {
            "endpoint_name": "predictive-maintenance",
            "model_group": GROUP,
            "model_version": None,
            "reason": "x",
        }
    )

    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []


def test_rolling_back_reuses_the_existing_model_and_config(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    sagemaker = boto3.client("sagemaker")
    endpoint.save(_request(1, ONE))
    endpoint.save(_request(2, TWO))
    created = sagemaker.describe_model(ModelName=_name(1, ONE))["CreationTime"]

    endpoint.save(_request(1, ONE))

    described = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    assert described["EndpointConfigName"] == _name(1, ONE)
    model = sagemaker.describe_model(ModelName=_name(1, ONE))
    assert model["CreationTime"] == created
    assert len(sagemaker.list_models()["Models"]) == 2


def test_a_model_name_taken_by_other_data_is_refused(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    endpoint.save(_request(1, ONE))
    other = {**_request(1, ONE), "model_archive": _upload("elsewhere/model.tar.gz", ONE)}
    boto3.client("sagemaker").delete_endpoint(EndpointName="predictive-maintenance")

    with pytest.raises(Exception, match="exists with ModelDataUrl"):
        endpoint.save(other)


def test_an_artifact_changed_after_registration_is_not_deployed(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    request = _request(1, ONE)
    _upload(request["model_archive"].split(f"{BUCKET}/", 1)[1], b"swapped behind our back")

    with pytest.raises(Exception, match="changed after registration"):
        endpoint.save(request)

    assert boto3.client("sagemaker").list_models()["Models"] == []


# ---- versions registered by an exported SageMaker Pipeline ------------------------------------
EXECUTION = f"s3://{BUCKET}/pm/pipeline/executions/a1b2c3d4e5f6"
METRICS = {"roc_auc": 0.97, "at_chosen_threshold": {"f1": 0.9}}


def _step_output(step: str, dataset: str, file: str, payload: bytes, *, manifest: bool = True):
    """Uploads a processing step's output as its job writes it: the value file and, beside it,
    the manifest naming the file with its codec and sha256. Returns the file's URI.
    """
    prefix = f"{EXECUTION}/{step}/{dataset}".split(f"{BUCKET}/", 1)[1]
    uri = _upload(f"{prefix}/{file}", payload)
    if manifest:
        record = {"dataset": dataset, "file": file, "codec": "bytes", "sha256": _sha(payload)}
        _upload(f"{prefix}/{VALUE_MANIFEST}", json.dumps(record).encode())
    return uri


def _register_like_the_exported_pipeline(archive: bytes, *, manifest: bool = True) -> str:
    """CreateModelPackage as the RegisterModel step (ModelBuilder.register) sends it: ModelDataUrl
    is the packaging step's output file, ModelMetrics the evaluation step's; no customer metadata.
    """
    archive_url = _step_output(
        "evaluate", "model_archive", "model.tar.gz", archive, manifest=manifest
    )
    metrics_url = _step_output("evaluate", "metrics", "metrics.json", json.dumps(METRICS).encode())
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)
    sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelPackageDescription="Registered by predictive-maintenance (kedro node "
        "register.register_model)",
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5",
                    "ModelDataUrl": archive_url,
                    "Environment": {
                        "SAGEMAKER_PROGRAM": "inference.py",
                        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                    },
                }
            ],
            "SupportedContentTypes": ["text/csv", "application/json"],
            "SupportedResponseMIMETypes": ["text/csv", "application/json"],
            "SupportedRealtimeInferenceInstanceTypes": ["ml.m5.large"],
            "SupportedTransformInstanceTypes": ["ml.m5.large"],
        },
        ModelMetrics={
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": metrics_url}
            }
        },
    )
    return archive_url


def _deployment_request(registry) -> dict:
    return select_deployment(registry.load(), True, {"name": "predictive-maintenance"})


def test_a_version_the_exported_pipeline_registered_deploys_verified(registry):
    archive_url = _register_like_the_exported_pipeline(ONE)
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    sagemaker = boto3.client("sagemaker")

    request = _deployment_request(registry)
    endpoint.save(request)

    (version,) = registry.load()["versions"]
    assert version["archive_sha256"] == _sha(ONE)
    assert version["archive_sha256_source"] == FROM_STEP_MANIFEST
    assert version["metrics_uri"] == f"{EXECUTION}/evaluate/metrics/metrics.json"
    assert request["model_archive_sha256"] == _sha(ONE)
    described = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    assert described["EndpointConfigName"] == _name(1, ONE)
    model = sagemaker.describe_model(ModelName=_name(1, ONE))
    assert model["PrimaryContainer"]["ModelDataUrl"] == archive_url


def test_kedro_model_reads_a_version_the_exported_pipeline_registered(registry):
    _register_like_the_exported_pipeline(ONE)
    models = SageMakerRegistry(registry)

    (version,) = models.list_versions(GROUP)

    assert (version.version, version.approval_status) == (1, "Approved")
    assert version.archive_sha256 == _sha(ONE)
    assert version.archive_size == len(ONE)
    assert version.metrics == METRICS
    assert models.read_archive(GROUP, 1) == ONE


def test_an_exported_pipeline_archive_changed_after_registration_is_not_deployed(registry):
    archive_url = _register_like_the_exported_pipeline(ONE)
    _upload(archive_url.split(f"{BUCKET}/", 1)[1], TWO)
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")

    with pytest.raises(DatasetError, match="changed after registration"):
        endpoint.save(_deployment_request(registry))
    with pytest.raises(ChecksumMismatchError):
        SageMakerRegistry(registry).read_archive(GROUP, 1)

    assert boto3.client("sagemaker").list_models()["Models"] == []


def _register_without_any_checksum(how: str) -> str:
    if how == "no manifest":
        return _register_like_the_exported_pipeline(ONE, manifest=False)
    archive_url = _register_like_the_exported_pipeline(ONE)
    # A manifest beside the archive that describes some other file does not vouch for it.
    other = json.dumps({"dataset": "x", "file": "other.bin", "codec": "bytes", "sha256": _sha(ONE)})
    _upload(archive_url.rsplit("/", 1)[0].split(f"{BUCKET}/", 1)[1] + f"/{VALUE_MANIFEST}", other)
    return archive_url


@pytest.mark.parametrize("how", ["no manifest", "manifest of another file"])
def test_a_version_nothing_records_a_checksum_for_is_refused(registry, how):
    _register_without_any_checksum(how)
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")

    request = _deployment_request(registry)
    with pytest.raises(DatasetError, match=f"version 1 of {GROUP} .* records no sha256"):
        endpoint.save(request)

    assert request["model_version"] == 1
    assert request["model_archive_sha256"] is None
    assert boto3.client("sagemaker").list_models()["Models"] == []
    assert boto3.client("sagemaker").list_endpoints()["Endpoints"] == []
    with pytest.raises(ChecksumMismatchError, match="nothing records the sha256"):
        SageMakerRegistry(registry).read_archive(GROUP, 1)


def test_an_unverified_archive_deploys_only_when_allowed_and_with_a_warning(registry, caplog):
    archive_url = _register_like_the_exported_pipeline(ONE, manifest=False)
    endpoint = SageMakerEndpointDataset(
        execution_role_arn=ROLE, region="eu-west-1", allow_unverified_archives=True
    )

    with caplog.at_level(
        logging.WARNING, logger="predictive_maintenance.serving.sagemaker_endpoint"
    ):
        endpoint.save(_deployment_request(registry))

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert f"version 1 of {GROUP} UNVERIFIED" in warnings[0]
    assert archive_url in warnings[0]
    assert _sha(ONE) in warnings[0]
    # Named after the bytes deployed, so a later change of the archive is a new model.
    described = boto3.client("sagemaker").describe_endpoint(EndpointName="predictive-maintenance")
    assert described["EndpointConfigName"] == _name(1, ONE)
