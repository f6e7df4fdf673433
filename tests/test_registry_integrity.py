"""The local registry's ledger: archive sha256s that rewriting a version directory cannot change.

Everything runs against the real filesystem under ``tmp_path``; nothing is mocked. The helpers
below tamper with a registry the way someone who can write its files would; the CLI tests
(tests/test_registry_cli.py) use them too.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from pathlib import Path

import pytest

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.registry import LocalModelRegistryDataset
from predictive_maintenance.registry.local import (
    LEDGER_FILE,
    LOCK_FILE,
    SOURCE_REGISTRATION,
    SOURCE_VERSION_JSON,
    LocalModelRegistry,
    UnverifiedArchiveError,
)

GROUP = "predictive-maintenance"
WORKERS = 8


def payload(index: int) -> bytes:
    return f"model.tar.gz #{index}\n".encode() * (100 + index)


@pytest.fixture
def registry(tmp_path: Path) -> LocalModelRegistry:
    """Three versions, payloads 0, 1 and 2."""
    registry = LocalModelRegistry(tmp_path / "registry")
    for index in range(3):
        registry.register(GROUP, payload(index), metrics={"roc_auc": 0.9}, lineage={"i": index})
    return registry


# ---- tampering, as someone who can write the files would ----------------------------------------


def overwrite(path: Path, data: bytes) -> None:
    """Replaces a (read-only) file's bytes: chmod, write."""
    path.chmod(0o644)
    path.write_bytes(data)


def version_json_path(registry: LocalModelRegistry, version: int, group: str = GROUP) -> Path:
    return registry.root / group / "versions" / str(version) / "version.json"


def rebless(registry: LocalModelRegistry, version: int, archive: bytes, group: str = GROUP) -> None:
    """Rewrites the archive and, consistently, the sha256 and size in its version.json."""
    overwrite(registry.archive_path(group, version), archive)
    path = version_json_path(registry, version, group)
    record = json.loads(path.read_text())
    record["archive"].update(sha256=sha256_hex(archive), size=len(archive))
    overwrite(path, (json.dumps(record, indent=2) + "\n").encode())


def ledger_path(registry: LocalModelRegistry, group: str = GROUP) -> Path:
    return registry.root / group / LEDGER_FILE


def ledger_lines(registry: LocalModelRegistry, group: str = GROUP) -> list[bytes]:
    return ledger_path(registry, group).read_bytes().splitlines()


def write_ledger_lines(
    registry: LocalModelRegistry, lines: list[bytes], group: str = GROUP
) -> None:
    ledger_path(registry, group).write_bytes(b"".join(line + b"\n" for line in lines))


def make_legacy(registry: LocalModelRegistry, group: str = GROUP) -> None:
    """Makes the group look registered by the code before the ledger: no ledger.jsonl, and
    version.json format 1."""
    ledger_path(registry, group).unlink()
    for path in (registry.root / group / "versions").glob("*/version.json"):
        record = json.loads(path.read_text())
        record["format_version"] = 1
        overwrite(path, (json.dumps(record, indent=2) + "\n").encode())
        path.chmod(0o444)


def assert_intact(registry: LocalModelRegistry, versions: list[int], group: str = GROUP) -> None:
    """The chain holds, every version is in it, and every archive and version.json matches."""
    integrity = registry.integrity(group)
    assert integrity.problems == []
    assert integrity.unverified == {}
    assert integrity.metadata == {}
    assert sorted(integrity.entries) == versions
    for version in versions:
        registry.read_archive(group, version)


# ---- the ledger's lines --------------------------------------------------------------------------


def test_each_registration_appends_a_chained_line(registry: LocalModelRegistry):
    lines = ledger_lines(registry)
    records = [json.loads(line) for line in lines]

    assert [record["version"] for record in records] == [1, 2, 3]
    assert records[0]["prev"] is None
    assert [record["prev"] for record in records[1:]] == [sha256_hex(line) for line in lines[:-1]]
    for index, record in enumerate(records):
        version = registry.get(GROUP, index + 1)
        assert record["archive_sha256"] == sha256_hex(payload(index)) == version.archive_sha256
        assert record["size"] == len(payload(index)) == version.archive_size
        assert record["version_json_sha256"] == sha256_hex(
            version_json_path(registry, index + 1).read_bytes()
        )
        assert record["registered_at"] == version.created_at
        assert record["source"] == SOURCE_REGISTRATION
    assert json.loads(version_json_path(registry, 1).read_text())["format_version"] == 2
    assert_intact(registry, [1, 2, 3])


def test_approvals_leave_the_ledger_alone(registry: LocalModelRegistry):
    before = ledger_path(registry).read_bytes()
    registry.update_approval(GROUP, 2, "Approved")
    registry.register_if_changed(GROUP, payload(2), metrics={}, lineage={})  # unchanged
    assert ledger_path(registry).read_bytes() == before


# ---- tampered archives and metadata --------------------------------------------------------------


def test_a_tampered_archive_is_refused_and_verifies_again_once_restored(
    registry: LocalModelRegistry,
):
    path = registry.archive_path(GROUP, 2)
    overwrite(path, payload(9))

    pattern = rf"^{re.escape(str(path))}: sha256 is .* line 2"
    with pytest.raises(ChecksumMismatchError, match=pattern) as raised:
        registry.read_archive(GROUP, 2)
    assert not isinstance(raised.value, UnverifiedArchiveError)
    assert registry.get(GROUP, 2).archive_sha256 == sha256_hex(payload(1))

    overwrite(path, payload(1))  # the byte-identical file, and nothing else

    assert registry.read_archive(GROUP, 2) == payload(1)
    assert_intact(registry, [1, 2, 3])


def test_a_reblessed_archive_is_still_detected(registry: LocalModelRegistry):
    original = version_json_path(registry, 3).read_bytes()
    rebless(registry, 3, payload(9))

    with pytest.raises(ChecksumMismatchError, match=str(registry.archive_path(GROUP, 3))):
        registry.read_archive(GROUP, 3)
    assert registry.get(GROUP, 3).archive_sha256 == sha256_hex(payload(2))
    assert registry.latest(GROUP).archive_sha256 == sha256_hex(payload(2))
    problem = registry.integrity(GROUP).metadata[3]
    assert problem == (
        f"its version.json records archive sha256 {sha256_hex(payload(9))}, but "
        f"ledger.jsonl line 3 records {sha256_hex(payload(2))}: version.json was rewritten "
        "after registration"
    )
    # The duplicate check goes by the ledger: the re-blessed bytes are a new model.
    version, registered = registry.register_if_changed(GROUP, payload(9), metrics={}, lineage={})
    assert (version.version, registered) == (4, True)

    overwrite(registry.archive_path(GROUP, 3), payload(2))
    overwrite(version_json_path(registry, 3), original)

    assert_intact(registry, [1, 2, 3, 4])


def test_edited_metadata_is_reported_while_the_archive_verifies(registry: LocalModelRegistry):
    path = version_json_path(registry, 1)
    record = json.loads(path.read_text())
    record["metrics"]["roc_auc"] = 0.99
    overwrite(path, json.dumps(record, indent=2).encode())

    assert registry.read_archive(GROUP, 1) == payload(0)
    assert registry.get(GROUP, 1).metrics["roc_auc"] == 0.99
    assert "metrics, lineage or description were edited" in registry.integrity(GROUP).metadata[1]


def test_the_deployment_pipeline_reads_the_ledgers_sha256(registry: LocalModelRegistry):
    # select_deployment hands the endpoint the dataset's archive_sha256, which the endpoint checks
    # the archive against: a re-blessed or unverified version cannot be deployed.
    rebless(registry, 1, payload(9))
    versions = registry.root / GROUP / "versions"
    shutil.copytree(versions / "3", versions / "4")

    loaded = LocalModelRegistryDataset(root=str(registry.root), group=GROUP).load()["versions"]

    assert [v["archive_sha256"] for v in loaded] == [
        sha256_hex(payload(0)),
        sha256_hex(payload(1)),
        sha256_hex(payload(2)),
        "",
    ]


# ---- the chain -----------------------------------------------------------------------------------


def _edit(lines: list[bytes]) -> list[bytes]:
    record = json.loads(lines[1])
    record["archive_sha256"] = "0" * 64
    return [lines[0], json.dumps(record).encode(), lines[2]]


@pytest.mark.parametrize(
    ("change", "line", "says", "unverified"),
    [
        (_edit, 3, "prev is not the sha256 of line 2", {2, 3}),
        (lambda lines: [lines[0], lines[2]], 2, "prev is not the sha256 of line 1", {1, 2, 3}),
        (lambda lines: [lines[1], lines[2]], 1, "prev is not null", {1, 2}),
        (lambda lines: [lines[0], lines[2], lines[1]], 2, "prev is not the sha256", {1, 2, 3}),
        (
            lambda lines: [lines[0], b"{oops", lines[2]],
            2,
            "not a ledger entry: not JSON",
            {1, 2, 3},
        ),
    ],
    ids=["edited", "removed", "first-removed", "reordered", "unreadable"],
)
def test_a_broken_chain_names_the_line(
    registry: LocalModelRegistry, change, line: int, says: str, unverified: set[int]
):
    write_ledger_lines(registry, change(ledger_lines(registry)))

    integrity = registry.integrity(GROUP)

    assert integrity.problems, "the break went unnoticed"
    first = integrity.problems[0]
    assert (first.line, first.ledger) == (line, ledger_path(registry))
    assert says in first.message
    assert str(first).startswith(f"{ledger_path(registry)} line {line}: ")
    assert set(integrity.unverified) == unverified
    for version in unverified:
        assert registry.get(GROUP, version).archive_sha256 == ""
        with pytest.raises(UnverifiedArchiveError, match=r"line|not in the group's ledger"):
            registry.read_archive(GROUP, version)
    for version in {1, 2, 3} - unverified:
        registry.read_archive(GROUP, version)


def test_a_line_appended_for_a_recorded_version_does_not_replace_it(
    registry: LocalModelRegistry,
):
    lines = ledger_lines(registry)
    forged = {**json.loads(lines[0]), "archive_sha256": sha256_hex(payload(9))}
    forged["prev"] = sha256_hex(lines[-1])
    write_ledger_lines(registry, [*lines, json.dumps(forged).encode()])
    rebless(registry, 1, payload(9))

    integrity = registry.integrity(GROUP)

    assert [(p.line, p.message) for p in integrity.problems] == [
        (4, "records version 1 after version 3: a version recorded twice, or lines out of order")
    ]
    assert integrity.entries[1].line == 1
    with pytest.raises(ChecksumMismatchError, match="line 1 records"):
        registry.read_archive(GROUP, 1)
    # The next registration is numbered after every version the ledger ever named.
    assert registry.register(GROUP, payload(5), metrics={}, lineage={}).version == 4


def test_a_torn_last_line_is_reported_and_registration_goes_on(registry: LocalModelRegistry):
    with ledger_path(registry).open("ab") as ledger:
        ledger.write(b'{"version": 4, "archive_')  # an append cut short
    shutil.copytree(
        registry.root / GROUP / "versions" / "3", registry.root / GROUP / "versions" / "4"
    )

    assert registry.register(GROUP, payload(5), metrics={}, lineage={}).version == 5

    integrity = registry.integrity(GROUP)
    # The torn line is unreadable, so nothing checks line 3 either; line 5 chains to the torn one.
    assert [p.line for p in integrity.problems] == [4]
    assert set(integrity.unverified) == {3, 4}
    assert registry.read_archive(GROUP, 5) == payload(5)


# ---- versions the ledger does not record ---------------------------------------------------------


def test_a_version_directory_missing_from_the_ledger_is_unverified(registry: LocalModelRegistry):
    # What an interrupted registration (renamed, not yet in the ledger) or a planted one leaves.
    versions = registry.root / GROUP / "versions"
    shutil.copytree(versions / "3", versions / "4")

    with pytest.raises(UnverifiedArchiveError, match=r"not in the group's ledger\.jsonl") as raised:
        registry.read_archive(GROUP, 4)
    assert str(raised.value).startswith(f"{versions / '4' / 'model.tar.gz'}: nothing trustworthy")
    assert registry.get(GROUP, 4).archive_sha256 == ""
    assert registry.register(GROUP, payload(5), metrics={}, lineage={}).version == 5
    integrity = registry.integrity(GROUP)
    assert (integrity.problems, list(integrity.unverified)) == ([], [4])
    assert registry.read_archive(GROUP, 5) == payload(5)


def test_a_deleted_ledger_is_not_recreated_from_version_json(registry: LocalModelRegistry):
    ledger_path(registry).unlink()
    rebless(registry, 2, payload(9))

    assert set(registry.integrity(GROUP).unverified) == {1, 2, 3}
    assert (
        "missing, though version 1 was registered with one"
        in (registry.integrity(GROUP).unverified[2])
    )
    assert not ledger_path(registry).exists()
    with pytest.raises(UnverifiedArchiveError):
        registry.read_archive(GROUP, 2)

    assert registry.register(GROUP, payload(5), metrics={}, lineage={}).version == 4
    assert set(registry.integrity(GROUP).unverified) == {1, 2, 3}
    assert registry.read_archive(GROUP, 4) == payload(5)


# ---- registries from before the ledger -----------------------------------------------------------


def test_a_registry_without_a_ledger_loads_and_gets_one_from_version_json(
    registry: LocalModelRegistry,
):
    make_legacy(registry)
    overwrite(registry.archive_path(GROUP, 2), payload(9))  # tampered before the upgrade

    versions = LocalModelRegistry(registry.root).list_versions(GROUP)

    assert [v.archive_sha256 for v in versions] == [sha256_hex(payload(i)) for i in range(3)]
    records = [json.loads(line) for line in ledger_lines(registry)]
    assert [(r["version"], r["source"]) for r in records] == [
        (n, SOURCE_VERSION_JSON) for n in (1, 2, 3)
    ]
    assert registry.read_archive(GROUP, 1) == payload(0)
    with pytest.raises(ChecksumMismatchError, match="line 2 records"):
        registry.read_archive(GROUP, 2)
    overwrite(registry.archive_path(GROUP, 2), payload(1))
    assert_intact(registry, [1, 2, 3])
    assert registry.register(GROUP, payload(5), metrics={}, lineage={}).version == 4
    assert_intact(registry, [1, 2, 3, 4])


def test_a_registry_without_a_ledger_that_cannot_get_one_is_unverified(
    registry: LocalModelRegistry,
):
    make_legacy(registry)
    lock = registry.root / GROUP / LOCK_FILE
    lock.unlink(missing_ok=True)
    lock.mkdir()  # cannot be opened as the lock file, as in a read-only registry (even for root)

    integrity = registry.integrity(GROUP)

    assert set(integrity.unverified) == {1, 2, 3}
    assert "registered before the group had a ledger.jsonl" in integrity.unverified[1]
    assert registry.get(GROUP, 1).archive_sha256 == ""
    with pytest.raises(UnverifiedArchiveError, match="could not be created"):
        registry.read_archive(GROUP, 1)
    assert not ledger_path(registry).exists()


def test_concurrent_first_registrations_into_a_registry_without_a_ledger(
    registry: LocalModelRegistry,
):
    make_legacy(registry)
    barrier = threading.Barrier(WORKERS)
    reported: list[int] = []
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            barrier.wait()
            fresh = LocalModelRegistry(registry.root)
            reported.append(
                fresh.register(GROUP, payload(10 + index), metrics={}, lineage={}).version
            )
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(reported) == list(range(4, 4 + WORKERS))
    sources = [json.loads(line)["source"] for line in ledger_lines(registry)]
    assert sources == [SOURCE_VERSION_JSON] * 3 + [SOURCE_REGISTRATION] * WORKERS
    assert_intact(registry, list(range(1, 4 + WORKERS)))
