"""The local model registry: versioning, immutability, integrity, approvals, concurrency, dataset.

Everything runs against the real filesystem under ``tmp_path``; nothing is mocked.
"""

from __future__ import annotations

import inspect
import json
import multiprocessing
import os
import stat
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DataCatalog, DatasetError

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.registry import (
    APPROVAL_STATUSES,
    LocalModelRegistry,
    LocalModelRegistryDataset,
    ModelNotFoundError,
    ModelVersion,
)
from predictive_maintenance.registry.local import STAGING_PREFIX, current_git_commit

GROUP = "predictive-maintenance"
WORKERS = 8
METRICS = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.94, "threshold": 0.54}}


def payload(index: int) -> bytes:
    """A distinct archive per index (the registry treats archives as opaque bytes)."""
    return f"model.tar.gz #{index}\n".encode() * (1000 + index)


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    return LocalModelRegistry(tmp_path / "registry")


def register(
    registry: LocalModelRegistry, index: int, group: str = GROUP, **kwargs
) -> ModelVersion:
    return registry.register(
        group, payload(index), metrics=METRICS, lineage={"worker": index}, **kwargs
    )


def staging_leftovers(registry: LocalModelRegistry, group: str = GROUP) -> list[str]:
    return [name for name in os.listdir(registry.root / group) if name.startswith(STAGING_PREFIX)]


# ---- versioning ----------------------------------------------------------------------------------


def test_versions_are_numbered_per_group(registry: LocalModelRegistry):
    assert registry.list_groups() == []
    first = [register(registry, index).version for index in range(3)]
    other = [register(registry, index, group="other-group").version for index in range(2)]

    assert first == [1, 2, 3]
    assert other == [1, 2]
    assert registry.list_groups() == ["other-group", GROUP]
    assert [v.version for v in registry.list_versions(GROUP)] == [1, 2, 3]
    assert registry.read_archive("other-group", 2) == payload(1)
    assert registry.latest(GROUP).version == 3


def test_registered_version_records_everything(registry: LocalModelRegistry):
    archive = payload(7)
    version = registry.register(
        GROUP,
        archive,
        metrics={"roc_auc": np.float64(0.97), "at_chosen_threshold": {"f1": 0.9}},
        lineage={"raw_data_sha256": "ab" * 32, "parameters": {"eta": 0.1}},
        description="first model",
    )

    assert version == registry.get(GROUP, 1)
    assert version.group == GROUP
    assert version.archive_sha256 == sha256_hex(archive)
    assert version.archive_size == len(archive)
    assert version.metrics == {"roc_auc": 0.97, "at_chosen_threshold": {"f1": 0.9}}
    assert version.lineage["parameters"] == {"eta": 0.1}
    assert version.description == "first model"
    assert version.approval_status == "PendingManualApproval"
    assert registry.archive_path(GROUP, 1).name == "model.tar.gz"
    assert registry.archive_path(GROUP, 1).read_bytes() == archive
    # JSON-ready, and a copy: changing it changes nothing in the registry.
    as_dict = version.to_dict()
    assert json.loads(json.dumps(as_dict)) == as_dict
    as_dict["metrics"]["roc_auc"] = 0.0
    assert registry.get(GROUP, 1).metrics["roc_auc"] == 0.97
    # Files a human can read.
    version_json = (registry.root / GROUP / "versions" / "1" / "version.json").read_text()
    assert version_json.startswith("{\n  ")
    assert json.loads(version_json)["version"] == 1


def test_lineage_gets_creation_time_and_git_commit(
    registry: LocalModelRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git looks no higher
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    monkeypatch.chdir(outside)
    plain = register(registry, 0)
    assert plain.lineage["git_commit"] is None
    assert plain.lineage["created_at"] == plain.created_at
    created = datetime.fromisoformat(plain.created_at)
    assert created.utcoffset().total_seconds() == 0
    assert abs((datetime.now(timezone.utc) - created).total_seconds()) < 60

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(repo)
    assert current_git_commit() == head
    assert register(registry, 1).lineage["git_commit"] == head

    given = registry.register(
        GROUP,
        payload(2),
        metrics={},
        lineage={"created_at": "2020-01-01T00:00:00+00:00", "git_commit": "c" * 40},
    )
    assert given.lineage["created_at"] == "2020-01-01T00:00:00+00:00"
    assert given.lineage["git_commit"] == "c" * 40
    assert given.created_at != "2020-01-01T00:00:00+00:00"


# ---- immutability and integrity ------------------------------------------------------------------


def _snapshot(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_mtime_ns, info.st_ino


def test_versions_are_immutable(registry: LocalModelRegistry):
    register(registry, 0)
    version_dir = registry.root / GROUP / "versions" / "1"
    immutable = [version_dir / "version.json", version_dir / "model.tar.gz"]
    before = [_snapshot(path) for path in immutable]

    for status in ("Approved", "Rejected", "Approved"):
        registry.update_approval(GROUP, 1, status)
    register(registry, 1)

    assert [_snapshot(path) for path in immutable] == before
    for path in immutable:
        assert stat.S_IMODE(path.stat().st_mode) & 0o222 == 0, f"{path.name} is writable"
    assert registry.get(GROUP, 1).approval_status == "Approved"
    assert "version" not in inspect_parameters(LocalModelRegistry.register)


def inspect_parameters(function) -> set[str]:
    return set(inspect.signature(function).parameters)


class StaleListingRegistry(LocalModelRegistry):
    """Sees no existing version, as a writer racing others would: every number looks free."""

    def _version_numbers(self, versions_dir: Path) -> list[int]:
        return []


def test_an_existing_version_number_is_never_overwritten(registry: LocalModelRegistry):
    for index in range(3):
        register(registry, index)
    before = {n: registry.read_archive(GROUP, n) for n in (1, 2, 3)}

    stale = StaleListingRegistry(registry.root)
    assert stale.register(GROUP, payload(9), metrics={}, lineage={}).version == 4

    assert {n: registry.read_archive(GROUP, n) for n in (1, 2, 3)} == before
    assert registry.read_archive(GROUP, 4) == payload(9)
    assert staging_leftovers(registry) == []


@pytest.mark.parametrize("same_size", [True, False])
def test_tampered_archive_is_refused(registry: LocalModelRegistry, same_size: bool):
    register(registry, 0)
    path = registry.archive_path(GROUP, 1)
    data = bytearray(path.read_bytes())
    if same_size:
        data[len(data) // 2] ^= 0x01
    else:
        data += b"x"
    path.chmod(0o644)
    path.write_bytes(bytes(data))

    with pytest.raises(ChecksumMismatchError, match=str(path)):
        registry.read_archive(GROUP, 1)
    assert registry.get(GROUP, 1).archive_sha256 == sha256_hex(payload(0))


# ---- approvals -----------------------------------------------------------------------------------


def test_approval_history_keeps_every_change_in_order(registry: LocalModelRegistry):
    registered = register(registry, 0)
    assert registered.approval_history == [
        {
            "status": "PendingManualApproval",
            "at": registered.created_at,
            "by": registered.approval_history[0]["by"],
            "note": "registered",
        }
    ]

    registry.update_approval(GROUP, 1, "Approved", note="good F1", by="alice")
    registry.update_approval(GROUP, 1, "Rejected", note="drift", by="bob")
    final = registry.update_approval(GROUP, 1, "Rejected", note="still drifting", by="bob")

    assert final == registry.get(GROUP, 1)
    assert final.approval_status == "Rejected"
    history = final.approval_history
    assert [(e["status"], e["by"], e["note"]) for e in history[1:]] == [
        ("Approved", "alice", "good F1"),
        ("Rejected", "bob", "drift"),
        ("Rejected", "bob", "still drifting"),
    ]
    times = [datetime.fromisoformat(entry["at"]) for entry in history]
    assert times == sorted(times)


def test_initial_status_can_be_approved(registry: LocalModelRegistry):
    version = register(registry, 0, approval_status="Approved", description="auto-approved")
    assert version.approval_status == "Approved"
    assert [e["status"] for e in version.approval_history] == ["Approved"]


def test_latest_with_status(registry: LocalModelRegistry):
    for index in range(4):
        register(registry, index)
    assert registry.latest(GROUP, "Approved") is None

    registry.update_approval(GROUP, 1, "Approved")
    registry.update_approval(GROUP, 3, "Approved")
    registry.update_approval(GROUP, 4, "Rejected")

    assert registry.latest(GROUP, "Approved").version == 3
    assert registry.latest(GROUP, "Rejected").version == 4
    assert registry.latest(GROUP, "PendingManualApproval").version == 2
    assert registry.latest(GROUP).version == 4
    assert registry.read_archive(GROUP, registry.latest(GROUP, "Approved").version) == payload(2)


@pytest.mark.parametrize("status", ["approved", "Pending", "", None])
def test_invalid_status_is_refused(registry: LocalModelRegistry, status):
    register(registry, 0)
    with pytest.raises(ValueError, match="invalid approval status"):
        registry.update_approval(GROUP, 1, status)
    with pytest.raises(ValueError, match="invalid approval status"):
        registry.latest(GROUP, status or "nope")
    with pytest.raises(ValueError, match="invalid approval status"):
        register(registry, 1, approval_status=status)
    assert [v.version for v in registry.list_versions(GROUP)] == [1]
    assert len(registry.get(GROUP, 1).approval_history) == 1
    assert set(APPROVAL_STATUSES) == {"PendingManualApproval", "Approved", "Rejected"}


def test_concurrent_approvals_keep_every_entry(registry: LocalModelRegistry):
    register(registry, 0)
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def approve(index: int) -> None:
        try:
            barrier.wait()
            status = APPROVAL_STATUSES[index % 3]
            registry.update_approval(GROUP, 1, status, note=f"change {index}", by=f"user{index}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=approve, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    history = registry.get(GROUP, 1).approval_history
    assert len(history) == 17
    assert sorted(entry["note"] for entry in history[1:]) == sorted(
        f"change {index}" for index in range(16)
    )
    assert registry.get(GROUP, 1).approval_status == history[-1]["status"]
    leftovers = [p.name for p in (registry.root / GROUP / "versions" / "1").iterdir()]
    assert sorted(leftovers) == ["approval.json", "model.tar.gz", "version.json"]


# ---- errors --------------------------------------------------------------------------------------


def test_unknown_group_or_version(registry: LocalModelRegistry):
    with pytest.raises(ModelNotFoundError, match="'nope' does not exist"):
        registry.list_versions("nope")
    with pytest.raises(LookupError, match="'nope' does not exist"):
        registry.get("nope", 1)
    with pytest.raises(ModelNotFoundError, match="'nope'"):
        registry.latest("nope")

    register(registry, 0)
    register(registry, 1)
    for version in (0, 3, 99):
        with pytest.raises(ModelNotFoundError, match=rf"{GROUP}'? has no version {version} "):
            registry.get(GROUP, version)
    with pytest.raises(ModelNotFoundError, match="has no version 3 \\(versions 1-2"):
        registry.read_archive(GROUP, 3)
    with pytest.raises(ModelNotFoundError, match="has no version 3"):
        registry.archive_path(GROUP, 3)
    with pytest.raises(ModelNotFoundError, match="has no version 3"):
        registry.update_approval(GROUP, 3, "Approved")
    with pytest.raises(TypeError, match="integer"):
        registry.get(GROUP, "1")


@pytest.mark.parametrize(
    "name", ["", "-a", "a-", "a_b", "a.b", "a b", "a" * 64, "a\n", "ü", "../etc"]
)
def test_invalid_group_names(registry: LocalModelRegistry, name: str):
    with pytest.raises(ValueError, match="invalid model package group name"):
        registry.register(name, b"x", metrics={}, lineage={})
    with pytest.raises(ValueError, match="invalid model package group name"):
        registry.get(name, 1)
    assert not registry.root.exists()


@pytest.mark.parametrize("name", ["a", "A1", "a--b", "predictive-maintenance", "a" * 63])
def test_valid_group_names(registry: LocalModelRegistry, name: str):
    assert registry.register(name, b"x", metrics={}, lineage={}).version == 1
    assert registry.list_groups() == [name]


def test_unserializable_metadata_leaves_nothing(registry: LocalModelRegistry):
    with pytest.raises(ValueError, match="JSON-serializable"):
        registry.register(GROUP, b"x", metrics={"roc_auc": object()}, lineage={})
    with pytest.raises(ValueError, match="JSON-serializable"):
        registry.register(GROUP, b"x", metrics={"roc_auc": float("nan")}, lineage={})
    with pytest.raises(TypeError, match="archive must be bytes"):
        registry.register(GROUP, "text", metrics={}, lineage={})
    assert registry.list_groups() == []


# ---- concurrency ---------------------------------------------------------------------------------


def _check_concurrent_registrations(registry: LocalModelRegistry, reported: list[int]) -> None:
    assert sorted(reported) == list(range(1, WORKERS + 1))
    versions = registry.list_versions(GROUP)
    assert [v.version for v in versions] == list(range(1, WORKERS + 1))
    workers = set()
    for version in versions:
        worker = version.lineage["worker"]
        workers.add(worker)
        archive = registry.read_archive(GROUP, version.version)
        assert archive == payload(worker)
        assert version.archive_sha256 == sha256_hex(payload(worker))
    assert workers == set(range(WORKERS))
    assert staging_leftovers(registry) == []
    # One ledger line per version, in order, each chained to the one before.
    integrity = registry.integrity(GROUP)
    assert (integrity.problems, integrity.unverified, integrity.metadata) == ([], {}, {})
    assert [entry.line for _, entry in sorted(integrity.entries.items())] == list(
        range(1, WORKERS + 1)
    )


def test_concurrent_registrations_from_threads(registry: LocalModelRegistry):
    barrier = threading.Barrier(WORKERS)
    reported: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()
    seen: set[int] = set()

    def write(index: int) -> None:
        try:
            barrier.wait()
            reported.append(register(registry, index).version)
        except BaseException as error:
            errors.append(error)

    def read() -> None:
        # A reader never sees a half-written version: every listed version reads back whole.
        try:
            while not done.is_set():
                if GROUP not in registry.list_groups():
                    continue
                for version in registry.list_versions(GROUP):
                    registry.read_archive(GROUP, version.version)
                    seen.add(version.version)
        except BaseException as error:
            errors.append(error)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(index,)) for index in range(WORKERS)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()

    assert errors == []
    _check_concurrent_registrations(registry, reported)


def _register_in_process(root: str, index: int, barrier, results) -> None:
    barrier.wait()
    version = LocalModelRegistry(root).register(
        GROUP, payload(index), metrics=METRICS, lineage={"worker": index}
    )
    results.put(version.version)


def test_concurrent_registrations_from_processes(registry: LocalModelRegistry):
    # Fresh interpreters (no fork of this possibly multi-threaded process); the fork server
    # imports this module once, so the 8 workers start in well under a second.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    barrier = context.Barrier(WORKERS)
    results = context.Queue()
    processes = [
        context.Process(
            target=_register_in_process, args=(str(registry.root), index, barrier, results)
        )
        for index in range(WORKERS)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [process.exitcode for process in processes] == [0] * WORKERS
    reported = [results.get(timeout=5) for _ in processes]
    _check_concurrent_registrations(registry, reported)


# ---- unchanged archives --------------------------------------------------------------------------


def test_an_archive_identical_to_the_newest_is_not_registered_again(registry: LocalModelRegistry):
    first, registered = registry.register_if_changed(GROUP, payload(0), metrics=METRICS, lineage={})
    again, registered_again = registry.register_if_changed(
        GROUP, payload(0), metrics={}, lineage={}, approval_status="Approved"
    )

    assert (first.version, registered) == (1, True)
    assert (again.version, registered_again) == (1, False)
    assert again == registry.get(GROUP, 1)  # untouched: still pending, no second history entry
    assert again.approval_status == "PendingManualApproval"
    assert sorted(os.listdir(registry.root / GROUP / "versions")) == ["1"]


def test_only_the_newest_version_counts_as_unchanged(registry: LocalModelRegistry):
    numbers = [
        registry.register_if_changed(GROUP, payload(index), metrics={}, lineage={})
        for index in (0, 1, 0)  # a model, another, then the first one back: a new version
    ]

    assert [(version.version, registered) for version, registered in numbers] == [
        (1, True),
        (2, True),
        (3, True),
    ]
    assert registry.read_archive(GROUP, 3) == payload(0)


def test_concurrent_runs_of_one_model_register_it_once(registry: LocalModelRegistry):
    barrier = threading.Barrier(WORKERS)
    outcomes: list[tuple[int, bool]] = []

    def write() -> None:
        barrier.wait()
        version, registered = registry.register_if_changed(
            GROUP, payload(5), metrics={}, lineage={}
        )
        outcomes.append((version.version, registered))

    threads = [threading.Thread(target=write) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == [(1, False)] * (WORKERS - 1) + [(1, True)]
    assert [v.version for v in registry.list_versions(GROUP)] == [1]
    assert len((registry.root / GROUP / "ledger.jsonl").read_bytes().splitlines()) == 1


# ---- Kedro dataset -------------------------------------------------------------------------------


def test_dataset_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    catalog = DataCatalog.from_config(
        {
            "model_registry": {
                "type": "predictive_maintenance.registry.LocalModelRegistryDataset",
                "root": "data/10_model_registry",
                "group": GROUP,
            }
        }
    )
    assert not catalog.exists("model_registry")
    assert catalog.load("model_registry") == {"group": GROUP, "versions": []}

    catalog.save(
        "model_registry",
        {
            "archive": payload(0),
            "metrics": METRICS,
            "lineage": {"raw_data_sha256": "ab" * 32},
            "approval_status": "Approved",
            "description": "from the pipeline",
        },
    )
    catalog.save("model_registry", {"archive": payload(1)})

    assert catalog.exists("model_registry")
    state = catalog.load("model_registry")
    registry = LocalModelRegistry(tmp_path / "data" / "10_model_registry")
    assert state == {
        "group": GROUP,
        "versions": [
            {**version.to_dict(), "archive_uri": str(registry.archive_path(GROUP, version.version))}
            for version in registry.list_versions(GROUP)
        ],
    }
    first, second = state["versions"]
    assert (first["version"], first["approval_status"]) == (1, "Approved")
    assert first["description"] == "from the pipeline"
    assert first["lineage"]["raw_data_sha256"] == "ab" * 32
    assert (second["version"], second["approval_status"]) == (2, "PendingManualApproval")
    assert registry.read_archive(GROUP, 2) == payload(1)


def test_dataset_refuses_bad_input(tmp_path: Path):
    dataset = LocalModelRegistryDataset(root=str(tmp_path), group=GROUP)
    assert str(tmp_path) in str(dataset)
    with pytest.raises(DatasetError, match="unknown registration keys"):
        dataset.save({"archive": b"x", "metric": {}})
    with pytest.raises(DatasetError, match="needs 'archive'"):
        dataset.save({"metrics": {}})
    with pytest.raises(DatasetError, match="invalid approval status"):
        dataset.save({"archive": b"x", "approval_status": "approved"})
    with pytest.raises(DatasetError, match="invalid model package group name"):
        LocalModelRegistryDataset(root=str(tmp_path), group="bad_name")
    assert dataset.load()["versions"] == []


def test_dataset_says_which_version_it_registered_or_that_nothing_changed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    dataset = LocalModelRegistryDataset(root=str(tmp_path), group=GROUP)
    caplog.set_level("INFO", logger="predictive_maintenance.registry")

    dataset.save({"archive": payload(0)})
    dataset.save({"archive": payload(0), "approval_status": "Approved"})
    dataset.save({"archive": payload(1), "approval_status": "Approved"})
    dataset.save({"archive": payload(1), "register_duplicates": True})

    assert [record.getMessage() for record in caplog.records] == [
        f"registered model version 1 of {GROUP} (PendingManualApproval)",
        f"model unchanged, version 1 of {GROUP} (PendingManualApproval): same archive sha256 "
        f"{sha256_hex(payload(0))[:12]}, not registered again; approve it with "
        "`kedro model approve 1`",
        f"registered model version 2 of {GROUP} (Approved)",
        f"registered model version 3 of {GROUP} (PendingManualApproval)",
    ]
    assert [v["approval_status"] for v in dataset.load()["versions"]] == [
        "PendingManualApproval",
        "Approved",
        "PendingManualApproval",
    ]
    with pytest.raises(DatasetError, match="register_duplicates must be true or false, not 'yes'"):
        dataset.save({"archive": payload(2), "register_duplicates": "yes"})
    assert len(dataset.load()["versions"]) == 3
