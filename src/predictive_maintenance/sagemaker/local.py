"""The ``local`` backend: executes CreateTrainingJob requests on this machine, without Docker.

Each job gets an ``/opt/ml``-shaped tree in a temporary directory, as the SageMaker training
platform prepares one in the container:

    input/config/hyperparameters.json, inputdataconfig.json, resourceconfig.json
    input/data/<channel>/...        each channel's S3 prefix, downloaded (File mode)
    code/                           sagemaker_submit_directory, extracted
    model/                          what the program leaves here becomes model.tar.gz
    output/failure                  written by a failing program: the job's FailureReason

The program (``sagemaker_program``) runs in a subprocess of this Python, with the ``SM_*``
variables the SageMaker training toolkit sets (pointing into the tree), the request's
``Environment``, and the hyperparameters as ``--key value`` arguments. ``model.tar.gz`` is
uploaded to ``<S3OutputPath>/<job>/output/model.tar.gz`` in the given store (S3, moto's S3, or a
directory standing in for it). ``MaxRuntimeInSeconds`` is enforced; ``stop_training_job``
terminates the program (SIGTERM, then SIGKILL after a grace period) as SageMaker does.

The program runs with this Python and its packages, or with another interpreter (``python``):
the stand-in for the stock image (``deploy/image/xgboost-image-env``: its Python 3.10, its pins
and its own training toolkit). With an interpreter that has the image's training toolkit,
training jobs run as in the image, through ``SAGEMAKER_TRAINING_MODULE`` in script mode (the
toolkit reads the tree through ``SAGEMAKER_BASE_DIR``, sets the ``SM_*`` variables, pip-installs
the code directory and runs ``sagemaker_program``); otherwise the program is started here with
the variables the toolkit would set. What differs from SageMaker: the image is not pulled (no
Docker: the OS and conda's builds are not the image's).

A training job with ``InstanceCount`` n > 1 runs n programs side by side, one per host
(``algo-1`` ... ``algo-n``), each in its own ``/opt/ml`` tree whose ``resourceconfig.json`` lists
every host and names its own; a ``ShardedByS3Key`` channel gives host i the objects i, i + n, ...
of the prefix (sorted keys; SageMaker promises only "about 1/n of the objects" each), a
``FullyReplicated`` one gives every host everything. The hosts reach each other on 127.0.0.1
(see :mod:`.distributed`); their log lines are prefixed with the host's name. When one host's
program fails, the others are stopped and the job fails with that host's reason; ``model.tar.gz``
holds what every host left in its model directory (two hosts writing the same file is an error).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any, Final

from botocore.session import get_session
from botocore.validate import validate_parameters

from predictive_maintenance.sagemaker.archives import build_tar_gz, directory_files, extract_tar_gz
from predictive_maintenance.sagemaker.distributed import environment_for_local_hosts, free_port
from predictive_maintenance.sagemaker.job import FAILURE_REASON_LIMIT, PACKAGES_CACHE_VARIABLE
from predictive_maintenance.sagemaker.storage import ObjectStore, download_input

logger = logging.getLogger(__name__)

HOST: Final = "algo-1"
#: Seconds between SIGTERM and SIGKILL when a job is stopped (SageMaker allows 120).
STOP_GRACE_SECONDS: Final = 10.0
#: SageMaker's MaxRuntimeInSeconds when a request has no StoppingCondition.
DEFAULT_MAX_RUNTIME: Final = 86_400
TERMINAL_STATUSES: Final = frozenset({"Completed", "Failed", "Stopped"})
#: The stock XGBoost image's training entry (its SAGEMAKER_TRAINING_MODULE).
TRAINING_MODULE: Final = "sagemaker_xgboost_container.training:main"

#: Called with (job name, log line) for every line the program prints.
LogSink = Callable[[str, str], None]


class LocalJobError(ValueError):
    """A request the local backend cannot execute (it names the field)."""


def validate_request(operation: str, request: dict[str, Any]) -> None:
    """Validates ``request`` against botocore's SageMaker service model, as boto3 would."""
    validate_parameters(request, _sagemaker_model().operation_model(operation).input_shape)


@cache
def _sagemaker_model() -> Any:
    return get_session().get_service_model("sagemaker")


def max_runtime_seconds(request: dict[str, Any]) -> int:
    """The request's limit, or SageMaker's default of one day."""
    return request.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME)


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class _Job:
    request: dict[str, Any]
    arn: str
    created: datetime = field(default_factory=_now)
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    artifacts_uri: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    log_lines: list[str] = field(default_factory=list)
    log_cursor: int = 0
    processes: list[subprocess.Popen] = field(default_factory=list)
    stop_requested: str | None = None  # "Stopped" or "MaxRuntimeExceeded"
    thread: threading.Thread | None = None


#: Next to the wheels the bridge resolves (``job_environment.wheel_cache``'s default).
DEFAULT_PACKAGES_CACHE: Final = Path("~/.cache/kedro-sagemaker/job-packages").expanduser()


class LocalTrainingJobs:
    """Runs training (and processing) jobs in subprocesses; answers like the SageMaker API does.

    Processing jobs run ``ContainerEntrypoint`` + ``ContainerArguments`` with every ``/opt/ml/...``
    path mapped into the job's temporary tree (a leading ``python*`` is this interpreter); inputs
    are downloaded to their ``LocalPath`` and each output's ``LocalPath`` is uploaded to its
    ``S3Uri`` when the program succeeds.

    Args:
        store: Where channels and ``sagemaker_submit_directory`` are read from and
            ``model.tar.gz`` is written to.
        region: Goes into ARNs only.
        python: The interpreter that runs the program (default: this one); with the image's
            training toolkit installed, training jobs run through it.
        log_sink: Receives every line the program prints (the runner reads them through
            :meth:`new_log_lines` instead; the moto fixture forwards them to CloudWatch Logs).
        keep_workdirs: Keep each job's ``/opt/ml`` tree for inspection (logged at the end).
        packages_cache: Where jobs keep the wheel sets they installed, by content, so the jobs of
            local runs install a set once (None: every job installs its own, as on SageMaker).
    """

    def __init__(
        self,
        store: ObjectStore,
        region: str | None = None,
        *,
        python: str = sys.executable,
        log_sink: LogSink | None = None,
        keep_workdirs: bool = False,
        packages_cache: str | os.PathLike[str] | None = DEFAULT_PACKAGES_CACHE,
    ) -> None:
        self.store = store
        self._packages_cache = (
            {PACKAGES_CACHE_VARIABLE: str(packages_cache)} if packages_cache is not None else {}
        )
        self._region = region or "local"
        self._python = str(python)
        self._toolkit = python != sys.executable and _has_training_toolkit(self._python)
        self._log_sink = log_sink
        self._keep = keep_workdirs
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # ---- the SageMaker API surface the runner uses ---------------------------------------------
    def create_training_job(self, request: dict[str, Any]) -> dict[str, str]:
        validate_request("CreateTrainingJob", request)
        name = request["TrainingJobName"]
        if "sagemaker_program" not in request.get("HyperParameters", {}):
            raise LocalJobError(
                "HyperParameters.sagemaker_program: the local backend runs script-mode jobs only"
            )
        for channel in request.get("InputDataConfig", []):
            source = channel["DataSource"].get("S3DataSource", {})
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise LocalJobError(
                    f"InputDataConfig.{channel['ChannelName']}: only S3Prefix sources are supported"
                )
            if channel.get("InputMode", "File") != "File":
                raise LocalJobError(
                    f"InputDataConfig.{channel['ChannelName']}.InputMode: only File is supported"
                )
        return {"TrainingJobArn": self._start(name, request, "training", self._execute)}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return self._describe(
            name,
            "Training",
            lambda job: {
                "SecondaryStatus": job.secondary,
                "SecondaryStatusTransitions": [dict(item) for item in job.transitions],
                "HyperParameters": dict(job.request.get("HyperParameters", {})),
                "AlgorithmSpecification": dict(job.request["AlgorithmSpecification"]),
                "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_seconds(job.request)},
                "ResourceConfig": dict(job.request["ResourceConfig"]),
                **(
                    {"ModelArtifacts": {"S3ModelArtifacts": job.artifacts_uri}}
                    if job.artifacts_uri
                    else {}
                ),
            },
        )

    def _describe(self, name: str, kind: str, fields: Callable[[_Job], dict[str, Any]]) -> dict:
        """What ``Describe<kind>Job`` answers: the common fields and the kind's own."""
        with self._lock:
            job = self._job(name)
            described = {
                f"{kind}JobName": name,
                f"{kind}JobArn": job.arn,
                f"{kind}JobStatus": job.status,
                "CreationTime": job.created,
                **fields(job),
            }
            if job.failure_reason:
                described["FailureReason"] = job.failure_reason
            if job.started:
                described[f"{kind}StartTime"] = job.started
            if job.ended:
                described[f"{kind}EndTime"] = job.ended
            return described

    def stop_training_job(self, name: str) -> None:
        with self._lock:
            job = self._job(name)
            if job.status != "InProgress":
                return
            job.status = "Stopping"
            job.stop_requested = job.stop_requested or "Stopped"
            self._transition(job, "Stopping", "Stopping the training job")
            processes = list(job.processes)
        for process in processes:
            _terminate(process)

    def new_log_lines(self, name: str) -> list[str]:
        """Lines the program printed since the previous call."""
        with self._lock:
            job = self._job(name)
            lines = job.log_lines[job.log_cursor :]
            job.log_cursor = len(job.log_lines)
            return lines

    def wait(self, name: str, timeout: float | None = None) -> dict[str, Any]:
        """Blocks until the job ends (for callers without a polling loop); returns describe()."""
        thread = self._job(name).thread
        if thread is not None:
            thread.join(timeout)
        return self.describe_training_job(name)

    # ---- processing jobs (the steps of an exported pipeline) -----------------------------------
    def create_processing_job(self, request: dict[str, Any]) -> dict[str, str]:
        validate_request("CreateProcessingJob", request)
        name = request["ProcessingJobName"]
        cluster = request["ProcessingResources"]["ClusterConfig"]
        if cluster.get("InstanceCount", 1) != 1:
            raise LocalJobError(
                "ProcessingResources.ClusterConfig.InstanceCount: the local backend runs one host"
            )
        if not request["AppSpecification"].get("ContainerEntrypoint"):
            raise LocalJobError(
                "AppSpecification.ContainerEntrypoint: the local backend runs a program, not an "
                "image's default entrypoint"
            )
        arn = self._start(name, request, "processing", self._execute)
        return {"ProcessingJobArn": arn}

    def describe_processing_job(self, name: str) -> dict[str, Any]:
        return self._describe(
            name,
            "Processing",
            lambda job: {
                "AppSpecification": dict(job.request["AppSpecification"]),
                "ProcessingResources": dict(job.request["ProcessingResources"]),
                "ProcessingInputs": list(job.request.get("ProcessingInputs", [])),
                "ProcessingOutputConfig": dict(job.request.get("ProcessingOutputConfig", {})),
                **({"ExitMessage": job.failure_reason} if job.failure_reason else {}),
            },
        )

    stop_processing_job = stop_training_job

    def _prepare_processing_tree(self, root: Path, request: dict[str, Any]) -> None:
        for item in request.get("ProcessingInputs", []):
            source = item.get("S3Input")
            if source is None:
                raise LocalJobError(f"ProcessingInputs.{item['InputName']}: only S3Input")
            try:
                download_input(
                    self.store, source["S3Uri"], _container_path(root, source["LocalPath"])
                )
            except FileNotFoundError as error:
                raise LocalJobError(f"ProcessingInputs.{item['InputName']}: {error}") from None
        for item in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
            _container_path(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        (root / "output").mkdir(parents=True, exist_ok=True)

    def _upload_processing_outputs(self, root: Path, request: dict[str, Any]) -> None:
        for item in request.get("ProcessingOutputConfig", {}).get("Outputs", []):
            directory = _container_path(root, item["S3Output"]["LocalPath"])
            prefix = item["S3Output"]["S3Uri"].rstrip("/")
            for relative in directory_files(directory):
                self.store.upload_file(directory / relative, f"{prefix}/{relative}")

    def _processing_command(self, root: Path, app: dict[str, Any]) -> list[str]:
        command = [
            _container_argument(root, part)
            for part in [*app["ContainerEntrypoint"], *app.get("ContainerArguments", [])]
        ]
        if Path(command[0]).name.startswith("python"):
            command[0:1] = [self._python, "-u"]
        return command

    # ---- execution -----------------------------------------------------------------------------
    def _start(self, name: str, request: dict[str, Any], kind: str, target: Callable) -> str:
        """Records the job and runs ``target(name)`` in a thread; returns the job's ARN."""
        with self._lock:
            if name in self._jobs:
                raise LocalJobError(f"{kind.title()}JobName: a job named {name} already exists")
            arn = f"arn:aws:sagemaker:{self._region}:000000000000:{kind}-job/{name.lower()}"
            job = _Job(request=request, arn=arn)
            self._jobs[name] = job
            self._transition(job, "Starting", f"Preparing the instances for {kind}")
        job.thread = threading.Thread(
            target=self._run_in_workdir, args=(name, kind, target), daemon=True
        )
        job.thread.start()
        return arn

    def _run_in_workdir(self, name: str, kind: str, body: Callable[[str, Path], None]) -> None:
        """Runs ``body(name, workdir)`` in a fresh temporary directory; any error fails the job."""
        workdir = Path(tempfile.mkdtemp(prefix=f"sagemaker-{name}-"))
        try:
            body(name, workdir)
        except Exception as error:  # the job fails; the caller reports the reason
            logger.debug("Local %s job %s failed to run", kind, name, exc_info=True)
            self._finish(name, "Failed", f"ClientError: {type(error).__name__}: {error}")
        finally:
            if self._keep:
                logger.info("Local %s job %s kept its /opt/ml tree in %s", kind, name, workdir)
            else:
                shutil.rmtree(workdir, ignore_errors=True)

    def _job(self, name: str) -> _Job:
        try:
            return self._jobs[name]
        except KeyError:
            raise LocalJobError(f"Could not find training job {name!r}") from None

    def _transition(self, job: _Job, secondary: str, message: str) -> None:
        now = _now()
        if job.transitions and "EndTime" not in job.transitions[-1]:
            job.transitions[-1]["EndTime"] = now
        job.secondary = secondary
        job.transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})

    def _set(self, name: str, secondary: str, message: str) -> bool:
        """Moves on to ``secondary`` unless a stop was requested; False then."""
        with self._lock:
            job = self._jobs[name]
            if job.stop_requested:
                return False
            self._transition(job, secondary, message)
            return True

    def _log(self, name: str, line: str) -> None:
        with self._lock:
            self._jobs[name].log_lines.append(line)
        if self._log_sink is not None:
            self._log_sink(name, line)

    def _execute(self, name: str, workdir: Path) -> None:
        """Runs a training or processing job: inputs, program, outputs, final status."""
        job = self._jobs[name]
        request = job.request
        training = "TrainingJobName" in request
        kind = "Training" if training else "Processing"
        deadline = time.monotonic() + max_runtime_seconds(request)
        if not self._set(name, "Downloading", "Downloading input data and code"):
            return self._finish(name, "Stopped", None)
        if training:
            hosts = _hosts(request)
            # One host keeps the tree at workdir/opt/ml; several get workdir/<host>/opt/ml.
            trees = {
                host: _prepare_tree(
                    workdir / host if len(hosts) > 1 else workdir, request, self.store, host
                )
                for host in hosts
            }
        else:
            root = workdir / "opt" / "ml"
            self._prepare_processing_tree(root, request)
            failure = root / "output" / "message"  # a processing job's FailureReason
        if not self._set(name, kind, f"{kind} in progress"):
            return self._finish(name, "Stopped", None)
        with self._lock:
            job.started = _now()
        if training:
            return_code, failure = self._run_hosts(name, trees, deadline)
        else:
            command = self._processing_command(root, request["AppSpecification"])
            env = {
                **_host_environment(),
                **request.get("Environment", {}),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
            return_code = self._spawn(name, command, workdir, env, deadline)
        if job.stop_requested:
            if training:
                self._upload_model(name, trees)  # SageMaker keeps what a stopped job wrote
            reason = (
                f"{kind} job exceeded MaxRuntimeInSeconds"
                if job.stop_requested == "MaxRuntimeExceeded"
                else None
            )
            return self._finish(name, "Stopped", reason, secondary=job.stop_requested)
        if return_code != 0:
            return self._finish(name, "Failed", _failure_reason(failure, return_code))
        self._set(name, "Uploading", "Uploading outputs")
        if training:
            self._upload_model(name, trees)
        else:
            self._upload_processing_outputs(root, request)
        return self._finish(name, "Completed", None)

    def _run_hosts(
        self, name: str, trees: dict[str, dict[str, Path]], deadline: float
    ) -> tuple[int, Path]:
        """Runs the program on every host at once; returns the exit code and failure file of the
        first host that failed (or 0 and the first host's). A failed host stops the others, as
        SageMaker ends a job whose algorithm failed on any instance."""
        first = next(iter(trees.values()))
        if len(trees) == 1:
            return self._run_program(name, first, deadline), first["output"] / "failure"
        extra = environment_for_local_hosts(list(trees), free_port())
        # The hosts share this machine's cores, where SageMaker gives each its own: OpenMP
        # threads that spin while waiting (the default) starve the other hosts' (40 s instead
        # of 6 s for the project's model on 2 hosts and 2 cores).
        extra.setdefault("OMP_WAIT_POLICY", os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        failed: list[str] = []
        codes: dict[str, int] = {}

        def run(host: str) -> None:
            codes[host] = self._run_program(name, trees[host], deadline, host, extra)
            if codes[host] != 0:
                with self._lock:
                    failed.append(host)
                    others = list(self._jobs[name].processes)
                for process in others:
                    _terminate(process)

        threads = [threading.Thread(target=run, args=(host,), daemon=True) for host in trees]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failed:
            return codes[failed[0]], trees[failed[0]]["output"] / "failure"
        return 0, first["output"] / "failure"

    def _run_program(
        self,
        name: str,
        tree: dict[str, Path],
        deadline: float,
        host: str = HOST,
        extra_environment: dict[str, str] | None = None,
    ) -> int:
        """Runs the program on one host; ``extra_environment`` is set for multi-host jobs."""
        request = self._jobs[name].request
        extra = extra_environment or {}
        # Each host's lines carry its name when there are several (SageMaker: a log stream each).
        prefix = f"{host}: " if extra else ""
        hyperparameters = {k: _decode(v) for k, v in request.get("HyperParameters", {}).items()}
        program = str(hyperparameters["sagemaker_program"])
        arguments = [
            item
            for key, value in sorted(hyperparameters.items())
            if not key.startswith("sagemaker_")
            for item in (f"--{key}", value if isinstance(value, str) else json.dumps(value))
        ]
        if self._toolkit:
            env = {
                **_host_environment(),
                **request.get("Environment", {}),
                "SAGEMAKER_BASE_DIR": str(tree["root"]),
                "SAGEMAKER_TRAINING_MODULE": TRAINING_MODULE,
                "TRAINING_JOB_NAME": name,
                "PYTHONUNBUFFERED": "1",
                **extra,
            }
            if extra:
                # The toolkit pip-installs the code directory; hosts sharing one interpreter
                # would install and uninstall it in the same site-packages at the same moment.
                env["PIP_TARGET"] = str(tree["root"] / "pip-target")
            # The image's `train` command; it finds the code already in /opt/ml/code.
            command = [self._python, "-u", "-m", "sagemaker_containers.cli.train"]
            return self._spawn(name, command, tree["root"], env, deadline, prefix=prefix)
        env = {
            **_training_environment(name, request, hyperparameters, tree, program, host=host),
            **extra,
        }
        command = [self._python, "-u", program, *arguments]
        return self._spawn(name, command, tree["code"], env, deadline, prefix=prefix)

    def _spawn(
        self,
        name: str,
        command: list[str],
        cwd: Path,
        env: dict[str, str],
        deadline: float,
        *,
        prefix: str = "",
    ) -> int:
        """Runs the job's program, streaming its output to the job log; returns its exit code."""
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env={**self._packages_cache, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            start_new_session=True,  # Ctrl-C reaches the runner, which stops the job
        )
        with self._lock:
            self._jobs[name].processes.append(process)
            stop_now = self._jobs[name].stop_requested is not None
        if stop_now:
            _terminate(process)
        watchdog = threading.Thread(
            target=self._enforce_deadline, args=(name, process, deadline), daemon=True
        )
        watchdog.start()
        assert process.stdout is not None
        for line in process.stdout:
            self._log(name, prefix + line.rstrip("\n"))
        return process.wait()

    def _enforce_deadline(self, name: str, process: subprocess.Popen, deadline: float) -> None:
        while process.poll() is None:
            if time.monotonic() >= deadline:
                with self._lock:
                    job = self._jobs[name]
                    if job.stop_requested is None:
                        job.stop_requested = "MaxRuntimeExceeded"
                        job.status = "Stopping"
                        self._transition(job, "Stopping", "MaxRuntimeInSeconds exceeded")
                _terminate(process)
                return
            time.sleep(0.05)

    def _upload_model(self, name: str, trees: dict[str, dict[str, Path]]) -> None:
        request = self._jobs[name].request
        files: dict[str, bytes] = {}
        for host, tree in trees.items():
            written = directory_files(tree["model"])
            clash = sorted(set(written) & set(files))
            if clash:
                raise LocalJobError(
                    f"host {host} wrote {clash[0]} in its model directory, as an "
                    "earlier host did: in a multi-instance job one host writes the outputs"
                )
            files.update(written)
        tree = next(iter(trees.values()))
        archive = build_tar_gz(files)
        uri = (
            f"{request['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{name}/output/model.tar.gz"
        )
        staged = tree["root"] / "model.tar.gz"
        staged.write_bytes(archive)
        self.store.upload_file(staged, uri)
        with self._lock:
            self._jobs[name].artifacts_uri = uri

    def _finish(
        self, name: str, status: str, reason: str | None, *, secondary: str | None = None
    ) -> None:
        with self._lock:
            job = self._jobs[name]
            job.status = status
            job.failure_reason = reason
            job.ended = _now()
            self._transition(job, secondary or status, reason or f"Training job {status.lower()}")
            job.transitions[-1]["EndTime"] = job.ended
            job.processes.clear()


def _hosts(request: dict[str, Any]) -> list[str]:
    """``algo-1`` ... ``algo-n``: SageMaker's names for a job's n instances."""
    count = request.get("ResourceConfig", {}).get("InstanceCount", 1)
    return [f"algo-{index}" for index in range(1, count + 1)]


def _prepare_tree(
    workdir: Path, request: dict[str, Any], store: ObjectStore, host: str = HOST
) -> dict[str, Path]:
    """``host``'s /opt/ml under ``workdir``: config files, its channels' data, the code."""
    hosts = _hosts(request)
    root = workdir / "opt" / "ml"
    tree = {
        "root": root,
        "input": root / "input",
        "config": root / "input" / "config",
        "data": root / "input" / "data",
        "code": root / "code",
        "model": root / "model",
        "output": root / "output",
        "output_data": root / "output" / "data",
    }
    for path in tree.values():
        path.mkdir(parents=True, exist_ok=True)
    channels = request.get("InputDataConfig", [])
    (tree["config"] / "hyperparameters.json").write_text(
        json.dumps(request.get("HyperParameters", {}), indent=2)
    )
    (tree["config"] / "inputdataconfig.json").write_text(
        json.dumps(
            {
                channel["ChannelName"]: {
                    "ContentType": channel.get("ContentType", ""),
                    "TrainingInputMode": channel.get("InputMode", "File"),
                    "S3DistributionType": channel["DataSource"]["S3DataSource"].get(
                        "S3DataDistributionType", "FullyReplicated"
                    ),
                    "RecordWrapperType": channel.get("RecordWrapperType", "None"),
                }
                for channel in channels
            },
            indent=2,
        )
    )
    (tree["config"] / "resourceconfig.json").write_text(
        json.dumps({"current_host": host, "hosts": hosts, "network_interface_name": "eth0"})
    )
    for channel in channels:
        directory = tree["data"] / channel["ChannelName"]
        directory.mkdir(parents=True, exist_ok=True)
        source = channel["DataSource"]["S3DataSource"]
        uri = source["S3Uri"]
        try:
            if source.get("S3DataDistributionType") == "ShardedByS3Key" and len(hosts) > 1:
                _download_shard(store, uri, directory, hosts.index(host), len(hosts))
            else:
                download_input(store, uri, directory)
        except FileNotFoundError:
            raise LocalJobError(f"channel {channel['ChannelName']}: nothing at {uri}") from None
    code_uri = _decode(request["HyperParameters"].get("sagemaker_submit_directory", '""'))
    if code_uri:
        archive = tree["root"] / "sourcedir.tar.gz"
        store.download_file(code_uri, archive)
        extract_tar_gz(archive.read_bytes(), tree["code"], what=code_uri)
        archive.unlink()
    return tree


def _download_shard(store: ObjectStore, uri: str, directory: Path, index: int, count: int) -> None:
    """Host ``index``'s objects of a ``ShardedByS3Key`` prefix: every ``count``-th sorted key."""
    prefix = uri.rstrip("/") + "/"
    keys = store.list_keys(prefix)
    if not keys:
        raise FileNotFoundError(uri)
    for key_uri in keys[index::count]:
        target = (directory / key_uri[len(prefix) :]).resolve()
        if directory.resolve() not in target.parents:
            raise LocalJobError(f"{key_uri} would land outside {directory}")
        store.download_file(key_uri, target)


def _training_environment(
    name: str,
    request: dict[str, Any],
    hyperparameters: dict[str, Any],
    tree: dict[str, Path],
    program: str,
    *,
    host: str = HOST,
) -> dict[str, str]:
    """The variables the SageMaker training toolkit sets, pointing into the local tree."""
    channels = [channel["ChannelName"] for channel in request.get("InputDataConfig", [])]
    user_hps = {k: v for k, v in hyperparameters.items() if not k.startswith("sagemaker_")}
    env = {
        **_host_environment(),
        **request.get("Environment", {}),
        "TRAINING_JOB_NAME": name,
        "TRAINING_JOB_ARN": f"training-job/{name}",
        "SM_MODEL_DIR": str(tree["model"]),
        "SM_INPUT_DIR": str(tree["input"]),
        "SM_INPUT_CONFIG_DIR": str(tree["config"]),
        "SM_INPUT_DATA_DIR": str(tree["data"]),
        "SM_OUTPUT_DIR": str(tree["output"]),
        "SM_OUTPUT_DATA_DIR": str(tree["output_data"]),
        "SM_CHANNELS": json.dumps(sorted(channels)),
        "SM_HPS": json.dumps(user_hps),
        "SM_HOSTS": json.dumps(_hosts(request)),
        "SM_CURRENT_HOST": host,
        "SM_NUM_CPUS": str(os.cpu_count() or 1),
        "SM_NUM_GPUS": "0",
        "SM_MODULE_DIR": str(hyperparameters.get("sagemaker_submit_directory", "")),
        "SM_USER_ENTRY_POINT": program,
        "SM_LOG_LEVEL": str(hyperparameters.get("sagemaker_container_log_level", 20)),
        "SM_NETWORK_INTERFACE_NAME": "eth0",
        "PYTHONPATH": str(tree["code"]),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for channel in channels:
        env[f"SM_CHANNEL_{channel.upper()}"] = str(tree["data"] / channel)
    for key, value in user_hps.items():
        env[f"SM_HP_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def _container_path(root: Path, path: str) -> Path:
    """Where a container path under /opt/ml lives in the local tree (never outside it)."""
    if not path.startswith("/opt/ml/"):
        raise LocalJobError(f"{path!r}: the local backend maps only paths under /opt/ml/")
    mapped = (root / path.removeprefix("/opt/ml/")).resolve()
    if mapped != root.resolve() and root.resolve() not in mapped.parents:
        raise LocalJobError(f"{path!r} leaves /opt/ml")
    return mapped


def _container_argument(root: Path, argument: str) -> str:
    """``argument`` with every /opt/ml/ path in it (also ``--dir=/opt/ml/...``) mapped."""
    return re.sub(
        r"/opt/ml/[^\s,;:=\"']*", lambda m: str(_container_path(root, m.group(0))), argument
    )


#: What a job inherits from this machine: a container has only the image's environment and the
#: request's, so nothing else (PYTHONPATH, say, which Kedro sets for the project) may leak in.
#: AWS_* stand for the credentials and endpoint SageMaker gives a job through its role.
_HOST_VARIABLES: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "OMP_WAIT_POLICY")


def _host_environment() -> dict[str, str]:
    return {
        key: value
        for key, value in os.environ.items()
        if key in _HOST_VARIABLES or key.startswith("AWS_")
    }


def check_interpreter(python: str, version: str) -> str:
    """``python``, resolved, if it runs and is Python ``version`` (the image's).

    Raises:
        LocalJobError: naming the path and what it is instead.
    """
    # Absolute, not resolved: a virtual environment's python is a symlink to its base.
    path = os.path.abspath(shutil.which(python) or python)
    try:
        probe = subprocess.run(
            [path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
    except OSError as error:
        raise LocalJobError(f"--python {python}: cannot run it ({error})") from None
    found = probe.stdout.strip()
    if probe.returncode != 0 or found != version:
        raise LocalJobError(
            f"--python {python}: jobs run on the image's Python {version}, but this is "
            f"{found or 'not a working Python'} (build the stand-in with `make image-env`)"
        )
    return path


def _has_training_toolkit(python: str) -> bool:
    """True if ``python`` has the SageMaker training toolkit and the XGBoost image's code."""
    probe = subprocess.run(
        [python, "-c", "import sagemaker_containers.cli.train, sagemaker_xgboost_container"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _failure_reason(failure: Path, return_code: int) -> str:
    """What SageMaker reports: the failure file's first 1,024 characters."""
    if failure.is_file():
        text = failure.read_text(errors="replace").strip()[:FAILURE_REASON_LIMIT]
        if text:
            return f"AlgorithmError: {text}"
    return f"AlgorithmError: the program exited with code {return_code} and wrote no failure file"


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if the program is still there after the grace period."""
    if process.poll() is not None:
        return
    try:
        process.terminate()
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
    except ProcessLookupError:
        pass
