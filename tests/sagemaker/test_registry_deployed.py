"""The SageMaker Model Registry (moto): unchanged archives, and ``kedro model`` on what is deployed.

``SageMakerModelRegistryDataset.save`` does not register an archive byte-identical to the newest
version's; ``kedro model list --env sagemaker`` shows which version the SageMaker endpoint serves
and flags archives that changed or vanished in S3; rejecting the served version warns.
"""

from __future__ import annotations

import logging
from pathlib import Path

import boto3
import pytest

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.pipelines.deployment.nodes import select_deployment
from predictive_maintenance.registry.sagemaker_datasets import SageMakerModelRegistryDataset
from predictive_maintenance.serving.sagemaker_endpoint import SageMakerEndpointDataset
from tests.sagemaker.conftest import BUCKET
from tests.support.cli import invoke
from tests.support.project import copy_project

GROUP = "predictive-maintenance"
ENDPOINT = "predictive-maintenance"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
#: Where conf/sagemaker/catalog.yml puts the artifacts (globals: bucket, prefix).
ARTIFACTS = f"s3://{BUCKET}/predictive-maintenance/model-registry"


def registration(archive: bytes, **changes) -> dict:
    return {
        "archive": archive,
        "metrics": {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.91}},
        "lineage": {"raw_data_sha256": "ab" * 32},
        "approval_status": "PendingManualApproval",
        "description": "test model",
        **changes,
    }


@pytest.fixture
def registry(aws) -> SageMakerModelRegistryDataset:
    return SageMakerModelRegistryDataset(group=GROUP, artifact_uri=ARTIFACTS, region="eu-west-1")


def packages() -> list[tuple[int, str]]:
    listed = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)
    return sorted(
        (p["ModelPackageVersion"], p["ModelApprovalStatus"])
        for p in listed["ModelPackageSummaryList"]
    )


def test_an_unchanged_archive_is_not_registered_again(registry, caplog):
    caplog.set_level(logging.INFO, logger="predictive_maintenance.registry")

    registry.save(registration(b"model one"))
    registry.save(registration(b"model one", approval_status="Approved"))
    registry.save(registration(b"model one", register_duplicates=True))
    registry.save(registration(b"model two", approval_status="Approved"))

    assert packages() == [
        (1, "PendingManualApproval"),
        (2, "PendingManualApproval"),
        (3, "Approved"),
    ]
    assert [m.getMessage() for m in caplog.records if m.name.endswith(".registry.datasets")] == [
        f"registered model version 1 of {GROUP} (PendingManualApproval)",
        f"model unchanged, version 1 of {GROUP} (PendingManualApproval): same archive sha256 "
        f"{sha256_hex(b'model one')[:12]}, not registered again; approve it with "
        "`kedro model approve 1`",
        f"registered model version 2 of {GROUP} (PendingManualApproval)",
        f"registered model version 3 of {GROUP} (Approved)",
    ]


@pytest.fixture
def project(registry, tmp_path, monkeypatch):
    """A project copy; versions 1 (Approved, deployed to the SageMaker endpoint) and 2."""
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    registry.save(registration(b"archive 1", approval_status="Approved"))
    registry.save(registration(b"archive 2"))
    SageMakerEndpointDataset(execution_role_arn=ROLE, region="eu-west-1", wait=False).save(
        select_deployment(registry.load(), True, {"name": ENDPOINT})
    )
    return project


@pytest.fixture
def kedro(project: Path, monkeypatch: pytest.MonkeyPatch):
    def run(*args: str):
        return invoke(project, monkeypatch, *args, "--env", "sagemaker", catch_exceptions=True)

    return run


def test_list_shows_the_version_the_sagemaker_endpoint_serves(kedro, project):
    s3 = boto3.client("s3")
    key = f"predictive-maintenance/model-registry/{GROUP}"
    s3.put_object(
        Bucket=BUCKET, Key=f"{key}/{sha256_hex(b'archive 2')}/model.tar.gz", Body=b"changed"
    )

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line[:7].strip().isdigit()]
    assert [(row[0], row[9:]) for row in rows] == [  # ARCHIVE and on
        ("1", ["ok", "-", "serving", f"({ENDPOINT})"]),
        ("2", ["CHANGED", "-"]),
    ]
    assert result.stdout.splitlines()[-1] == (
        f"Endpoint {ENDPOINT} serves version 1 (SageMaker endpoint in eu-west-1, InService, "
        f"config {ENDPOINT}-v1-{sha256_hex(b'archive 1')[:8]})."
    )
    assert "Warning: version 2's archive s3://" in result.stderr


def test_list_survives_a_deleted_archive(kedro, project):
    boto3.client("s3").delete_object(
        Bucket=BUCKET,
        Key=f"predictive-maintenance/model-registry/{GROUP}/{sha256_hex(b'archive 1')}/"
        "model.tar.gz",
    )

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line[:7].strip().isdigit()]
    assert [row[9] for row in rows] == ["MISSING", "ok"]
    assert "is missing" in result.stderr


def test_rejecting_the_served_version_warns(kedro, project):
    result = kedro("model", "reject", "1")

    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"Warning: version 1 is deployed to endpoint {ENDPOINT} (SageMaker endpoint in "
        f"eu-west-1, InService, config {ENDPOINT}-v1-{sha256_hex(b'archive 1')[:8]}) and keeps "
        "serving until the next deployment; no version is Approved, so the next deployment "
        "leaves it as it is: approve another version, then "
        "`kedro run --nodes deploy.select_deployment --env sagemaker`."
    )
