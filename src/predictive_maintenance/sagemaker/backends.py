"""Job backends: where a CreateTrainingJob request goes.

``sagemaker`` sends it to the SageMaker API (AWS, or any ``AWS_ENDPOINT_URL``) and reads the job's
CloudWatch log stream; ``local`` executes it on this machine
(:class:`~predictive_maintenance.sagemaker.local.LocalTrainingJobs`). The runner sees only this
protocol, so its submit, poll, stop and download code is the same for both.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from botocore.exceptions import ClientError

from predictive_maintenance.sagemaker.aws import client
from predictive_maintenance.sagemaker.config import BridgeSettings, SageMakerConfigError
from predictive_maintenance.sagemaker.local import (
    TERMINAL_STATUSES,
    LocalTrainingJobs,
    check_interpreter,
)
from predictive_maintenance.sagemaker.storage import DirectoryStore, ObjectStore, S3Store

logger = logging.getLogger(__name__)

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
        names = sorted(item["logStreamName"] for item in streams)
        for stream in names:
            # One stream per instance: a multi-instance job's lines carry their host's name.
            host = stream.partition("/")[2].rpartition("-")[0]
            prefix = f"{host}: " if len(names) > 1 and host else ""
            while True:
                arguments: dict[str, Any] = {
                    "logGroupName": LOG_GROUP,
                    "logStreamName": stream,
                    "startFromHead": True,
                }
                if tokens.get(stream):
                    arguments["nextToken"] = tokens[stream]
                response = self._logs.get_log_events(**arguments)
                lines.extend(prefix + event["message"] for event in response.get("events", []))
                if response.get("nextForwardToken") in {None, tokens.get(stream)}:
                    break
                tokens[stream] = response["nextForwardToken"]
        return lines


#: Log lines of a failed job kept for its error.
FAILURE_LOG_LINES: Final = 20
#: How long to wait for a stopped job to reach a final status after Ctrl-C.
STOP_WAIT_SECONDS: Final = 60.0
#: How a job reports a failing node in its log (:class:`~.job.NodeFailedError`); a host's name
#: comes first in a multi-instance job's log.
_NODE_FAILED: Final = re.compile(r"^(?:algo-\d+: )?node \S+ failed: ")
_HOST_PREFIX: Final = re.compile(r"^algo-\d+: ")


@dataclass(frozen=True)
class FinishedJob:
    """A job at its end: its description, its last log lines and its failing node's line."""

    kind: str
    described: dict[str, Any]
    log_tail: list[str]
    node_failure: str | None

    @property
    def status(self) -> str:
        return self.described[f"{self.kind}JobStatus"]

    @property
    def reason(self) -> str:
        """SageMaker's FailureReason, with the node's own line first where the image's training
        toolkit replaced the job's failure file with its ``ExecuteUserScriptError``."""
        reason = self.described.get("FailureReason") or self.described.get("SecondaryStatus")
        reason = reason or self.status
        if self.node_failure and _HOST_PREFIX.sub("", self.node_failure) not in reason:
            return f"{self.node_failure} ({reason})"
        return reason


def follow_job(backend: Any, name: str, kind: str, poll_seconds: float) -> FinishedJob:
    """Polls a ``Training`` or ``Processing`` job until it ends, logging its status changes and
    log lines; Ctrl-C stops the job (and waits a while for it to stop) before re-raising."""
    describe = getattr(backend, f"describe_{kind.lower()}_job")
    started = time.monotonic()
    recent: deque[str] = deque(maxlen=FAILURE_LOG_LINES)
    node_failure = None
    last_status = None

    def read_log() -> None:
        nonlocal node_failure
        for line in backend.new_log_lines(name):
            recent.append(line)
            if _NODE_FAILED.match(line.strip()):
                node_failure = line.strip()
            logger.info("%s | %s", name, line)

    try:
        while True:
            described = describe(name)
            status = (described[f"{kind}JobStatus"], described.get("SecondaryStatus"))
            if status != last_status:
                logger.info(
                    "%s job %s: %s (%.0f s)",
                    kind,
                    name,
                    " - ".join(filter(None, status)),
                    time.monotonic() - started,
                )
                last_status = status
            read_log()
            if status[0] in TERMINAL_STATUSES:
                read_log()
                return FinishedJob(kind, described, list(recent), node_failure)
            time.sleep(poll_seconds)
    except KeyboardInterrupt:
        logger.warning("Interrupted: stopping %s job %s", kind.lower(), name)
        getattr(backend, f"stop_{kind.lower()}_job")(name)
        deadline = time.monotonic() + STOP_WAIT_SECONDS
        while time.monotonic() < deadline:
            described = describe(name)
            if described[f"{kind}JobStatus"] in TERMINAL_STATUSES:
                logger.warning("%s job %s: %s", kind, name, described[f"{kind}JobStatus"])
                break
            time.sleep(min(poll_seconds, 1.0))
        raise


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
        return LocalTrainingJobs(store, settings.region, python=interpreter)
    raise SageMakerConfigError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
