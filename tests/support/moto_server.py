"""moto in server mode, the AWS endpoint of the tests, plus the SageMaker behaviour moto 5.2 lacks.

- ``UpdateEndpoint``: points the endpoint at the new config, as SageMaker does once a blue/green
  update completes.
- Training jobs *execute*: moto records a CreateTrainingJob request (botocore validated it in the
  client) but runs nothing; here each recorded request is also handed to the bridge's ``local``
  backend, which runs it and uploads ``model.tar.gz`` into this moto's S3 where the job reports
  it. DescribeTrainingJob reports the execution's real status, failure reason and timings;
  ``StopTrainingJob`` (missing in moto) stops it; the program's output goes to CloudWatch Logs
  (``/aws/sagemaker/TrainingJobs``, stream ``<job>/algo-1-<epoch>``) as on SageMaker.
- Throttling: the first DescribeTrainingJob of every job answers ``ThrottlingException``, so each
  test of the ``sagemaker`` backend also goes through the client's retry path.
- Monitoring schedules (``Create/Describe/Update/Delete/ListMonitoringSchedule(s)``, missing in
  moto): kept per region in memory, so deployments and ``kedro sagemaker cleanup`` can manage
  the endpoint's data-quality schedule (the job definitions are moto's own).

The runner under test uses boto3 against this server as it would against AWS.

    python tests/support/moto_server.py PORT
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from typing import Any

import boto3
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ResourceNotFound, ValidationError
from moto.sagemaker.models import FakeEndpoint
from moto.sagemaker.responses import SageMakerResponse
from moto.server import main

from predictive_maintenance.sagemaker.backends import LOG_GROUP
from predictive_maintenance.sagemaker.local import LocalTrainingJobs
from predictive_maintenance.sagemaker.storage import S3Store

PORT = int(sys.argv[1]) if __name__ == "__main__" else 0
_lock = threading.Lock()
_executors: dict[str, LocalTrainingJobs] = {}
_throttled: set[str] = set()


def update_endpoint(self: SageMakerResponse) -> ActionResult:
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    config_name = self._get_param("EndpointConfigName")
    if name not in backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    config = backend.describe_endpoint_config(config_name)
    old = backend.endpoints[name]
    backend.endpoints[name] = FakeEndpoint(
        account_id=backend.account_id,
        region_name=backend.region_name,
        endpoint_name=name,
        endpoint_config_name=config_name,
        production_variants=config["ProductionVariants"],
        data_capture_config=config["DataCaptureConfig"],
        tags=old.tags,
    )
    return ActionResult({"EndpointArn": old.arn})


def _own_client(service: str, region: str) -> Any:
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=f"http://127.0.0.1:{PORT}",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _executor(region: str) -> LocalTrainingJobs:
    """One local backend per region, storing in this server's S3, logging to its CloudWatch."""
    with _lock:
        if region not in _executors:
            logs = _own_client("logs", region)
            streams: dict[str, str] = {}

            def to_cloudwatch(job: str, line: str) -> None:
                if not line:  # CloudWatch Logs refuses empty events (a traceback's blank lines)
                    return
                if job not in streams:
                    streams[job] = f"{job}/algo-1-{int(time.time())}"
                    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
                        logs.create_log_group(logGroupName=LOG_GROUP)
                    logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=streams[job])
                logs.put_log_events(
                    logGroupName=LOG_GROUP,
                    logStreamName=streams[job],
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
                )

            _executors[region] = LocalTrainingJobs(
                S3Store(s3_client=_own_client("s3", region)), region, log_sink=to_cloudwatch
            )
        return _executors[region]


_record_training_job = SageMakerResponse.create_training_job
_describe_recorded_job = SageMakerResponse.describe_training_job


def create_training_job(self: SageMakerResponse) -> ActionResult:
    result = _record_training_job(self)
    _executor(self.region).create_training_job(json.loads(self.body))
    return result


def describe_training_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("TrainingJobName")
    with _lock:
        first_call = name not in _throttled
        _throttled.add(name)
    if first_call:
        raise JsonRESTError("ThrottlingException", "Rate exceeded")
    recorded = dict(_describe_recorded_job(self).result)
    executed = _executor(self.region).describe_training_job(name)
    for key in (
        "TrainingJobStatus",
        "SecondaryStatus",
        "SecondaryStatusTransitions",
        "FailureReason",
        "ModelArtifacts",
        "TrainingStartTime",
        "TrainingEndTime",
    ):
        if key in executed:
            recorded[key] = executed[key]
        else:
            recorded.pop(key, None)
    return ActionResult(recorded)


def stop_training_job(self: SageMakerResponse) -> ActionResult:
    name = self._get_param("TrainingJobName")
    self.sagemaker_backend.describe_training_job(name)  # ValidationError if unknown
    _executor(self.region).stop_training_job(name)
    return ActionResult({})


_schedules: dict[tuple[str, str], dict[str, Any]] = {}


def _schedule(self: SageMakerResponse) -> tuple[tuple[str, str], str]:
    name = self._get_param("MonitoringScheduleName")
    known = (self.region, name) in _schedules
    if self._get_param("MonitoringScheduleConfig") is None and not known:
        raise ResourceNotFound(f"Monitoring schedule {name} does not exist")
    return (self.region, name), name


def create_monitoring_schedule(self: SageMakerResponse) -> ActionResult:
    key, name = _schedule(self)
    arn = f"arn:aws:sagemaker:{self.region}:{self.current_account}:monitoring-schedule/{name}"
    with _lock:
        _schedules[key] = {
            "MonitoringScheduleArn": arn,
            "MonitoringScheduleName": name,
            "MonitoringScheduleStatus": "Scheduled",
            "MonitoringScheduleConfig": self._get_param("MonitoringScheduleConfig"),
        }
    return ActionResult({"MonitoringScheduleArn": arn})


def describe_monitoring_schedule(self: SageMakerResponse) -> ActionResult:
    key, _ = _schedule(self)
    return ActionResult(_schedules[key])


def update_monitoring_schedule(self: SageMakerResponse) -> ActionResult:
    key, name = _schedule(self)
    if key not in _schedules:
        raise ResourceNotFound(f"Monitoring schedule {name} does not exist")
    with _lock:
        _schedules[key]["MonitoringScheduleConfig"] = self._get_param("MonitoringScheduleConfig")
    return ActionResult({"MonitoringScheduleArn": _schedules[key]["MonitoringScheduleArn"]})


def delete_monitoring_schedule(self: SageMakerResponse) -> ActionResult:
    key, _ = _schedule(self)
    with _lock:
        del _schedules[key]
    return ActionResult({})


def list_monitoring_schedules(self: SageMakerResponse) -> ActionResult:
    summaries = [
        {
            "MonitoringScheduleName": schedule["MonitoringScheduleName"],
            "MonitoringScheduleArn": schedule["MonitoringScheduleArn"],
            "MonitoringScheduleStatus": schedule["MonitoringScheduleStatus"],
        }
        for (region, _), schedule in sorted(_schedules.items())
        if region == self.region
    ]
    return ActionResult({"MonitoringScheduleSummaries": summaries})


SageMakerResponse.create_monitoring_schedule = create_monitoring_schedule
SageMakerResponse.describe_monitoring_schedule = describe_monitoring_schedule
SageMakerResponse.update_monitoring_schedule = update_monitoring_schedule
SageMakerResponse.delete_monitoring_schedule = delete_monitoring_schedule
SageMakerResponse.list_monitoring_schedules = list_monitoring_schedules
SageMakerResponse.update_endpoint = update_endpoint
SageMakerResponse.create_training_job = create_training_job
SageMakerResponse.describe_training_job = describe_training_job
SageMakerResponse.stop_training_job = stop_training_job

if __name__ == "__main__":
    main(["-H", "127.0.0.1", "-p", str(PORT)])
