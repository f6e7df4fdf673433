"""Kedro hooks logging every ``kedro run`` to MLflow (``conf/<env>/mlflow.yml``).

One parent run per ``kedro run`` (named ``<pipelines> <UTC time>``; tagged with Kedro's run id,
pipelines, environment, runner, the git commit) holding all of the project's parameters, and one
nested run per step group (a node's top-level namespace, else its name) holding what its nodes
made: metrics (also on the parent), artifacts, the model, the data fingerprint. Every MLflow call
runs on one background thread (:class:`~.worker.Worker`), so ``import mlflow`` and the store's
set-up overlap the pipeline; the end of the run waits for it, at most ``flush_timeout_seconds``.

A failing store (unreachable, unwritable, full) is warned once ("MLflow tracking off for the
rest of this run: ...") and tracking stops; the pipeline and its outputs are never affected.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from predictive_maintenance.tracking import runs
from predictive_maintenance.tracking.jobs import job_environment_of
from predictive_maintenance.tracking.recorder import GROUP_TAG, Guard, Recorder, open_client
from predictive_maintenance.tracking.settings import (
    CONFIG_FILE,
    TrackingSettings,
    settings_from_config,
)
from predictive_maintenance.tracking.worker import Worker

logger = logging.getLogger(__name__)

T = TypeVar("T")


def node_group(node: Any) -> str:
    """The step group of a node: its top-level namespace (``train``), else its name."""
    namespace = getattr(node, "namespace", None)
    return namespace.split(".", 1)[0] if namespace else str(node.name)


class _TrackedRun:
    """The state of one tracked ``kedro run``; everything but the constructor, :meth:`submit`
    and :meth:`call` runs on the worker thread."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.guard = Guard(settings.store_label())
        self.worker = Worker("mlflow-tracking")
        self.active = runs.ActiveRun(self.submit)
        self.recorder: Recorder | None = None
        self.experiment_id = ""
        self.parent_id = ""
        self.nested: dict[str, str] = {}
        self.failed_groups: set[str] = set()
        # Epoch milliseconds, taken on the pipeline's thread: the runs are made later, in the
        # background, but record when the work happened.
        self.started = _now_ms()
        self.group_started: dict[str, int] = {}
        self.group_ended: dict[str, int] = {}
        self.delegated: set[str] = set()  # nodes whose job logs its own outputs

    # ---- threads
    def submit(self, work: Callable[[], None]) -> None:
        """Runs ``work`` on the worker, guarded (nothing once tracking is off)."""
        if self.worker.on_worker_thread:
            self.guard.call(work)
        else:
            self.worker.submit(lambda: self.guard.call(work))

    def call(self, work: Callable[[], T], timeout: float) -> T | None:
        """Runs ``work`` on the worker and waits for its result, at most ``timeout``."""
        result: list[T | None] = [None]
        done = threading.Event()

        def task() -> None:
            try:
                result[0] = self.guard.call(work)
            finally:
                done.set()

        self.worker.submit(task)
        return result[0] if done.wait(timeout) else None

    # ---- worker side
    def open(self, name: str, tags: Mapping[str, str], parameters: Mapping[str, Any]) -> None:
        self.recorder = Recorder(self.settings, open_client(self.settings))
        self.experiment_id = self.recorder.experiment_id()
        self.parent_id = self.recorder.create_run(
            self.experiment_id, name, tags, start_time=self.started
        )
        self.active.resolve(
            {
                "run_id": self.parent_id,
                "experiment_id": self.experiment_id,
                "experiment": self.settings.experiment,
                "tracking_uri": self.settings.tracking_uri or "",
            }
        )
        self.recorder.log_parameters([self.parent_id], parameters)

    def run_of(self, group: str) -> str:
        """The nested run of ``group`` (made on first use)."""
        if group not in self.nested:
            assert self.recorder is not None
            self.nested[group] = self.recorder.create_run(
                self.experiment_id,
                group,
                {GROUP_TAG: group},
                parent_id=self.parent_id,
                start_time=self.group_started.get(group),
            )
        return self.nested[group]

    def close(self, failed: bool) -> None:
        if self.recorder is None or not self.parent_id:
            return
        for group, run_id in self.nested.items():
            self.recorder.end_run(
                run_id,
                failed=failed and group in self.failed_groups,
                end_time=self.group_ended.get(group),
            )
        self.recorder.end_run(self.parent_id, failed=failed, announce=True)


class MlflowTrackingHooks:
    """Logs each ``kedro run`` to MLflow as configured in ``conf/<env>/mlflow.yml``.

    Register in ``settings.py``::

        HOOKS = (MlflowTrackingHooks(),)
        CONFIG_LOADER_ARGS = {"config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]}}

    For ``SageMakerRunner``: :meth:`settings` and :meth:`job_environment` let a remote job log
    into this run's nested run of its group.
    """

    def __init__(self) -> None:
        self._settings: TrackingSettings | None = None
        self._context: Any = None
        self._run: _TrackedRun | None = None

    # ---- Kedro hooks
    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._context = context
        self._run = None
        try:
            config = context.config_loader["mlflow"]
        except MissingConfigException:
            logger.debug("MLflow tracking off: no %s", CONFIG_FILE)
            self._settings = None
            return
        except KeyError:
            logger.warning(
                'MLflow tracking off: the config loader has no "mlflow" pattern (settings.py: '
                'CONFIG_LOADER_ARGS["config_patterns"]["mlflow"] = ["mlflow*", "mlflow*/**"])'
            )
            self._settings = None
            return
        if not config:
            logger.debug("MLflow tracking off: %s is empty", CONFIG_FILE)
            self._settings = None
            return
        settings = settings_from_config(config, Path(context.project_path))
        self._settings = settings if settings.enabled else None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        runs.publish(None)
        self._run = None
        if self._settings is None:
            return
        run = _TrackedRun(self._settings)
        self._run = run
        runs.publish(run.active)
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        name = f"{'+'.join(pipelines)} {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"
        tags = {
            "kedro.run_id": str(run_params.get("run_id") or ""),
            "kedro.pipelines": ",".join(pipelines),
            "kedro.env": str(run_params.get("env") or "local"),
            "kedro.runner": _runner_name(run_params.get("runner")),
            "kedro.version": str(run_params.get("kedro_version") or ""),
            "mlflow.source.name": "kedro run",
            "mlflow.source.type": "LOCAL",
        }
        parameters = dict(self._context.params) if self._context is not None else {}
        project = Path(self._context.project_path) if self._context is not None else Path.cwd()

        def open_run() -> None:
            run.open(name, {**tags, **_git_tags(project)}, parameters)

        run.worker.submit(lambda: _resolving(run, open_run))

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        run = self._run
        if run is None or run.guard.failed:
            return
        group = node_group(node)
        run.group_started.setdefault(group, _now_ms())
        parameters: dict[str, Any] = {}
        for dataset, value in inputs.items():
            if dataset == "parameters" and isinstance(value, Mapping):
                parameters.update(value)
            elif dataset.startswith("params:"):
                _nest(parameters, dataset[len("params:") :].split("."), value)
        run.submit(lambda: _log_group_parameters(run, group, parameters))

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any]) -> None:
        run = self._run
        if run is None or run.guard.failed:
            return
        group = node_group(node)
        run.group_ended[group] = _now_ms()
        if node.name in run.delegated:
            return
        logged = {name: value for name, value in outputs.items() if run.settings.kind_of(name)}
        if logged:
            run.submit(lambda: _log_group_outputs(run, group, logged))

    @hook_impl
    def on_node_error(self, node: Any) -> None:
        if self._run is not None:
            group = node_group(node)
            self._run.failed_groups.add(group)
            self._run.group_ended[group] = _now_ms()

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._finish(failed=False)

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._finish(failed=True)

    # ---- for SageMakerRunner
    def settings(self) -> TrackingSettings | None:
        """The settings of this session, or ``None`` when tracking is off."""
        return self._settings

    def job_environment(self, node: Any, *, remote: bool) -> dict[str, str]:
        """The variables a job running ``node`` needs to log into this run's nested run of the
        node's group (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_RUN_ID``, the
        HTTP limits). ``{}`` when tracking is off or failed, or for a ``remote`` job when the
        store is on this machine: the hooks then log the node's outputs themselves. Otherwise the
        job logs them, and the hooks do not."""
        run = self._run
        if run is None or run.guard.failed or (remote and run.settings.store_is_local):
            return {}
        group = node_group(node)
        run_id = run.call(lambda: run.run_of(group), run.settings.flush_timeout_seconds)
        if not run_id:
            return {}
        run.delegated.add(str(node.name))
        return job_environment_of(run.settings, run.experiment_id, run_id)

    # ---- helpers
    def _finish(self, failed: bool) -> None:
        run, self._run = self._run, None
        if run is None:
            return
        run.submit(lambda: run.close(failed))
        timeout = run.settings.flush_timeout_seconds
        if not run.worker.drain(timeout):
            logger.warning(
                "MLflow: logging to %s not finished after %.0f s; the MLflow run may be "
                "incomplete (the pipeline's outputs are saved)",
                run.settings.store_label(),
                timeout,
            )
        run.worker.stop()
        if not run.parent_id:
            run.active.resolve(None)
        elif not run.guard.failed:
            where = run.settings.local_store_path()
            logger.info(
                "MLflow run %s in experiment %s (%s): %s",
                run.parent_id,
                run.settings.experiment,
                _shown(where) if where is not None else run.settings.store_label(),
                "`kedro tracking runs`, `kedro tracking ui`"
                if where is not None
                else "open it in that server's UI",
            )
        runs.publish(None)


def _resolving(run: _TrackedRun, open_run: Callable[[], None]) -> None:
    run.guard.call(open_run)
    if not run.parent_id:
        run.active.resolve(None)


def _log_group_parameters(run: _TrackedRun, group: str, parameters: Mapping[str, Any]) -> None:
    run_id = run.run_of(group)
    if parameters:
        assert run.recorder is not None
        run.recorder.log_parameters([run_id], parameters)


def _log_group_outputs(run: _TrackedRun, group: str, outputs: Mapping[str, Any]) -> None:
    assert run.recorder is not None
    run.recorder.log_outputs(run.run_of(group), run.experiment_id, outputs, [run.parent_id])


def _shown(path: Path) -> str:
    """``path`` relative to the working directory (the project root) where it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _nest(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def _runner_name(runner: Any) -> str:
    if runner is None or runner == "None":  # session.run() without a runner: Kedro's default
        return "SequentialRunner"
    if isinstance(runner, str):  # "SequentialRunner", or "<package.Runner object at 0x...>"
        return runner.strip("<>").split(" object at ", 1)[0].rsplit(".", 1)[-1]
    return runner.__name__ if isinstance(runner, type) else type(runner).__name__


def _git_tags(project: Path) -> dict[str, str]:
    """``mlflow.source.git.commit`` and ``git.dirty`` of the project, if it is a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(project), *args],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"mlflow.source.git.commit": commit, "git.dirty": "true" if dirty else "false"}
