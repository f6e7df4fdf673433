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


def _request(version: int, sha: str) -> dict:
    return {
        "endpoint_name": "predictive-maintenance",
        "model_group": GROUP,
        "model_version": version,
        "model_archive": f"s3://{BUCKET}/pm/model-registry/{GROUP}/{sha}/model.tar.gz",
        "model_archive_sha256": sha,
    }


def test_first_deploy_creates_then_a_new_version_updates_blue_green(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    sagemaker = boto3.client("sagemaker")

    endpoint.save(_request(1, "1" * 64))
    first = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    endpoint.save(_request(2, "2" * 64))
    second = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")

    assert first["EndpointConfigName"] == "predictive-maintenance-v1-11111111"
    assert second["EndpointConfigName"] == "predictive-maintenance-v2-22222222"
    assert second["EndpointStatus"] == "InService"
    model = sagemaker.describe_model(ModelName="predictive-maintenance-v2-22222222")
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith(f"/{'2' * 64}/model.tar.gz")
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Environment"]["MODEL_VERSION"] == "2"
    assert endpoint.load()["endpoint_config"] == "predictive-maintenance-v2-22222222"


def test_redeploying_the_same_version_changes_nothing(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    endpoint.save(_request(1, "1" * 64))
    before = boto3.client("sagemaker").describe_endpoint(EndpointName="predictive-maintenance")

    endpoint.save(_request(1, "1" * 64))

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
    endpoint.save(_request(1, "1" * 64))
    endpoint.save(_request(2, "2" * 64))
    created = sagemaker.describe_model(ModelName="predictive-maintenance-v1-11111111")[
        "CreationTime"
    ]

    endpoint.save(_request(1, "1" * 64))

    described = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    assert described["EndpointConfigName"] == "predictive-maintenance-v1-11111111"
    model = sagemaker.describe_model(ModelName="predictive-maintenance-v1-11111111")
    assert model["CreationTime"] == created
    assert len(sagemaker.list_models()["Models"]) == 2


def test_a_model_name_taken_by_other_data_is_refused(aws):
    endpoint = SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1")
    endpoint.save(_request(1, "1" * 64))
    other = {**_request(1, "1" * 64), "model_archive": f"s3://{BUCKET}/elsewhere/model.tar.gz"}
    boto3.client("sagemaker").delete_endpoint(EndpointName="predictive-maintenance")

    with pytest.raises(Exception, match="exists with ModelDataUrl"):
        endpoint.save(other)
