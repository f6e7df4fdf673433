"""``kedro model ...``: list, show, approve and reject versions in the local model registry.

The registry's directory and the model package group come from the parameters
``model_registry.root`` and ``model_registry.group``, read through a
:class:`~kedro.framework.session.KedroSession`'s config loader (as ``kedro data fetch`` does) so
that ``--env`` and ``conf/local`` apply exactly as they do to ``kedro run``. A relative root is
resolved against the project directory.

Where a version is deployed comes from the catalog's ``endpoint`` entry: the local endpoint's
state file, or (``--env sagemaker``) the SageMaker endpoint named by the parameter
``endpoint.name``.

The MLflow run that registered a version (its lineage, :mod:`.runs`) is in ``list``'s
``MLFLOW RUN`` column and in ``show``, which also says how to open a local store
(``mlflow.yml``'s ``tracking_uri``) in the MLflow UI.

Each version's model card (:mod:`predictive_maintenance.model_card`) gives ``list`` its ``ECE``
(calibrated, test split) and ``MODES F1`` (macro-F1 over the rule failure modes) columns, and
``show`` prints it; a version registered before cards existed shows "-".
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option
from kedro.framework.startup import ProjectMetadata

from predictive_maintenance.console import ReportingGroup
from predictive_maintenance.integrity import ChecksumMismatchError
from predictive_maintenance.model_card import SUMMARY_COLUMNS, card_summary, render_card
from predictive_maintenance.project_config import project_config, project_path, resolve
from predictive_maintenance.registry.local import (
    APPROVED,
    REJECTED,
    SOURCE_VERSION_JSON,
    GroupIntegrity,
    LocalModelRegistry,
    ModelNotFoundError,
    ModelVersion,
    UnverifiedArchiveError,
    validate_group_name,
)
from predictive_maintenance.registry.runs import recorded_run

#: Parameters holding the registry settings: ``{root: ..., group: ...}``.
REGISTRY_PARAMS = "model_registry"
#: Parameters naming the endpoint (``{name: ...}``), and the deployment switch.
ENDPOINT_PARAMS = "endpoint"
DEPLOY_PARAM = "deploy_model"
_SHA256_PREFIX = 12
_EXAMPLE = (
    f"e.g. in conf/base/parameters_deployment.yml:\n  {REGISTRY_PARAMS}:\n"
    "    root: data/10_model_registry\n    group: predictive-maintenance"
)

group_option = click.option(
    "--group",
    "-g",
    metavar="NAME",
    default=None,
    help=f"Model package group; defaults to the parameter {REGISTRY_PARAMS}.group.",
)
version_argument = click.argument("version", type=int, metavar="VERSION")
note_option = click.option(
    "--note", default="", metavar="TEXT", help="Why, recorded in the approval history."
)


if TYPE_CHECKING:
    from predictive_maintenance.registry.sagemaker import SageMakerRegistry
    from predictive_maintenance.tracking.settings import TrackingSettings

#: The configuration (conf/<env>/mlflow.yml) naming the MLflow store, and its UI command.
MLFLOW_CONFIG = "mlflow"
TRACKING_UI_COMMAND = "kedro tracking ui"
#: Where ``kedro tracking ui`` serves the UI by default (its --host and --port).
TRACKING_UI_URL = "http://127.0.0.1:5000"
#: The catalog entries the deployment pipeline registers and deploys through.
REGISTRY_DATASET = "model_registry"
ENDPOINT_DATASET = "endpoint"


@dataclass(frozen=True)
class _Target:
    registry: LocalModelRegistry | SageMakerRegistry  # same operations
    group: str
    #: The project's catalog, parameters and (if any) mlflow settings for the environment.
    configuration: dict[str, dict[str, Any]]
    metadata: ProjectMetadata | None
    env: str | None


@dataclass(frozen=True)
class _Deployment:
    """What an endpoint serves, as far as the project's configuration can tell."""

    endpoint: str
    where: str  # e.g. "local, state file data/11_endpoints/x.json"
    group: str | None = None
    version: int | None = None
    archive: str | None = None
    archive_sha256: str | None = None
    since: str | None = None
    #: Why nothing (or nothing readable) is deployed.
    problem: str | None = None


def _sagemaker_target(entry: dict[str, Any], group: str | None) -> SageMakerRegistry:
    """The SageMaker model package group the catalog's ``model_registry`` entry names."""
    from kedro.io import DataCatalog  # noqa: PLC0415 - on demand, like boto3 below

    from predictive_maintenance.registry.sagemaker import SageMakerRegistry  # noqa: PLC0415

    dataset = DataCatalog.from_config({REGISTRY_DATASET: entry})[REGISTRY_DATASET]
    registry = SageMakerRegistry(dataset)
    if group and group != registry.group:
        raise click.ClickException(
            f"the catalog's SageMaker registry holds group {registry.group!r}, not {group!r}"
        )
    return registry


def _registry_target(
    metadata: ProjectMetadata | None, env: str | None, group: str | None
) -> _Target:
    """The registry and group from the project's configuration (``group`` overrides the latter).

    When the environment's catalog registers in SageMaker (``conf/sagemaker``), that registry.
    """
    try:
        # mlflow.yml too, in the same session: `show` names the store a version's run is in.
        configuration = project_config(metadata, env, "catalog", "parameters", MLFLOW_CONFIG)
    except Exception:  # no or an unreadable mlflow.yml: the registry works without it
        # (a problem with the catalog or parameters raises again here, and is reported)
        configuration = project_config(metadata, env, "catalog", "parameters")
    entry = configuration["catalog"].get(REGISTRY_DATASET) or {}
    if str(entry.get("type", "")).endswith("SageMakerModelRegistryDataset"):
        registry = _sagemaker_target(entry, group)
        return _Target(registry, registry.group, configuration, metadata, env)
    settings = configuration["parameters"].get(REGISTRY_PARAMS) or {}
    if not isinstance(settings, dict):
        raise click.ClickException(
            f"parameter {REGISTRY_PARAMS} must be a mapping, not {settings!r}"
        )
    root = settings.get("root")
    if not root:
        raise click.ClickException(f"parameter {REGISTRY_PARAMS}.root is not set; {_EXAMPLE}")
    group = group or settings.get("group")
    if not group:
        raise click.ClickException(
            f"no model package group: pass --group or set {REGISTRY_PARAMS}.group; {_EXAMPLE}"
        )
    try:
        validate_group_name(group)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    return _Target(
        LocalModelRegistry(resolve(metadata, str(root))), group, configuration, metadata, env
    )


def _archive_check(target: _Target, model: ModelVersion) -> tuple[str, str | None]:
    """The version's archive check: ``ok``, ``CHANGED``, ``MISSING``, ``UNREADABLE`` or
    ``UNVERIFIED`` (nothing records its sha256), and why it cannot be trusted (None if ok).

    The local registry checks the archive against its ledger, so an archive re-blessed in its
    version.json is CHANGED too.
    """
    try:
        target.registry.read_archive(target.group, model.version)
    except UnverifiedArchiveError as error:
        return "UNVERIFIED", str(error)
    except ChecksumMismatchError as error:
        return ("CHANGED" if model.archive_sha256 else "UNVERIFIED"), str(error)
    except FileNotFoundError as error:
        return "MISSING", str(error) or f"the archive of version {model.version} is missing"
    except OSError as error:
        return "UNREADABLE", str(error)
    return "ok", None


def _baseline_check(target: _Target, model: ModelVersion) -> tuple[str, str | None]:
    """The version's baseline check: ``none`` (no baseline registered), ``ok``, ``CHANGED``,
    ``MISSING``, ``UNVERIFIED`` or ``UNREADABLE``, and why it cannot be trusted (None if it can).
    """
    if not model.baseline:
        return "none", None
    try:
        target.registry.read_baseline(target.group, model.version)
    except UnverifiedArchiveError as error:
        return "UNVERIFIED", str(error)
    except ChecksumMismatchError as error:
        recorded = all(item.get("sha256") for item in model.baseline.values())
        return ("CHANGED" if recorded else "UNVERIFIED"), str(error)
    except FileNotFoundError as error:
        return "MISSING", str(error)
    except OSError as error:
        return "UNREADABLE", str(error)
    return "ok", None


def _integrity(target: _Target) -> GroupIntegrity | None:
    """The local registry's ledger report on the group (None for SageMaker or an unknown
    group)."""
    if not isinstance(target.registry, LocalModelRegistry):
        return None
    try:
        return target.registry.integrity(target.group)
    except ModelNotFoundError:
        return None


def _archive_problem(target: _Target, model: ModelVersion) -> str | None:
    """Why the version cannot be trusted (changed, missing or unverified bytes, or metadata
    that disagrees with the ledger), or None."""
    problem = _archive_check(target, model)[1]
    if problem is None and (integrity := _integrity(target)) is not None:
        problem = integrity.metadata.get(model.version)
        if problem is not None:
            problem = f"version {model.version}: {problem}"
    if problem is None:
        problem = _baseline_check(target, model)[1]
    return problem


def _shown_path(target: _Target, path: Path) -> str:
    """``path`` relative to the project directory when it is inside it."""
    root = project_path(target.metadata)
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _local_deployment(target: _Target, name: str, filepath: str) -> _Deployment:
    # The endpoint module imports nothing heavy, but only this command needs it.
    from predictive_maintenance.serving.endpoint import read_endpoint_state  # noqa: PLC0415

    path = resolve(target.metadata, filepath)
    shown = _shown_path(target, path)
    where = f"local, state file {shown}"
    try:
        state = read_endpoint_state(path)
    except FileNotFoundError:
        return _Deployment(name, where, problem="nothing deployed yet")
    except (OSError, ValueError) as error:
        return _Deployment(name, where, problem=f"cannot read {shown}: {error}")
    return _Deployment(
        state["endpoint_name"],
        where,
        group=state["model_group"],
        version=state["model_version"],
        archive=state["model_archive"],
        archive_sha256=state["model_archive_sha256"],
        since=state["deployed_at"],
    )


def _sagemaker_deployment(
    target: _Target, name: str, entry: dict[str, Any], versions: list[ModelVersion]
) -> _Deployment:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    from predictive_maintenance.registry.sagemaker import deployed_model  # noqa: PLC0415

    region = entry.get("region")
    where = f"SageMaker endpoint in {region}" if region else "SageMaker endpoint"
    try:
        deployed = deployed_model(name, region)
    except (BotoCoreError, ClientError) as error:
        return _Deployment(name, where, problem=f"cannot describe the endpoint: {error}")
    if deployed is None:
        return _Deployment(name, where, problem="nothing deployed yet (no such endpoint)")
    by_archive = {
        target.registry.archive_path(target.group, model.version): model.version
        for model in versions
    }
    version = by_archive.get(deployed["model_archive"])
    return _Deployment(
        name,
        f"{where}, {deployed['status']}, config {deployed['endpoint_config']}",
        group=target.group if version is not None else None,
        version=version if version is not None else deployed["model_version"],
        archive=deployed["model_archive"],
    )


def _deployment(target: _Target, versions: list[ModelVersion]) -> _Deployment | None:
    """Where the catalog's ``endpoint`` entry deploys, and what it serves (None: no endpoint).

    ``versions`` are the group's (a SageMaker endpoint's model is matched by its archive).
    """
    entry = target.configuration["catalog"].get(ENDPOINT_DATASET) or {}
    kind = str(entry.get("type", ""))
    parameters = target.configuration["parameters"].get(ENDPOINT_PARAMS) or {}
    name = parameters.get("name") if isinstance(parameters, dict) else None
    if kind.endswith("LocalEndpointDataset") and entry.get("filepath"):
        return _local_deployment(target, name or "?", str(entry["filepath"]))
    if kind.endswith("SageMakerEndpointDataset") and name:
        return _sagemaker_deployment(target, name, entry, versions)
    return None


def _deployed_version(target: _Target, deployment: _Deployment | None) -> int | None:
    """The version of this group the endpoint serves, if it serves one."""
    if deployment is None or deployment.group != target.group:
        return None
    return deployment.version


def _deploy_command(target: _Target) -> str:
    return "kedro run --nodes deploy.select_deployment" + (
        f" --env {target.env}" if target.env else ""
    )


def _deployment_line(
    target: _Target, deployment: _Deployment, versions: dict[int, ModelVersion]
) -> tuple[str, str | None]:
    """The listing's account of the deployment: a line, and a warning if something looks wrong."""
    if deployment.problem is not None:
        return f"Endpoint {deployment.endpoint} ({deployment.where}): {deployment.problem}.", None
    of_group = "" if deployment.group == target.group else f" of {deployment.group or '?'}"
    since = f", deployed {_format_time(deployment.since)} UTC" if deployment.since else ""
    line = (
        f"Endpoint {deployment.endpoint} serves version {deployment.version}{of_group} "
        f"({deployment.where}{since})."
    )
    return line, _deployment_warning(target, deployment, versions)


def _deployment_warning(
    target: _Target, deployment: _Deployment, versions: dict[int, ModelVersion]
) -> str | None:
    if deployment.group != target.group:
        if deployment.group is None:
            return f"it serves {deployment.archive}, which is no version of {target.group}"
        return None
    registered = versions.get(deployment.version or 0)
    if registered is None:
        return f"version {deployment.version} is not in this registry"
    if (
        deployment.archive_sha256
        and registered.archive_sha256  # else the listing says why the version is unverified
        and deployment.archive_sha256 != registered.archive_sha256
    ):
        return (
            f"the deployment names archive sha256 {deployment.archive_sha256}, the registry "
            f"records {registered.archive_sha256} for version {registered.version}"
        )
    if registered.approval_status == REJECTED:
        return (
            f"version {registered.version} is Rejected and served until the next deployment "
            f"(`{_deploy_command(target)}`)"
        )
    return None


def _user_name() -> str | None:
    try:
        return getpass.getuser()
    except OSError:  # no user name in the environment nor the password database
        return None


def _format_time(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except (TypeError, ValueError):
        return str(value)


def _metric(metrics: dict[str, Any], *keys: str) -> str:
    value: Any = metrics
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return "-"
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.4f}"


def _table(rows: list[list[str]], right_aligned: set[int]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if column in right_aligned else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _describe(target: _Target, model: ModelVersion) -> str:
    archive = target.registry.archive_path(target.group, model.version)
    lines = [
        f"Model package group: {model.group}",
        f"Version:             {model.version}",
        f"Approval status:     {model.approval_status}",
        f"Created (UTC):       {model.created_at}",
        f"Archive:             {archive}",
        f"Archive size:        {model.archive_size:,} bytes",
        f"Archive sha256:      {model.archive_sha256 or '-'}",
        f"Description:         {model.description or '-'}",
        *_mlflow_lines(target, model),
        *_baseline_lines(target, model),
        *_card_lines(model),
        "Metrics:",
        _indent(json.dumps(model.metrics, indent=2)),
        "Lineage:",
        _indent(json.dumps(model.lineage, indent=2)),
        "Approval history:",
    ]
    for entry in model.approval_history:
        note = f": {entry['note']}" if entry.get("note") else ""
        lines.append(f"  {entry['at']}  {entry['status']} by {entry.get('by') or '?'}{note}")
    return "\n".join(lines)


def _tracking_settings(target: _Target) -> TrackingSettings | None:
    """The MLflow store ``kedro run`` logs to in this environment (conf ``mlflow.yml``, whether
    tracking is on or off now), or None when it is not configured or not valid."""
    from predictive_maintenance.tracking.settings import (  # noqa: PLC0415 - show only
        TrackingConfigError,
        settings_from_config,
    )

    config = target.configuration.get(MLFLOW_CONFIG)
    if config is None:
        return None
    try:
        return settings_from_config(config, project_path(target.metadata))
    except TrackingConfigError:
        return None


def _mlflow_lines(target: _Target, model: ModelVersion) -> list[str]:
    """The MLflow run that made the version, and how to open it when the store is local."""
    run = recorded_run(model.lineage)
    if run is None:
        return ["MLflow run:          - (none recorded: tracking was off, or an older version)"]
    experiment_id = run.get("experiment_id")
    lines = [
        f"MLflow run:          {run['run_id']}",
        f"MLflow experiment:   {run.get('experiment') or '?'} (id {experiment_id or '?'})",
    ]
    settings = _tracking_settings(target)
    database = settings.local_store_path() if settings is not None else None
    if database is None:
        return lines
    shown = _shown_path(target, database)
    if not database.exists():
        lines.append(f"{'':<21}(the configured local store {shown} does not exist)")
    else:
        page = f"#/experiments/{experiment_id}/runs/{run['run_id']}" if experiment_id else ""
        lines += [
            f"MLflow UI:           `{TRACKING_UI_COMMAND}` (store {shown}), then",
            f"{'':<21}{TRACKING_UI_URL}/{page}",
        ]
    return lines


def _baseline_lines(target: _Target, model: ModelVersion) -> list[str]:
    """Where the version's data-quality baseline is, with each file's sha256."""
    if not model.baseline:
        return [
            "Baseline:            none (a data-quality monitoring schedule needs one: register "
            "a model trained with the baseline node)"
        ]
    lines = []
    for part, item in model.baseline.items():
        where = target.registry.baseline_path(target.group, model.version, part)
        shown = _shown_path(target, where) if isinstance(where, Path) else where
        label = "Baseline:" if not lines else ""
        lines.append(f"{label:<21}{part} {shown} (sha256 {item.get('sha256') or '-'})")
    return lines


def _card_lines(model: ModelVersion) -> list[str]:
    """The version's model card, readable; a line saying there is none for older versions."""
    if not model.model_card:
        return ["Model card:          - (none: registered before model cards existed)"]
    return ["Model card:", _indent(render_card(model.model_card))]


def _ledger_line(target: _Target, integrity: GroupIntegrity, version: int) -> str:
    """Where the local registry's ledger records the version, or why it does not."""
    ledger = _shown_path(target, integrity.ledger)
    entry = integrity.entries.get(version)
    if entry is None:
        why = integrity.unverified.get(version, "it is not in the ledger")
        return f"Ledger:              {ledger}: no trusted line, {why}"
    how = (
        f"taken from version.json when the ledger was created, {entry.recorded_at}"
        if entry.source == SOURCE_VERSION_JSON
        else f"recorded at registration, {entry.recorded_at}"
    )
    return f"Ledger:              {ledger} line {entry.line} ({how})"


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


@click.group(name="model", cls=ReportingGroup, context_settings=CONTEXT_SETTINGS)
def model() -> None:
    """List, inspect, approve and reject versions in the model registry."""


@model.command(name="list")
@group_option
@env_option
@click.pass_obj
def list_versions(metadata: ProjectMetadata | None, group: str | None, env: str | None) -> None:
    """List the versions of a model package group, oldest first."""
    target = _registry_target(metadata, env, group)
    try:
        versions = target.registry.list_versions(target.group)
    except ModelNotFoundError:
        versions = []
    deployment = _deployment(target, versions)
    if not versions:
        click.echo(
            f"Model package group {target.group!r} has no versions yet "
            f"(registry {target.registry.root})."
        )
        if deployment is not None:
            _echo_deployment(target, deployment, {})
        return
    deployed = _deployed_version(target, deployment)
    checks = {version.version: _archive_check(target, version) for version in versions}
    integrity = _integrity(target)
    rows = [
        [
            "VERSION",
            "STATUS",
            "CREATED (UTC)",
            "F1",
            "ROC AUC",
            *SUMMARY_COLUMNS,
            "SHA256",
            "ARCHIVE",
            "MLFLOW RUN",
            "ENDPOINT",
        ]
    ]
    rows += [
        [
            str(version.version),
            version.approval_status,
            _format_time(version.created_at),
            _metric(version.metrics, "at_chosen_threshold", "f1"),
            _metric(version.metrics, "roc_auc"),
            *card_summary(version.model_card).values(),
            version.archive_sha256[:_SHA256_PREFIX] or "-",
            checks[version.version][0],
            (recorded_run(version.lineage) or {}).get("run_id", "-"),
            f"serving ({deployment.endpoint})"
            if deployment is not None and version.version == deployed
            else "",
        ]
        for version in versions
    ]
    click.echo(f"Model package group {target.group} (registry {target.registry.root})")
    click.echo(_table(rows, right_aligned={0, 3, 4, 5, 6}))
    if deployment is not None:
        _echo_deployment(target, deployment, {version.version: version for version in versions})
    if integrity is not None:
        ledger = _shown_path(target, integrity.ledger)
        for broken in integrity.problems:
            click.echo(f"Warning: {ledger} line {broken.line}: {broken.message}.", err=True)
    by_number = {version.version: version for version in versions}
    for number, (label, problem) in checks.items():
        if problem is not None:
            summary = _check_summary(target, number, label, problem, integrity)
            click.echo(f"Warning: {summary}", err=True)
        if integrity is not None and number in integrity.metadata:
            click.echo(
                f"Warning: version {number}: {integrity.metadata[number]}; do not approve or "
                f"deploy it (`kedro model show {number}` for details)",
                err=True,
            )
        elif label == "ok":
            baseline_problem = _baseline_check(target, by_number[number])[1]
            if baseline_problem is not None:
                click.echo(
                    f"Warning: version {number}'s baseline: {baseline_problem}; do not approve "
                    f"or deploy it (`kedro model show {number}` for details)",
                    err=True,
                )


def _echo_deployment(
    target: _Target, deployment: _Deployment, versions: dict[int, ModelVersion]
) -> None:
    line, warning = _deployment_line(target, deployment, versions)
    click.echo(line)
    if warning is not None:
        click.echo(f"Warning: {warning}.", err=True)


def _check_summary(
    target: _Target,
    version: int,
    label: str,
    problem: str,
    integrity: GroupIntegrity | None = None,
) -> str:
    """One line on a version whose archive cannot be trusted, for the listing."""
    path = target.registry.archive_path(target.group, version)
    shown = _shown_path(target, path) if isinstance(path, Path) else path
    if label == "CHANGED":
        return (
            f"version {version}'s archive {shown} no longer has its registered sha256: do not "
            f"approve or deploy it (`kedro model show {version}` for details)"
        )
    if label == "MISSING":
        return f"version {version}'s archive {shown} is missing"
    if label == "UNVERIFIED" and integrity is not None and version in integrity.unverified:
        return (
            f"version {version}'s archive {shown} cannot be verified, "
            f"{integrity.unverified[version]}: do not approve or deploy it"
        )
    return f"version {version}: {problem}"


@model.command(name="show")
@version_argument
@group_option
@click.option("--json", "as_json", is_flag=True, help="Print the version as JSON.")
@env_option
@click.pass_obj
def show(
    metadata: ProjectMetadata | None,
    version: int,
    group: str | None,
    as_json: bool,
    env: str | None,
) -> None:
    """Show everything recorded about VERSION."""
    target = _registry_target(metadata, env, group)
    try:
        found = target.registry.get(target.group, version)
    except ModelNotFoundError as error:
        raise click.ClickException(str(error)) from None
    archive_problem = _archive_check(target, found)[1]
    problem = _archive_problem(target, found)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
    else:
        click.echo(_describe(target, found))
        integrity = _integrity(target)
        if integrity is not None:
            click.echo(_ledger_line(target, integrity, version))
        click.echo(f"Archive check:       {'FAILED' if archive_problem else 'sha256 verified'}")
        baseline_label = _baseline_check(target, found)[0]
        click.echo(
            "Baseline check:      "
            + {"ok": "sha256 verified", "none": "no baseline registered"}.get(
                baseline_label, f"FAILED ({baseline_label})"
            )
        )
        if integrity is not None:
            metadata = (
                "FAILED"
                if version in integrity.metadata
                else "matches the ledger"
                if version in integrity.entries
                else "not checked (no trusted ledger line)"
            )
            click.echo(f"Metadata check:      {metadata}")
    if problem:
        raise click.ClickException(
            f"version {version} of {target.group} fails its integrity check: {problem}"
        )


def _set_status(
    metadata: ProjectMetadata | None,
    version: int,
    status: str,
    *,
    group: str | None,
    note: str,
    env: str | None,
) -> None:
    target = _registry_target(metadata, env, group)
    try:
        before = target.registry.get(target.group, version)
        problem = _archive_problem(target, before) if status == APPROVED else None
        if problem:
            raise click.ClickException(
                f"refusing to approve version {version} of {target.group}: {problem}"
            )
        after = target.registry.update_approval(
            target.group, version, status, note=note, by=_user_name()
        )
    except (ModelNotFoundError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Version {after.version} of {target.group}: {before.approval_status} -> "
        f"{after.approval_status} (by {after.approval_history[-1]['by'] or _user_name()})."
    )
    if status == REJECTED:
        _warn_if_deployed(target, version)


def _warn_if_deployed(target: _Target, version: int) -> None:
    """Rejecting does not undeploy: say what serves, until when, and what the next deployment
    does."""
    versions = target.registry.list_versions(target.group)
    deployment = _deployment(target, versions)
    if deployment is None or _deployed_version(target, deployment) != version:
        return
    command = _deploy_command(target)
    approved = max((v.version for v in versions if v.approval_status == APPROVED), default=None)
    if target.configuration["parameters"].get(DEPLOY_PARAM) is False:
        after = f"{DEPLOY_PARAM} is false, so deployments leave it as it is"
    elif approved is None:
        after = (
            "no version is Approved, so the next deployment leaves it as it is: approve another "
            f"version, then `{command}`"
        )
    else:
        after = f"`{command}` deploys version {approved}, the newest Approved"
    click.echo(
        f"Warning: version {version} is deployed to endpoint {deployment.endpoint} "
        f"({deployment.where}) and keeps serving until the next deployment; {after}.",
        err=True,
    )


@model.command(name="approve")
@version_argument
@group_option
@note_option
@env_option
@click.pass_obj
def approve(
    metadata: ProjectMetadata | None, version: int, group: str | None, note: str, env: str | None
) -> None:
    """Approve VERSION: the deployment serves the newest Approved version."""
    _set_status(metadata, version, APPROVED, group=group, note=note, env=env)


@model.command(name="reject")
@version_argument
@group_option
@note_option
@env_option
@click.pass_obj
def reject(
    metadata: ProjectMetadata | None, version: int, group: str | None, note: str, env: str | None
) -> None:
    """Reject VERSION: it will not be deployed."""
    _set_status(metadata, version, REJECTED, group=group, note=note, env=env)
