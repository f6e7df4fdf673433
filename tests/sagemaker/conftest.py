"""Fixtures for the SageMaker bridge: moto in server mode as the AWS endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest

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
