"""Kedro datasets for the SageMaker Model Registry and SageMaker real-time endpoints (boto3).

They are drop-in replacements, in the ``sagemaker`` config environment, for the local
``model_registry`` and ``endpoint`` datasets: the same payloads go in and come out, so the
deployment pipeline cannot tell where it registers and deploys.

* :class:`SageMakerModelRegistryDataset` -- ``save`` uploads ``model.tar.gz`` and its metrics to S3
  (content-addressed by sha256, so a registered artifact is never overwritten) and creates a model
  package version in a model package group; ``load`` lists the group's versions.
* :class:`SageMakerEndpointDataset` -- ``save`` deploys a model version: Model, EndpointConfig, then
  CreateEndpoint, or UpdateEndpoint with a blue/green deployment for a running endpoint.

A version's archive sha256 is what a record of the package states (``load`` says which):
the ``archive_sha256`` customer metadata this project's registration sets, the content-addressed
artifact path (``.../<sha256>/model.tar.gz``), or, for a package registered by an exported
SageMaker Pipeline's RegisterModel step (no customer metadata), the manifest the producing step
wrote next to the archive. The endpoint dataset checks the archive's bytes against it before
deploying, and refuses an archive nothing records a sha256 for unless told otherwise.

boto3 finds credentials, region and ``AWS_ENDPOINT_URL`` the usual way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from botocore.exceptions import ClientError
from kedro.io import AbstractDataset, DatasetError

from predictive_maintenance.sagemaker.aws import client, resolve_image_uri, split_s3_uri

logger = logging.getLogger(__name__)

#: SageMaker's script-mode settings for the stock XGBoost container: run code/inference.py.
SCRIPT_MODE_ENVIRONMENT = {
    "SAGEMAKER_PROGRAM": "inference.py",
    "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
}
CONTENT_TYPES = ["text/csv", "application/json"]
_NOT_FOUND = re.compile(r"does not exist|not found|Could not find", re.IGNORECASE)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: The manifest an exported pipeline's job writes beside each output file (``file``, ``codec``,
#: ``sha256``); the job entry script's ``VALUE_MANIFEST``.
VALUE_MANIFEST = "kedro_value.json"
#: Where a version's archive sha256 came from (``archive_sha256_source`` of a loaded version).
FROM_METADATA = "customer metadata archive_sha256"
FROM_PATH = "content-addressed artifact path"
FROM_STEP_MANIFEST = f"pipeline step manifest {VALUE_MANIFEST}"


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


def _recorded_sha256(
    s3: Any, uri: str, properties: dict[str, str], version: int
) -> tuple[str | None, str | None]:
    """The archive sha256 a record of the package states, and which record, or (None, None)."""
    records = []
    if properties.get("archive_sha256"):
        records.append((properties["archive_sha256"].strip().lower(), FROM_METADATA))
    if address := _content_address(uri):
        records.append((address, FROM_PATH))
    if not records and (manifest := _step_manifest_sha256(s3, uri)):
        records.append((manifest, FROM_STEP_MANIFEST))
    if not records:
        return None, None
    if len({digest for digest, _ in records}) > 1:
        logger.warning(
            "version %s: the records of its archive's sha256 disagree (%s); using the %s",
            version,
            ", ".join(f"{source} {digest}" for digest, source in records),
            records[0][1],
        )
    return records[0]


class SageMakerModelRegistryDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A model package group of the SageMaker Model Registry.

    Example catalog entry (``conf/sagemaker/catalog.yml``)::

        model_registry:
          type: predictive_maintenance.sagemaker.deployment.SageMakerModelRegistryDataset
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

    def save(self, data: dict[str, Any]) -> None:
        archive: bytes = data["archive"]
        archive_sha256 = hashlib.sha256(archive).hexdigest()
        folder = f"{self._prefix}/{self._group}/{archive_sha256}"
        archive_uri = self._upload(f"{folder}/model.tar.gz", archive, "application/gzip")
        metrics_uri = self._upload(
            f"{folder}/metrics.json",
            json.dumps(data["metrics"], indent=2).encode(),
            "application/json",
        )
        sagemaker = client("sagemaker", self._region)
        self._ensure_group(sagemaker)
        lineage = {
            key: value
            for key, value in data["lineage"].items()
            if isinstance(value, str | int | float)
        }
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
            ModelMetrics={
                "ModelQuality": {
                    "Statistics": {"ContentType": "application/json", "S3Uri": metrics_uri}
                }
            },
            CustomerMetadataProperties={
                "archive_sha256": archive_sha256,
                **{key: str(value)[:256] for key, value in lineage.items()},
            },
        )
        logger.info("Registered %s", response["ModelPackageArn"])

    def load(self) -> dict[str, Any]:
        sagemaker = client("sagemaker", self._region)
        versions = []
        try:
            pages = sagemaker.get_paginator("list_model_packages").paginate(
                ModelPackageGroupName=self._group, ModelPackageType="Versioned"
            )
            summaries = [summary for page in pages for summary in page["ModelPackageSummaryList"]]
        except ClientError as error:
            if _is_not_found(error):
                return {"group": self._group, "versions": []}
            raise
        s3 = client("s3", self._region)
        for summary in summaries:
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


class SageMakerEndpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A SageMaker real-time endpoint, deployed from a registered model version.

    ``save`` takes the deployment request of the deployment pipeline (``endpoint_name``,
    ``model_group``, ``model_version``, ``model_archive`` (S3 URI), ``model_archive_sha256``); a
    request whose ``model_version`` is ``None`` leaves the endpoint as it is.

    The archive's bytes are checked against ``model_archive_sha256`` before anything is created. A
    request without one (a model package nothing records the archive's sha256 for) is refused,
    unless ``allow_unverified_archives`` is set: then the archive is deployed as it is found, with
    a warning naming the version and the sha256 of the bytes deployed.
    """

    def __init__(
        self,
        *,
        execution_role_arn: str,
        instance_type: str = "ml.m5.large",
        initial_instance_count: int = 1,
        framework_version: str = "3.0-5",
        image_uri: str | None = None,
        region: str | None = None,
        blue_green: dict[str, Any] | None = None,
        wait: bool = True,
        allow_unverified_archives: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            execution_role_arn: IAM role the SageMaker Model assumes.
            instance_type: Instance type of the production variant.
            initial_instance_count: Instances of the production variant.
            framework_version: Stock SageMaker XGBoost image version.
            image_uri: An explicit inference image instead of the stock one.
            region: AWS region (default: boto3's).
            blue_green: ``BlueGreenUpdatePolicy`` of UpdateEndpoint (default: all traffic at once
                after the new fleet is healthy, old fleet kept 5 minutes for rollback).
            wait: Wait until the endpoint is InService after create/update.
            allow_unverified_archives: Deploy, with a warning, a version whose archive sha256
                nothing records (default: refuse it).
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        self._role = execution_role_arn
        self._instance_type = instance_type
        self._instance_count = initial_instance_count
        self._framework_version = framework_version
        self._image_uri = image_uri
        self._region = region
        self._blue_green = blue_green or {
            "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 300},
            "TerminationWaitInSeconds": 300,
            "MaximumExecutionTimeoutInSeconds": 3600,
        }
        self._wait = wait
        self._allow_unverified = allow_unverified_archives
        self._last_endpoint: str | None = None
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"instance_type": self._instance_type, "role": self._role}

    def save(self, data: dict[str, Any]) -> None:
        endpoint_name = data["endpoint_name"]
        self._last_endpoint = endpoint_name
        if data.get("model_version") is None:
            logger.info("Endpoint %s left as it is: %s", endpoint_name, data.get("reason", ""))
            return
        expected = (data.get("model_archive_sha256") or "").strip().lower()
        digest = expected or self._unverified_digest(data)
        sagemaker = client("sagemaker", self._region)
        name = f"{endpoint_name}-v{data['model_version']}-{digest[:8]}"[:63]
        try:
            current = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as error:
            if not _is_not_found(error):
                raise
            current = None
        if current is not None and current["EndpointConfigName"] == name:
            logger.info("Endpoint %s already serves %s", endpoint_name, name)
            return
        if expected:
            self._verify_artifact(data["model_archive"], expected)
        # Model and config are named after version and archive digest, so a re-deploy (or a
        # rollback to an older version) finds them already there.
        self._ensure_model(sagemaker, name, data["model_archive"], data["model_version"])
        self._ensure_endpoint_config(sagemaker, name)
        if current is None:
            sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=name)
            logger.info("Creating endpoint %s with %s", endpoint_name, name)
        else:
            sagemaker.update_endpoint(
                EndpointName=endpoint_name,
                EndpointConfigName=name,
                DeploymentConfig={"BlueGreenUpdatePolicy": self._blue_green},
            )
            logger.info("Updating endpoint %s to %s (blue/green)", endpoint_name, name)
        if self._wait:
            sagemaker.get_waiter("endpoint_in_service").wait(EndpointName=endpoint_name)

    def _archive_sha256(self, uri: str) -> str:
        bucket, key = _split_s3(uri)
        body = client("s3", self._region).get_object(Bucket=bucket, Key=key)["Body"].read()
        return hashlib.sha256(body).hexdigest()

    def _unverified_digest(self, data: dict[str, Any]) -> str:
        """The sha256 of an archive nothing records one for, if such archives may be deployed."""
        what = f"version {data['model_version']} of {data.get('model_group', 'the model registry')}"
        uri = data["model_archive"]
        if not self._allow_unverified:
            raise DatasetError(
                f"{what} ({uri}) records no sha256 of its model archive (no archive_sha256 "
                "customer metadata, no content-addressed path, no pipeline step manifest), so "
                "its integrity cannot be checked: refusing to deploy it. Register the model "
                "through the project (its registration records the sha256), or set "
                "allow_unverified_archives: true on the endpoint dataset to deploy it anyway."
            )
        digest = self._archive_sha256(uri)
        logger.warning(
            "Deploying %s UNVERIFIED: nothing records the sha256 of %s, so the bytes found there "
            "now (sha256 %s) are deployed as they are (allow_unverified_archives is set)",
            what,
            uri,
            digest,
        )
        return digest

    def _verify_artifact(self, uri: str, expected_sha256: str) -> None:
        """Refuses to deploy an S3 artifact whose bytes are not the registered ones."""
        actual = self._archive_sha256(uri)
        if actual != expected_sha256:
            raise DatasetError(
                f"{uri} has sha256 {actual}, but the registry recorded {expected_sha256}: "
                "refusing to deploy an artifact that changed after registration"
            )

    def _ensure_model(
        self, sagemaker: Any, name: str, model_data_url: str, model_version: int
    ) -> None:
        try:
            existing = sagemaker.describe_model(ModelName=name)
        except ClientError as error:
            if not _is_not_found(error):
                raise
        else:
            if existing["PrimaryContainer"].get("ModelDataUrl") != model_data_url:
                raise DatasetError(
                    f"SageMaker model {name} exists with ModelDataUrl "
                    f"{existing['PrimaryContainer'].get('ModelDataUrl')}, not {model_data_url}"
                )
            return
        sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=self._role,
            PrimaryContainer={
                "Image": resolve_image_uri(
                    self._image_uri, "xgboost", self._framework_version, self._region
                ),
                "ModelDataUrl": model_data_url,
                # The container reports the registry version it serves.
                "Environment": {**SCRIPT_MODE_ENVIRONMENT, "MODEL_VERSION": str(model_version)},
            },
        )

    def _ensure_endpoint_config(self, sagemaker: Any, name: str) -> None:
        try:
            sagemaker.describe_endpoint_config(EndpointConfigName=name)
        except ClientError as error:
            if not _is_not_found(error):
                raise
        else:
            return
        sagemaker.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InstanceType": self._instance_type,
                    "InitialInstanceCount": self._instance_count,
                }
            ],
        )

    def load(self) -> dict[str, Any]:
        if self._last_endpoint is None:
            raise DatasetError("SageMakerEndpointDataset can only load an endpoint it deployed")
        described = client("sagemaker", self._region).describe_endpoint(
            EndpointName=self._last_endpoint
        )
        return {
            "endpoint_name": described["EndpointName"],
            "endpoint_config": described["EndpointConfigName"],
            "status": described["EndpointStatus"],
        }
