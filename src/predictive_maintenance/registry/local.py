"""A model registry on the local filesystem with the semantics of the SageMaker Model Registry.

Model package groups hold versions numbered 1..n. A version is written once and never changes,
except for its approval status (``PendingManualApproval``, ``Approved`` or ``Rejected``), whose
current value and full history live in a file of their own.

Layout under the registry root (everything a human can read: indented JSON, the archive as is)::

    <root>/
      <group>/
        .approval.lock              # flock'ed while an approval is updated, and while
                                    # register_if_changed compares and registers
        versions/
          1/
            model.tar.gz            # the archive, byte for byte (read-only)
            version.json            # sha256, size, metrics, lineage, ... (read-only, immutable)
            approval.json           # {"status": ..., "history": [{status, at, by, note}, ...]}
          2/
            ...

Concurrency (local POSIX filesystem): a registration writes its files into a private staging
directory inside the group, then ``os.rename``s that directory to ``versions/<n>``. The rename is
atomic and fails if ``versions/<n>`` already exists (a version directory is never empty), in which
case the registration tries ``n + 1``. Readers therefore see a version completely or not at all,
and concurrent registrations, from threads or processes, each get their own number. Approval
updates take an exclusive ``fcntl.flock`` on the group's lock file and replace ``approval.json``
atomically (write a temporary file, then ``os.replace``), so no history entry is lost.
:meth:`LocalModelRegistry.register_if_changed` holds the same lock while it compares the archive
with the newest version's and registers, so concurrent runs of one model register it once.
"""

from __future__ import annotations

import copy
import errno
import fcntl
import getpass
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from predictive_maintenance.integrity import sha256_hex, verify_sha256
from predictive_maintenance.sagemaker.names import RESOURCE_NAME_PATTERN

PENDING = "PendingManualApproval"
APPROVED = "Approved"
REJECTED = "Rejected"
#: The approval statuses of the SageMaker Model Registry.
APPROVAL_STATUSES = (PENDING, APPROVED, REJECTED)

#: SageMaker's ModelPackageGroupName constraint.
GROUP_NAME_PATTERN = RESOURCE_NAME_PATTERN

VERSIONS_DIR = "versions"
ARCHIVE_FILE = "model.tar.gz"
VERSION_FILE = "version.json"
APPROVAL_FILE = "approval.json"
LOCK_FILE = ".approval.lock"
STAGING_PREFIX = ".staging-"
#: Format of version.json, for readers of the files.
FORMAT_VERSION = 1

_VERSION_DIR_PATTERN = re.compile(r"[1-9][0-9]*")
_GIT_COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_READ_ONLY = 0o444


class ModelNotFoundError(LookupError):
    """The model package group or version does not exist in the registry."""


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as read from the registry.

    The dictionaries are copies: changing them changes nothing in the registry.
    """

    group: str
    version: int
    created_at: str
    archive_sha256: str
    archive_size: int
    metrics: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    approval_status: str = PENDING
    approval_history: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (a deep copy) of every field."""
        return {
            "group": self.group,
            "version": self.version,
            "created_at": self.created_at,
            "archive_sha256": self.archive_sha256,
            "archive_size": self.archive_size,
            "metrics": copy.deepcopy(self.metrics),
            "lineage": copy.deepcopy(self.lineage),
            "description": self.description,
            "approval_status": self.approval_status,
            "approval_history": copy.deepcopy(self.approval_history),
        }


def validate_group_name(group: str) -> str:
    """Returns ``group`` if it is a valid SageMaker model package group name, else raises."""
    if not isinstance(group, str) or not GROUP_NAME_PATTERN.fullmatch(group):
        raise ValueError(
            f"invalid model package group name {group!r}: use 1-63 letters, digits and hyphens, "
            f"starting and ending with a letter or digit (SageMaker's rule "
            f"^{GROUP_NAME_PATTERN.pattern}$)"
        )
    return group


def validate_approval_status(status: str) -> str:
    """Returns ``status`` if it is one of :data:`APPROVAL_STATUSES`, else raises ValueError."""
    if status not in APPROVAL_STATUSES:
        raise ValueError(
            f"invalid approval status {status!r}: expected one of {', '.join(APPROVAL_STATUSES)}"
        )
    return status


def current_git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """``git rev-parse HEAD`` of the repository holding ``cwd`` (default: the current directory).

    None if that is not a git repository, it has no commit yet, or git is not installed.
    """
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = completed.stdout.strip()
    if completed.returncode != 0 or not _GIT_COMMIT_PATTERN.fullmatch(commit):
        return None
    return commit


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # getpass raises OSError (or KeyError on old Pythons) without a user name
        return None


def _json_default(value: Any) -> Any:
    # NumPy scalars and arrays, which metrics computed with NumPy often contain.
    for method in ("item", "tolist"):
        convert = getattr(value, method, None)
        if callable(convert):
            return convert()
    raise TypeError(f"{type(value).__name__} is not JSON serializable: {value!r}")


def _to_json(data: Any, what: str) -> bytes:
    try:
        text = json.dumps(
            data, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{what} must be JSON-serializable (no NaN or infinity): {error}"
        ) from error
    return (text + "\n").encode("utf-8")


def _write_file(path: Path, data: bytes, mode: int | None = None) -> None:
    """Writes ``data`` to a new file and flushes it to disk."""
    with open(path, "xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if mode is not None:
        os.chmod(path, mode)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


class LocalModelRegistry:
    """Model package groups and their versions under a local directory.

    Example::

        registry = LocalModelRegistry("data/10_model_registry")
        version = registry.register("predictive-maintenance", archive, metrics=m, lineage=l)
        registry.update_approval("predictive-maintenance", version.version, "Approved")
        registry.latest("predictive-maintenance", "Approved")
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Creates a registry object; nothing is written until the first registration.

        Args:
            root: Directory holding the groups. A relative path is resolved against the current
                working directory now, so later ``chdir`` calls do not move the registry.
        """
        self._root = Path(os.path.abspath(os.fspath(root)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._root)!r})"

    @property
    def root(self) -> Path:
        """The registry's directory (absolute)."""
        return self._root

    # ---- paths ----------------------------------------------------------------------------

    def _group_dir(self, group: str) -> Path:
        return self._root / validate_group_name(group)

    def _versions_dir(self, group: str) -> Path:
        return self._group_dir(group) / VERSIONS_DIR

    def _existing_versions_dir(self, group: str) -> Path:
        versions_dir = self._versions_dir(group)
        if not versions_dir.is_dir():
            raise ModelNotFoundError(
                f"model package group {group!r} does not exist in the registry {self._root}"
            )
        return versions_dir

    def _version_numbers(self, versions_dir: Path) -> list[int]:
        try:
            names = os.listdir(versions_dir)
        except FileNotFoundError:
            return []
        return sorted(int(name) for name in names if _VERSION_DIR_PATTERN.fullmatch(name))

    def _version_dir(self, group: str, version: int) -> Path:
        if isinstance(version, bool) or not isinstance(version, int):
            raise TypeError(f"a model version is an integer, not {version!r}")
        versions_dir = self._existing_versions_dir(group)
        version_dir = versions_dir / str(version)
        if version < 1 or not (version_dir / VERSION_FILE).is_file():
            numbers = self._version_numbers(versions_dir)
            known = f"versions 1-{numbers[-1]}" if numbers else "no versions"
            raise ModelNotFoundError(
                f"model package group {group!r} has no version {version} ({known}; "
                f"registry {self._root})"
            )
        return version_dir

    def archive_path(self, group: str, version: int) -> Path:
        """Path of the version's ``model.tar.gz`` (read it with :meth:`read_archive`)."""
        return self._version_dir(group, version) / ARCHIVE_FILE

    # ---- reading --------------------------------------------------------------------------

    def list_groups(self) -> list[str]:
        """Names of the model package groups, sorted."""
        try:
            names = os.listdir(self._root)
        except FileNotFoundError:
            return []
        return sorted(
            name
            for name in names
            if GROUP_NAME_PATTERN.fullmatch(name) and (self._root / name / VERSIONS_DIR).is_dir()
        )

    def _read_version(self, group: str, version_dir: Path) -> ModelVersion:
        record = _read_json(version_dir / VERSION_FILE)
        approval = _read_json(version_dir / APPROVAL_FILE)
        archive = record["archive"]
        return ModelVersion(
            group=group,
            version=int(version_dir.name),
            created_at=record["created_at"],
            archive_sha256=archive["sha256"],
            archive_size=archive["size"],
            metrics=record["metrics"],
            lineage=record["lineage"],
            description=record["description"],
            approval_status=approval["status"],
            approval_history=approval["history"],
        )

    def get(self, group: str, version: int) -> ModelVersion:
        """One version. Raises :class:`ModelNotFoundError` if the group or version is unknown."""
        return self._read_version(group, self._version_dir(group, version))

    def list_versions(self, group: str) -> list[ModelVersion]:
        """Every version of ``group``, oldest (1) first. Raises if the group is unknown."""
        versions_dir = self._existing_versions_dir(group)
        return [
            self._read_version(group, versions_dir / str(number))
            for number in self._version_numbers(versions_dir)
        ]

    def latest(self, group: str, status: str | None = None) -> ModelVersion | None:
        """The newest version of ``group``, or the newest with approval ``status``; None if none.

        Raises :class:`ModelNotFoundError` if the group is unknown.
        """
        if status is not None:
            validate_approval_status(status)
        versions_dir = self._existing_versions_dir(group)
        for number in reversed(self._version_numbers(versions_dir)):
            candidate = self._read_version(group, versions_dir / str(number))
            if status is None or candidate.approval_status == status:
                return candidate
        return None

    def read_archive(self, group: str, version: int) -> bytes:
        """The version's ``model.tar.gz`` bytes, verified against the recorded sha256.

        Raises:
            predictive_maintenance.integrity.ChecksumMismatchError: The stored bytes changed.
        """
        model = self.get(group, version)
        path = self.archive_path(group, model.version)
        data = path.read_bytes()
        verify_sha256(data, model.archive_sha256, str(path))
        return data

    # ---- writing --------------------------------------------------------------------------

    def register(
        self,
        group: str,
        archive: bytes,
        *,
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        approval_status: str = PENDING,
        description: str = "",
    ) -> ModelVersion:
        """Adds a new version to ``group`` (created if needed) and returns it.

        Args:
            group: Model package group name (SageMaker's naming rule).
            archive: The ``model.tar.gz`` bytes, stored as they are.
            metrics: Evaluation metrics (JSON-serializable).
            lineage: Where the model comes from (JSON-serializable). ``created_at`` (UTC
                ISO-8601) and ``git_commit`` (``git rev-parse HEAD`` of the current directory's
                repository, or None) are added unless given.
            approval_status: Initial status, recorded as the first approval history entry.
            description: Free text.
        """
        validate_group_name(group)
        validate_approval_status(approval_status)
        if not isinstance(archive, bytes | bytearray | memoryview):
            raise TypeError(f"archive must be bytes, not {type(archive).__name__}")
        if not isinstance(metrics, Mapping) or not isinstance(lineage, Mapping):
            raise TypeError("metrics and lineage must be dictionaries")
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, not {type(description).__name__}")
        archive = bytes(archive)
        created_at = _utc_now()
        full_lineage = dict(lineage)
        full_lineage.setdefault("created_at", created_at)
        if "git_commit" not in full_lineage:
            full_lineage["git_commit"] = current_git_commit()
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "group": group,
            "version": None,  # set per attempt below
            "created_at": created_at,
            "archive": {"file": ARCHIVE_FILE, "sha256": sha256_hex(archive), "size": len(archive)},
            "metrics": dict(metrics),
            "lineage": full_lineage,
            "description": description,
        }
        approval = {
            "status": approval_status,
            "history": [
                {
                    "status": approval_status,
                    "at": created_at,
                    "by": _current_user(),
                    "note": "registered",
                }
            ],
        }
        # Serialize once before touching the disk, so bad input leaves nothing behind.
        _to_json(record, "metrics and lineage")
        approval_bytes = _to_json(approval, "approval")

        group_dir = self._group_dir(group)
        versions_dir = group_dir / VERSIONS_DIR
        versions_dir.mkdir(parents=True, exist_ok=True)
        staging = group_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        os.mkdir(staging)
        try:
            _write_file(staging / ARCHIVE_FILE, archive, _READ_ONLY)
            _write_file(staging / APPROVAL_FILE, approval_bytes)
            number = self._publish(staging, versions_dir, record)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._read_version(group, versions_dir / str(number))

    def register_if_changed(
        self, group: str, archive: bytes, **registration: Any
    ) -> tuple[ModelVersion, bool]:
        """Registers ``archive`` unless the newest version of ``group`` has the same sha256.

        ``registration``: the keyword arguments of :meth:`register`. Returns the new version and
        True, or the newest version (whose archive is byte-identical) and False; nothing is
        written then.
        """
        validate_group_name(group)
        validate_approval_status(registration.get("approval_status", PENDING))
        if not isinstance(archive, bytes | bytearray | memoryview):
            raise TypeError(f"archive must be bytes, not {type(archive).__name__}")
        self._group_dir(group).mkdir(parents=True, exist_ok=True)
        with self._approval_lock(group):
            try:
                newest = self.latest(group)
            except ModelNotFoundError:
                newest = None
            if newest is not None and newest.archive_sha256 == sha256_hex(bytes(archive)):
                return newest, False
            return self.register(group, archive, **registration), True

    def _publish(self, staging: Path, versions_dir: Path, record: dict[str, Any]) -> int:
        """Renames the complete ``staging`` directory to the next free ``versions/<n>``."""
        numbers = self._version_numbers(versions_dir)
        number = numbers[-1] + 1 if numbers else 1
        version_file = staging / VERSION_FILE
        while True:
            if version_file.exists():
                version_file.unlink()
            _write_file(
                version_file, _to_json({**record, "version": number}, "version"), _READ_ONLY
            )
            _fsync_directory(staging)
            try:
                os.rename(staging, versions_dir / str(number))
            except OSError as error:
                # The number is taken (a version directory is never empty): try the next one.
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                numbers = self._version_numbers(versions_dir)
                number = max(number + 1, numbers[-1] + 1 if numbers else 1)
                continue
            _fsync_directory(versions_dir)
            return number

    @contextmanager
    def _approval_lock(self, group: str) -> Iterator[None]:
        with open(self._group_dir(group) / LOCK_FILE, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def update_approval(
        self,
        group: str,
        version: int,
        status: str,
        *,
        note: str = "",
        by: str | None = None,
    ) -> ModelVersion:
        """Sets the approval status of a version and appends it to the history.

        Setting the current status again is allowed and recorded too.

        Args:
            group: Model package group name.
            version: Version number.
            status: ``PendingManualApproval``, ``Approved`` or ``Rejected``.
            note: Why, in a few words.
            by: Who; defaults to the current user name.
        """
        validate_approval_status(status)
        if not isinstance(note, str):
            raise TypeError(f"note must be a string, not {type(note).__name__}")
        version_dir = self._version_dir(group, version)
        who = by if by is not None else _current_user()
        with self._approval_lock(group):
            # Timestamped under the lock, so the history is in time order.
            entry = {"status": status, "at": _utc_now(), "by": who, "note": note}
            approval_path = version_dir / APPROVAL_FILE
            approval = _read_json(approval_path)
            approval["status"] = status
            approval["history"].append(entry)
            temporary = version_dir / f"{APPROVAL_FILE}.{uuid.uuid4().hex}.tmp"
            try:
                _write_file(temporary, _to_json(approval, "approval"))
                os.replace(temporary, approval_path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            _fsync_directory(version_dir)
        return self._read_version(group, version_dir)
