"""The SageMaker Model Registry and endpoint datasets against moto in server mode."""

from __future__ import annotations

import hashlib
import json

import boto3
import pytest

from predictive_maintenance.sagemaker.deployment import (
    SageMakerEndpointDataset,
    SageMakerModelRegistryDataset,
)
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
