"""Job backends: where a CreateTrainingJob request goes.

``sagemaker`` sends it to the SageMaker API (AWS, or any ``AWS_ENDPOINT_URL``) and reads the job's
CloudWatch log stream; ``local`` executes it on this machine
(:class:`~predictive_maintenance.sagemaker.local.LocalTrainingJobs`). The runner sees only this
protocol, so its submit, poll, stop and download code is the same for both.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final, Protocol

from botocore.exceptions import ClientError

from predictive_maintenance.sagemaker.aws import client
from predictive_maintenance.sagemaker.config import BridgeSettings, SageMakerConfigError
from predictive_maintenance.sagemaker.local import LocalTrainingJobs, check_interpreter
from predictive_maintenance.sagemaker.storage import DirectoryStore, ObjectStore, S3Store

LOG_GROUP: Final = "/aws/sagemaker/TrainingJobs"
BACKENDS: Final = ("local", "sagemaker")


class TrainingJobBackend(Protocol):
    """The part of the SageMaker API a node job needs."""

    store: ObjectStore

    def create_training_job(self, request: dict[str, Any]) -> dict[str, str]: ...

    def describe_training_job(self, name: str) -> dict[str, Any]: ...

    def stop_training_job(self, name: str) -> None: ...

    def new_log_lines(self, name: str) -> list[str]: ...


class SageMakerTrainingJobs:
    """Training jobs on Amazon SageMaker through boto3; logs from CloudWatch Logs."""

    def __init__(self, region: str | None, store: ObjectStore | None = None) -> None:
        self.store = store or S3Store(region)
        self._sagemaker = client("sagemaker", region)
        self._logs = client("logs", region)
        self._tokens: dict[str, dict[str, str | None]] = {}

    def create_training_job(self, request: dict[str, Any]) -> dict[str, str]:
        response = self._sagemaker.create_training_job(**request)
        return {"TrainingJobArn": response["TrainingJobArn"]}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self._sagemaker.describe_training_job(TrainingJobName=name)

    def stop_training_job(self, name: str) -> None:
        try:
            self._sagemaker.stop_training_job(TrainingJobName=name)
        except ClientError as error:
            # Stopping a job that has just ended is not an error worth raising over.
            if error.response.get("Error", {}).get("Code") != "ValidationException":
                raise

    def new_log_lines(self, name: str) -> list[str]:
        """New events of the job's streams (``<job>/algo-<n>-<epoch>``), oldest first."""
        tokens = self._tokens.setdefault(name, {})
        try:
            streams = self._logs.describe_log_streams(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/"
            ).get("logStreams", [])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []  # the group appears with the first job's first log line
            raise
        lines: list[str] = []
        for stream in sorted(item["logStreamName"] for item in streams):
            while True:
                arguments: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                if tokens.get(stream):
                    arguments["nextToken"] = tokens[stream]
                response = self._logs.get_log_events(**arguments)
                lines.extend(event["message"] for event in response.get("events", []))
                if response.get("nextForwardToken") in {None, tokens.get(stream)}:
                    break
                tokens[stream] = response["nextForwardToken"]
        return lines


class LocalBackend(LocalTrainingJobs):
    """The ``local`` backend with its store attached (the protocol's ``store``)."""

    def __init__(self, store: ObjectStore, region: str | None, python: str) -> None:
        super().__init__(store, region, python=python)
        self.store = store


def create_backend(
    name: str, settings: BridgeSettings, python: str | None = None
) -> TrainingJobBackend:
    """The backend called ``name``; the local one keeps "S3" in a directory if configured and
    runs jobs with ``python`` (checked to be the image's Python version) if given."""
    if name == "sagemaker":
        return SageMakerTrainingJobs(settings.region)
    if name == "local":
        directory: Path | None = settings.local_store_directory
        store = DirectoryStore(directory) if directory is not None else S3Store(settings.region)
        interpreter = (
            check_interpreter(python, settings.job_environment.python_version)
            if python
            else sys.executable
        )
        return LocalBackend(store, settings.region, interpreter)
    raise SageMakerConfigError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
