"""``kedro model`` on the SageMaker Model Registry (the ``sagemaker`` config environment).

:class:`SageMakerRegistry` offers the operations the CLI uses on :class:`LocalModelRegistry`
(``list_versions``, ``get``, ``update_approval``, ``read_archive``, ``archive_path``,
``read_baseline``, ``baseline_path``; each version with its model card), backed by
the catalog's :class:`~.sagemaker_datasets.SageMakerModelRegistryDataset`
and the artifacts it stored in S3. SageMaker keeps the current approval status and its last
description, not a history, so the history shown is that one entry. :func:`deployed_model` says
which model a SageMaker endpoint serves.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.exceptions import ClientError

from predictive_maintenance.integrity import ChecksumMismatchError, verify_sha256
from predictive_maintenance.registry.local import (
    ModelNotFoundError,
    ModelVersion,
    validate_approval_status,
)
from predictive_maintenance.registry.sagemaker_datasets import (
    SageMakerModelRegistryDataset,
    _is_not_found,
)
from predictive_maintenance.sagemaker.aws import client
from predictive_maintenance.serving.contract import MODEL_VERSION_ENV

logger = logging.getLogger(__name__)

_MISSING = {"NoSuchKey", "404", "NotFound"}


def _s3_location(uri: str) -> dict[str, str]:
    parts = urlsplit(uri)
    return {"Bucket": parts.netloc, "Key": parts.path.lstrip("/")}


def _s3_error(uri: str, error: ClientError) -> OSError:
    """An S3 failure as the OSError the CLI reports (FileNotFoundError for a missing object)."""
    if error.response.get("Error", {}).get("Code") in _MISSING:
        return FileNotFoundError(f"{uri} does not exist")
    return OSError(f"cannot read {uri}: {error}")


def _s3_object(uri: str) -> bytes:
    try:
        return boto3.client("s3").get_object(**_s3_location(uri))["Body"].read()
    except ClientError as error:
        raise _s3_error(uri, error) from None


def _s3_size(uri: str) -> int:
    """The object's size in bytes, or 0 if it cannot be read (the listing flags it)."""
    try:
        return boto3.client("s3").head_object(**_s3_location(uri))["ContentLength"]
    except ClientError:
        return 0


def _metrics(uri: str) -> dict[str, Any]:
    """The version's metrics, or none if they cannot be read (the listing shows "-")."""
    try:
        metrics = json.loads(_s3_object(uri))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _model_card(item: dict[str, str] | None, version: int) -> dict[str, Any]:
    """The version's model card, checked against the sha256 its customer metadata records; none
    (the listing shows "-") when it has none or the card cannot be read or was changed."""
    if not item:
        return {}
    try:
        data = _s3_object(item["uri"])
        verify_sha256(data, item["sha256"], item["uri"])
        card = json.loads(data)
    except (OSError, ValueError) as error:  # ChecksumMismatchError is a ValueError
        logger.warning("version %s: its model card is not shown: %s", version, error)
        return {}
    return card if isinstance(card, dict) else {}


def deployed_model(endpoint_name: str, region: str | None = None) -> dict[str, Any] | None:
    """What the SageMaker endpoint serves: ``status``, ``model_version`` (the model's
    ``MODEL_VERSION``, None if it has none), ``model_archive`` and ``endpoint_config``; None if
    there is no such endpoint.
    """
    sagemaker = client("sagemaker", region)
    try:
        endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        config = sagemaker.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    except ClientError as error:
        if _is_not_found(error):
            return None
        raise
    container = model.get("PrimaryContainer") or {}
    version = str((container.get("Environment") or {}).get(MODEL_VERSION_ENV, ""))
    return {
        "status": endpoint["EndpointStatus"],
        "endpoint_config": endpoint["EndpointConfigName"],
        "model_version": int(version) if version.isdigit() else None,
        "model_archive": container.get("ModelDataUrl"),
    }


class SageMakerRegistry:
    """The SageMaker model package group of a ``SageMakerModelRegistryDataset``."""

    def __init__(self, dataset: SageMakerModelRegistryDataset) -> None:
        self._dataset = dataset
        self.group = dataset.group
        self.root = f"SageMaker Model Registry, artifacts in {dataset.artifact_uri}"

    def _check_group(self, group: str) -> None:
        if group != self.group:
            raise ModelNotFoundError(
                f"the catalog's SageMaker registry holds group {self.group!r}, not {group!r}"
            )

    def _entries(self, group: str) -> list[dict[str, Any]]:
        self._check_group(group)
        return self._dataset.load()["versions"]

    def _version(self, entry: dict[str, Any]) -> ModelVersion:
        # The package's ModelMetrics; this project's registration also puts them beside the archive.
        folder = entry["archive_uri"].rsplit("/", 1)[0]
        return ModelVersion(
            group=self.group,
            version=entry["version"],
            created_at=entry["created_at"],
            archive_sha256=entry["archive_sha256"] or "",
            archive_size=_s3_size(entry["archive_uri"]),
            metrics=_metrics(entry.get("metrics_uri") or f"{folder}/metrics.json"),
            lineage=dict(entry["lineage"]),
            description=entry["description"],
            approval_status=entry["approval_status"],
            approval_history=[
                {"status": entry["approval_status"], "at": entry["created_at"], "by": None}
            ],
            baseline={
                part: {"uri": item["uri"], "sha256": item["sha256"] or ""}
                for part, item in (entry.get("baseline") or {}).items()
            },
            model_card=_model_card(entry.get("model_card"), entry["version"]),
        )

    def list_versions(self, group: str) -> list[ModelVersion]:
        return [self._version(entry) for entry in self._entries(group)]

    def _entry(self, group: str, version: int) -> dict[str, Any]:
        for entry in self._entries(group):
            if entry["version"] == version:
                return entry
        raise ModelNotFoundError(f"model package group {group} has no version {version}")

    def get(self, group: str, version: int) -> ModelVersion:
        return self._version(self._entry(group, version))

    def archive_path(self, group: str, version: int) -> str:
        return self._entry(group, version)["archive_uri"]

    def read_archive(self, group: str, version: int) -> bytes:
        entry = self._entry(group, version)
        if not entry["archive_sha256"]:
            raise ChecksumMismatchError(
                f"{entry['archive_uri']}: nothing records the sha256 of version {version}'s "
                "archive (no archive_sha256 customer metadata, content-addressed path or pipeline "
                "step manifest), so its integrity cannot be checked"
            )
        archive = _s3_object(entry["archive_uri"])
        verify_sha256(archive, entry["archive_sha256"], entry["archive_uri"])
        return archive

    def baseline_path(self, group: str, version: int, part: str) -> str:
        """The S3 URI of a baseline file of the version."""
        baseline = self._entry(group, version).get("baseline") or {}
        if part not in baseline:
            raise ModelNotFoundError(f"version {version} of {group} has no baseline {part}")
        return baseline[part]["uri"]

    def read_baseline(self, group: str, version: int) -> dict[str, bytes]:
        """The version's baseline files (part -> bytes), ``{}`` if it has none, each verified
        against the sha256 a record of the package states for it."""
        files = {}
        for part, item in (self._entry(group, version).get("baseline") or {}).items():
            if not item["sha256"]:
                raise ChecksumMismatchError(
                    f"{item['uri']}: nothing records the sha256 of version {version}'s baseline "
                    f"{part} (no customer metadata, content-addressed path or pipeline step "
                    "manifest), so its integrity cannot be checked"
                )
            data = _s3_object(item["uri"])
            verify_sha256(data, item["sha256"], item["uri"])
            files[part] = data
        return files

    def update_approval(
        self, group: str, version: int, status: str, *, note: str = "", by: str | None = None
    ) -> ModelVersion:
        validate_approval_status(status)
        self._entry(group, version)
        description = f"{note} (by {by})" if by and note else note or (f"by {by}" if by else "")
        self._dataset.update_approval(version, status, note=description)
        return self.get(group, version)
