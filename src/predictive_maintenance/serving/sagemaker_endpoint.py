"""A SageMaker real-time endpoint as the deployment pipeline's ``endpoint`` dataset (boto3).

:class:`SageMakerEndpointDataset` is the drop-in replacement, in the ``sagemaker`` config
environment, for :class:`~predictive_maintenance.serving.endpoint.LocalEndpointDataset`: ``save``
deploys a model version (Model, EndpointConfig, then CreateEndpoint, or UpdateEndpoint with a
blue/green deployment for a running endpoint), after checking the archive's bytes against the
sha256 the registry records for it.
"""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import ClientError
from kedro.io import AbstractDataset, DatasetError

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.registry.sagemaker_datasets import (
    SCRIPT_MODE_ENVIRONMENT,
    _is_not_found,
    _split_s3,
)
from predictive_maintenance.sagemaker.aws import client, resolve_image_uri

logger = logging.getLogger(__name__)


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
        return sha256_hex(body)

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
