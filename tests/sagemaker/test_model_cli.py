"""``kedro model ... --env sagemaker`` acts on the SageMaker Model Registry (moto)."""

from __future__ import annotations

import json

import boto3
import pytest

from predictive_maintenance.registry.sagemaker_datasets import SageMakerModelRegistryDataset
from tests.sagemaker.conftest import BUCKET
from tests.support.cli import invoke
from tests.support.project import copy_project

GROUP = "predictive-maintenance"
METRICS = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.91}}


@pytest.fixture
def project(aws, tmp_path, monkeypatch):
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    registry = SageMakerModelRegistryDataset(
        group=GROUP,
        artifact_uri=f"s3://{BUCKET}/predictive-maintenance/model-registry",
        region="eu-west-1",
    )
    for index in range(2):
        registry.save(
            {
                "archive": f"archive {index}".encode(),
                "metrics": METRICS,
                "lineage": {"raw_data_sha256": "ab" * 32},
                "approval_status": "PendingManualApproval",
                "description": f"model {index + 1}",
            }
        )
    return project


@pytest.fixture
def kedro(monkeypatch):
    """``kedro ARGS`` in-process in a project (:func:`tests.support.cli.invoke`)."""
    return lambda project, *args: invoke(project, monkeypatch, *args)


def test_list_shows_the_sagemaker_versions(project, kedro):
    result = kedro(project, "model", "list", "--env", "sagemaker")

    assert result.exit_code == 0, result.output
    assert "SageMaker Model Registry" in result.output
    rows = [line.split() for line in result.output.splitlines() if line.strip()[:1].isdigit()]
    assert [(row[0], row[1]) for row in rows] == [
        ("1", "PendingManualApproval"),
        ("2", "PendingManualApproval"),
    ]
    assert all("0.9100" in row for row in rows)


def test_approve_updates_the_model_package_and_show_verifies_the_archive(project, kedro):
    approved = kedro(project, "model", "approve", "2", "--note", "reviewed", "--env", "sagemaker")
    shown = kedro(project, "model", "show", "2", "--json", "--env", "sagemaker")

    assert approved.exit_code == 0, approved.output
    assert "PendingManualApproval -> Approved" in approved.output
    packages = boto3.client("sagemaker").list_model_packages(ModelPackageGroupName=GROUP)
    statuses = {
        p["ModelPackageVersion"]: p["ModelApprovalStatus"]
        for p in packages["ModelPackageSummaryList"]
    }
    assert statuses == {1: "PendingManualApproval", 2: "Approved"}
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output[shown.output.index("{") :])["metrics"] == METRICS


def test_unknown_version_and_other_group_are_errors(project, kedro):
    missing = kedro(project, "model", "approve", "9", "--env", "sagemaker")
    other = kedro(project, "model", "list", "--group", "other", "--env", "sagemaker")

    assert missing.exit_code == 1
    assert "no version 9" in missing.output
    assert other.exit_code == 1
    assert "not 'other'" in other.output
