"""``kedro model list|show|approve|reject`` in a copy of the project, through Kedro's CLI.

The registry is filled with :class:`LocalModelRegistry` directly; the commands find it through the
parameters ``model_registry.root`` and ``model_registry.group``, read by a KedroSession.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result
from kedro.framework.cli.cli import KedroCLI

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.registry import LocalModelRegistry
from predictive_maintenance.registry.cli import model
from tests.conftest import copy_project

GROUP = "predictive-maintenance"
REGISTRY_RELATIVE = Path("data") / "10_model_registry"
METRICS = {"roc_auc": 0.98352, "at_chosen_threshold": {"f1": 0.9375, "threshold": 0.54}}


class ProjectCLI(KedroCLI):
    """``kedro`` in the project, with the ``model`` group even before cli.py attaches it."""

    @property
    def project_groups(self) -> Sequence[click.Group]:
        groups = list(super().project_groups)
        if not any("model" in getattr(group, "commands", {}) for group in groups):
            groups.insert(0, click.Group(name="model-registry", commands={"model": model}))
        return groups


def write_parameters(project: Path, env: str, settings: dict | None) -> None:
    """Sets ``model_registry`` in ``conf/<env>/parameters_deployment.yml``, keeping other keys."""
    path = project / "conf" / env / "parameters_deployment.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    parameters = (yaml.safe_load(path.read_text()) if path.exists() else None) or {}
    if settings is None:
        parameters.pop("model_registry", None)
    else:
        parameters["model_registry"] = settings
    path.write_text(yaml.safe_dump(parameters))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    project = copy_project(tmp_path / "project")
    write_parameters(project, "base", {"root": str(REGISTRY_RELATIVE), "group": GROUP})
    monkeypatch.chdir(project)
    return project


@pytest.fixture
def registry(project: Path) -> LocalModelRegistry:
    """Three versions: 1 Approved, 2 Rejected, 3 pending (no metrics)."""
    registry = LocalModelRegistry(project / REGISTRY_RELATIVE)
    for index in range(3):
        registry.register(
            GROUP,
            f"archive {index}".encode(),
            metrics=METRICS if index < 2 else {},
            lineage={"raw_data_sha256": "ab" * 32},
            description=f"model {index + 1}",
        )
    registry.update_approval(GROUP, 1, "Approved", note="ok", by="alice")
    registry.update_approval(GROUP, 2, "Rejected", note="worse", by="bob")
    return registry


@pytest.fixture
def kedro(project: Path) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return CliRunner().invoke(ProjectCLI(project), list(args))

    return run


def test_list(kedro, registry: LocalModelRegistry):
    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    header_at = next(i for i, line in enumerate(lines) if line.startswith("VERSION"))
    assert lines[header_at].split() == [
        "VERSION",
        "STATUS",
        "CREATED",
        "(UTC)",
        "F1",
        "ROC",
        "AUC",
        "SHA256",
    ]
    rows = [line.split() for line in lines[header_at + 1 :]]
    assert [row[:2] for row in rows] == [
        ["1", "Approved"],
        ["2", "Rejected"],
        ["3", "PendingManualApproval"],
    ]
    assert rows[0][4:] == ["0.9375", "0.9835", sha256_hex(b"archive 0")[:12]]
    assert rows[2][4:] == ["-", "-", sha256_hex(b"archive 2")[:12]]


def test_list_other_and_empty_groups(kedro, registry: LocalModelRegistry):
    registry.register("other-group", b"x", metrics={}, lineage={})

    other = kedro("model", "list", "--group", "other-group")
    empty = kedro("model", "list", "--group", "no-such-group")

    assert other.exit_code == 0, other.output
    assert [line.split()[0] for line in other.stdout.splitlines()[-1:]] == ["1"]
    assert empty.exit_code == 0, empty.output
    assert "'no-such-group' has no versions yet" in empty.stdout


def test_show(kedro, registry: LocalModelRegistry, project: Path):
    human = kedro("model", "show", "1")
    as_json = kedro("model", "show", "2", "--json")

    assert human.exit_code == 0, human.output
    assert "Approval status:     Approved" in human.stdout
    assert (
        str(project / REGISTRY_RELATIVE / GROUP / "versions" / "1" / "model.tar.gz") in human.stdout
    )
    assert sha256_hex(b"archive 0") in human.stdout
    assert "Approved by alice: ok" in human.stdout
    assert '"roc_auc": 0.98352' in human.stdout
    assert "Archive check:       sha256 verified" in human.stdout
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == registry.get(GROUP, 2).to_dict()


def test_approve_and_reject(kedro, registry: LocalModelRegistry):
    approved = kedro("model", "approve", "3", "--note", "looks good")

    assert approved.exit_code == 0, approved.output
    assert f"Version 3 of {GROUP}: PendingManualApproval -> Approved" in approved.stdout
    assert registry.latest(GROUP, "Approved").version == 3
    last = registry.get(GROUP, 3).approval_history[-1]
    assert (last["status"], last["note"], last["by"]) == (
        "Approved",
        "looks good",
        getpass.getuser(),
    )

    rejected = kedro("model", "reject", "3")

    assert rejected.exit_code == 0, rejected.output
    assert "Approved -> Rejected" in rejected.stdout
    assert registry.latest(GROUP, "Approved").version == 1
    assert [e["status"] for e in registry.get(GROUP, 3).approval_history] == [
        "PendingManualApproval",
        "Approved",
        "Rejected",
    ]


def test_tampered_archive_is_reported_and_not_approved(kedro, registry: LocalModelRegistry):
    path = registry.archive_path(GROUP, 3)
    path.chmod(0o644)
    path.write_bytes(b"archive X")

    shown = kedro("model", "show", "3")
    approved = kedro("model", "approve", "3")
    rejected = kedro("model", "reject", "3", "--note", "tampered")

    assert shown.exit_code == 1
    assert "Archive check:       FAILED" in shown.stdout
    assert f"version 3 of {GROUP} fails its integrity check: {path}: sha256 is" in shown.stderr
    assert approved.exit_code == 1
    assert f"refusing to approve version 3 of {GROUP}" in approved.stderr
    assert rejected.exit_code == 0, rejected.output
    assert [e["status"] for e in registry.get(GROUP, 3).approval_history] == [
        "PendingManualApproval",
        "Rejected",
    ]


@pytest.mark.parametrize("command", ["show", "approve", "reject"])
def test_unknown_version_is_an_error(kedro, registry: LocalModelRegistry, command: str):
    result = kedro("model", command, "9")

    assert result.exit_code == 1
    assert f"'{GROUP}' has no version 9" in result.stderr
    assert [len(v.approval_history) for v in registry.list_versions(GROUP)] == [2, 2, 1]


def test_unknown_or_invalid_group_is_an_error(kedro, registry: LocalModelRegistry):
    unknown = kedro("model", "approve", "1", "--group", "no-such-group")
    invalid = kedro("model", "show", "1", "--group", "bad_name")

    assert unknown.exit_code == 1
    assert "'no-such-group' does not exist" in unknown.stderr
    assert invalid.exit_code == 1
    assert "invalid model package group name 'bad_name'" in invalid.stderr


def test_missing_parameters_are_an_error(kedro, project: Path):
    write_parameters(project, "base", None)

    result = kedro("model", "list")

    assert result.exit_code == 1
    assert "model_registry.root is not set" in result.stderr


def test_env_selects_the_configuration(kedro, project: Path, registry: LocalModelRegistry):
    staging_root = project / "data" / "staging_registry"
    LocalModelRegistry(staging_root).register("staging-group", b"s", metrics={}, lineage={})
    write_parameters(project, "staging", {"root": str(staging_root), "group": "staging-group"})

    staging = kedro("model", "approve", "1", "--env", "staging")

    assert staging.exit_code == 0, staging.output
    assert "Version 1 of staging-group" in staging.stdout
    assert LocalModelRegistry(staging_root).get("staging-group", 1).approval_status == "Approved"
    assert registry.get(GROUP, 1).approval_history[-1]["by"] == "alice"


def test_missing_env_is_an_error(kedro, project: Path, registry: LocalModelRegistry):
    result = kedro("model", "approve", "3", "--env", "no-such-env")

    assert result.exit_code == 1
    assert "cannot read the catalog" in result.stderr
    assert str(project / "conf" / "no-such-env") in result.stderr
    assert registry.get(GROUP, 3).approval_status == "PendingManualApproval"
