"""A model registry on the local filesystem with the semantics of the SageMaker Model Registry.

Model package groups hold versions numbered 1..n. A version is written once and never changes,
except for its approval status (``PendingManualApproval``, ``Approved`` or ``Rejected``), whose
current value and full history live in a file of their own.

Layout under the registry root (everything a human can read: indented JSON, the archive as is)::

    <root>/
      <group>/
        .approval.lock              # flock'ed while a version is published, an approval is
                                    # updated, or register_if_changed compares and registers
        ledger.jsonl                # one line per version: its archive sha256 (append-only,
                                    # hash-chained; see "Integrity")
        versions/
          1/
            model.tar.gz            # the archive, byte for byte (read-only)
            baseline/               # optional: the data-quality baseline of the training data
              statistics.json       #   (SageMaker Model Monitor's statistics.json and
              constraints.json      #   constraints.json, read-only)
            version.json            # sha256, size, metrics, lineage, baseline files' sha256,
                                    # the model card, ... (read-only, immutable)
            approval.json           # {"status": ..., "history": [{status, at, by, note}, ...]}
          2/
            ...

Concurrency (local POSIX filesystem): a registration writes its files into a private staging
directory inside the group, then, holding an exclusive ``fcntl.flock`` on the group's lock file,
``os.rename``s that directory to ``versions/<n>`` and appends the version's ledger line. The rename
is atomic and fails if ``versions/<n>`` already exists (a version directory is never empty), in
which case the registration tries ``n + 1``. Readers take no lock while what they read is
consistent; a version directory without its ledger line (the instant between rename and append)
makes them wait for the lock and read again. Readers therefore see a version completely or not
at all, and concurrent registrations, from threads or processes, each get their own number.
Approval updates take the same lock and replace ``approval.json`` atomically (write a temporary
file, then ``os.replace``), so no history entry is lost.
:meth:`LocalModelRegistry.register_if_changed` holds the lock while it compares the archive with
the newest version's and registers, so concurrent runs of one model register it once.

Integrity: ``version.json`` sits beside the archive, so whoever can rewrite the archive can rewrite
its sha256 there too ("re-bless" it). The sha256 the registry trusts is therefore the one in the
group's ledger, ``ledger.jsonl``: one JSON line per version, appended when the version is
published and never rewritten::

    {"version": 3, "archive_sha256": "<hex>", "size": 1234, "version_json_sha256": "<hex>",
     "registered_at": "<ISO-8601>", "recorded_at": "<ISO-8601>", "source": "registration",
     "prev": "<sha256 of line 2's bytes, null on line 1>"}

:meth:`~LocalModelRegistry.get`, the listings, :meth:`~LocalModelRegistry.read_archive` (and so
``kedro model list|show|approve``) and the duplicate check of
:meth:`~LocalModelRegistry.register_if_changed` use the ledger's sha256; a version without a
trusted ledger line has ``archive_sha256 == ""`` and ``read_archive`` raises
:class:`UnverifiedArchiveError` (a :class:`ChecksumMismatchError`): never silently trusted.
:meth:`~LocalModelRegistry.integrity` reports the rest: a line whose ``prev`` is not the sha256
of the line before it, an unreadable line, or a version recorded twice or out of order
(an edited, removed, inserted or reordered line), naming the line; the versions without a
trusted line, and why; and a ``version.json`` whose bytes differ from the ones the ledger
recorded (edited metadata). Nothing is cached: every call reads the files again, so putting
the original archive back makes the version verify again.

Registries without a ledger (written before it existed; their ``version.json`` has
``format_version`` 1): the first call that reads or writes the group, holding the lock, creates
the ledger from the versions' ``version.json`` (``"source": "version.json"``), so their sha256 is
what ``version.json`` said at that moment (an archive that disagrees then shows as changed, and
verifies again once restored). Until the ledger can be created (a read-only registry) those
versions are unverified. A group whose ledger is missing although a version was registered with
one (``format_version`` 2) is not migrated: its versions stay unverified.

The limit: this is tamper evidence, not tamper proofing. Whoever can rewrite the whole group
directory can rewrite the ledger too, and the newest line has no successor whose ``prev`` would
betray an edit. What the ledger changes is that re-blessing an archive means rewriting history,
the ledger's lines from that version on, consistently; anything less is detected by
``kedro model list`` against the chain. The endpoint state records the sha256 it deployed (the
ledger's, at the time), and ``kedro model list`` compares it with the ledger's now.
Approval status and history (``approval.json``) are outside the ledger by design: they change.

Baseline files: ``version.json`` records each one's sha256 and size, and the ledger records the
sha256 of ``version.json``, so the chain covers them too: :meth:`~LocalModelRegistry.read_baseline`
checks ``version.json`` against the ledger, then each file against ``version.json``, and
:meth:`~LocalModelRegistry.integrity` reports a changed or missing baseline file.
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
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.model_card import check_card
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
LEDGER_FILE = "ledger.jsonl"
BASELINE_DIR = "baseline"
#: A baseline's parts and their file names (SageMaker Model Monitor's names).
BASELINE_FILES = {"statistics": "statistics.json", "constraints": "constraints.json"}
STAGING_PREFIX = ".staging-"
#: Format of version.json, for readers of the files: 2 = the version is recorded in the ledger.
FORMAT_VERSION = 2
#: ``source`` of a ledger line: written when the version was published, or taken from the
#: version.json of a version registered before the group had a ledger.
SOURCE_REGISTRATION = "registration"
SOURCE_VERSION_JSON = "version.json"

_VERSION_DIR_PATTERN = re.compile(r"[1-9][0-9]*")
_GIT_COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")
_READ_ONLY = 0o444
#: A ledger line's keys, in the order they are written.
_LEDGER_KEYS = (
    "version",
    "archive_sha256",
    "size",
    "version_json_sha256",
    "registered_at",
    "recorded_at",
    "source",
    "prev",
)
#: Lock files this thread holds (flock does not nest: a second flock of the same file from the
#: same process, through another descriptor, would wait for itself).
_held_locks = threading.local()


class ModelNotFoundError(LookupError):
    """The model package group or version does not exist in the registry."""


class UnverifiedArchiveError(ChecksumMismatchError):
    """No trusted ledger line records the archive's sha256, so its bytes cannot be checked."""

    def __init__(self, path: Path, version: int, reason: str) -> None:
        self.path = path
        self.version = version
        self.reason = reason
        super().__init__(
            f"{path}: nothing trustworthy records the sha256 of version {version}'s archive: "
            f"{reason}"
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered model version, as read from the registry.

    ``archive_sha256`` is the ledger's (empty if no trusted ledger line records the version).
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
    #: The data-quality baseline registered with the version: part (``statistics``,
    #: ``constraints``) -> ``{"file", "sha256", "size"}`` (local) or ``{"uri", "sha256"}``
    #: (SageMaker); empty when the version has none.
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The version's model card (:mod:`predictive_maintenance.model_card`); empty for a version
    #: registered without one (before cards existed).
    model_card: dict[str, Any] = field(default_factory=dict)

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
            "baseline": copy.deepcopy(self.baseline),
            "model_card": copy.deepcopy(self.model_card),
        }


@dataclass(frozen=True)
class LedgerEntry:
    """A trusted ledger line: what was recorded about a version when it entered the ledger."""

    line: int
    version: int
    archive_sha256: str
    size: int
    version_json_sha256: str
    registered_at: str
    recorded_at: str
    #: :data:`SOURCE_REGISTRATION` or :data:`SOURCE_VERSION_JSON`.
    source: str


@dataclass(frozen=True)
class LedgerProblem:
    """A ledger line that breaks the chain: edited, removed, inserted or reordered lines."""

    ledger: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.ledger} line {self.line}: {self.message}"


@dataclass(frozen=True)
class GroupIntegrity:
    """What a group's ledger vouches for, and what it cannot (see the module docstring)."""

    ledger: Path
    #: The trusted line of each version it records.
    entries: dict[int, LedgerEntry]
    #: Broken links of the chain, in line order.
    problems: list[LedgerProblem]
    #: Versions without a trusted ledger line, and why.
    unverified: dict[int, str]
    #: Versions whose version.json differs from the one the ledger recorded, and how.
    metadata: dict[int, str]
    #: Versions whose baseline files differ from what their (trusted) version.json records.
    baselines: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ledger:
    """A ledger file as read: its trusted lines and what is wrong with the others."""

    path: Path
    exists: bool = False
    entries: dict[int, LedgerEntry] = field(default_factory=dict)
    problems: list[LedgerProblem] = field(default_factory=list)
    #: Versions whose every line is untrusted, and why.
    untrusted: dict[int, str] = field(default_factory=dict)
    #: The highest version any readable line records (never numbered again).
    highest: int = 0
    #: The sha256 of the last line: the next line's ``prev``.
    head: str | None = None
    #: The file does not end with a newline (an append interrupted by a crash, or an edit).
    torn: bool = False


@dataclass(frozen=True)
class _GroupState:
    ledger: _Ledger
    numbers: list[int]
    #: Versions without a trusted ledger line, and why.
    unverified: dict[int, str]
    #: No ledger yet, and versions written before there was one: to be recorded from version.json.
    legacy: bool

    @property
    def settled(self) -> bool:
        """Nothing a writer holding the lock could be in the middle of, nor a migration to do."""
        return not self.unverified and not self.ledger.problems


@dataclass(frozen=True)
class _Registration:
    archive: bytes
    record: dict[str, Any]
    approval: bytes
    #: Baseline part -> the file's bytes (empty: no baseline).
    baseline: dict[str, bytes] = field(default_factory=dict)


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


def check_baseline(baseline: Mapping[str, Any] | None) -> dict[str, bytes]:
    """The baseline's files as bytes, checked: ``statistics`` and ``constraints``, each a JSON
    object with a ``features`` list (Model Monitor's shape); ``{}`` for no baseline.

    Raises:
        ValueError: naming the part and what is wrong with it.
    """
    if not baseline:
        return {}
    if not isinstance(baseline, Mapping) or set(baseline) != set(BASELINE_FILES):
        found = sorted(baseline) if isinstance(baseline, Mapping) else type(baseline).__name__
        raise ValueError(f"a baseline has exactly the parts {sorted(BASELINE_FILES)}, not {found}")
    files = {}
    for part, name in BASELINE_FILES.items():
        data = baseline[part]
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"baseline {part} must be bytes, not {type(data).__name__}")
        data = bytes(data)
        try:
            parsed = json.loads(data)
        except ValueError as error:
            raise ValueError(f"baseline {part} is not JSON: {error}") from None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("features"), list):
            raise ValueError(
                f"baseline {part} is not a Model Monitor {name}: it needs a 'features' list"
            )
        files[part] = data
    return files


def baseline_digests(files: Mapping[str, bytes]) -> dict[str, str]:
    """Baseline part -> sha256 of its file."""
    return {part: sha256_hex(data) for part, data in files.items()}


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


# ---- the ledger ---------------------------------------------------------------------------------


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and _SHA256_PATTERN.fullmatch(value) is not None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _ledger_fields(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """A ledger line's fields, or None and what is wrong with the line."""
    try:
        fields = json.loads(raw.decode("utf-8"))
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError alike
        return None, f"not JSON ({error})"
    if not isinstance(fields, dict):
        return None, "not a JSON object"
    missing = [key for key in _LEDGER_KEYS if key not in fields]
    if missing:
        return None, f"lacks {', '.join(missing)}"
    checks = {
        "version": _is_count(fields["version"]) and fields["version"] >= 1,
        "archive_sha256": _is_sha256(fields["archive_sha256"]),
        "size": _is_count(fields["size"]),
        "version_json_sha256": _is_sha256(fields["version_json_sha256"]),
        "registered_at": isinstance(fields["registered_at"], str),
        "recorded_at": isinstance(fields["recorded_at"], str),
        "source": fields["source"] in (SOURCE_REGISTRATION, SOURCE_VERSION_JSON),
        "prev": fields["prev"] is None or _is_sha256(fields["prev"]),
    }
    invalid = [key for key, valid in checks.items() if not valid]
    if invalid:
        return None, f"invalid {', '.join(invalid)}"
    return {key: fields[key] for key in _LEDGER_KEYS}, ""


def _check_chain(
    path: Path, raw_lines: list[bytes]
) -> tuple[list[dict[str, Any] | None], list[LedgerProblem], dict[int, str]]:
    """Each line's fields (None if unreadable), the chain's problems, and why lines are untrusted.

    Line ``k``'s ``prev`` vouches for line ``k - 1``'s bytes, so a broken link makes both lines
    untrusted (either may be the edited one), and so does a line that cannot be read. Versions
    must increase from line to line: a later line for a recorded version is untrusted.
    """
    problems: list[LedgerProblem] = []
    why_untrusted: dict[int, str] = {}

    def report(line: int, message: str, *also: int) -> None:
        problems.append(LedgerProblem(path, line, message))
        for number in (line, *also):
            why_untrusted.setdefault(number, f"line {line}: {message}")

    parsed: list[dict[str, Any] | None] = []
    previous: str | None = None
    highest = 0
    for number, raw in enumerate(raw_lines, start=1):
        before = (number - 1,) if number > 1 else ()
        fields, error = _ledger_fields(raw)
        parsed.append(fields)
        previous, expected = sha256_hex(raw), previous
        if fields is None:
            checks = f", so line {number - 1} cannot be checked either" if before else ""
            report(number, f"not a ledger entry: {error}{checks}", *before)
            continue
        if fields["prev"] != expected and not before:
            report(number, "prev is not null, as the first line's is: lines were removed")
        elif fields["prev"] != expected:
            report(
                number,
                f"prev is not the sha256 of line {number - 1}: one of the two lines was edited, "
                "or lines were removed, inserted or reordered",
                *before,
            )
        if fields["version"] <= highest:
            report(
                number,
                f"records version {fields['version']} after version {highest}: a version "
                "recorded twice, or lines out of order",
            )
        highest = max(highest, fields["version"])
    return parsed, problems, why_untrusted


def _read_ledger(path: Path) -> _Ledger:
    """Reads the ledger and checks its chain (:func:`_check_chain`): the trusted lines."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _Ledger(path)
    raw_lines = data.split(b"\n")
    torn = raw_lines[-1] != b""
    if not torn:
        raw_lines.pop()  # what follows the final newline
    parsed, problems, why_untrusted = _check_chain(path, raw_lines)
    entries: dict[int, LedgerEntry] = {}
    untrusted: dict[int, str] = {}
    for number, fields in enumerate(parsed, start=1):
        if fields is None:
            continue
        version = fields["version"]
        if number in why_untrusted:
            untrusted.setdefault(
                version, f"its {LEDGER_FILE} line {number} is untrusted ({why_untrusted[number]})"
            )
        elif version not in entries:
            values = {key: value for key, value in fields.items() if key != "prev"}
            entries[version] = LedgerEntry(line=number, **values)
    for version in entries:
        untrusted.pop(version, None)
    return _Ledger(
        path,
        exists=True,
        entries=entries,
        problems=problems,
        untrusted=untrusted,
        highest=max((fields["version"] for fields in parsed if fields), default=0),
        head=sha256_hex(raw_lines[-1]) if raw_lines else None,
        torn=torn,
    )


def _ledger_line(
    *,
    version: int,
    archive_sha256: str,
    size: int,
    version_json: bytes,
    registered_at: str,
    source: str,
) -> dict[str, Any]:
    """A ledger line's fields but ``prev``, which :func:`_append_ledger` chains."""
    return {
        "version": version,
        "archive_sha256": archive_sha256,
        "size": size,
        "version_json_sha256": sha256_hex(version_json),
        "registered_at": registered_at,
        "recorded_at": _utc_now(),
        "source": source,
    }


def _append_ledger(ledger: _Ledger, lines: list[dict[str, Any]]) -> None:
    """Appends ``lines`` to the ledger, each chained to the one before, and flushes them to disk.

    The caller holds the group's lock (``ledger`` is what it read under it).
    """
    encoded = []
    previous = ledger.head
    for line in lines:
        raw = json.dumps({**line, "prev": previous}, ensure_ascii=True).encode("ascii")
        encoded.append(raw)
        previous = sha256_hex(raw)
    # After a torn last line, start a new one: the torn line stays as evidence, untrusted.
    data = (b"\n" if ledger.torn else b"") + b"".join(raw + b"\n" for raw in encoded)
    with open(ledger.path, "ab") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if not ledger.exists:
        _fsync_directory(ledger.path.parent)


class _LockUnavailable(OSError):
    """The group's lock file cannot be opened (a read-only registry)."""


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

    def ledger_path(self, group: str) -> Path:
        """Path of the group's ledger, ``ledger.jsonl`` (see the module docstring)."""
        return self._group_dir(group) / LEDGER_FILE

    # ---- the ledger -----------------------------------------------------------------------

    def _scan(self, group: str, adoption_error: str | None = None) -> _GroupState:
        """The group's ledger and version directories as they are now, without a lock."""
        group_dir = self._group_dir(group)
        ledger = _read_ledger(group_dir / LEDGER_FILE)
        numbers = self._version_numbers(group_dir / VERSIONS_DIR)
        with_ledger = None
        if not ledger.exists:
            with_ledger = next(
                (n for n in numbers if _format_version(group_dir / VERSIONS_DIR / str(n)) >= 2),
                None,
            )
        legacy = bool(numbers) and not ledger.exists and with_ledger is None
        unverified = {}
        for number in numbers:
            if number in ledger.entries:
                continue
            if number in ledger.untrusted:
                unverified[number] = ledger.untrusted[number]
            elif ledger.exists:
                unverified[number] = (
                    f"it is not in the group's {LEDGER_FILE} (an interrupted registration, a "
                    "version directory added by hand, or one registered by code older than "
                    "the ledger)"
                )
            elif with_ledger is not None:
                unverified[number] = (
                    f"the group's {LEDGER_FILE} is missing, though version {with_ledger} was "
                    "registered with one: restore it from a backup"
                )
            else:
                unverified[number] = (
                    f"it was registered before the group had a {LEDGER_FILE}, which could not be "
                    f"created from version.json ({adoption_error or 'the lock is unavailable'})"
                )
        return _GroupState(ledger, numbers, unverified, legacy)

    def _state(self, group: str) -> _GroupState:
        """The group's state, read under the lock when anything in it is unsettled.

        A version directory without its ledger line may be a registration between rename and
        append: with the lock, that registration has finished. A group without a ledger gets one.
        """
        state = self._scan(group)
        if state.settled:
            return state
        if self._holds_lock(group):
            return self._adopt(group, state) if state.legacy else state
        try:
            with self._group_lock(group):
                state = self._scan(group)
                return self._adopt(group, state) if state.legacy else state
        except _LockUnavailable as error:
            return self._scan(group, adoption_error=str(error)) if state.legacy else state

    def _adopt(self, group: str, state: _GroupState) -> _GroupState:
        """Creates the ledger of a group registered before ledgers, from its version.json files.

        The caller holds the lock. Versions whose version.json cannot be read stay unverified.
        """
        versions_dir = self._versions_dir(group)
        lines = []
        for number in state.numbers:
            try:
                raw = (versions_dir / str(number) / VERSION_FILE).read_bytes()
                record = json.loads(raw)
                archive = record["archive"]
                if not _is_sha256(archive["sha256"]) or not _is_count(archive["size"]):
                    continue
                lines.append(
                    _ledger_line(
                        version=number,
                        archive_sha256=archive["sha256"],
                        size=archive["size"],
                        version_json=raw,
                        registered_at=str(record.get("created_at", "")),
                        source=SOURCE_VERSION_JSON,
                    )
                )
            except (OSError, ValueError, KeyError, TypeError):
                continue
        try:
            _append_ledger(state.ledger, lines)
        except OSError as error:
            return self._scan(group, adoption_error=str(error))
        return self._scan(group)

    def integrity(self, group: str) -> GroupIntegrity:
        """What the group's ledger vouches for: its chain, its unverified versions, and the
        version.json files that differ from what it recorded. Raises if the group is unknown.

        The archives' bytes are checked by :meth:`read_archive`.
        """
        versions_dir = self._existing_versions_dir(group)
        state = self._state(group)
        metadata = {}
        baselines = {}
        for number, entry in state.ledger.entries.items():
            if number not in state.numbers:
                continue
            problem = _version_json_problem(versions_dir / str(number) / VERSION_FILE, entry)
            if problem is not None:
                metadata[number] = problem
                continue
            try:
                self.read_baseline(group, number)
            except (OSError, ValueError) as error:
                baselines[number] = str(error)
        return GroupIntegrity(
            ledger=state.ledger.path,
            entries=dict(state.ledger.entries),
            problems=list(state.ledger.problems),
            unverified=dict(state.unverified),
            metadata=metadata,
            baselines=baselines,
        )

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

    def _read_version(self, group: str, version_dir: Path, state: _GroupState) -> ModelVersion:
        record = _read_json(version_dir / VERSION_FILE)
        approval = _read_json(version_dir / APPROVAL_FILE)
        entry = state.ledger.entries.get(int(version_dir.name))
        return ModelVersion(
            group=group,
            version=int(version_dir.name),
            created_at=record["created_at"],
            # The ledger's, never version.json's: that one changes with the archive it describes.
            archive_sha256=entry.archive_sha256 if entry is not None else "",
            archive_size=entry.size if entry is not None else record["archive"]["size"],
            metrics=record["metrics"],
            lineage=record["lineage"],
            description=record["description"],
            approval_status=approval["status"],
            approval_history=approval["history"],
            baseline=record.get("baseline") or {},
            model_card=record.get("model_card") or {},
        )

    def get(self, group: str, version: int) -> ModelVersion:
        """One version. Raises :class:`ModelNotFoundError` if the group or version is unknown."""
        version_dir = self._version_dir(group, version)
        return self._read_version(group, version_dir, self._state(group))

    def list_versions(self, group: str) -> list[ModelVersion]:
        """Every version of ``group``, oldest (1) first. Raises if the group is unknown."""
        versions_dir = self._existing_versions_dir(group)
        state = self._state(group)
        return [
            self._read_version(group, versions_dir / str(number), state)
            for number in self._version_numbers(versions_dir)
        ]

    def latest(self, group: str, status: str | None = None) -> ModelVersion | None:
        """The newest version of ``group``, or the newest with approval ``status``; None if none.

        Raises :class:`ModelNotFoundError` if the group is unknown.
        """
        if status is not None:
            validate_approval_status(status)
        versions_dir = self._existing_versions_dir(group)
        state = self._state(group)
        for number in reversed(self._version_numbers(versions_dir)):
            candidate = self._read_version(group, versions_dir / str(number), state)
            if status is None or candidate.approval_status == status:
                return candidate
        return None

    def read_archive(self, group: str, version: int) -> bytes:
        """The version's ``model.tar.gz`` bytes, verified against the ledger's sha256.

        Raises:
            UnverifiedArchiveError: No trusted ledger line records the version.
            predictive_maintenance.integrity.ChecksumMismatchError: The stored bytes changed.
        """
        path = self._version_dir(group, version) / ARCHIVE_FILE
        state = self._state(group)
        entry = state.ledger.entries.get(version)
        if entry is None:
            reason = state.unverified.get(version, f"it is not in the group's {LEDGER_FILE}")
            raise UnverifiedArchiveError(path, version, reason)
        data = path.read_bytes()
        actual = sha256_hex(data)
        if actual != entry.archive_sha256:
            raise ChecksumMismatchError(
                f"{path}: sha256 is {actual}, expected {entry.archive_sha256}, which "
                f"{LEDGER_FILE} line {entry.line} records for version {version} "
                f"({len(data):,} bytes). The archive changed after registration: put the "
                "original back (a changed model is registered as a new version)."
            )
        return data

    def baseline_path(self, group: str, version: int, part: str) -> Path:
        """Path of a baseline file of the version (``part``: statistics or constraints)."""
        if part not in BASELINE_FILES:
            raise ValueError(f"a baseline part is one of {sorted(BASELINE_FILES)}, not {part!r}")
        return self._version_dir(group, version) / BASELINE_DIR / BASELINE_FILES[part]

    def read_baseline(self, group: str, version: int) -> dict[str, bytes]:
        """The version's baseline files (part -> bytes), ``{}`` if it has none, each verified
        against the sha256 its version.json records, after version.json is checked against the
        ledger.

        Raises:
            UnverifiedArchiveError: No trusted ledger line records the version.
            predictive_maintenance.integrity.ChecksumMismatchError: version.json or a baseline
                file changed after registration.
            FileNotFoundError: A baseline file is missing.
        """
        version_dir = self._version_dir(group, version)
        state = self._state(group)
        entry = state.ledger.entries.get(version)
        if entry is None:
            reason = state.unverified.get(version, f"it is not in the group's {LEDGER_FILE}")
            raise UnverifiedArchiveError(version_dir / VERSION_FILE, version, reason)
        problem = _version_json_problem(version_dir / VERSION_FILE, entry)
        if problem is not None:
            raise ChecksumMismatchError(f"version {version}: {problem}")
        recorded = _read_json(version_dir / VERSION_FILE).get("baseline") or {}
        files = {}
        for part, item in recorded.items():
            path = version_dir / item["file"]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                raise FileNotFoundError(f"{path} is missing (baseline {part})") from None
            actual = sha256_hex(data)
            if actual != item["sha256"]:
                raise ChecksumMismatchError(
                    f"{path}: sha256 is {actual}, expected {item['sha256']}, which version "
                    f"{version}'s {VERSION_FILE} records ({len(data):,} bytes). The baseline "
                    "changed after registration: put the original back."
                )
            files[part] = data
        return files

    # ---- writing --------------------------------------------------------------------------

    def _prepare(
        self,
        group: str,
        archive: bytes,
        *,
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        approval_status: str = PENDING,
        description: str = "",
        baseline: Mapping[str, bytes] | None = None,
        model_card: Mapping[str, Any] | None = None,
    ) -> _Registration:
        """Checks a registration and serializes it, before anything touches the disk."""
        validate_group_name(group)
        baseline_files = check_baseline(baseline)
        validate_approval_status(approval_status)
        if not isinstance(archive, bytes | bytearray | memoryview):
            raise TypeError(f"archive must be bytes, not {type(archive).__name__}")
        if not isinstance(metrics, Mapping) or not isinstance(lineage, Mapping):
            raise TypeError("metrics and lineage must be dictionaries")
        if not isinstance(description, str):
            raise TypeError(f"description must be a string, not {type(description).__name__}")
        card = check_card(model_card) if model_card is not None else None
        archive = bytes(archive)
        created_at = _utc_now()
        full_lineage = dict(lineage)
        full_lineage.setdefault("created_at", created_at)
        if "git_commit" not in full_lineage:
            full_lineage["git_commit"] = current_git_commit()
        record: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "group": group,
            "version": None,  # set per attempt by _publish
            "created_at": created_at,
            "archive": {"file": ARCHIVE_FILE, "sha256": sha256_hex(archive), "size": len(archive)},
            "metrics": dict(metrics),
            "lineage": full_lineage,
            "description": description,
        }
        if baseline_files:
            record["baseline"] = {
                part: {
                    "file": f"{BASELINE_DIR}/{BASELINE_FILES[part]}",
                    "sha256": sha256_hex(data),
                    "size": len(data),
                }
                for part, data in baseline_files.items()
            }
        if card is not None:
            # In version.json, so the ledger's sha256 of version.json covers it too.
            record["model_card"] = card
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
        return _Registration(archive, record, _to_json(approval, "approval"), baseline_files)

    def register(
        self,
        group: str,
        archive: bytes,
        *,
        metrics: Mapping[str, Any],
        lineage: Mapping[str, Any],
        approval_status: str = PENDING,
        description: str = "",
        baseline: Mapping[str, bytes] | None = None,
        model_card: Mapping[str, Any] | None = None,
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
            baseline: The data-quality baseline of the training data, ``statistics`` and
                ``constraints`` (Model Monitor's JSON files, as bytes), stored beside the archive
                with their sha256 in version.json; None for none.
            model_card: The version's model card (a JSON object with ``card_format``, see
                :mod:`predictive_maintenance.model_card`), kept in version.json; None for none.
        """
        registration = self._prepare(
            group,
            archive,
            metrics=metrics,
            lineage=lineage,
            approval_status=approval_status,
            description=description,
            baseline=baseline,
            model_card=model_card,
        )
        self._versions_dir(group).mkdir(parents=True, exist_ok=True)
        with self._group_lock(group):
            number = self._register_locked(group, registration)
        return self.get(group, number)

    def register_if_changed(
        self, group: str, archive: bytes, **registration: Any
    ) -> tuple[ModelVersion, bool]:
        """Registers ``archive`` unless the newest version of ``group`` has the same sha256 and
        the same baseline (both none, or files with the same sha256).

        ``registration``: the keyword arguments of :meth:`register`. Returns the new version and
        True, or the newest version (whose archive is byte-identical, by the ledger's sha256) and
        False; nothing is written then (but the ledger of a group registered before ledgers).
        """
        prepared = self._prepare(group, archive, **registration)
        self._versions_dir(group).mkdir(parents=True, exist_ok=True)
        with self._group_lock(group):
            newest = self.latest(group)
            if (
                newest is not None
                and newest.archive_sha256 == prepared.record["archive"]["sha256"]
                and {part: item["sha256"] for part, item in newest.baseline.items()}
                == baseline_digests(prepared.baseline)
            ):
                return newest, False
            number = self._register_locked(group, prepared)
        return self.get(group, number), True

    def _register_locked(self, group: str, registration: _Registration) -> int:
        """Publishes a version and appends its ledger line; the caller holds the lock."""
        state = self._state(group)  # creates the ledger of a group registered before ledgers
        group_dir = self._group_dir(group)
        staging = group_dir / f"{STAGING_PREFIX}{os.getpid()}-{uuid.uuid4().hex}"
        os.mkdir(staging)
        try:
            _write_file(staging / ARCHIVE_FILE, registration.archive, _READ_ONLY)
            if registration.baseline:
                os.mkdir(staging / BASELINE_DIR)
                for part, data in registration.baseline.items():
                    _write_file(staging / BASELINE_DIR / BASELINE_FILES[part], data, _READ_ONLY)
            _write_file(staging / APPROVAL_FILE, registration.approval)
            # A number the ledger recorded is never used again, even if its directory is gone.
            first = max(state.ledger.highest, *state.numbers, 0) + 1
            number, version_json = self._publish(
                staging, group_dir / VERSIONS_DIR, registration.record, first
            )
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Same critical section as the rename: readers that see the directory without this line
        # wait for the lock. A crash in between leaves the version unverified, never trusted.
        archive = registration.record["archive"]
        line = _ledger_line(
            version=number,
            archive_sha256=archive["sha256"],
            size=archive["size"],
            version_json=version_json,
            registered_at=registration.record["created_at"],
            source=SOURCE_REGISTRATION,
        )
        _append_ledger(_read_ledger(group_dir / LEDGER_FILE), [line])
        return number

    def _publish(
        self, staging: Path, versions_dir: Path, record: dict[str, Any], first: int
    ) -> tuple[int, bytes]:
        """Renames the complete ``staging`` directory to the next free ``versions/<n>``
        (``n >= first``); returns ``n`` and the version.json written."""
        numbers = self._version_numbers(versions_dir)
        number = max(first, numbers[-1] + 1 if numbers else 1)
        version_file = staging / VERSION_FILE
        while True:
            if version_file.exists():
                version_file.unlink()
            version_json = _to_json({**record, "version": number}, "version")
            _write_file(version_file, version_json, _READ_ONLY)
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
            return number, version_json

    def _holds_lock(self, group: str) -> bool:
        return str(self._group_dir(group) / LOCK_FILE) in getattr(_held_locks, "paths", set())

    @contextmanager
    def _group_lock(self, group: str) -> Iterator[None]:
        """The group's exclusive lock (not re-entrant: see :data:`_held_locks`)."""
        path = self._group_dir(group) / LOCK_FILE
        try:
            lock = open(path, "a")  # noqa: SIM115 - closed below, after the unlock
        except OSError as error:
            raise _LockUnavailable(f"cannot open {path}: {error.strerror or error}") from error
        held = _held_locks.__dict__.setdefault("paths", set())
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            held.add(str(path))
            try:
                yield
            finally:
                held.discard(str(path))
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
        with self._group_lock(group):
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
        return self.get(group, version)


def _format_version(version_dir: Path) -> int:
    """version.json's ``format_version`` (0 if it cannot be read)."""
    try:
        value = _read_json(version_dir / VERSION_FILE).get("format_version", 1)
    except (OSError, ValueError, AttributeError):
        return 0
    return value if _is_count(value) else 0


def _version_json_problem(path: Path, entry: LedgerEntry) -> str | None:
    """How version.json differs from the one the ledger recorded, or None if it does not."""
    try:
        raw = path.read_bytes()
    except OSError as error:
        return f"its {VERSION_FILE} cannot be read ({error.strerror or error})"
    actual = sha256_hex(raw)
    if actual == entry.version_json_sha256:
        return None
    try:
        recorded = json.loads(raw)["archive"]["sha256"]
    except (ValueError, KeyError, TypeError):
        recorded = None
    where = f"{LEDGER_FILE} line {entry.line}"
    if recorded != entry.archive_sha256:
        return (
            f"its {VERSION_FILE} records archive sha256 {recorded}, but {where} records "
            f"{entry.archive_sha256}: {VERSION_FILE} was rewritten after registration"
        )
    return (
        f"its {VERSION_FILE} has sha256 {actual}, but {where} recorded "
        f"{entry.version_json_sha256}: its metrics, lineage or description were edited after "
        "registration"
    )
