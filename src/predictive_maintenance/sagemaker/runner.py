"""``SageMakerRunner``: runs selected Kedro nodes as SageMaker training jobs, the rest in-process.

    kedro run --runner predictive_maintenance.sagemaker.SageMakerRunner \
              --runner-params backend=local

A remote node is swapped for a copy whose function submits a job instead of computing: Kedro
still loads its inputs and saves its outputs through the catalog and fires every hook, so the
rest of the pipeline cannot tell where the node ran. Nodes run one at a time, in Kedro's order.

With the MLflow tracking hooks registered (``MlflowTrackingHooks``), a remote node's job logs its
parameters and outputs (the model, in XGBoost's format) into this ``kedro run``'s nested run of
the node's group, and the hooks leave that node's outputs to it; a job on SageMaker cannot reach
a store on this machine (sqlite), so then the hooks log them as for any node
(:mod:`.experiment_tracking`).
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

from kedro.pipeline import Pipeline
from kedro.runner import AbstractRunner

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.sagemaker.archives import build_tar_gz
from predictive_maintenance.sagemaker.aws import resolve_image_uri
from predictive_maintenance.sagemaker.backends import (
    BACKENDS,
    FinishedJob,
    TrainingJobBackend,
    create_backend,
    follow_job,
)
from predictive_maintenance.sagemaker.config import BridgeSettings, SageMakerConfigError
from predictive_maintenance.sagemaker.experiment_tracking import runner_tracking
from predictive_maintenance.sagemaker.hooks import SageMakerHooks
from predictive_maintenance.sagemaker.jobs import (
    NodeJob,
    RemoteNodeError,
    prepare_job,
    read_outputs,
)
from predictive_maintenance.sagemaker.packaging import code_files, top_level_package
from predictive_maintenance.sagemaker.storage import upload_bytes
from predictive_maintenance.sagemaker.wheels import upload_wheels, wheelhouse, wheels_uri

logger = logging.getLogger(__name__)


class TrainingJobFailedError(RemoteNodeError):
    """A node's training job ended Failed or Stopped; none of its outputs were saved."""


class RunnerParamsError(SageMakerConfigError):
    """``--runner-params`` asks for something the runner does not have (e.g. an unknown backend)."""


class SageMakerRunner(AbstractRunner):
    """Runs nodes selected in ``conf/<env>/sagemaker.yml`` as SageMaker training jobs.

    Args:
        is_async: Load and save node inputs and outputs with threads (as ``SequentialRunner``).
        backend: ``local`` (run the job's request on this machine, no Docker) or ``sagemaker``
            (submit it to SageMaker: AWS, or ``AWS_ENDPOINT_URL``).
        python: With ``backend=local``, the interpreter jobs run with, e.g. the stock image's
            stand-in (``--runner-params backend=local,python=.venv-image/bin/python``).
    """

    def __init__(
        self, is_async: bool = False, backend: str = "local", python: str | None = None
    ) -> None:
        super().__init__(is_async=is_async)
        if backend not in BACKENDS:
            raise RunnerParamsError(
                f"--runner-params: unknown backend {backend!r}; use backend=local (this machine) "
                "or backend=sagemaker (Amazon SageMaker)"
            )
        if python is not None and backend != "local":
            raise RunnerParamsError("--runner-params: python=... needs backend=local")
        self._python = python
        self._backend_name = backend
        self._backend: TrainingJobBackend | None = None
        self._code_uris: dict[str, str] = {}
        self._wheels: tuple[str | None] | None = None
        self._tracking: Any = None

    @property
    def _logger(self) -> logging.Logger:
        # Kedro's runners log their progress ("Completed node ...", "Completed 3 out of 19 tasks")
        # on the runner module's logger; this runner's module is the project's, whose messages
        # reach the console. Kedro's progress goes where Kedro's own runners' goes (the kedro
        # logger: the log file; `kedro run -v`); this module's `logger` keeps the job messages.
        return logging.getLogger("kedro.runner.sagemaker_runner")

    def _get_executor(self, max_workers: int) -> None:
        return None

    def _run(
        self,
        pipeline: Pipeline,
        catalog: Any,
        hook_manager: Any = None,
        run_id: str | None = None,
    ) -> None:
        settings = _settings_from(hook_manager)
        # The MLflow tracking hooks, if registered: a job logs into this run's nested run.
        self._tracking = runner_tracking(hook_manager)
        remote = [node for node in pipeline.nodes if settings.is_remote(node.name, node.tags)]
        if remote:
            logger.info(
                "SageMakerRunner (%s backend): %s run as training jobs; %d other nodes in-process",
                self._backend_name,
                ", ".join(node.name for node in remote),
                len(pipeline.nodes) - len(remote),
            )
        else:
            logger.info("SageMakerRunner: no node is selected to run remotely")
        swapped = [
            self._remote_copy(node, settings, run_id) if node in remote else node
            for node in pipeline.nodes
        ]
        super()._run(Pipeline(swapped), catalog, hook_manager, run_id)

    def _remote_copy(self, node: Any, settings: BridgeSettings, run_id: str | None) -> Any:
        @functools.wraps(node.func)
        def run_as_training_job(*args: Any, **kwargs: Any) -> Any:
            return self._run_remotely(node, settings, run_id, args, kwargs)

        return node._copy(func=run_as_training_job)

    # ---- one node, one job ---------------------------------------------------------------------
    def backend(self, settings: BridgeSettings) -> TrainingJobBackend:
        if self._backend is None:
            self._backend = create_backend(self._backend_name, settings, self._python)
        return self._backend

    def _wheels_uri(self, backend: TrainingJobBackend, settings: BridgeSettings) -> str | None:
        """The shipped wheels' location, uploaded on first use."""
        if self._wheels is None:
            wheels = wheelhouse(settings.job_environment)
            uri = wheels_uri(settings.s3_root, wheels)
            upload_wheels(backend.store, uri, wheels)
            self._wheels = (uri,)
        return self._wheels[0]

    def _code_uri(self, backend: TrainingJobBackend, settings: BridgeSettings, node: Any) -> str:
        key = top_level_package(node.func.__module__)
        if key not in self._code_uris:
            archive = build_tar_gz(code_files([key]))
            uri = f"{settings.s3_root}/code/{sha256_hex(archive)}/sourcedir.tar.gz"
            if not backend.store.exists(uri):
                upload_bytes(backend.store, archive, uri)
                logger.info(
                    "Uploaded the project code (%s bytes) to %s",
                    f"{len(archive):,}",
                    backend.store.location(uri),
                )
            self._code_uris[key] = uri
        return self._code_uris[key]

    def _job_tracking(self, node: Any) -> tuple[dict[str, Any] | None, dict[str, str]]:
        tracking, environment = _job_tracking_of(self._tracking, node, self._backend_name)
        if environment:
            logger.info(
                "Node %s: its job logs to MLflow run %s",
                node.name,
                environment.get("MLFLOW_RUN_ID", "?"),
            )
        return tracking, environment

    def _run_remotely(
        self,
        node: Any,
        settings: BridgeSettings,
        run_id: str | None,
        args: tuple,
        kwargs: dict,
    ) -> Any:
        backend = self.backend(settings)
        job_settings = settings.job_settings(node.name, node.tags)
        started = time.perf_counter()
        code_uri = self._code_uri(backend, settings, node)
        image_uri = resolve_image_uri(
            job_settings.image_uri,
            job_settings.framework,
            job_settings.framework_version,
            settings.region,
        )
        tracking, environment = self._job_tracking(node)
        job = prepare_job(
            node,
            args,
            kwargs,
            settings=settings,
            job_settings=job_settings,
            image_uri=image_uri,
            code_uri=code_uri,
            store=backend.store,
            wheels_uri=self._wheels_uri(backend, settings),
            run_id=run_id,
            tracking=tracking,
            environment=environment,
        )
        prepared = time.perf_counter()
        backend.create_training_job(job.request)
        logger.info(
            "Node %s: submitted training job %s (%s, %s x%d, max %d s)",
            node.name,
            job.name,
            image_uri.rsplit("/", 1)[-1],
            job_settings.instance_type,
            job_settings.instance_count,
            job_settings.max_runtime_seconds,
        )
        poll = (
            settings.local_poll_seconds if self._backend_name == "local" else settings.poll_seconds
        )
        outcome = follow_job(backend, job.name, "Training", poll)
        finished = time.perf_counter()
        if outcome.status != "Completed":
            raise _failure(job, outcome)
        artifacts = outcome.described["ModelArtifacts"]["S3ModelArtifacts"]
        result = read_outputs(job, artifacts, backend.store)
        logger.info(
            "Node %s: job %s completed; %.1f s in all (prepare %.1f s, job %.1f s, outputs %.1f s)",
            node.name,
            job.name,
            time.perf_counter() - started,
            prepared - started,
            finished - prepared,
            time.perf_counter() - finished,
        )
        return result


def _job_tracking_of(
    hooks: Any, node: Any, backend: str
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """What ``node``'s job logs to MLflow and the variables naming its run (the nested run of
    the node's group in this ``kedro run``), from the tracking hooks; (None, {}) when tracking
    is off, or for a job on SageMaker when the store is on this machine (the hooks then log the
    node's outputs themselves)."""
    settings = hooks.settings() if hooks is not None else None
    if settings is None:
        return None, {}
    environment = hooks.job_environment(node, remote=backend != "local")
    if not environment:
        return None, {}
    return settings.job_spec(), dict(environment)


def _settings_from(hook_manager: Any) -> BridgeSettings:
    for plugin in hook_manager.get_plugins() if hook_manager is not None else ():
        if isinstance(plugin, SageMakerHooks):
            return plugin.settings()
    raise SageMakerConfigError(
        "SageMakerRunner reads conf/<env>/sagemaker.yml through SageMakerHooks: add "
        "SageMakerHooks() to HOOKS in settings.py (see predictive_maintenance.sagemaker.hooks)"
    )


def _failure(job: NodeJob, finished: FinishedJob) -> TrainingJobFailedError:
    tail = finished.log_tail
    logs = "\n".join(f"  {line}" for line in tail) or "  (no log lines)"
    return TrainingJobFailedError(
        f"Node {job.node_name}: training job {job.name} {finished.status.lower()}: "
        f"{finished.reason}\nLast {len(tail)} log lines:\n{logs}\n"
        "None of the node's outputs were saved."
    )
