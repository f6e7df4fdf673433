"""Reading captured traffic: SageMaker data-capture JSON Lines to a frame of readings.

A record (one line) is SageMaker's::

    {"captureData": {"endpointInput": {"observedContentType": "text/csv", "mode": "INPUT",
       "data": "L,298.1,308.6,1551,42.8,0", "encoding": "CSV"},
     "endpointOutput": {"observedContentType": "text/csv; charset=utf-8", "mode": "OUTPUT",
       "data": "0.0123", "encoding": "CSV"}},
     "eventMetadata": {"eventId": "<uuid4>", "inferenceTime": "2026-12-03T15:00:00Z"},
     "eventVersion": "0"}

The request body is parsed by the endpoint's own parser (:func:`.serving.requests.parse_readings`),
so a reading is accepted or refused exactly as the endpoint does. A line that is no record (not
JSON, a field missing, bad base64, an unsupported content type) is skipped and reported with its
file and line number; a run never stops on one. A body the parser refuses is parsed again reading
by reading, so its good readings still count and each refused one is classified (missing value,
wrong type, unknown category, negative, missing or extra column) for the constraint checks.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Final

import numpy as np
import pandas as pd

from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
)
from predictive_maintenance.serving.requests import (
    InvalidInput,
    Readings,
    ServingError,
    check_content_type,
    load_json,
    parse_readings,
    readings_from_instances,
)

#: Columns of the captured-readings frame besides the readings.
RECORD_COLUMNS: Final = ("event_id", "inference_time", "file", "line", "row")
SCORE_COLUMNS: Final = ("score", "predicted_label")
#: At most this many skipped lines and refused readings are listed one by one (all are counted).
MAX_LISTED: Final = 200

# Kinds of refused readings, as the constraint checks use them.
MISSING_VALUE: Final = "missing_value"
MISSING_COLUMN: Final = "missing_column"
EXTRA_COLUMN: Final = "extra_column"
WRONG_TYPE: Final = "wrong_type"
UNKNOWN_CATEGORY: Final = "unknown_category"
NEGATIVE: Final = "negative"
OUT_OF_RANGE: Final = "out_of_range"
UNPARSABLE: Final = "unparsable"

#: The endpoint parser's messages (serving/requests.py) -> kind. Matched in this order; the
#: tests build every message with the parser itself, so a reworded message fails them.
_KINDS: Final = (
    (
        re.compile(r"missing \(the line is empty\)|: missing: the line has \d+ fields"),
        MISSING_COLUMN,
    ),
    (re.compile(r": missing$"), MISSING_VALUE),
    (re.compile(r": (''|'\s+'|None) is not (a number|a product type)"), MISSING_VALUE),
    (re.compile(r"is not a number$"), WRONG_TYPE),
    (re.compile(r"is not a product type"), UNKNOWN_CATEGORY),
    (re.compile(r": (-\S+|-?inf) is outside the plausible range"), NEGATIVE),
    (re.compile(r"is outside the plausible range"), OUT_OF_RANGE),
    (re.compile(r"^line \d+: \d+ fields, expected|: unexpected field"), EXTRA_COLUMN),
)
_FIELD_COUNT: Final = re.compile(r"^line \d+: (\d+) fields, expected")
_ENCODINGS: Final = ("CSV", "JSON", "BASE64")


def classify(error: InvalidInput) -> str:
    """The kind of problem the endpoint's parser found in one reading."""
    for pattern, kind in _KINDS:
        if pattern.search(error.message):
            return kind
    return UNPARSABLE


def extra_fields(error: InvalidInput) -> list[str]:
    """Names of the surplus fields of a refused reading: the JSON key, or for a CSV line with
    too many fields Spark's names for them (``_c6`` for the seventh), as SageMaker's analyzer
    names unnamed CSV columns."""
    counted = _FIELD_COUNT.search(error.message)
    if counted:
        return [f"_c{index}" for index in range(len(READING_COLUMNS), int(counted[1]))]
    return [error.field] if error.field else []


@dataclasses.dataclass
class CaptureReader:
    """Accumulates records of capture files into readings, refusals and skipped lines."""

    endpoint_name: str
    start: datetime | None = None
    end: datetime | None = None
    rows: dict[str, list[Any]] = dataclasses.field(
        default_factory=lambda: {c: [] for c in (*RECORD_COLUMNS, *READING_COLUMNS, *SCORE_COLUMNS)}
    )
    counts: Counter = dataclasses.field(default_factory=Counter)
    skipped: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    refused: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    #: field -> kind -> refused readings; "" for problems of a whole line (unparsable).
    problems: dict[str, Counter] = dataclasses.field(default_factory=lambda: defaultdict(Counter))

    # ---- files ---------------------------------------------------------------------------------
    def read(self, partitions: dict[str, Callable[[], Any]]) -> None:
        """Reads every capture file of the endpoint (partition id = path below the capture
        directory) whose hour can overlap the window, in path order (= time order)."""
        prefix = f"{self.endpoint_name}/"
        for partition in sorted(partitions):
            if not partition.startswith(prefix):
                self.counts["other_endpoint_files"] += 1
                continue
            if not self._hour_overlaps(partition):
                self.counts["files_outside_window"] += 1
                continue
            self.counts["files"] += 1
            try:
                content = partitions[partition]()
            except Exception as error:  # an unreadable file is reported, not fatal
                self._skip(partition, 0, f"the file cannot be read: {error}")
                continue
            self.read_file(partition, content)

    def _hour_overlaps(self, partition: str) -> bool:
        """False when the file's ``YYYY/MM/DD/HH`` directory lies wholly outside the window."""
        parts = partition.split("/")
        try:
            hour = datetime(*map(int, parts[-5:-1]), tzinfo=timezone.utc)  # type: ignore[misc]
        except (TypeError, ValueError):
            return True  # not SageMaker's layout: its records' times decide
        after_end = self.end is not None and hour >= self.end
        before_start = self.start is not None and hour + timedelta(hours=1) <= self.start
        return not (after_end or before_start)

    def read_file(self, name: str, content: str | bytes) -> None:
        """Reads one capture file's records (a blank line is no record and no error)."""
        # bytes split at line ends only; str.splitlines would also split at U+2028 and others,
        # which a JSON string may hold unescaped.
        if isinstance(content, bytes):
            lines: list[bytes] | list[str] = content.splitlines()
        elif isinstance(content, str):
            lines = [line.rstrip("\r") for line in content.split("\n")]
        else:
            raise TypeError(f"{name}: a capture file loads as text or bytes, not {type(content)}")
        for number, raw in enumerate(lines, start=1):
            self.counts["lines"] += 1
            if not raw.strip():
                self.counts["blank_lines"] += 1
                continue
            try:
                line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
                self.read_record(name, number, line)
            except _Skip as skip:
                self._skip(name, number, str(skip))
            except UnicodeDecodeError as error:
                self._skip(name, number, f"the line is not UTF-8 text: {error}")

    def _skip(self, name: str, number: int, reason: str) -> None:
        self.counts["skipped_lines"] += 1
        if len(self.skipped) < MAX_LISTED:
            self.skipped.append({"file": name, "line": number, "reason": reason})

    # ---- records -------------------------------------------------------------------------------
    def read_record(self, name: str, number: int, line: str) -> None:
        """One capture record: its readings, or the reason it is no record (:class:`_Skip`)."""
        try:
            record = json.loads(line)
        except ValueError as error:
            raise _Skip(f"not a JSON record: {error}") from None
        event = _get(record, "eventMetadata", dict)
        # SageMaker's ground truth names the client's InferenceId when it gave one, else the
        # capture's eventId: that is the key the readings are joined on.
        event_id = event.get("inferenceId") or _get(event, "eventId", str, "eventMetadata.")
        if not isinstance(event_id, str):
            raise _Skip("eventMetadata.inferenceId is not a string")
        inference_time = _time(_get(event, "inferenceTime", str, "eventMetadata."))
        if (self.start is not None and inference_time < self.start) or (
            self.end is not None and inference_time >= self.end
        ):
            self.counts["records_outside_window"] += 1
            return
        capture = _get(record, "captureData", dict)
        request = _get(capture, "endpointInput", dict, "captureData.")
        content_type = _get(request, "observedContentType", str, "captureData.endpointInput.")
        body = _body(request, "captureData.endpointInput")
        where = {"file": name, "line": number}
        try:
            readings = [(0, parse_readings(body, content_type))]
        except InvalidInput as error:
            readings = self._salvage(body, content_type, where, error)
        except ServingError as error:  # 415, 413: the endpoint did not take the body at all
            raise _Skip(f"the request cannot be read: {error.message}") from None
        self.counts["records"] += 1
        count = sum(len(parsed) for _, parsed in readings)
        scores, labels = _answer(capture.get("endpointOutput"), count)
        if scores is None:
            self.counts["unscored_readings"] += count
        position = 0
        for first, parsed in readings:
            for index in range(len(parsed)):
                record = (event_id, inference_time, name, number, first + index)
                self._row(record, parsed, index)
                self.rows["score"].append(np.nan if scores is None else scores[position])
                self.rows["predicted_label"].append(None if labels is None else labels[position])
                position += 1

    def _row(self, record: tuple[Any, ...], parsed: Readings, index: int) -> None:
        """Appends reading ``index`` of ``parsed``; ``record``: the RECORD_COLUMNS values."""
        self.counts["readings"] += 1
        for column, value in zip(RECORD_COLUMNS, record, strict=True):
            self.rows[column].append(value)
        self.rows["type"].append(parsed.types[index])
        for column, values in zip(READING_COLUMNS[1:], parsed.columns, strict=True):
            self.rows[column].append(values[index])

    def _salvage(
        self, body: str | bytes, content_type: str, where: dict[str, Any], error: InvalidInput
    ) -> list[tuple[int, Readings]]:
        """The readings of a refused body taken one by one: the good ones with their position
        in the request (0-based), and each refused one classified."""
        media = check_content_type(content_type)  # accepted: the parser got past it
        parse: Callable[[Any], Readings]
        if media == CSV_CONTENT_TYPE:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            while lines and not lines[-1].strip():
                lines.pop()
            pieces = list(enumerate(lines))
            parse = _csv_line
        elif media == JSON_CONTENT_TYPE:
            try:
                payload = load_json(body)
            except InvalidInput:
                payload = None
            instances = payload.get(JSON_INSTANCES_KEY) if isinstance(payload, dict) else None
            if not isinstance(instances, list) or not instances:
                self._refuse(where, None, error)  # not even a list of readings: the whole body
                return []
            pieces = list(enumerate(instances))
            parse = _json_instance
        else:
            self._refuse(where, None, error)
            return []
        accepted = []
        for index, piece in pieces:
            try:
                accepted.append((index, parse(piece)))
            except InvalidInput as refused:
                self._refuse(where, index, _renumbered(refused, index))
        return accepted

    def _refuse(self, where: dict[str, Any], row: int | None, error: InvalidInput) -> None:
        kind = classify(error)
        fields = extra_fields(error) if kind == EXTRA_COLUMN else [error.field or ""]
        self.counts["refused_readings"] += 1
        for field in fields:
            self.problems[field][kind] += 1
        if len(self.refused) < MAX_LISTED:
            self.refused.append(
                {**where, "row": row, "field": error.field, "kind": kind, "message": error.message}
            )

    # ---- results -------------------------------------------------------------------------------
    def frame(self) -> pd.DataFrame:
        """One row per accepted reading."""
        frame = pd.DataFrame(self.rows)
        frame["inference_time"] = pd.to_datetime(frame["inference_time"], utc=True)
        frame["line"] = frame["line"].astype(np.int64)
        frame["row"] = frame["row"].astype(np.int64)
        frame["score"] = frame["score"].astype(np.float64)
        frame["predicted_label"] = frame["predicted_label"].astype("Int8")
        for column in READING_COLUMNS[1:]:
            frame[column] = frame[column].astype(np.float64)
        frame["type"] = frame["type"].astype(object)
        return frame

    def summary(self) -> dict[str, Any]:
        """What was read, skipped and refused (JSON-able)."""
        counts = {
            key: int(self.counts[key])
            for key in (
                "files",
                "lines",
                "blank_lines",
                "records",
                "readings",
                "refused_readings",
                "unscored_readings",
                "skipped_lines",
                "records_outside_window",
                "files_outside_window",
                "other_endpoint_files",
            )
        }
        return {
            "endpoint_name": self.endpoint_name,
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            **counts,
            "problems": {field: dict(kinds) for field, kinds in sorted(self.problems.items())},
            "skipped": self.skipped,
            "refused": self.refused,
            "listed_at_most": MAX_LISTED,
        }


def _csv_line(line: str) -> Readings:
    return parse_readings(line, CSV_CONTENT_TYPE)


def _json_instance(instance: Any) -> Readings:
    return readings_from_instances([instance], key=None)


def _renumbered(error: InvalidInput, index: int) -> InvalidInput:
    """A CSV line parsed alone is "line 1" to the parser: its number in the request instead."""
    message = re.sub(r"^line 1\b", f"line {index + 1}", error.message)
    row = index + 1 if error.row is not None else None
    return InvalidInput(message, row=row, field=error.field)


class _Skip(Exception):
    """A line that is no capture record, and why."""


def _get(obj: Any, key: str, kind: type, where: str = "") -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, kind):
        problem = "missing" if value is None else f"not {'an object' if kind is dict else 'text'}"
        raise _Skip(f"{where}{key} is {problem}")
    return value


def _body(block: dict[str, Any], where: str) -> str | bytes:
    """The captured body: text for CSV and JSON encodings, bytes decoded from BASE64."""
    data = _get(block, "data", str, f"{where}.")
    encoding = block.get("encoding")
    if encoding not in _ENCODINGS:
        raise _Skip(f"{where}.encoding is {encoding!r}, not one of {list(_ENCODINGS)}")
    if encoding != "BASE64":
        return data
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise _Skip(f"{where}.data is not valid base64: {error}") from None


def _time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Skip(f"eventMetadata.inferenceTime {text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_time(text: str | None, what: str) -> datetime | None:
    """An ISO 8601 time from the parameters (UTC when it names no zone), or None."""
    if text is None:
        return None
    try:
        return _time(str(text))
    except _Skip:
        raise ValueError(f"{what}: {text!r} is not an ISO 8601 time") from None


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _answer(block: Any, count: int) -> tuple[list[float] | None, list[int] | None]:
    """The scores (and labels, from a JSON answer) the endpoint answered for ``count``
    readings; ``(None, None)`` when there is no answer or it does not match the readings."""
    if not isinstance(block, dict) or count == 0:
        return None, None
    try:
        body = _body(block, "captureData.endpointOutput")
    except _Skip:
        return None, None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        media = check_content_type(block.get("observedContentType"))
        if media == JSON_CONTENT_TYPE:
            predictions = json.loads(text)["predictions"]
            scores = [float(item["score"]) for item in predictions]
            labels = [int(item["predicted_label"]) for item in predictions]
        else:
            scores = [float(value) for value in _values(text)]
            labels = None
    except (ValueError, KeyError, TypeError, ServingError):
        return None, None
    return (scores, labels) if len(scores) == count else (None, None)


def _values(text: str) -> Iterator[str]:
    for line in text.splitlines():
        if line.strip():
            yield from (value for value in line.split(",") if value.strip())
