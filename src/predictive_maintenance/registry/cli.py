"""``kedro model ...``: list, show, approve and reject versions in the local model registry.

The registry's directory and the model package group come from the parameters
``model_registry.root`` and ``model_registry.group``, read through a
:class:`~kedro.framework.session.KedroSession`'s config loader (as ``kedro data fetch`` does) so
that ``--env`` and ``conf/local`` apply exactly as they do to ``kedro run``. A relative root is
resolved against the project directory.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option
from kedro.framework.startup import ProjectMetadata

from predictive_maintenance.integrity import ChecksumMismatchError
from predictive_maintenance.project_config import project_config, resolve
from predictive_maintenance.registry.local import (
    APPROVED,
    REJECTED,
    LocalModelRegistry,
    ModelNotFoundError,
    ModelVersion,
    validate_group_name,
)

#: Parameters holding the registry settings: ``{root: ..., group: ...}``.
REGISTRY_PARAMS = "model_registry"
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

#: The catalog entry the deployment pipeline registers through.
REGISTRY_DATASET = "model_registry"


@dataclass(frozen=True)
class _Target:
    registry: LocalModelRegistry | SageMakerRegistry  # same operations
    group: str


def _sagemaker_target(entry: dict[str, Any], group: str | None) -> _Target:
    """The SageMaker model package group the catalog's ``model_registry`` entry names."""
    from kedro.io import DataCatalog  # noqa: PLC0415 - on demand, like boto3 below

    from predictive_maintenance.registry.sagemaker import SageMakerRegistry  # noqa: PLC0415

    dataset = DataCatalog.from_config({REGISTRY_DATASET: entry})[REGISTRY_DATASET]
    registry = SageMakerRegistry(dataset)
    if group and group != registry.group:
        raise click.ClickException(
            f"the catalog's SageMaker registry holds group {registry.group!r}, not {group!r}"
        )
    return _Target(registry, registry.group)


def _registry_target(
    metadata: ProjectMetadata | None, env: str | None, group: str | None
) -> _Target:
    """The registry and group from the project's configuration (``group`` overrides the latter).

    When the environment's catalog registers in SageMaker (``conf/sagemaker``), that registry.
    """
    configuration = project_config(metadata, env, "catalog", "parameters")
    entry = configuration["catalog"].get(REGISTRY_DATASET) or {}
    if str(entry.get("type", "")).endswith("SageMakerModelRegistryDataset"):
        return _sagemaker_target(entry, group)
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
    return _Target(LocalModelRegistry(resolve(metadata, str(root))), group)


def _archive_problem(target: _Target, version: int) -> str | None:
    """Why the version's archive cannot be trusted (changed or missing bytes), or None."""
    try:
        target.registry.read_archive(target.group, version)
    except (ChecksumMismatchError, FileNotFoundError) as error:
        return str(error)
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
        f"Archive sha256:      {model.archive_sha256}",
        f"Description:         {model.description or '-'}",
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


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


@click.group(name="model", context_settings=CONTEXT_SETTINGS)
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
    if not versions:
        click.echo(
            f"Model package group {target.group!r} has no versions yet "
            f"(registry {target.registry.root})."
        )
        return
    rows = [["VERSION", "STATUS", "CREATED (UTC)", "F1", "ROC AUC", "SHA256"]]
    rows += [
        [
            str(version.version),
            version.approval_status,
            _format_time(version.created_at),
            _metric(version.metrics, "at_chosen_threshold", "f1"),
            _metric(version.metrics, "roc_auc"),
            version.archive_sha256[:_SHA256_PREFIX],
        ]
        for version in versions
    ]
    click.echo(f"Model package group {target.group} (registry {target.registry.root})")
    click.echo(_table(rows, right_aligned={0, 3, 4}))


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
    problem = _archive_problem(target, version)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2))
    else:
        click.echo(_describe(target, found))
        click.echo(f"Archive check:       {'FAILED' if problem else 'sha256 verified'}")
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
        problem = _archive_problem(target, version) if status == APPROVED else None
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
