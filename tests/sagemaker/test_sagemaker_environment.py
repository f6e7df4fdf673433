"""`kedro run --env sagemaker`: the same pipelines register and deploy in SageMaker (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from tests.conftest import copy_project
from tests.sagemaker.conftest import BUCKET
from tests.support.aws import aws_environment

pytestmark = pytest.mark.slow

KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_run(project: Path, moto_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **aws_environment(moto_url), "KEDRO_DISABLE_TELEMETRY": "true"}
    return subprocess.run(
        [KEDRO, "run", "--env", "sagemaker", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_kedro_run_registers_in_sagemaker_and_updates_the_endpoint(aws, tmp_path):
    project = copy_project(tmp_path / "project")
    approve = ("--params", "registration.approval_status=Approved")

    first = kedro_run(project, aws, *approve)
    second = kedro_run(project, aws, "--pipeline", "deployment", *approve)
    # A pending version: the newest Approved one (2) is deployed again, which changes nothing.
    third = kedro_run(project, aws, "--pipeline", "deployment")

    for result in (first, second, third):
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sagemaker = boto3.client("sagemaker")
    packages = sagemaker.list_model_packages(ModelPackageGroupName="predictive-maintenance")
    summaries = sorted(packages["ModelPackageSummaryList"], key=lambda p: p["ModelPackageVersion"])
    assert [(p["ModelPackageVersion"], p["ModelApprovalStatus"]) for p in summaries] == [
        (1, "Approved"),
        (2, "Approved"),
        (3, "PendingManualApproval"),
    ]
    endpoint = sagemaker.describe_endpoint(EndpointName="predictive-maintenance")
    assert endpoint["EndpointConfigName"].startswith("predictive-maintenance-v2-")
    assert endpoint["EndpointStatus"] == "InService"
    keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]]
    # Both runs package the same model: one content-addressed archive, registered twice.
    assert len([key for key in keys if key.endswith("/model.tar.gz")]) == 1
    # Nothing was deployed to the local endpoint.
    assert not (project / "data/11_endpoints/predictive-maintenance.json").exists()


def test_pending_models_are_registered_but_not_deployed(aws, tmp_path):
    project = copy_project(tmp_path / "project")

    result = kedro_run(project, aws)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sagemaker = boto3.client("sagemaker")
    packages = sagemaker.list_model_packages(ModelPackageGroupName="predictive-maintenance")
    assert [p["ModelApprovalStatus"] for p in packages["ModelPackageSummaryList"]] == [
        "PendingManualApproval"
    ]
    assert sagemaker.list_endpoints()["Endpoints"] == []
