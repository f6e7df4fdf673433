"""A SageMaker real-time endpoint as the deployment pipeline's ``endpoint`` dataset (boto3).

:class:`SageMakerEndpointDataset` is the drop-in replacement, in the ``sagemaker`` config
environment, for :class:`~predictive_maintenance.serving.endpoint.LocalEndpointDataset`: ``save``
deploys a model version (Model, EndpointConfig, then CreateEndpoint, or UpdateEndpoint with a
blue/green deployment for a running endpoint), after checking the archive's bytes against the
sha256 the registry records for it.

Data capture and monitoring: with ``data_capture.enabled`` the endpoint config carries a
``DataCaptureConfig`` (requests and responses, sampled, to S3 in SageMaker's capture format).
When capture is on and the deployed version has a data-quality baseline, ``save`` also keeps one
Model Monitor data-quality monitoring schedule over the endpoint (``<endpoint>-data-quality``):
created, pointed at the new version's baseline on redeploy, and deleted (with a log line saying
why) when capture is turned off or the version has no baseline. Job definitions are immutable, so
each is named after a digest of its content and the stale ones are deleted.
"""

from __future__ import annotations

import json
import logging
import re
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
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.contract import CSV_CONTENT_TYPE, JSON_CONTENT_TYPE

logger = logging.getLogger(__name__)

#: SageMaker's name limit for endpoint configs, models, schedules and job definitions.
_NAME_LIMIT = 63
#: The analyzer's paths inside the monitoring job (SageMaker's defaults).
_MONITOR_INPUT = "/opt/ml/processing/input/endpoint"
_MONITOR_OUTPUT = "/opt/ml/processing/output"
#: Every hour, on the hour: the only cadence SageMaker guarantees for data-quality schedules.
HOURLY = "cron(0 * ? * * *)"
#: How each capture setting is checked (name -> accepted type).
_CAPTURE_KEYS = {"enabled": bool, "sampling_percentage": int, "destination": str}
_MONITORING_KEYS = {
    "enabled": bool,
    "schedule_cron": str,
    "instance_type": str,
    "instance_count": int,
    "volume_size_gb": int,
    "max_runtime_seconds": int,
    "output_uri": str,
    "code_uri": str,
    "image_uri": (str, type(None)),
}
_MONITORING_DEFAULTS = {
    "enabled": True,
    "schedule_cron": HOURLY,
    "instance_type": "ml.m5.xlarge",
    "instance_count": 1,
    "volume_size_gb": 20,
    "max_runtime_seconds": 3600,
    "image_uri": None,
}
_CRON = re.compile(r"cron\(.+\)|NOW")

#: Model Monitor's record preprocessor, run by the analyzer on each captured record. The analyzer
#: names the fields of a headerless CSV record _c0, _c1, ...; the baseline names them as the
#: project does, so this gives each reading its name. It runs in AWS's analyzer image, without
#: this package: it only splits and names fields (the monitoring pipeline and the endpoint
#: validate readings with serving/requests.py). Rendered with the reading names of schema.py.
PREPROCESSOR_TEMPLATE = '''"""Model Monitor's record preprocessor for predictive-maintenance.

Names the readings of a captured request ({csv} CSV rows, or {json} {{"instances": [...]}}),
so the analyzer compares them with the baseline's features of the same names.
"""

import base64
import csv
import io
import json

FEATURES = {features!r}


def _field(record, name):
    if isinstance(record, dict):
        return record.get(name)
    return getattr(record, name, None)


def _rows(endpoint_input):
    data = _field(endpoint_input, "data") or ""
    encoding = (_field(endpoint_input, "encoding") or "CSV").upper()
    content_type = (
        _field(endpoint_input, "observedContentType")
        or _field(endpoint_input, "observed_content_type")
        or ""
    )
    if encoding == "BASE64":
        data = base64.b64decode(data).decode("utf-8")
    if encoding == "JSON" or "json" in content_type:
        body = json.loads(data)
        instances = body.get("instances", []) if isinstance(body, dict) else body
        return [
            [item.get(name) for name in FEATURES] if isinstance(item, dict) else list(item)
            for item in instances
        ]
    return [row for row in csv.reader(io.StringIO(data)) if row]


def preprocess_handler(inference_record, logger=None):
    endpoint_input = _field(inference_record, "endpoint_input")
    if endpoint_input is None:
        endpoint_input = _field(_field(inference_record, "captureData") or {{}}, "endpointInput")
    records = [dict(zip(FEATURES, row)) for row in _rows(endpoint_input)]
    # One reading per request is the common case; several readings become several records.
    return records[0] if len(records) == 1 else records
'''


def render_preprocessor() -> bytes:
    """The record preprocessor's source, with the reading names of :mod:`..schema`."""
    return PREPROCESSOR_TEMPLATE.format(
        features=tuple(READING_COLUMNS), csv=CSV_CONTENT_TYPE, json=JSON_CONTENT_TYPE
    ).encode()


def schedule_name(endpoint_name: str) -> str:
    """The data-quality monitoring schedule of an endpoint."""
    return f"{endpoint_name}-data-quality"[:_NAME_LIMIT]


def _job_definition_prefix(endpoint_name: str) -> str:
    return f"{endpoint_name[: _NAME_LIMIT - 17]}-dq-"


def delete_monitoring(sagemaker: Any, endpoint_name: str) -> list[str]:
    """Deletes the endpoint's data-quality schedule and its job definitions (SageMaker refuses
    to delete an endpoint a schedule still monitors); returns what it deleted, as
    ``<kind> <name>`` lines."""
    deleted = []
    name = schedule_name(endpoint_name)
    try:
        sagemaker.delete_monitoring_schedule(MonitoringScheduleName=name)
        deleted.append(f"monitoring schedule {name}")
    except ClientError as error:
        if not _is_not_found(error):
            raise
    prefix = _job_definition_prefix(endpoint_name)
    pages = sagemaker.get_paginator("list_data_quality_job_definitions").paginate(
        NameContains=prefix
    )
    for item in [item for page in pages for item in page["JobDefinitionSummaries"]]:
        definition = item["MonitoringJobDefinitionName"]
        if not definition.startswith(prefix):
            continue
        try:
            sagemaker.delete_data_quality_job_definition(JobDefinitionName=definition)
        except ClientError as error:
            # SageMaker deletes a schedule asynchronously: its definition may still be in use.
            logger.warning("Data-quality job definition %s not deleted: %s", definition, error)
        else:
            deleted.append(f"data-quality job definition {definition}")
    return deleted


def _schedule_settings(config: dict[str, Any]) -> tuple[Any, ...]:
    """What a redeploy may change in a schedule's config (SageMaker adds other keys)."""
    return (
        config.get("ScheduleConfig", {}).get("ScheduleExpression"),
        config.get("MonitoringJobDefinitionName"),
        config.get("MonitoringType"),
    )


def _settings(
    given: dict[str, Any] | None,
    kinds: dict[str, Any],
    defaults: dict[str, Any],
    where: str,
) -> dict[str, Any]:
    """``given`` over ``defaults``, each key known and of its type, else a DatasetError."""
    settings = {**defaults, **(given or {})}
    unknown = sorted(set(settings) - set(kinds))
    if unknown:
        raise DatasetError(f"{where}: unknown keys {unknown}; the keys are {sorted(kinds)}")
    for key, kind in kinds.items():
        if key not in settings:
            raise DatasetError(f"{where}.{key} is not set")
        value = settings[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise DatasetError(f"{where}.{key} is {value!r}, which is not a {kind}")
    return settings


class SageMakerEndpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A SageMaker real-time endpoint, deployed from a registered model version.

    ``save`` takes the deployment request of the deployment pipeline (``endpoint_name``,
    ``model_group``, ``model_version``, ``model_archive`` (S3 URI), ``model_archive_sha256``); a
    request whose ``model_version`` is ``None`` leaves the endpoint as it is.

    The archive's bytes are checked against ``model_archive_sha256`` before anything is created. A
    request without one (a model package nothing records the archive's sha256 for) is refused,
    unless ``allow_unverified_archives`` is set: then the archive is deployed as it is found, with
    a warning naming the version and the sha256 of the bytes deployed.

    ``data_capture`` adds the endpoint config's DataCaptureConfig (the config's name then ends in
    a digest of it, so changing capture deploys a new config). With ``monitoring`` set, ``save``
    also reconciles the endpoint's data-quality monitoring schedule against the request's
    ``model_baseline`` (part -> ``{"uri", "sha256"}``, each file checked like the archive);
    without it, schedules are left alone.
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
        data_capture: dict[str, Any] | None = None,
        monitoring: dict[str, Any] | None = None,
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
            data_capture: ``enabled``, ``sampling_percentage`` (0-100) and ``destination`` (the
                S3 URI SageMaker writes captured requests and responses under); default off.
            monitoring: The data-quality monitoring schedule, made when capture is on and the
                deployed version has a baseline: ``output_uri`` (reports), ``code_uri`` (where
                the record preprocessor is uploaded), ``enabled`` (default true),
                ``schedule_cron`` (default hourly), ``instance_type``, ``instance_count``,
                ``volume_size_gb``, ``max_runtime_seconds`` and ``image_uri`` (default: the
                model-monitor analyzer of ``sagemaker.core.image_uris``).
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
        self._capture = _settings(
            data_capture,
            _CAPTURE_KEYS,
            {"enabled": False, "sampling_percentage": 100, "destination": ""},
            "data_capture",
        )
        if not 0 <= self._capture["sampling_percentage"] <= 100:
            raise DatasetError(
                "data_capture.sampling_percentage is "
                f"{self._capture['sampling_percentage']}; it is a percentage, 0-100"
            )
        if self._capture["enabled"]:
            _split_s3(self._capture["destination"])
        self._monitoring = None
        if monitoring is not None:
            self._monitoring = _settings(
                monitoring, _MONITORING_KEYS, _MONITORING_DEFAULTS, "monitoring"
            )
            for key in ("output_uri", "code_uri"):
                _split_s3(self._monitoring[key])
            if not _CRON.fullmatch(self._monitoring["schedule_cron"]):
                raise DatasetError(
                    f"monitoring.schedule_cron {self._monitoring['schedule_cron']!r} is not a "
                    f"SageMaker schedule expression such as {HOURLY}"
                )
        self._last_endpoint: str | None = None
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "instance_type": self._instance_type,
            "role": self._role,
            "data_capture": self._capture["enabled"],
        }

    def _data_capture_config(self) -> dict[str, Any] | None:
        """The endpoint config's DataCaptureConfig, or None when capture is off."""
        if not self._capture["enabled"]:
            return None
        return {
            "EnableCapture": True,
            "InitialSamplingPercentage": self._capture["sampling_percentage"],
            "DestinationS3Uri": self._capture["destination"].rstrip("/"),
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            # Captured CSV and JSON bodies are stored as text (CSV / JSON encoding), not base64.
            "CaptureContentTypeHeader": {
                "CsvContentTypes": [CSV_CONTENT_TYPE],
                "JsonContentTypes": [JSON_CONTENT_TYPE],
            },
        }

    def save(self, data: dict[str, Any]) -> None:
        endpoint_name = data["endpoint_name"]
        self._last_endpoint = endpoint_name
        if data.get("model_version") is None:
            logger.info("Endpoint %s left as it is: %s", endpoint_name, data.get("reason", ""))
            return
        expected = (data.get("model_archive_sha256") or "").strip().lower()
        digest = expected or self._unverified_digest(data)
        sagemaker = client("sagemaker", self._region)
        name = f"{endpoint_name}-v{data['model_version']}-{digest[:8]}"[:_NAME_LIMIT]
        capture = self._data_capture_config()
        # The config also names its capture settings, so turning capture on or off (or changing
        # the sampling) deploys a new config; the model keeps its name.
        config_name = name
        if capture is not None:
            suffix = f"-dc{sha256_hex(json.dumps(capture, sort_keys=True).encode())[:8]}"
            config_name = name[: _NAME_LIMIT - len(suffix)] + suffix
        try:
            current = sagemaker.describe_endpoint(EndpointName=endpoint_name)
        except ClientError as error:
            if not _is_not_found(error):
                raise
            current = None
        if current is not None and current["EndpointConfigName"] == config_name:
            logger.info("Endpoint %s already serves %s", endpoint_name, config_name)
        else:
            if expected:
                self._verify_artifact(data["model_archive"], expected)
            self._deploy(sagemaker, endpoint_name, name, config_name, capture, data, current)
        # A schedule of this dataset exists only while capture is (or just was) on: with capture
        # off before and after, there is nothing to reconcile and no call to make.
        was_capturing = bool(((current or {}).get("DataCaptureConfig") or {}).get("EnableCapture"))
        if self._monitoring is not None and (capture is not None or was_capturing):
            self._reconcile_monitoring(sagemaker, endpoint_name, data)

    def _deploy(  # noqa: PLR0917 -- private, called once
        self,
        sagemaker: Any,
        endpoint_name: str,
        name: str,
        config_name: str,
        capture: dict[str, Any] | None,
        data: dict[str, Any],
        current: dict[str, Any] | None,
    ) -> None:
        # Model and config are named after version and archive digest, so a re-deploy (or a
        # rollback to an older version) finds them already there.
        self._ensure_model(sagemaker, name, data["model_archive"], data["model_version"])
        self._ensure_endpoint_config(sagemaker, config_name, name, capture)
        if current is None:
            sagemaker.create_endpoint(EndpointName=endpoint_name, EndpointConfigName=config_name)
            logger.info("Creating endpoint %s with %s", endpoint_name, config_name)
        else:
            sagemaker.update_endpoint(
                EndpointName=endpoint_name,
                EndpointConfigName=config_name,
                DeploymentConfig={"BlueGreenUpdatePolicy": self._blue_green},
            )
            logger.info("Updating endpoint %s to %s (blue/green)", endpoint_name, config_name)
        if capture is not None:
            logger.info(
                "Endpoint %s captures %d%% of requests and responses to %s",
                endpoint_name,
                capture["InitialSamplingPercentage"],
                capture["DestinationS3Uri"],
            )
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

    def _ensure_endpoint_config(
        self, sagemaker: Any, name: str, model_name: str, capture: dict[str, Any] | None
    ) -> None:
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
                    "ModelName": model_name,
                    "InstanceType": self._instance_type,
                    "InitialInstanceCount": self._instance_count,
                }
            ],
            **({"DataCaptureConfig": capture} if capture is not None else {}),
        )

    # ---- the data-quality monitoring schedule -----------------------------------------------

    def _monitoring_refusal(self, data: dict[str, Any]) -> str | None:
        """Why the endpoint gets no monitoring schedule, or None if it gets one."""
        if self._monitoring is None or not self._monitoring["enabled"]:
            return "monitoring is switched off (the endpoint dataset's monitoring.enabled)"
        if not self._capture["enabled"]:
            return "data capture is off (globals data_capture.enabled), so there is no traffic"
        baseline = data.get("model_baseline") or {}
        if not {"statistics", "constraints"} <= set(baseline):
            return (
                f"version {data['model_version']} of {data.get('model_group', 'the registry')} "
                "has no data-quality baseline: register a model trained with the baseline node"
            )
        return None

    def _reconcile_monitoring(
        self, sagemaker: Any, endpoint_name: str, data: dict[str, Any]
    ) -> None:
        """Creates, updates or deletes the endpoint's data-quality monitoring schedule."""
        name = schedule_name(endpoint_name)
        try:
            current = sagemaker.describe_monitoring_schedule(MonitoringScheduleName=name)
        except ClientError as error:
            if not _is_not_found(error):
                raise
            current = None
        refusal = self._monitoring_refusal(data)
        if refusal is not None:
            if current is not None:
                for deleted in delete_monitoring(sagemaker, endpoint_name):
                    logger.info("Deleted %s: %s", deleted, refusal)
            elif self._capture["enabled"]:
                logger.warning("Endpoint %s has no monitoring schedule: %s", endpoint_name, refusal)
            return
        definition = self._job_definition(endpoint_name, data)
        try:
            sagemaker.describe_data_quality_job_definition(
                JobDefinitionName=definition["JobDefinitionName"]
            )
        except ClientError as error:
            if not _is_not_found(error):
                raise
            self._upload_preprocessor(definition)
            sagemaker.create_data_quality_job_definition(**definition)
        config = {
            "ScheduleConfig": {"ScheduleExpression": self._monitoring["schedule_cron"]},
            "MonitoringJobDefinitionName": definition["JobDefinitionName"],
            "MonitoringType": "DataQuality",
        }
        if current is None:
            sagemaker.create_monitoring_schedule(
                MonitoringScheduleName=name, MonitoringScheduleConfig=config
            )
            action = "Created"
        elif _schedule_settings(current["MonitoringScheduleConfig"]) != _schedule_settings(config):
            sagemaker.update_monitoring_schedule(
                MonitoringScheduleName=name, MonitoringScheduleConfig=config
            )
            action = "Updated"
        else:
            action = "Kept"
        logger.info(
            "%s monitoring schedule %s (%s): data quality of endpoint %s against the baseline "
            "of version %s",
            action,
            name,
            self._monitoring["schedule_cron"],
            endpoint_name,
            data["model_version"],
        )
        self._delete_stale_definitions(sagemaker, endpoint_name, definition["JobDefinitionName"])

    def _job_definition(self, endpoint_name: str, data: dict[str, Any]) -> dict[str, Any]:
        """The CreateDataQualityJobDefinition request, named after a digest of its content."""
        monitoring = self._monitoring
        assert monitoring is not None  # checked by _monitoring_refusal
        baseline = data["model_baseline"]
        for part in ("statistics", "constraints"):
            self._verify_baseline(data, part)
        preprocessor = render_preprocessor()
        code_uri = monitoring["code_uri"].rstrip("/")
        request: dict[str, Any] = {
            "DataQualityBaselineConfig": {
                "ConstraintsResource": {"S3Uri": baseline["constraints"]["uri"]},
                "StatisticsResource": {"S3Uri": baseline["statistics"]["uri"]},
            },
            "DataQualityAppSpecification": {
                "ImageUri": resolve_image_uri(
                    monitoring["image_uri"], "model-monitor", "", self._region
                ),
                "RecordPreprocessorSourceUri": (
                    f"{code_uri}/{sha256_hex(preprocessor)}/preprocessor.py"
                ),
            },
            "DataQualityJobInput": {
                "EndpointInput": {
                    "EndpointName": endpoint_name,
                    "LocalPath": _MONITOR_INPUT,
                    "S3InputMode": "File",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "DataQualityJobOutputConfig": {
                "MonitoringOutputs": [
                    {
                        "S3Output": {
                            "S3Uri": f"{monitoring['output_uri'].rstrip('/')}/{endpoint_name}",
                            "LocalPath": _MONITOR_OUTPUT,
                            "S3UploadMode": "EndOfJob",
                        }
                    }
                ]
            },
            "JobResources": {
                "ClusterConfig": {
                    "InstanceCount": monitoring["instance_count"],
                    "InstanceType": monitoring["instance_type"],
                    "VolumeSizeInGB": monitoring["volume_size_gb"],
                }
            },
            "RoleArn": self._role,
            "StoppingCondition": {"MaxRuntimeInSeconds": monitoring["max_runtime_seconds"]},
        }
        digest = sha256_hex(json.dumps(request, sort_keys=True).encode())[:12]
        return {"JobDefinitionName": f"{_job_definition_prefix(endpoint_name)}{digest}", **request}

    def _upload_preprocessor(self, definition: dict[str, Any]) -> None:
        uri = definition["DataQualityAppSpecification"]["RecordPreprocessorSourceUri"]
        bucket, key = _split_s3(uri)
        client("s3", self._region).put_object(
            Bucket=bucket, Key=key, Body=render_preprocessor(), ContentType="text/x-python"
        )

    def _verify_baseline(self, data: dict[str, Any], part: str) -> None:
        """Refuses a baseline file whose bytes are not the registered ones (or unrecorded)."""
        item = data["model_baseline"][part]
        expected = (item.get("sha256") or "").strip().lower()
        what = f"the {part} baseline of version {data['model_version']} ({item['uri']})"
        if not expected:
            raise DatasetError(
                f"{what} has no recorded sha256, so its integrity cannot be checked: refusing to "
                "monitor against it"
            )
        actual = self._archive_sha256(item["uri"])
        if actual != expected:
            raise DatasetError(
                f"{what} has sha256 {actual}, but the registry recorded {expected}: refusing to "
                "monitor against a baseline that changed after registration"
            )

    def _delete_stale_definitions(self, sagemaker: Any, endpoint_name: str, keep: str) -> None:
        prefix = _job_definition_prefix(endpoint_name)
        pages = sagemaker.get_paginator("list_data_quality_job_definitions").paginate(
            NameContains=prefix
        )
        for item in [item for page in pages for item in page["JobDefinitionSummaries"]]:
            name = item["MonitoringJobDefinitionName"]
            if name.startswith(prefix) and name != keep:
                try:
                    sagemaker.delete_data_quality_job_definition(JobDefinitionName=name)
                    logger.info("Deleted data-quality job definition %s (superseded)", name)
                except ClientError as error:
                    # A job of the old definition may still run; the next deployment retries.
                    logger.info("Data-quality job definition %s kept for now: %s", name, error)

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
