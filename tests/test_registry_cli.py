"""``kedro model list|show|approve|reject`` in a copy of the project, through Kedro's CLI.

The registry is filled with :class:`LocalModelRegistry` directly; the commands find it through the
parameters ``model_registry.root`` and ``model_registry.group``, read by a KedroSession.
"""

from __future__ import annotations

import getpass
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.registry import LocalModelRegistry
from predictive_maintenance.serving.endpoint import write_endpoint_state
from tests.support.cli import invoke
from tests.support.project import copy_project
from tests.test_registry_integrity import (
    ledger_lines,
    make_legacy,
    overwrite,
    rebless,
    write_ledger_lines,
)

GROUP = "predictive-maintenance"
REGISTRY_RELATIVE = Path("data") / "10_model_registry"
ENDPOINT = "predictive-maintenance"
#: The local endpoint's state file (the catalog's ``endpoint`` entry), relative to the project.
STATE_RELATIVE = Path("data") / "11_endpoints" / f"{ENDPOINT}.json"
STATE_WHERE = f"local, state file {STATE_RELATIVE}"
METRICS = {"roc_auc": 0.98352, "at_chosen_threshold": {"f1": 0.9375, "threshold": 0.54}}
#: The MLflow run version 1 records (versions 2 and 3 record none: tracking was off).
RUN = {"run_id": "5" * 32, "experiment_id": "7", "experiment": "predictive-maintenance"}


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
    """Three versions: 1 Approved (made by MLflow run ``RUN``), 2 Rejected, 3 pending (no
    metrics)."""
    registry = LocalModelRegistry(project / REGISTRY_RELATIVE)
    for index in range(3):
        registry.register(
            GROUP,
            f"archive {index}".encode(),
            metrics=METRICS if index < 2 else {},
            lineage={"raw_data_sha256": "ab" * 32, **({"mlflow": RUN} if index == 0 else {})},
            description=f"model {index + 1}",
        )
    registry.update_approval(GROUP, 1, "Approved", note="ok", by="alice")
    registry.update_approval(GROUP, 2, "Rejected", note="worse", by="bob")
    return registry


def deploy(project: Path, registry: LocalModelRegistry, version: int, **changes) -> None:
    """Writes the endpoint state the deployment pipeline writes for ``version``."""
    write_endpoint_state(
        project / STATE_RELATIVE,
        {
            "endpoint_name": ENDPOINT,
            "model_group": GROUP,
            "model_version": version,
            "model_archive": str(registry.archive_path(GROUP, version)),
            "model_archive_sha256": registry.get(GROUP, version).archive_sha256,
            "deployed_at": "2026-01-02T03:04:05+00:00",
            **changes,
        },
    )


@pytest.fixture
def kedro(project: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    def run(*args: str) -> Result:
        return invoke(project, monkeypatch, *args, catch_exceptions=True)

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
        "ECE",  # the model card's (versions without one: "-")
        "MODES",
        "F1",
        "SHA256",
        "ARCHIVE",
        "MLFLOW",
        "RUN",
        "ENDPOINT",
    ]
    rows = [line.split() for line in lines[header_at + 1 : header_at + 4]]
    assert [row[:2] for row in rows] == [
        ["1", "Approved"],
        ["2", "Rejected"],
        ["3", "PendingManualApproval"],
    ]
    assert rows[0][4:] == [
        "0.9375",
        "0.9835",
        "-",
        "-",
        sha256_hex(b"archive 0")[:12],
        "ok",
        "5" * 32,
    ]
    assert rows[2][4:] == ["-", "-", "-", "-", sha256_hex(b"archive 2")[:12], "ok", "-"]
    assert lines[header_at + 4 :] == [f"Endpoint {ENDPOINT} ({STATE_WHERE}): nothing deployed yet."]
    assert result.stderr == ""


def test_list_other_and_empty_groups(kedro, registry: LocalModelRegistry):
    registry.register("other-group", b"x", metrics={}, lineage={})

    other = kedro("model", "list", "--group", "other-group")
    empty = kedro("model", "list", "--group", "no-such-group")

    assert other.exit_code == 0, other.output
    assert [line.split()[0] for line in other.stdout.splitlines()[-2:]] == ["1", "Endpoint"]
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


def test_show_names_the_mlflow_run_and_how_to_open_a_local_store(kedro, registry, project):
    no_store_yet = kedro("model", "show", "1")
    store = project / "data" / "09_tracking" / "mlflow.db"  # conf/base/mlflow.yml's
    store.write_bytes(b"")
    local_store = kedro("model", "show", "1")
    (project / "conf" / "local" / "mlflow.yml").write_text("tracking_uri: http://127.0.0.1:5000\n")
    remote_store = kedro("model", "show", "1")
    no_run = kedro("model", "show", "2")

    for result in (no_store_yet, local_store, remote_store, no_run):
        assert result.exit_code == 0, result.output
    head = [
        f"MLflow run:          {RUN['run_id']}",
        "MLflow experiment:   predictive-maintenance (id 7)",
    ]
    assert _mlflow_lines(local_store) == [
        *head,
        "MLflow UI:           `kedro tracking ui` (store data/09_tracking/mlflow.db), then",
        f"                     http://127.0.0.1:5000/#/experiments/7/runs/{RUN['run_id']}",
    ]
    assert _mlflow_lines(no_store_yet) == [
        *head,
        "                     (the configured local store data/09_tracking/mlflow.db does not "
        "exist)",
    ]
    assert _mlflow_lines(remote_store) == head  # its own UI: nothing to start here
    assert _mlflow_lines(no_run) == [
        "MLflow run:          - (none recorded: tracking was off, or an older version)"
    ]


def _mlflow_lines(result: Result) -> list[str]:
    """``kedro model show``'s lines about the MLflow run: from ``MLflow run:`` to ``Baseline:``."""
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("MLflow run:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("Baseline:"))
    return lines[start:end]


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


def _versions(result: Result) -> list[str]:
    """The VERSION column of a listing."""
    return [line.split()[0] for line in result.stdout.splitlines() if line[:7].strip().isdigit()]


def test_list_shows_the_deployed_version_and_where(kedro, registry, project: Path):
    deploy(project, registry, 1)

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    rows = [line.split() for line in lines[2:5]]
    assert [(row[0], row[-2:]) for row in rows] == [
        ("1", ["serving", f"({ENDPOINT})"]),
        ("2", ["ok", "-"]),
        ("3", ["ok", "-"]),
    ]
    assert lines[5:] == [
        f"Endpoint {ENDPOINT} serves version 1 ({STATE_WHERE}, deployed 2026-01-02 03:04:05 UTC)."
    ]


def test_list_flags_changed_and_missing_archives_without_failing(kedro, registry, project: Path):
    changed = registry.archive_path(GROUP, 1)
    changed.chmod(0o644)
    changed.write_bytes(b"archive X")
    registry.archive_path(GROUP, 3).unlink()
    deploy(project, registry, 3)

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert [line.split()[ARCHIVE_COLUMN:] for line in lines[2:5]] == [
        ["CHANGED", "5" * 32],
        ["ok", "-"],
        ["MISSING", "-", "serving", f"({ENDPOINT})"],
    ]
    assert result.stderr.splitlines() == [
        f"Warning: version 1's archive {REGISTRY_RELATIVE}/{GROUP}/versions/1/model.tar.gz no "
        "longer has its registered sha256: do not approve or deploy it (`kedro model show 1` "
        "for details)",
        f"Warning: version 3's archive {REGISTRY_RELATIVE}/{GROUP}/versions/3/model.tar.gz is "
        "missing",
    ]


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ("{not json", f"cannot read {STATE_RELATIVE}: {{tmp}}/{STATE_RELATIVE} is not valid JSON"),
        ('{"endpoint_name": "e"}', f"cannot read {STATE_RELATIVE}: endpoint state lacks"),
    ],
)
def test_list_reports_an_unreadable_deployment_and_still_lists(
    kedro, registry, project: Path, state: str, says: str
):
    (project / STATE_RELATIVE).parent.mkdir(parents=True, exist_ok=True)
    (project / STATE_RELATIVE).write_text(state)

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    assert _versions(result) == ["1", "2", "3"]
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"Endpoint {ENDPOINT} ({STATE_WHERE}): {says.format(tmp=project)}")
    )


def test_list_warns_when_the_deployment_and_the_registry_disagree(kedro, registry, project: Path):
    deploy(project, registry, 2, model_archive_sha256="0" * 64)

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"Warning: the deployment names archive sha256 {'0' * 64}, the registry records "
        f"{sha256_hex(b'archive 1')} for version 2.\n"
    )


def test_list_warns_that_a_rejected_version_is_still_served(kedro, registry, project: Path):
    deploy(project, registry, 2)  # version 2 is Rejected

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    assert (
        result.stdout.strip()
        .splitlines()[-1]
        .startswith(f"Endpoint {ENDPOINT} serves version 2 ({STATE_WHERE}")
    )
    assert result.stderr == (
        "Warning: version 2 is Rejected and served until the next deployment "
        "(`kedro run --nodes deploy.select_deployment`).\n"
    )


def test_rejecting_the_deployed_version_warns_and_says_what_happens_next(
    kedro, registry, project: Path
):
    deploy(project, registry, 1)

    other = kedro("model", "reject", "3")
    last_approved = kedro("model", "reject", "1")
    kedro("model", "approve", "3")
    deploy(project, registry, 3)
    with_successor = kedro("model", "reject", "3")

    assert other.exit_code == 0, other.output
    assert other.stderr == ""  # version 3 is not deployed: nothing to warn about
    assert last_approved.exit_code == 0, last_approved.output
    assert "Approved -> Rejected" in last_approved.stdout
    assert last_approved.stderr.strip() == (
        f"Warning: version 1 is deployed to endpoint {ENDPOINT} ({STATE_WHERE}) and keeps "
        "serving until the next deployment; no version is Approved, so the next deployment "
        "leaves it as it is: approve another version, then "
        "`kedro run --nodes deploy.select_deployment`."
    )
    assert with_successor.exit_code == 0, with_successor.output
    assert registry.get(GROUP, 3).approval_status == "Rejected"
    # Version 1 was rejected above; nothing else is Approved either.
    assert "no version is Approved" in with_successor.stderr


def test_rejecting_the_deployed_version_names_the_next_one(kedro, registry, project: Path):
    registry.update_approval(GROUP, 3, "Approved")
    deploy(project, registry, 3)

    result = kedro("model", "reject", "3", "--note", "drifted")

    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"Warning: version 3 is deployed to endpoint {ENDPOINT} ({STATE_WHERE}) and keeps "
        "serving until the next deployment; `kedro run --nodes deploy.select_deployment` "
        "deploys version 1, the newest Approved."
    )


# ---- the ledger: what `model list` says when the registry's files were changed ------------------

ARCHIVE_COLUMN = 9
LEDGER_SHOWN = REGISTRY_RELATIVE / GROUP / "ledger.jsonl"


def _archive_labels(result: Result) -> list[str]:
    """The ARCHIVE column of a listing."""
    return [
        line.split()[ARCHIVE_COLUMN]
        for line in result.stdout.splitlines()
        if line[:7].strip().isdigit()
    ]


def test_list_flags_a_reblessed_archive_and_show_and_approve_refuse_it(
    kedro, registry: LocalModelRegistry
):
    # Archive rewritten, and version.json with it (chmod, new sha256 and size): re-blessed.
    rebless(registry, 3, b"archive X")

    listed = kedro("model", "list")
    shown = kedro("model", "show", "3")
    approved = kedro("model", "approve", "3")

    assert listed.exit_code == 0, listed.output
    assert _archive_labels(listed) == ["ok", "ok", "CHANGED"]
    assert listed.stderr.splitlines() == [
        f"Warning: version 3's archive {REGISTRY_RELATIVE}/{GROUP}/versions/3/model.tar.gz no "
        "longer has its registered sha256: do not approve or deploy it (`kedro model show 3` "
        "for details)",
        f"Warning: version 3: its version.json records archive sha256 {sha256_hex(b'archive X')}, "
        f"but ledger.jsonl line 3 records {sha256_hex(b'archive 2')}: version.json was rewritten "
        "after registration; do not approve or deploy it (`kedro model show 3` for details)",
    ]
    assert shown.exit_code == 1
    assert f"Archive sha256:      {sha256_hex(b'archive 2')}" in shown.stdout
    assert f"Ledger:              {LEDGER_SHOWN} line 3 (recorded at registration" in shown.stdout
    assert "Archive check:       FAILED" in shown.stdout
    assert "Metadata check:      FAILED" in shown.stdout
    assert "ledger.jsonl line 3 records for version 3" in shown.stderr
    assert approved.exit_code == 1
    assert f"refusing to approve version 3 of {GROUP}" in approved.stderr
    assert registry.get(GROUP, 3).approval_status == "PendingManualApproval"


def test_restoring_the_archive_makes_the_version_ok_again(kedro, registry: LocalModelRegistry):
    path = registry.archive_path(GROUP, 1)
    overwrite(path, b"archive X")
    changed = kedro("model", "list")
    overwrite(path, b"archive 0")  # the original bytes; nothing else is touched

    restored = kedro("model", "list")
    shown = kedro("model", "show", "1")

    assert _archive_labels(changed) == ["CHANGED", "ok", "ok"]
    assert restored.exit_code == 0, restored.output
    assert _archive_labels(restored) == ["ok", "ok", "ok"]
    assert restored.stderr == ""
    assert shown.exit_code == 0, shown.output
    assert "Archive check:       sha256 verified" in shown.stdout
    assert "Metadata check:      matches the ledger" in shown.stdout


def test_list_reports_a_broken_ledger_chain_naming_the_line(kedro, registry: LocalModelRegistry):
    lines = ledger_lines(registry, GROUP)
    edited = json.loads(lines[1])
    edited["archive_sha256"] = "0" * 64
    write_ledger_lines(registry, [lines[0], json.dumps(edited).encode(), lines[2]], GROUP)

    result = kedro("model", "list")

    assert result.exit_code == 0, result.output
    assert _archive_labels(result) == ["ok", "UNVERIFIED", "UNVERIFIED"]
    rows = [line.split() for line in result.stdout.splitlines() if line[:7].strip().isdigit()]
    assert [row[6] for row in rows[1:]] == ["-", "-"]  # no sha256 the registry trusts
    warnings = result.stderr.splitlines()
    assert warnings[0] == (
        f"Warning: {LEDGER_SHOWN} line 3: prev is not the sha256 of line 2: one of the two lines "
        "was edited, or lines were removed, inserted or reordered."
    )
    assert warnings[1].startswith(
        f"Warning: version 2's archive {REGISTRY_RELATIVE}/{GROUP}/versions/2/model.tar.gz "
        "cannot be verified, its ledger.jsonl line 2 is untrusted (line 3: "
    )
    assert warnings[2].startswith("Warning: version 3's archive ")
    assert len(warnings) == 3


def test_list_flags_a_version_missing_from_the_ledger(kedro, registry, project: Path):
    versions = project / REGISTRY_RELATIVE / GROUP / "versions"
    shutil.copytree(versions / "3", versions / "4")  # a version directory no registration wrote

    listed = kedro("model", "list")
    approved = kedro("model", "approve", "4")

    assert listed.exit_code == 0, listed.output
    assert _archive_labels(listed) == ["ok", "ok", "ok", "UNVERIFIED"]
    assert listed.stderr == (
        f"Warning: version 4's archive {REGISTRY_RELATIVE}/{GROUP}/versions/4/model.tar.gz "
        "cannot be verified, it is not in the group's ledger.jsonl (an interrupted registration, "
        "a version directory added by hand, or one registered by code older than the ledger): "
        "do not approve or deploy it\n"
    )
    assert approved.exit_code == 1
    assert "nothing trustworthy records the sha256 of version 4's archive" in approved.stderr


def test_list_loads_a_registry_without_a_ledger(kedro, registry: LocalModelRegistry):
    make_legacy(registry, GROUP)
    overwrite(registry.archive_path(GROUP, 2), b"archive X")  # changed before the upgrade

    listed = kedro("model", "list")
    shown = kedro("model", "show", "1")

    assert listed.exit_code == 0, listed.output
    assert _archive_labels(listed) == ["ok", "CHANGED", "ok"]
    assert [json.loads(line)["source"] for line in ledger_lines(registry, GROUP)] == [
        "version.json"
    ] * 3
    assert shown.exit_code == 0, shown.output
    assert (
        f"Ledger:              {LEDGER_SHOWN} line 1 (taken from version.json when the ledger "
        "was created, "
    ) in shown.stdout
