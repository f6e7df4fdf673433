"""Fixtures for the SageMaker bridge: moto in server mode as the AWS endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from kedro.pipeline import Node, Pipeline

from tests.sagemaker import runner_nodes
from tests.support.aws import REGION, aws_environment, moto_server, reset

BUCKET = "predictive-maintenance-artifacts"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url, monkeypatch) -> str:
    """A clean moto with the artifact bucket; boto3 in this process points at it."""
    reset(moto_url)
    for name, value in aws_environment(moto_url).items():
        monkeypatch.setenv(name, value)
    boto3.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return moto_url


def scale_and_total() -> Pipeline:
    """``scale`` as a training job (tagged), then ``total`` in-process. Kept out of
    runner_nodes.py, which jobs import on the image (no Kedro there unless shipped)."""
    return Pipeline(
        [
            Node(
                runner_nodes.scale,
                ["readings", "params:factor"],
                "scaled",
                name="scale",
                tags="training_job",
            ),
            Node(runner_nodes.total, "scaled", "total", name="total"),
        ]
    )
