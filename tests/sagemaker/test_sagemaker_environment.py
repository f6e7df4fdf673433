"""`kedro run --env sagemaker`: the same pipelines register and deploy in SageMaker (moto)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import pytest

from tests.sagemaker.conftest import BUCKET
from tests.support.aws import aws_environment
from tests.support.cli import kedro

pytestmark = pytest.mark.slow


def kedro_run(project: Path, moto_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return kedro(project, "run", "--env", "sagemaker", *args, env=aws_environment(moto_url))


def test_kedro_run_registers_in_sagemaker_and_updates_the_endpoint(aws, finished_run, tmp_path):
    # The sagemaker environment changes only the registry and the endpoint (conf/sagemaker): the
    # deployment pipeline on a trained project is what differs from a local `kedro run`.
    project = finished_run.copy(tmp_path / "project")
    approve = "registration.approval_status=Approved"
    # Each run packages the same archive: it is registered again only when asked to.
    again = "registration.register_duplicates=true"

    first = kedro_run(project, aws, "--pipelines", "deployment", "--params", approve)
    second = kedro_run(project, aws, "--pipelines", "deployment", "--params", f"{approve},{again}")
    # A pending version: the newest Approved one (2) is deployed again, which changes nothing.
    third = kedro_run(project, aws, "--pipelines", "deployment", "--params", again)

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


def test_pending_models_are_registered_but_not_deployed(aws, finished_run, tmp_path):
    """The model trained by the session's `kedro run`, through the deployment pipeline."""
    project = finished_run.copy(tmp_path / "project")

    result = kedro_run(project, aws, "--pipelines", "deployment")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sagemaker = boto3.client("sagemaker")
    packages = sagemaker.list_model_packages(ModelPackageGroupName="predictive-maintenance")
    assert [p["ModelApprovalStatus"] for p in packages["ModelPackageSummaryList"]] == [
        "PendingManualApproval"
    ]
    assert sagemaker.list_endpoints()["Endpoints"] == []
