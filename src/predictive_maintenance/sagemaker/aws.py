"""boto3 clients, S3 URIs and image URIs, the way every part of the bridge uses them."""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config

#: Throttling and transient errors are retried with backoff (botocore's "standard" mode retries
#: ThrottlingException, TooManyRequestsException, 5xx and connection errors).
RETRY_CONFIG = Config(retries={"mode": "standard", "max_attempts": 10})


def client(service: str, region: str | None = None) -> Any:
    """A boto3 client with the bridge's retry policy; honours ``AWS_ENDPOINT_URL`` like boto3."""
    return boto3.client(service, region_name=region, config=RETRY_CONFIG)


def client_with_retries(service: str, region: str | None, attempts: int) -> Any:
    """A boto3 client that tries each call at most ``attempts`` times."""
    config = Config(retries={"mode": "standard", "total_max_attempts": attempts})
    return boto3.client(service, region_name=region, config=config)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/parts`` -> ``("bucket", "key/parts")``; ValueError for anything else."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/prefix URI")
    return parts.netloc, parts.path.strip("/")


def split_s3_prefix(uri: str) -> tuple[str, str]:
    """Like :func:`split_s3_uri`, keeping a trailing ``/``: ``.../a/`` must not match ``.../ab``."""
    bucket, _ = split_s3_uri(uri)
    return bucket, urlsplit(uri).path.lstrip("/")


def resolve_image_uri(
    image_uri: str | None, framework: str, version: str, region: str | None
) -> str:
    """``image_uri`` if given, else the stock SageMaker image of ``framework`` in the region.

    Looked up with ``sagemaker.core.image_uris`` (offline, from the SDK's bundled tables). The
    SDK import takes seconds and needs a region, so it happens here, on demand, once per process.
    """
    if image_uri:
        return image_uri
    return _stock_image_uri(framework, version, region or boto3.session.Session().region_name)


@cache
def _stock_image_uri(framework: str, version: str, region: str | None) -> str:
    from sagemaker.core import image_uris  # noqa: PLC0415 -- slow import, needs a region

    return image_uris.retrieve(framework, region=region, version=version)
