"""The SageMaker Model Registry as the deployment pipeline's ``model_registry`` dataset.

:class:`SageMakerModelRegistryDataset` is the drop-in replacement, in the ``sagemaker`` config
environment, for the local ``model_registry`` dataset: the same payloads go in and come out.
``save`` uploads ``model.tar.gz`` and its metrics to S3 (content-addressed by sha256, so a
registered artifact is never overwritten) and creates a model package version in a model package
group, unless the group's newest version records the same archive sha256 and baseline ("model
unchanged, version N"; ``register_duplicates`` in the registration forces a new version); ``load``
lists the group's versions. A registration's data-quality baseline (Model Monitor's
statistics.json and constraints.json) is uploaded next to the archive, each file under its own
sha256, and set as the package's ``DriftCheckBaselines.ModelDataQuality`` and
``ModelMetrics.ModelDataQuality``, as SageMaker's QualityCheckStep registration sets them. (Two
runs registering the same archive at the same moment may both register it: SageMaker has no lock
to compare and create under.)

The MLflow run that made a version (the registration's ``lineage.mlflow``) is recorded as the
customer metadata ``mlflow_run_id``, ``mlflow_experiment_id`` and ``mlflow_experiment``, and the
registration's ``tracking_run`` is tagged with the version and its model package ARN
(:mod:`~predictive_maintenance.registry.runs`).

A registration's model card (:mod:`predictive_maintenance.model_card`) becomes the package's
``ModelCard`` (the Model Package Model Card Schema's intended uses, evaluation details and
caveats; status ``Draft``), and the card itself is uploaded next to the archive under its own
sha256, which the customer metadata ``model_card_sha256`` records with the card's headline
figures (``model_card_f1``, ``model_card_ece``, ``model_card_modes_macro_f1``). ``load`` reads the
card from that file: moto (the tests' SageMaker) accepts ``ModelCard`` but does not return it,
and its content is a translation, not the card.

A version's archive sha256 is what a record of the package states (``load`` says which):
the ``archive_sha256`` customer metadata this project's registration sets, the content-addressed
artifact path (``.../<sha256>/model.tar.gz``), or, for a package registered by an exported
SageMaker Pipeline's RegisterModel step (no customer metadata), the job's value manifest beside
the archive. boto3 finds credentials, region and ``AWS_ENDPOINT_URL`` the usual way.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from botocore.exceptions import ClientError
from kedro.io import AbstractDataset, DatasetError

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.model_card import (
    SUMMARY_COLUMNS,
    card_bytes,
    card_value,
    check_card,
    sagemaker_model_card,
)
from predictive_maintenance.registry.datasets import log_registered, log_unchanged
from predictive_maintenance.registry.local import BASELINE_FILES, check_baseline
from predictive_maintenance.registry.runs import (
    MLFLOW_LINEAGE_KEY,
    REGISTERED,
    TAG_MODEL_PACKAGE_ARN,
    UNCHANGED,
    metadata_properties,
    record_in_run,
)
from predictive_maintenance.sagemaker.aws import client, resolve_image_uri, split_s3_uri
from predictive_maintenance.sagemaker.job import VALUE_MANIFEST
from predictive_maintenance.serving.contract import MODEL_CARD_FILE

logger = logging.getLogger(__name__)

#: SageMaker's script-mode settings for the stock XGBoost container: run code/inference.py.
SCRIPT_MODE_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
}
CONTENT_TYPES = ["text/csv", "application/json"]
_NOT_FOUND = re.compile(r"does not exist|not found|Could not find", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: Where a version's archive sha256 came from (``archive_sha256_source`` of a loaded version).
FROM_METADATA = "customer metadata archive_sha256"
FROM_PATH = "content-addressed artifact path"
FROM_STEP_MANIFEST = f"pipeline step manifest {VALUE_MANIFEST}"
#: Baseline part -> the ``MetricsSource`` key of ``ModelDataQuality``.
BASELINE_SOURCES = {"statistics": "Statistics", "constraints": "Constraints"}
#: The customer metadata key holding the model card's sha256.
MODEL_CARD_SHA256_KEY = "model_card_sha256"
#: The card's headline figures as customer metadata (visible in SageMaker Studio's registry):
#: key -> the card's path (the test F1, and ``kedro model list``'s card columns).
MODEL_CARD_SUMMARY_KEYS = {
    "model_card_f1": ("metrics", "f1"),
    "model_card_ece": SUMMARY_COLUMNS["ECE"],
    "model_card_modes_macro_f1": SUMMARY_COLUMNS["MODES F1"],
}


def model_card_uri(archive_uri: str, sha256: str) -> str:
    """Where a version's model card is: beside its archive, under the card's own sha256 (two
    registrations of one archive with different cards never overwrite each other's)."""
    return f"{archive_uri.rsplit('/', 1)[0]}/model_card/{sha256}/{MODEL_CARD_FILE}"


def _card_metadata(card: dict[str, Any], sha256: str) -> dict[str, str]:
    figures = {key: card_value(card, *path) for key, path in MODEL_CARD_SUMMARY_KEYS.items()}
    return {
        MODEL_CARD_SHA256_KEY: sha256,
        **{key: f"{value:.4f}" for key, value in figures.items() if value is not None},
    }


def _is_not_found(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    return code in {"ResourceNotFound", "ValidationException"} and bool(_NOT_FOUND.search(message))


def _split_s3(uri: str) -> tuple[str, str]:
    try:
        return split_s3_uri(uri)
    except ValueError as error:
        raise DatasetError(str(error)) from None


def _content_address(uri: str) -> str | None:
    folder = uri.rsplit("/", 2)[-2] if uri.count("/") >= 2 else ""
    return folder if _SHA256.fullmatch(folder) else None


def _step_manifest_sha256(s3: Any, uri: str) -> str | None:
    """The sha256 an exported pipeline step recorded for the file at ``uri``, if it did.

    A processing step writes each output as ``<output>/<file>`` plus ``<output>/kedro_value.json``
    (``file``, ``codec``, ``sha256``), and a RegisterModel step points ``ModelDataUrl`` at that
    file. Only a manifest that names this very file counts.
    """
    if not uri.startswith("s3://"):
        return None
    folder, _, file_name = uri.rpartition("/")
    bucket, key = _split_s3(f"{folder}/{VALUE_MANIFEST}")
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise
    try:
        manifest = json.loads(body)
    except ValueError:
        logger.warning("s3://%s/%s is not JSON: ignored", bucket, key)
        return None
    if not isinstance(manifest, dict) or manifest.get("file") != file_name:
        return None
    digest = str(manifest.get("sha256", "")).lower()
    return digest if _SHA256.fullmatch(digest) else None


def baseline_metadata_key(part: str) -> str:
    """The customer metadata key holding a baseline file's sha256."""
    return f"baseline_{part}_sha256"


def _recorded_sha256(
    s3: Any, uri: str, properties: dict[str, str], version: int, key: str = "archive_sha256"
) -> tuple[str | None, str | None]:
    """The sha256 a record of the package states for the file at ``uri`` (customer metadata
    ``key``, its content-addressed path, or a pipeline step's manifest), and which record, or
    (None, None)."""
    records = []
    if properties.get(key):
        records.append((properties[key].strip().lower(), f"customer metadata {key}"))
    if address := _content_address(uri):
        records.append((address, FROM_PATH))
    if not records and (manifest := _step_manifest_sha256(s3, uri)):
        records.append((manifest, FROM_STEP_MANIFEST))
    if not records:
        return None, None
    if len({digest for digest, _ in records}) > 1:
        logger.warning(
            "version %s: the records of %s's sha256 disagree (%s); using the %s",
            version,
            uri,
            ", ".join(f"{source} {digest}" for digest, source in records),
            records[0][1],
        )
    return records[0]


def _package_baseline(s3: Any, package: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The package's data-quality baseline: part -> ``{"uri", "sha256", "sha256_source"}``
    (``sha256`` None when nothing records it); empty when the package has none.

    ``DriftCheckBaselines`` first (what drift checks use), else ``ModelMetrics``.
    """
    sources = (
        package.get("DriftCheckBaselines", {}).get("ModelDataQuality")
        or package.get("ModelMetrics", {}).get("ModelDataQuality")
        or {}
    )
    properties = package.get("CustomerMetadataProperties", {})
    baseline = {}
    for part, source in BASELINE_SOURCES.items():
        uri = (sources.get(source) or {}).get("S3Uri")
        if not uri:
            continue
        digest, how = _recorded_sha256(
            s3, uri, properties, package["ModelPackageVersion"], baseline_metadata_key(part)
        )
        baseline[part] = {"uri": uri, "sha256": digest, "sha256_source": how}
    return baseline


def _package_card(archive_uri: str, properties: dict[str, str]) -> dict[str, str] | None:
    """Where the package's model card is and its sha256 (``{"uri", "sha256"}``), or None for a
    package registered without one."""
    digest = str(properties.get(MODEL_CARD_SHA256_KEY, "")).strip().lower()
    if not _SHA256.fullmatch(digest):
        return None
    return {"uri": model_card_uri(archive_uri, digest), "sha256": digest}


class SageMakerModelRegistryDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A model package group of the SageMaker Model Registry.

    Example catalog entry (``conf/sagemaker/catalog.yml``)::

        model_registry:
          type: predictive_maintenance.registry.sagemaker_datasets.SageMakerModelRegistryDataset
          group: predictive-maintenance
          artifact_uri: s3://my-bucket/predictive-maintenance/model-registry
    """

    def __init__(
        self,
        *,
        group: str,
        artifact_uri: str,
        framework_version: str = "3.0-5",
        image_uri: str | None = None,
        region: str | None = None,
        inference_instance_types: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            group: Model package group name.
            artifact_uri: S3 prefix under which registered artifacts are stored.
            framework_version: Stock SageMaker XGBoost image version (matches the training lib).
            image_uri: An explicit inference image instead of the stock one.
            region: AWS region (default: boto3's).
            inference_instance_types: Instance types the package declares for real-time inference.
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        self._group = group
        self._bucket, self._prefix = _split_s3(artifact_uri)
        self._framework_version = framework_version
        self._image_uri = image_uri
        self._region = region
        self._instance_types = inference_instance_types or ["ml.m5.large", "ml.c5.large"]
        self.metadata = metadata

    @property
    def group(self) -> str:
        """The model package group."""
        return self._group

    @property
    def artifact_uri(self) -> str:
        """The S3 prefix of the registered artifacts."""
        return f"s3://{self._bucket}/{self._prefix}"

    def _describe(self) -> dict[str, Any]:
        return {"group": self._group, "artifact_uri": self.artifact_uri}

    def _ensure_group(self, sagemaker: Any) -> None:
        try:
            sagemaker.describe_model_package_group(ModelPackageGroupName=self._group)
        except ClientError as error:
            if not _is_not_found(error):
                raise
            sagemaker.create_model_package_group(
                ModelPackageGroupName=self._group,
                ModelPackageGroupDescription=f"Model versions of {self._group}",
            )
            logger.info("Created model package group %s", self._group)

    def _upload(self, key: str, body: bytes, content_type: str) -> str:
        client("s3", self._region).put_object(
            Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
        )
        return f"s3://{self._bucket}/{key}"

    def _summaries(self, sagemaker: Any) -> list[dict[str, Any]]:
        """Every version's summary; none while the group does not exist."""
        try:
            pages = sagemaker.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=self._group, ModelPackageType="Versioned"
            )
            return [summary for page in pages for summary in page["ModelPackageSummaryList"]]
        except ClientError as error:
            if _is_not_found(error):
                return []
            raise

    def _newest(self, sagemaker: Any) -> dict[str, Any] | None:
        """The newest version's number, approval status and recorded archive and baseline
        sha256s, or None."""
        summaries = self._summaries(sagemaker)
        if not summaries:
            return None
        newest = max(summaries, key=lambda summary: summary["ModelPackageVersion"])
        package = sagemaker.describe_model_package(ModelPackageName=newest["ModelPackageArn"])
        s3 = client("s3", self._region)
        archive_sha256, _ = _recorded_sha256(
            s3,
            package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"],
            package.get("CustomerMetadataProperties", {}),
            package["ModelPackageVersion"],
        )
        baseline = _package_baseline(s3, package)
        return {
            "version": package["ModelPackageVersion"],
            "model_package_arn": package["ModelPackageArn"],
            "approval_status": package["ModelApprovalStatus"],
            "archive_sha256": archive_sha256,
            "baseline_sha256": {part: item["sha256"] for part, item in baseline.items()},
        }

    def _upload_baseline(self, folder: str, files: dict[str, bytes]) -> dict[str, Any]:
        """Uploads the baseline files next to the archive, each under its own sha256 (never
        overwritten); returns the package's ModelDataQuality (``MetricsSource`` per part)."""
        quality = {}
        for part, body in files.items():
            key = f"{folder}/baseline/{sha256_hex(body)}/{BASELINE_FILES[part]}"
            quality[BASELINE_SOURCES[part]] = {
                "ContentType": "application/json",
                "S3Uri": self._upload(key, body, "application/json"),
            }
        return quality

    def save(self, data: dict[str, Any]) -> None:
        archive: bytes = data["archive"]
        archive_sha256 = sha256_hex(archive)
        try:
            baseline = check_baseline(data.get("baseline"))
            card = check_card(data["model_card"]) if data.get("model_card") is not None else None
        except (TypeError, ValueError) as error:
            raise DatasetError(f"cannot register into {self._group!r}: {error}") from error
        baseline_sha256 = {part: sha256_hex(body) for part, body in baseline.items()}
        sagemaker = client("sagemaker", self._region)
        if not data.get("register_duplicates", False):
            newest = self._newest(sagemaker)
            if (
                newest is not None
                and newest["archive_sha256"] == archive_sha256
                and newest["baseline_sha256"] == baseline_sha256
            ):
                log_unchanged(
                    self._group,
                    newest["version"],
                    newest["approval_status"],
                    archive_sha256,
                    data["approval_status"],
                )
                record_in_run(
                    data.get("tracking_run"),
                    group=self._group,
                    version=newest["version"],
                    status=newest["approval_status"],
                    outcome=UNCHANGED,
                    extra={TAG_MODEL_PACKAGE_ARN: newest["model_package_arn"]},
                )
                return
        folder = f"{self._prefix}/{self._group}/{archive_sha256}"
        archive_uri = self._upload(f"{folder}/model.tar.gz", archive, "application/gzip")
        metrics_uri = self._upload(
            f"{folder}/metrics.json",
            json.dumps(data["metrics"], indent=2).encode(),
            "application/json",
        )
        model_metrics: dict[str, Any] = {
            "ModelQuality": {
                "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}
            }
        }
        extra: dict[str, Any] = {}
        card_metadata: dict[str, str] = {}
        if card is not None:
            body = card_bytes(card)
            card_sha256 = sha256_hex(body)
            self._upload(
                model_card_uri(archive_uri, card_sha256).removeprefix(f"s3://{self._bucket}/"),
                body,
                "application/json",
            )
            card_metadata = _card_metadata(card, card_sha256)
            extra["ModelCard"] = sagemaker_model_card(card)
        if baseline:
            quality = self._upload_baseline(folder, baseline)
            model_metrics["ModelDataQuality"] = quality
            # What a data-quality monitoring schedule compares the endpoint's traffic with.
            extra["DriftCheckBaselines"] = {"ModelDataQuality": quality}
        self._ensure_group(sagemaker)
        lineage = {
            key: value
            for key, value in data["lineage"].items()
            if isinstance(value, str | int | float)
        }
        # The MLflow run that made the version: mlflow_run_id, mlflow_experiment_id, ...
        lineage.update(metadata_properties(data["lineage"].get(MLFLOW_LINEAGE_KEY)))
        response = sagemaker.create_model_package(
            ModelPackageGroupName=self._group,
            ModelPackageDescription=data.get("description", "")[:1024],
            ModelApprovalStatus=data["approval_status"],
            InferenceSpecification={
                "Containers": [
                    {
                        "Image": resolve_image_uri(
                            self._image_uri, "xgboost", self._framework_version, self._region
                        ),
                        "ModelDataUrl": archive_uri,
                        "Environment": SCRIPT_MODE_ENVIRONMENT,
                    }
                ],
                "SupportedContentTypes": CONTENT_TYPES,
                "SupportedResponseMIMETypes": CONTENT_TYPES,
                "SupportedRealtimeInferenceInstanceTypes": self._instance_types,
            },
            ModelMetrics=model_metrics,
            CustomerMetadataProperties={
                "archive_sha256": archive_sha256,
                **{baseline_metadata_key(part): digest for part, digest in baseline_sha256.items()},
                **{key: str(value)[:256] for key, value in lineage.items()},
                **card_metadata,
            },
            **extra,
        )
        registered = sagemaker.describe_model_package(ModelPackageName=response["ModelPackageArn"])
        log_registered(
            self._group, registered["ModelPackageVersion"], registered["ModelApprovalStatus"]
        )
        logger.debug("Registered %s", response["ModelPackageArn"])
        record_in_run(
            data.get("tracking_run"),
            group=self._group,
            version=registered["ModelPackageVersion"],
            status=registered["ModelApprovalStatus"],
            outcome=REGISTERED,
            extra={TAG_MODEL_PACKAGE_ARN: response["ModelPackageArn"]},
        )

    def load(self) -> dict[str, Any]:
        sagemaker = client("sagemaker", self._region)
        versions = []
        s3 = client("s3", self._region)
        for summary in self._summaries(sagemaker):
            package = sagemaker.describe_model_package(ModelPackageName=summary["ModelPackageArn"])
            container = package["InferenceSpecification"]["Containers"][0]
            properties = package.get("CustomerMetadataProperties", {})
            statistics = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics")
            archive_sha256, source = _recorded_sha256(
                s3, container["ModelDataUrl"], properties, package["ModelPackageVersion"]
            )
            versions.append(
                {
                    "group": self._group,
                    "version": package["ModelPackageVersion"],
                    "model_package_arn": package["ModelPackageArn"],
                    "approval_status": package["ModelApprovalStatus"],
                    "created_at": package["CreationTime"].isoformat(),
                    "archive_uri": container["ModelDataUrl"],
                    # None when nothing records it: such an archive cannot be verified.
                    "archive_sha256": archive_sha256,
                    "archive_sha256_source": source,
                    "metrics_uri": (statistics or {}).get("S3Uri"),
                    "lineage": properties,
                    "description": package.get("ModelPackageDescription", ""),
                    "baseline": _package_baseline(s3, package),
                    "model_card": _package_card(container["ModelDataUrl"], properties),
                }
            )
        return {"group": self._group, "versions": sorted(versions, key=lambda v: v["version"])}

    def update_approval(self, version: int, status: str, note: str = "") -> None:
        """Sets the approval status of a version (what ``kedro model approve/reject`` calls)."""
        arn = next(
            (v["model_package_arn"] for v in self.load()["versions"] if v["version"] == version),
            None,
        )
        if arn is None:
            raise DatasetError(f"model package group {self._group} has no version {version}")
        client("sagemaker", self._region).update_model_package(
            ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription=note[:1024]
        )
