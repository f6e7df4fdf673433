"""MLflow tracking of the bridge's jobs: what a job spec and a job's environment carry.

Three ways a job logs, all through :mod:`predictive_maintenance.tracking.jobs` inside the job:

- the runner's jobs (``SageMakerRunner``) log into the nested run of their ``kedro run``: the
  tracking hooks (:class:`~predictive_maintenance.tracking.hooks.MlflowTrackingHooks`) give the
  job's variables (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_RUN_ID``);
- the steps of an exported pipeline log into one parent run per execution on the SageMaker MLflow
  tracking server ``mlflow.tracking_server_arn`` names (``conf/<env>/sagemaker.yml``): every job
  step gets the server, the experiment and the execution's ARN
  (:data:`~predictive_maintenance.tracking.jobs.ENV_EXECUTION`), and makes a nested run named
  after itself under the parent run tagged with that ARN;
- ``kedro sagemaker run-local`` runs those steps here, with the server replaced by the project's
  own store (``conf/<env>/mlflow.yml``), as it replaces S3 with a local directory.

What to log (datasets, patterns) travels in the job spec's ``tracking`` block
(:meth:`~predictive_maintenance.tracking.settings.TrackingSettings.job_spec`); no URI is in it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.sagemaker.config import BridgeSettings
from predictive_maintenance.sagemaker.job import TRACKING_KEY

logger = logging.getLogger(__name__)

#: The job spec's key for what the job logs (None or absent: the job does not track).
SPEC_KEY: Final = TRACKING_KEY
#: The MLflow variables a job reads.
ENV_TRACKING_URI: Final = "MLFLOW_TRACKING_URI"
ENV_EXPERIMENT_NAME: Final = "MLFLOW_EXPERIMENT_NAME"
#: The config loader's key of ``conf/<env>/mlflow.yml``.
MLFLOW_CONFIG: Final = "mlflow"


@dataclass(frozen=True)
class ExportTracking:
    """How the steps of an exported pipeline track (``mlflow.tracking_server_arn`` set)."""

    #: The SageMaker MLflow tracking server (the steps' ``MLFLOW_TRACKING_URI``).
    tracking_server_arn: str
    experiment: str | None
    #: The job spec's ``tracking`` block (what each step logs).
    spec: Mapping[str, Any]
    #: Every job step's variables, but the execution's ARN (a pipeline variable, set by the
    #: compiler): the server, the experiment, the HTTP bounds.
    environment: Mapping[str, str] = field(default_factory=dict)


def project_tracking(context: Any) -> Any | None:
    """The project's :class:`~predictive_maintenance.tracking.settings.TrackingSettings`
    (``conf/<env>/mlflow.yml`` through the context's config loader), or None without one."""
    from kedro.config import MissingConfigException  # noqa: PLC0415

    from predictive_maintenance.tracking.settings import settings_from_config  # noqa: PLC0415

    try:
        config = context.config_loader[MLFLOW_CONFIG]
    except (MissingConfigException, KeyError):
        return None
    return settings_from_config(dict(config), Path(context.project_path))


def export_tracking(bridge: BridgeSettings, tracking: Any | None) -> ExportTracking | None:
    """How the exported steps track: None without ``mlflow.tracking_server_arn``. What they log
    is ``tracking``'s (``mlflow.yml``: its ``log`` patterns, its HTTP bounds), whether or not it
    is enabled for ``kedro run``; the experiment is ``mlflow.experiment`` (sagemaker.yml)."""
    arn = bridge.mlflow.tracking_server_arn
    if arn is None:
        return None
    from predictive_maintenance.tracking.settings import TrackingSettings  # noqa: PLC0415

    settings = tracking if tracking is not None else TrackingSettings()
    experiment = bridge.mlflow.experiment or settings.experiment
    settings = replace(settings, experiment=experiment)
    environment = {ENV_TRACKING_URI: arn, **settings.http_environment()}
    if experiment:
        environment[ENV_EXPERIMENT_NAME] = experiment
    return ExportTracking(arn, experiment, settings.job_spec(), environment)


def runner_tracking(hook_manager: Any) -> Any | None:
    """The :class:`~predictive_maintenance.tracking.hooks.MlflowTrackingHooks` registered with
    this session's hook manager, or None (the runner then tracks nothing itself)."""
    from predictive_maintenance.tracking.hooks import MlflowTrackingHooks  # noqa: PLC0415

    for plugin in hook_manager.get_plugins() if hook_manager is not None else ():
        if isinstance(plugin, MlflowTrackingHooks):
            return plugin
    return None


# ---- run-local --------------------------------------------------------------------------------
#: The catalog type of this run's MLflow run (``tracking_run``).
TRACKING_RUN_TYPE: Final = "TrackingRunDataset"


def local_store(tracking: Any | None) -> str | None:
    """The store run-local's steps log to instead of the tracking server: the project's
    (``conf/<env>/mlflow.yml``), None when tracking is off there."""
    if tracking is None or not tracking.enabled:
        return None
    return tracking.tracking_uri


def tracking_run_datasets(catalog: Mapping[str, Any]) -> list[str]:
    """The catalog entries (of ``pipeline.catalog_datasets``) that are a run's MLflow run."""
    return sorted(
        name
        for name, entry in catalog.items()
        if isinstance(entry, Mapping)
        and str(entry.get("type", "")).rsplit(".", 1)[-1] == TRACKING_RUN_TYPE
    )


def execution_run(
    tracking: ExportTracking, tracking_uri: str, execution_arn: str
) -> dict[str, str] | None:
    """The parent run of a pipeline execution in ``tracking_uri`` (found by the execution's
    tag; made if no job made it yet), as a ``tracking_run`` value: what run-local's
    registration records. None (warned) when the store fails."""
    try:
        from predictive_maintenance.tracking.jobs import execution_parent  # noqa: PLC0415
        from predictive_maintenance.tracking.recorder import Recorder, open_client  # noqa: PLC0415
        from predictive_maintenance.tracking.settings import TrackingSettings  # noqa: PLC0415

        settings = TrackingSettings.from_job_spec(tracking.spec, tracking_uri=tracking_uri)
        recorder = Recorder(settings, open_client(settings))
        experiment = tracking.experiment or settings.experiment
        experiment_id = recorder.experiment_id(experiment)
        run_id = execution_parent(recorder, experiment_id, execution_arn)
    except Exception as error:  # tracking never fails the execution
        logger.warning(
            "MLflow: no run of execution %s in %s (%s: %s); the registration records none",
            execution_arn,
            tracking_uri,
            type(error).__name__,
            error,
        )
        return None
    return {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "experiment": experiment,
        "tracking_uri": tracking_uri,
    }


def open_local_store(tracking: ExportTracking, settings: Any) -> None:
    """Makes the store and the experiment before run-local's jobs start: jobs running at the
    same time would each try to create a new sqlite store's tables. ``settings``: the project's
    (its artifact location), or the job spec's with ``--tracking-uri``. Never raises (warned)."""
    try:
        from predictive_maintenance.tracking.recorder import Recorder, open_client  # noqa: PLC0415

        experiment = tracking.experiment or settings.experiment
        Recorder(settings, open_client(settings)).experiment_id(experiment)
    except Exception as error:  # the jobs then warn and run untracked
        logger.warning(
            "MLflow: the store %s cannot be opened (%s: %s)",
            settings.tracking_uri,
            type(error).__name__,
            error,
        )
