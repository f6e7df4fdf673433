"""Tracking inside a SageMaker job (runner job, exported pipeline step, run-local step).

A job has no Kedro session and no hooks: the job program calls :func:`job_tracking` with its
spec's ``tracking`` block (:meth:`TrackingSettings.job_spec`) and its environment, then
:meth:`JobTracking.log_parameters`, :meth:`JobTracking.log_outputs` after each node and
:meth:`JobTracking.finish`. Two ways in:

- ``MLFLOW_RUN_ID`` (SageMakerRunner): the ``kedro run`` that submitted the job made the run (the
  nested run of the node's group); the job logs into it and never ends it.
- ``KEDRO_MLFLOW_EXECUTION`` (an exported pipeline): every job of one pipeline execution logs into
  one parent run, tagged :data:`EXECUTION_TAG` with the execution's ARN, found or made by the first
  job (in experiment ``MLFLOW_EXPERIMENT_NAME``), and into a nested run named after the job.

Python 3.10, no Kedro; ``mlflow`` (mlflow-skinny and sagemaker-mlflow in the image) is imported
only when the environment names a store. Nothing here raises: a tracking failure is warned once
and the job goes on untracked.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Final

from predictive_maintenance.tracking.recorder import GROUP_TAG, Guard, Recorder, open_client
from predictive_maintenance.tracking.settings import TrackingSettings

logger = logging.getLogger(__name__)

ENV_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
ENV_RUN_ID: Final = "MLFLOW_RUN_ID"
ENV_EXPERIMENT_ID: Final = "MLFLOW_EXPERIMENT_ID"
ENV_EXPERIMENT_NAME: Final = "MLFLOW_EXPERIMENT_NAME"
#: Exported pipelines: the pipeline execution's ARN (``Execution.PipelineExecutionArn``).
ENV_EXECUTION: Final = "KEDRO_MLFLOW_EXECUTION"
#: The tag naming an execution's parent run.
EXECUTION_TAG: Final = "sagemaker.pipeline_execution_arn"


class JobTracking:
    """One job's tracking: a nested run to log into, and (exported pipelines) its parent."""

    def __init__(
        self,
        recorder: Recorder,
        guard: Guard,
        *,
        experiment_id: str,
        run_id: str,
        parent_id: str | None,
        owns_run: bool,
    ) -> None:
        self.recorder = recorder
        self.guard = guard
        self.experiment_id = experiment_id
        self.run_id = run_id
        self.parent_id = parent_id
        self.owns_run = owns_run
        self._finished = False

    def log_parameters(self, parameters: Mapping[str, Any]) -> None:
        """The job's Kedro parameters, flattened, on its run (and the execution's parent)."""
        runs = [self.run_id] + ([self.parent_id] if self.owns_run and self.parent_id else [])
        self.guard.call(lambda: self.recorder.log_parameters(runs, parameters))

    def log_outputs(self, node: str, outputs: Mapping[str, Any]) -> None:
        """What the settings say of a node's outputs (metrics also on the parent run)."""
        del node  # the run is the job's, whatever node made the outputs
        parents = [self.parent_id] if self.parent_id else []
        self.guard.call(
            lambda: self.recorder.log_outputs(self.run_id, self.experiment_id, outputs, parents)
        )

    def finish(self, failed: bool) -> None:
        """Ends the job's own nested run and marks the execution's parent FINISHED or FAILED
        (a run the runner made is left to it)."""
        if self._finished:
            return
        self._finished = True
        if not self.owns_run:
            return

        def end() -> None:
            self.recorder.end_run(self.run_id, failed)
            if self.parent_id:
                self.recorder.end_run(self.parent_id, failed, announce=True)

        self.guard.call(end)


def job_tracking(
    spec_tracking: Mapping[str, Any] | None, environ: Mapping[str, str], job: str
) -> JobTracking | None:
    """The job's tracking, or ``None``: no ``tracking`` block, no ``MLFLOW_TRACKING_URI``, neither
    ``MLFLOW_RUN_ID`` nor ``KEDRO_MLFLOW_EXECUTION``, or the store failed (warned once)."""
    uri = (environ.get(ENV_TRACKING_URI) or "").strip()
    if spec_tracking is None or not uri:
        return None
    run_id = (environ.get(ENV_RUN_ID) or "").strip()
    execution = (environ.get(ENV_EXECUTION) or "").strip()
    if not run_id and not execution:
        logger.info(
            "MLflow: %s is set but neither %s nor %s: job %s not tracked",
            ENV_TRACKING_URI,
            ENV_RUN_ID,
            ENV_EXECUTION,
            job,
        )
        return None
    try:
        settings = TrackingSettings.from_job_spec(spec_tracking, tracking_uri=uri)
    except ValueError as error:
        logger.warning("MLflow tracking off for job %s: %s", job, error)
        return None
    guard = Guard(settings.store_label())
    if run_id:
        return guard.call(lambda: _into_run(settings, guard, run_id))
    experiment = (environ.get(ENV_EXPERIMENT_NAME) or "").strip() or settings.experiment
    return guard.call(lambda: _into_execution(settings, guard, execution, experiment, job))


def _into_run(settings: TrackingSettings, guard: Guard, run_id: str) -> JobTracking:
    recorder = Recorder(settings, open_client(settings))
    run = recorder.client.get_run(run_id)
    parent_id = run.data.tags.get("mlflow.parentRunId")
    return JobTracking(
        recorder,
        guard,
        experiment_id=str(run.info.experiment_id),
        run_id=run_id,
        parent_id=parent_id,
        owns_run=False,
    )


def _into_execution(
    settings: TrackingSettings, guard: Guard, execution: str, experiment: str, job: str
) -> JobTracking:
    recorder = Recorder(settings, open_client(settings))
    experiment_id = recorder.experiment_id(experiment)
    parent_id = execution_parent(recorder, experiment_id, execution)
    recorder.client.update_run(parent_id, status="RUNNING")
    run_id = recorder.create_run(
        experiment_id, job, tags={GROUP_TAG: job, EXECUTION_TAG: execution}, parent_id=parent_id
    )
    return JobTracking(
        recorder,
        guard,
        experiment_id=experiment_id,
        run_id=run_id,
        parent_id=parent_id,
        owns_run=True,
    )


def execution_parent(recorder: Recorder, experiment_id: str, execution: str) -> str:
    """The parent run of a pipeline execution: found by its tag, else made. Jobs running at the
    same time may both make one: each then keeps the oldest and deletes its own duplicate."""
    found = _parents(recorder, experiment_id, execution)
    if found:
        return found[0]
    name = f"{execution.rsplit('/', 1)[-1]} {_utc_now()}"
    mine = recorder.create_run(
        experiment_id, name, tags={EXECUTION_TAG: execution, "kedro.role": "execution"}
    )
    found = _parents(recorder, experiment_id, execution)
    oldest = found[0] if found else mine
    if oldest != mine:
        recorder.client.delete_run(mine)
    return oldest


def _parents(recorder: Recorder, experiment_id: str, execution: str) -> list[str]:
    quoted = execution.replace("'", "\\'")
    runs = recorder.client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{EXECUTION_TAG}` = '{quoted}' and tags.`kedro.role` = 'execution'",
        max_results=50,
    )
    ordered = sorted(runs, key=lambda run: (run.info.start_time or 0, run.info.run_id))
    return [str(run.info.run_id) for run in ordered]


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def job_environment_of(
    settings: TrackingSettings, experiment_id: str, run_id: str
) -> dict[str, str]:
    """The variables a job needs to log into ``run_id`` (see :func:`job_tracking`)."""
    return {
        ENV_TRACKING_URI: settings.tracking_uri or "",
        ENV_EXPERIMENT_ID: experiment_id,
        ENV_RUN_ID: run_id,
        **settings.http_environment(),
    }


__all__ = [
    "ENV_EXECUTION",
    "EXECUTION_TAG",
    "JobTracking",
    "execution_parent",
    "job_environment_of",
    "job_tracking",
]
