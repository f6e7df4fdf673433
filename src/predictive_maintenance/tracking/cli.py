"""``kedro tracking ...``: open the MLflow UI on the project's store, list and compare runs.

The store is ``conf/<env>/mlflow.yml``'s ``tracking_uri``, read through a session's config loader
(``--env`` and ``conf/local`` apply as they do to ``kedro run``). ``ui`` starts ``mlflow ui`` on a
local store; ``runs`` lists the latest ``kedro run`` parent runs; ``compare`` shows the parameters
that differ between two runs and their metrics side by side.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option

from predictive_maintenance.console import ReportingGroup, UsageFailure
from predictive_maintenance.project_config import project_config, project_path
from predictive_maintenance.tracking.recorder import PARENT_TAG
from predictive_maintenance.tracking.settings import (
    CONFIG_FILE,
    TrackingConfigError,
    TrackingSettings,
    settings_from_config,
)

if TYPE_CHECKING:
    from kedro.framework.startup import ProjectMetadata

#: The metrics ``runs`` shows unless told otherwise.
DEFAULT_METRICS = ("roc_auc", "pr_auc", "at_chosen_threshold.f1", "at_chosen_threshold.recall")


@click.group(name="tracking", cls=ReportingGroup, context_settings=CONTEXT_SETTINGS)
def tracking() -> None:
    """Experiment tracking: the MLflow UI on the project's store, runs listed and compared."""


def _settings(metadata: ProjectMetadata | None, env: str | None) -> TrackingSettings:
    config = project_config(metadata, env, "mlflow")["mlflow"]
    try:
        return settings_from_config(config, project_path(metadata))
    except TrackingConfigError as error:
        raise UsageFailure(str(error)) from None


def _local_store(settings: TrackingSettings) -> Path | None:
    """The sqlite file of a local store; a UsageFailure if it does not exist yet."""
    database = settings.local_store_path()
    if database is not None and not database.exists():
        raise UsageFailure(
            f"no MLflow store at {database} yet: `kedro run` makes it (tracking is "
            f"{'on' if settings.enabled else 'off: enabled: false'} in {CONFIG_FILE})"
        )
    return database


@tracking.command(name="ui")
@env_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", "-p", default=5000, show_default=True, help="Port to listen on.")
@click.option("--workers", "-w", default=1, show_default=True, help="UI worker processes.")
@click.pass_obj
def ui(metadata: ProjectMetadata, env: str | None, host: str, port: int, workers: int) -> None:
    """Starts the MLflow UI on the project's local store (Ctrl-C stops it)."""
    settings = _settings(metadata, env)
    if not settings.store_is_local:
        raise UsageFailure(
            f"the store is {settings.store_label()}, not on this machine: open that server's UI "
            "(a SageMaker MLflow tracking server: SageMaker Studio > MLflow, or `aws sagemaker "
            "create-presigned-mlflow-tracking-server-url --tracking-server-name NAME`)"
        )
    _local_store(settings)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.tracking_uri or "",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if settings.artifact_location:
        command += ["--default-artifact-root", settings.artifact_location]
    click.echo(f"MLflow UI on {settings.store_label()}: http://{host}:{port} (Ctrl-C stops it)")
    click.echo(f"experiment: {settings.experiment}; it takes a while to start.")
    sys.stdout.flush()
    # This process becomes the UI (signals, Ctrl-C and exit code are the UI's own).
    os.execve(sys.executable, command, {**os.environ, "PYTHONUNBUFFERED": "1"})


@tracking.command(name="runs")
@env_option
@click.option("--limit", "-n", default=10, show_default=True, help="How many runs, newest first.")
@click.option(
    "--metric",
    "-m",
    "metrics",
    multiple=True,
    help=f"A metric column (repeatable; default: {', '.join(DEFAULT_METRICS)}).",
)
@click.pass_obj
def runs_command(
    metadata: ProjectMetadata, env: str | None, limit: int, metrics: tuple[str, ...]
) -> None:
    """Lists the latest `kedro run`s (parent runs): parameters that differ, and metrics."""
    settings = _settings(metadata, env)
    _local_store(settings)
    client, experiment_id = _client(settings)
    parents = _parent_runs(client, experiment_id, limit)
    if not parents:
        click.echo(f"no runs in experiment {settings.experiment} yet: `kedro run` makes one")
        return
    varying = _differing_params([run.data.params for run in parents])
    columns = list(metrics or DEFAULT_METRICS)
    header = ["RUN ID", "STARTED (UTC)", "STATUS", *varying[:4], *columns]
    rows = [
        [
            run.info.run_id,
            _time(run.info.start_time),
            run.info.status,
            *(run.data.params.get(key, "-") for key in varying[:4]),
            *(_number(run.data.metrics.get(metric)) for metric in columns),
        ]
        for run in parents
    ]
    _table(header, rows)
    if len(varying) > 4:
        click.echo(f"(and {len(varying) - 4} more differing parameters: `kedro tracking compare`)")


@tracking.command(name="compare")
@env_option
@click.argument("run_ids", nargs=-1)
@click.pass_obj
def compare(metadata: ProjectMetadata, env: str | None, run_ids: tuple[str, ...]) -> None:
    """Compares two runs (default: the two latest `kedro run`s): the parameters that differ and
    every metric side by side."""
    settings = _settings(metadata, env)
    _local_store(settings)
    client, experiment_id = _client(settings)
    if len(run_ids) not in (0, 2):
        raise UsageFailure("give two run ids, or none for the two latest runs")
    if run_ids:
        try:
            runs = [client.get_run(run_id) for run_id in run_ids]
        except Exception as error:  # MlflowException: unknown run id
            raise UsageFailure(f"no such run: {error}") from None
    else:
        runs = _parent_runs(client, experiment_id, 2)[::-1]
        if len(runs) < 2:
            raise UsageFailure("fewer than two runs to compare: `kedro run` twice first")
    first, second = runs
    click.echo(f"A: {first.info.run_name} ({first.info.run_id})")
    click.echo(f"B: {second.info.run_name} ({second.info.run_id})")
    params = _differing_params([first.data.params, second.data.params])
    same = len(set(first.data.params) | set(second.data.params)) - len(params)
    click.echo(f"\nparameters that differ ({same} the same):")
    if params:
        _table(
            ["PARAMETER", "A", "B"],
            [
                [key, first.data.params.get(key, "-"), second.data.params.get(key, "-")]
                for key in params
            ],
        )
    else:
        click.echo("  none")
    click.echo("\nmetrics:")
    names = sorted(set(first.data.metrics) | set(second.data.metrics))
    _table(
        ["METRIC", "A", "B", "B - A"],
        [
            [
                name,
                _number(first.data.metrics.get(name)),
                _number(second.data.metrics.get(name)),
                _delta(first.data.metrics.get(name), second.data.metrics.get(name)),
            ]
            for name in names
        ],
    )


# ---- helpers
def _client(settings: TrackingSettings) -> tuple[Any, str]:
    from predictive_maintenance.tracking.recorder import open_client  # noqa: PLC0415 -- mlflow

    client = open_client(settings)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        raise UsageFailure(f"no experiment {settings.experiment} in {settings.store_label()} yet")
    return client, str(experiment.experiment_id)


def _parent_runs(client: Any, experiment_id: str, limit: int) -> list[Any]:
    found: list[Any] = []
    token = None
    while len(found) < limit:
        page = client.search_runs(
            [experiment_id],
            order_by=["attributes.start_time DESC"],
            max_results=200,
            page_token=token,
        )
        found += [run for run in page if PARENT_TAG not in run.data.tags]
        token = page.token
        if not token:
            break
    return found[:limit]


def _differing_params(params: Sequence[Mapping[str, str]]) -> list[str]:
    keys = sorted(set().union(*params)) if params else []
    return [key for key in keys if len({mapping.get(key) for mapping in params}) > 1]


def _time(milliseconds: int | None) -> str:
    if not milliseconds:
        return "-"
    return datetime.fromtimestamp(milliseconds / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if not float(value).is_integer() else str(int(value))


def _delta(first: float | None, second: float | None) -> str:
    if first is None or second is None or not math.isfinite(second - first):
        return "-"
    return f"{second - first:+.4f}"


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo(
            "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )
