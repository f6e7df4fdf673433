"""Endpoint data capture: answered requests as SageMaker's data-capture JSON Lines, on local disk.

What SageMaker writes to S3 for an endpoint with a ``DataCaptureConfig``, the local endpoint
writes under a directory (``globals.yml: data_capture.directory``), same record, same layout::

    <directory>/<endpoint>/AllTraffic/YYYY/MM/DD/HH/<mm>-<ss>-<ms>-<uuid>.jsonl

one record per line (``captureData.endpointInput/endpointOutput``, ``eventMetadata.eventId`` and
``inferenceTime``, ``eventVersion "0"``), UTC hours, so that the monitoring pipeline reads local
and SageMaker captures alike. ``encoding`` is ``CSV`` for ``text/csv``, ``JSON`` for
``application/json`` (the body as text, exactly as sent), ``BASE64`` otherwise.

Capture must never slow or fail a request. The request side (:meth:`DataCapture.capture`, on the
server's event loop) only draws the sample, makes an event id and appends the raw bodies to a
bounded queue (a deque: no lock, no thread to wake); a full queue drops the record (counted). One
writer thread wakes every :data:`WRITE_INTERVAL_SECONDS`, encodes what is queued and writes it
with one call per file, yielding the interpreter between chunks so that the event loop is never
held up for long. Its errors (a full disk, a directory that cannot be written) are counted and
logged once per kind, and it tries again with a new file on the next record. Files rotate every
UTC hour and at ``max_file_bytes``; past ``max_total_bytes`` or ``max_files`` the oldest capture
files are deleted (counted). Only files named as this module names them are ever deleted.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import logging
import os
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Mapping
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from pathlib import Path
from typing import IO, Any, Final

from predictive_maintenance.serving.contract import CAPTURE_STATS_PATH

logger = logging.getLogger(__name__)

#: SageMaker's production-variant folder (the local endpoint has one variant).
VARIANT: Final = "AllTraffic"
#: Folder for captures when the server has no endpoint name (``--model-dir`` without a name).
DEFAULT_ENDPOINT_NAME: Final = "local-endpoint"
#: Body media types SageMaker's default ``CaptureContentTypeHeader`` writes as text.
_TEXT_ENCODINGS: Final = {"text/csv": "CSV", "application/json": "JSON"}
#: SageMaker's endpoint-name pattern: the name becomes a folder, so nothing else is written.
_ENDPOINT_NAME: Final = re.compile(r"[A-Za-z0-9](?:-*[A-Za-z0-9]){0,62}")
#: Names this module gives its files (the only files it deletes).
_FILE_NAME: Final = re.compile(r"\d{2}-\d{2}-\d{3}-[0-9a-f-]{36}\.jsonl")
#: How often the writer thread writes what was captured: the most a record waits for its file.
WRITE_INTERVAL_SECONDS: Final = 0.1
#: Records encoded and written per chunk; the writer lets other threads run between chunks.
_WRITE_CHUNK: Final = 256
#: A version-4 UUID's fixed bits (RFC 9562): version 4, variant 10.
_UUID_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID_SET: Final = (0x4000 << 64) | (0x8000 << 48)


@dataclasses.dataclass(frozen=True)
class CaptureConfig:
    """The ``data_capture`` parameters (``parameters_serving.yml``); every field checked."""

    enabled: bool = False
    #: Share of answered requests captured, 0-100 (SageMaker's InitialSamplingPercentage).
    sampling_percentage: int = 100
    directory: Path = Path("data/13_data_capture")
    #: A file is closed and the next one started before it would pass this size.
    max_file_bytes: int = 16 * 1024 * 1024
    #: The oldest capture files are deleted past this many bytes in all ...
    max_total_bytes: int = 1024 * 1024 * 1024
    #: ... or past this many files.
    max_files: int = 2000
    #: Records waiting for the writer; one more is dropped and counted ...
    queue_records: int = 10_000
    #: ... as is one whose bodies would take the waiting bodies past this many bytes (a
    #: request may be 6 MB: the record count alone does not bound the memory).
    queue_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"data_capture.enabled must be true or false, not {self.enabled!r}")
        sampling = self.sampling_percentage
        if isinstance(sampling, bool) or not isinstance(sampling, int) or not 0 <= sampling <= 100:
            raise ValueError(
                "data_capture.sampling_percentage must be a whole number from 0 to 100, "
                f"not {sampling!r}"
            )
        for name in (
            "max_file_bytes",
            "max_total_bytes",
            "max_files",
            "queue_records",
            "queue_bytes",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"data_capture.{name} must be a positive integer, not {value!r}")
        if self.max_total_bytes < self.max_file_bytes:
            raise ValueError(
                f"data_capture.max_total_bytes ({self.max_total_bytes}) must be at least "
                f"max_file_bytes ({self.max_file_bytes})"
            )
        if not str(self.directory):
            raise ValueError("data_capture.directory must not be empty")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, **overrides: Any) -> CaptureConfig:
        """The configuration from a parameters mapping; ``overrides`` (not None) win; unknown keys
        are an error naming them."""
        values = dict(values or {})
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown data_capture key(s) {unknown}; known: {sorted(known)}")
        values.update({key: value for key, value in overrides.items() if value is not None})
        if "directory" in values:
            values["directory"] = Path(values["directory"])
        return cls(**values)


def _encoding(observed: str | None) -> str | None:
    media = (observed or "").split(";", 1)[0].strip().lower()
    return _TEXT_ENCODINGS.get(media)


def _payload(body: bytes, observed: str | None, encoding: str | None, mode: str) -> str:
    if encoding is not None:
        try:
            data = body.decode("utf-8")
        except UnicodeDecodeError:
            encoding = None
    if encoding is None:
        data, encoding = base64.b64encode(body).decode("ascii"), "BASE64"
    return (
        f'{{"observedContentType":{encode_basestring(observed or "")},"mode":"{mode}",'
        f'"data":{encode_basestring(data)},"encoding":"{encoding}"}}'
    )


def inference_time(timestamp: float) -> str:
    """SageMaker's ``inferenceTime``: UTC, whole seconds, ``Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def capture_line(
    event_id: str,
    timestamp: float,
    *,
    request_body: bytes,
    request_content_type: str | None,
    response_body: bytes,
    response_content_type: str | None,
    time_text: str | None = None,
    inference_id: str | None = None,
) -> str:
    """One request and its answer as SageMaker's data-capture record: one compact JSON line
    (with its newline), keys in SageMaker's order. ``time_text``: ``inference_time(timestamp)``
    if already known; ``inference_id``: the client's InferenceId, recorded as SageMaker does
    (``eventMetadata.inferenceId``: the key ground truth is joined on)."""
    request = _payload(request_body, request_content_type, _encoding(request_content_type), "INPUT")
    response = _payload(
        response_body, response_content_type, _encoding(response_content_type), "OUTPUT"
    )
    return (
        f'{{"captureData":{{"endpointInput":{request},"endpointOutput":{response}}},'
        f'"eventMetadata":{{"eventId":"{event_id}",'
        + (f'"inferenceId":{json.dumps(inference_id)},' if inference_id is not None else "")
        + f'"inferenceTime":"{time_text or inference_time(timestamp)}"}},"eventVersion":"0"}}\n'
    )


def capture_file(directory: Path, endpoint_name: str, timestamp: float) -> Path:
    """A new capture file's path in SageMaker's layout, named by ``timestamp`` (UTC)."""
    moment = time.gmtime(timestamp)
    milliseconds = int(timestamp * 1000) % 1000
    return (
        directory
        / endpoint_name
        / VARIANT
        / time.strftime("%Y/%m/%d/%H", moment)
        / f"{moment.tm_min:02d}-{moment.tm_sec:02d}-{milliseconds:03d}-{uuid.uuid4()}.jsonl"
    )


def _age_key(path: Path) -> tuple[str, ...]:
    # YYYY, MM, DD, HH and mm-ss-ms-uuid: chronological across endpoints.
    return path.parts[-5:]


def _error_kind(error: BaseException) -> str:
    code = getattr(error, "errno", None)
    return errno.errorcode.get(code, type(error).__name__) if code else type(error).__name__


@dataclasses.dataclass
class _OpenFile:
    path: Path
    handle: IO[bytes]
    key: tuple[str, int]  # (endpoint, UTC hour)
    size: int = 0


class DataCapture:
    """Captures answered requests per :class:`CaptureConfig` with one writer thread.

    ``capture(...)`` is the request side (cheap, never raises); ``stats()`` the counters;
    ``close()`` writes what is queued, closes the file and logs a summary. ``opener`` opens a new
    capture file for appending bytes (default: the file system); ``sample`` draws the sampling
    number in [0, 1).
    """

    def __init__(
        self,
        config: CaptureConfig,
        *,
        endpoint_name: str | None = None,
        opener: Callable[[Path], IO[bytes]] | None = None,
        sample: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.endpoint_name = endpoint_name
        self._opener = opener or _open_new
        self._sample = sample
        self._clock = clock
        # A 122-bit random event id per record from the interpreter's generator, seeded from the
        # OS (uuid.uuid4 reads os.urandom: a system call per request).
        self._bits = random.Random().getrandbits
        #: (event id, time, endpoint, request body, its type, response body, its type), oldest
        #: first; appended by the event loop, taken by the writer (deque operations are atomic).
        self._queue: deque[tuple[Any, ...]] = deque()
        # Body bytes queued (event loop) and taken (writer): each has one writer, the difference
        # is what waits.
        self._bytes_in = 0
        self._bytes_out = 0
        self._stop = threading.Event()
        # Request-side counters (event loop only) ...
        self.requests = 0
        self.sampled_out = 0
        self.queued = 0
        self.dropped_queue_full = 0
        self.capture_failures = 0
        # ... and writer-side ones (writer thread only): no counter has two writers.
        self.written = 0
        self.bytes_written = 0
        self.files_created = 0
        self.records_lost = 0
        self.write_errors: Counter[str] = Counter()
        self.files_deleted = 0
        self.bytes_deleted = 0
        self._current: _OpenFile | None = None
        self._files: deque[tuple[Path, int]] = deque()  # closed files, oldest first
        self._closed_bytes = 0
        self._reported: set[str] = set()
        self._folders: dict[str | None, str] = {}
        self._second: tuple[int, str] = (-1, "")
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="data-capture-writer", daemon=True)
        self._writer.start()

    # ---- the request side (the server's event loop) ---------------------------------------------
    def capture(
        self,
        endpoint_name: str | None,
        request_body: bytes,
        request_content_type: str | None,
        response_body: bytes,
        response_content_type: str | None,
        *,
        inference_id: str | None = None,
    ) -> str | None:
        """Queues the request and its answer if sampled; the event id if queued, else None."""
        try:
            self.requests += 1
            sampling = self.config.sampling_percentage
            if sampling < 100 and self._sample() * 100 >= sampling:
                self.sampled_out += 1
                return None
            size = len(request_body) + len(response_body)
            if (
                len(self._queue) >= self.config.queue_records
                or self._bytes_in - self._bytes_out + size > self.config.queue_bytes
            ):
                self.dropped_queue_full += 1
                self._report_once(
                    "queue_full",
                    logging.WARNING,
                    "data capture: the writer is %d records (%d bytes) behind; dropping records "
                    "until it catches up (counted: dropped_queue_full at GET %s)",
                    len(self._queue),
                    self._bytes_in - self._bytes_out,
                    CAPTURE_STATS_PATH,
                )
                return None
            digits = f"{(self._bits(128) & _UUID_CLEAR) | _UUID_SET:032x}"
            event_id = f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
            self._queue.append(
                (
                    event_id,
                    self._clock(),
                    endpoint_name or self.endpoint_name,
                    request_body,
                    request_content_type,
                    response_body,
                    response_content_type,
                    inference_id,
                )
            )
            self._bytes_in += size
            self.queued += 1
            return event_id
        except Exception:  # capture never fails a request
            self.capture_failures += 1
            self._report_once(
                "capture_failure", logging.ERROR, "data capture failed for a request", exc=True
            )
            return None

    def stats(self) -> dict[str, Any]:
        """The counters, as ``GET /capture-stats`` answers them."""
        current = self._current
        return {
            "enabled": True,
            "sampling_percentage": self.config.sampling_percentage,
            "directory": str(self.directory),
            "requests": self.requests,
            "sampled_out": self.sampled_out,
            "captured": self.queued,
            "dropped_queue_full": self.dropped_queue_full,
            "capture_failures": self.capture_failures,
            "queue_depth": len(self._queue),
            "written": self.written,
            "bytes_written": self.bytes_written,
            "records_lost_to_write_errors": self.records_lost,
            "write_errors": dict(self.write_errors),
            "files_created": self.files_created,
            "files_deleted": self.files_deleted,
            "bytes_deleted": self.bytes_deleted,
            "current_file": None if current is None else str(current.path),
        }

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued (for at most ``timeout`` seconds), closes the file, logs a
        summary. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._writer.join(timeout)
        if self._writer.is_alive():
            logger.warning(
                "data capture: the writer did not finish within %s s; %d records not written",
                timeout,
                len(self._queue),
            )
        logger.info("data capture: %s", self.summary())

    def summary(self) -> str:
        """One line: what was captured, written, dropped, lost and deleted."""
        errors = ", ".join(f"{kind} x{count}" for kind, count in sorted(self.write_errors.items()))
        return (
            f"{self.requests} requests answered, {self.queued} captured "
            f"({self.config.sampling_percentage}% sampled), {self.written} written to "
            f"{self.files_created} file(s) under {self.directory}; "
            f"{self.dropped_queue_full} dropped (queue full), {self.records_lost} lost to write "
            f"errors ({errors or 'none'}); {self.files_deleted} old file(s) "
            f"({self.bytes_deleted} bytes) deleted to stay within the bounds"
        )

    # ---- the writer thread ------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._scan_existing()
        except Exception as error:  # the bounds then count this run's files only
            self._write_failed(error, self.directory)
        stopping = False
        while not stopping:
            stopping = self._stop.wait(WRITE_INTERVAL_SECONDS)
            while self._queue:
                batch = []
                try:
                    while len(batch) < _WRITE_CHUNK:
                        batch.append(self._queue.popleft())
                except IndexError:
                    pass
                self._bytes_out += sum(len(record[3]) + len(record[5]) for record in batch)
                try:
                    self._write(batch)
                except Exception as error:  # the writer must outlive any failure
                    self.records_lost += len(batch)
                    self._write_failed(error, None)
                time.sleep(0)  # the event loop may run between chunks
        self._close_current()

    def _write(self, batch: list[tuple[Any, ...]]) -> None:
        pending: list[bytes] = []
        pending_bytes = 0
        for record in batch:
            line = self._line(record)
            key = (self._folder(record[2]), int(record[1] // 3600))
            current = self._current
            used = 0 if current is None else current.size + pending_bytes
            if (
                current is None
                or current.key != key
                or (used and used + len(line) > self.config.max_file_bytes)
            ):
                self._flush(pending)
                pending, pending_bytes = [], 0
                self._close_current()
                if not self._open(key, record[1]):
                    self.records_lost += 1
                    continue
            pending.append(line)
            pending_bytes += len(line)
        self._flush(pending)
        self._enforce_bounds()

    def _line(self, record: tuple[Any, ...]) -> bytes:
        (
            event_id,
            timestamp,
            _,
            request_body,
            request_type,
            response_body,
            response_type,
            inference_id,
        ) = record
        second = int(timestamp)
        if self._second[0] != second:  # one strftime per second, not per record
            self._second = (second, inference_time(timestamp))
        return capture_line(
            event_id,
            timestamp,
            request_body=request_body,
            request_content_type=request_type,
            response_body=response_body,
            response_content_type=response_type,
            time_text=self._second[1],
            inference_id=inference_id,
        ).encode("utf-8")

    def _folder(self, endpoint_name: str | None) -> str:
        folder = self._folders.get(endpoint_name)
        if folder is None:
            folder = self._folders[endpoint_name] = self._checked_folder(endpoint_name)
        return folder

    def _checked_folder(self, endpoint_name: str | None) -> str:
        name = endpoint_name or DEFAULT_ENDPOINT_NAME
        if _ENDPOINT_NAME.fullmatch(name):
            return name
        self._report_once(
            f"name:{name}",
            logging.WARNING,
            "data capture: endpoint name %r is not a SageMaker endpoint name; capturing under %s",
            name,
            DEFAULT_ENDPOINT_NAME,
        )
        return DEFAULT_ENDPOINT_NAME

    def _open(self, key: tuple[str, int], timestamp: float) -> bool:
        path = capture_file(self.directory, key[0], timestamp)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = self._opener(path)
        except Exception as error:
            self._write_failed(error, path)
            return False
        self._current = _OpenFile(path, handle, key)
        self.files_created += 1
        return True

    def _flush(self, lines: list[bytes]) -> None:
        """Writes ``lines`` to the current file. A failure is counted and logged, and the file is
        given up: the next record starts a new one (a partial line stays in the old file only)."""
        current = self._current
        if not lines or current is None:
            return
        data = b"".join(lines)
        try:
            current.handle.write(data)
            current.handle.flush()
        except Exception as error:
            self.records_lost += len(lines)
            self._write_failed(error, current.path)
            self._abandon_current()
            return
        current.size += len(data)
        self.written += len(lines)
        self.bytes_written += len(data)

    def _write_failed(self, error: BaseException, path: Path | None) -> None:
        kind = _error_kind(error)
        self.write_errors[kind] += 1
        self._report_once(
            f"write:{kind}",
            logging.ERROR,
            "data capture cannot write %s: %s: %s; requests are still answered, the records are "
            "lost (counted: write_errors at GET %s); logged once per kind of error",
            path or self.directory,
            type(error).__name__,
            error,
            CAPTURE_STATS_PATH,
        )

    def _abandon_current(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        try:
            current.handle.close()
        except Exception:  # a failed flush fails again on close; that error is already counted
            logger.debug("closing %s after a write error failed too", current.path, exc_info=True)
        self._remember(current.path)

    def _close_current(self) -> None:
        current, self._current = self._current, None
        if current is None:
            return
        try:
            current.handle.close()
        except Exception as error:
            self._write_failed(error, current.path)
        self._remember(current.path)

    def _remember(self, path: Path) -> None:
        try:
            size = path.stat().st_size
        except OSError:
            return
        self._files.append((path, size))
        self._closed_bytes += size

    def _scan_existing(self) -> None:
        """Capture files already there (earlier runs) count towards the bounds."""
        try:
            found = [
                path
                for path in self.directory.glob(f"*/{VARIANT}/*/*/*/*/*.jsonl")
                if _FILE_NAME.fullmatch(path.name)
            ]
        except OSError:
            return
        for path in sorted(found, key=_age_key):
            self._remember(path)

    def _enforce_bounds(self) -> None:
        current_size = 0 if self._current is None else self._current.size
        current_count = 0 if self._current is None else 1
        while self._files and (
            self._closed_bytes + current_size > self.config.max_total_bytes
            or len(self._files) + current_count > self.config.max_files
        ):
            path, size = self._files.popleft()
            self._closed_bytes -= size
            try:
                path.unlink()
            except FileNotFoundError:
                continue
            except OSError as error:
                self._write_failed(error, path)
                continue
            self.files_deleted += 1
            self.bytes_deleted += size
            self._report_once(
                "bounds",
                logging.INFO,
                "data capture reached its bound (%d bytes, %d files under %s): deleting the "
                "oldest files (counted: files_deleted at GET %s)",
                self.config.max_total_bytes,
                self.config.max_files,
                self.directory,
                CAPTURE_STATS_PATH,
            )
            _remove_empty_parents(path.parent, self.directory)

    def _report_once(
        self, kind: str, level: int, message: str, *args: Any, exc: bool = False
    ) -> None:
        if kind in self._reported:
            return
        self._reported.add(kind)
        logger.log(level, message, *args, exc_info=exc)


def _open_new(path: Path) -> IO[bytes]:
    return open(path, "xb")  # kept open across writes


def _remove_empty_parents(folder: Path, root: Path) -> None:
    """Removes ``folder`` and its parents up to (not including) the endpoint folder, while
    empty."""
    stop = len(root.parts) + 2  # <root>/<endpoint>/AllTraffic stays
    while len(folder.parts) > stop:
        try:
            os.rmdir(folder)
        except OSError:
            return
        folder = folder.parent
