"""Parsing and validating inference requests: the part of the contract that needs no numpy.

The SageMaker handlers (:mod:`.inference`), the local endpoint and the HTTP API
(:mod:`predictive_maintenance.api`, which checks a request before it reaches the endpoint) all
parse readings with these functions, so a reading is accepted or refused with the same message
everywhere. Standard library only, plus this project's ``schema`` and :mod:`.contract`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from typing import Any, Final

from predictive_maintenance.schema import PRODUCT_TYPES, READING_COLUMNS, READING_RANGES
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    CSV_FIELDS,
    DEFAULT_ACCEPT,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MAX_PAYLOAD_BYTES,
    SUPPORTED_CHARSETS,
    SUPPORTED_CONTENT_TYPES,
)

try:  # Inside the SageMaker container: errors with a status become that HTTP status, not a 500.
    from sagemaker_inference.errors import (  # type: ignore[import-not-found]
        BaseInferenceToolkitError as _ToolkitError,
    )
except ImportError:  # pragma: no cover - depends on the environment
    _ToolkitError = Exception


_NUMERIC_COLUMNS: Final = READING_COLUMNS[1:]
_RANGES: Final = tuple(READING_RANGES[column] for column in _NUMERIC_COLUMNS)
_PRODUCT_TYPES: Final = frozenset(PRODUCT_TYPES)
_READING_KEYS: Final = frozenset(READING_COLUMNS)
_FIELD_COUNT: Final = len(READING_COLUMNS)
#: A plain decimal number as sensors and spreadsheets write it (optional sign, exponent, spaces).
_DECIMAL: Final = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


class ServingError(_ToolkitError):
    """A request the model cannot answer, with its HTTP status and a JSON-able detail.

    In the SageMaker container these derive from the inference toolkit's error base, so the
    container answers with :attr:`status_code` instead of a 500.
    """

    status_code: int = 400
    phrase: str = "Bad Request"
    error: str = "invalid_input"

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.row = row
        self.field = field

    @property
    def detail(self) -> dict[str, Any]:
        """The JSON error body: ``error``, ``message``, ``row`` (0-based) and ``field``."""
        return {"error": self.error, "message": self.message, "row": self.row, "field": self.field}


class InvalidInput(ServingError):
    """The body cannot be parsed, or a row holds a missing, extra or implausible value."""


class UnsupportedMediaType(ServingError):
    """The request's content type is not one of :data:`SUPPORTED_CONTENT_TYPES`."""

    status_code = 415
    phrase = "Unsupported Media Type"
    error = "unsupported_media_type"


class NotAcceptable(ServingError):
    """No media type the client accepts is one of :data:`SUPPORTED_CONTENT_TYPES`."""

    status_code = 406
    phrase = "Not Acceptable"
    error = "not_acceptable"


class PayloadTooLarge(ServingError):
    """The request body exceeds :data:`MAX_PAYLOAD_BYTES`."""

    status_code = 413
    phrase = "Payload Too Large"
    error = "payload_too_large"


def _row_error(row: int, field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"row {row}, field {field}: {problem}", row=row, field=field)


def media_type(header: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (lower case, parameters dropped)."""
    if not header:
        return ""
    return header.partition(";")[0].strip().lower()


def check_content_type(header: str | None) -> str:
    """The supported media type a ``Content-Type`` header names, or :class:`UnsupportedMediaType`.

    Parameters are accepted as long as a ``charset`` is UTF-8 (or ASCII).
    """
    if header in SUPPORTED_CONTENT_TYPES:  # the common case, without parsing
        return header  # type: ignore[return-value]
    media, _, parameters = (header or "").partition(";")
    media = media.strip().lower()
    if media not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {header!r} is not supported; send one of {list(SUPPORTED_CONTENT_TYPES)}"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in SUPPORTED_CHARSETS:
                raise UnsupportedMediaType(
                    f"charset {charset!r} is not supported; send UTF-8 ({header!r})"
                )
    return media


def negotiate_accept(accept: str | None, content_type: str | None = None) -> str:
    """The response media type for an ``Accept`` header, or :class:`NotAcceptable`.

    ``*/*`` or no header gives the request type's natural answer (CSV for CSV, JSON for JSON;
    :data:`DEFAULT_ACCEPT` when ``content_type`` is not a supported type). Lists and ``q`` values
    (``application/json;q=0.9, text/csv``) are honoured; ``text/*`` means CSV, ``application/*``
    JSON.
    """
    natural = media_type(content_type)
    if natural not in SUPPORTED_CONTENT_TYPES:
        natural = DEFAULT_ACCEPT
    if not accept or accept == "*/*":
        return natural
    if accept in SUPPORTED_CONTENT_TYPES:
        return accept
    candidates = []
    for position, item in enumerate(accept.split(",")):
        media, _, parameters = item.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 1.0
        if quality > 0:
            candidates.append((-quality, position, media.strip().lower()))
    wildcards = {"*/*": natural, "text/*": CSV_CONTENT_TYPE, "application/*": JSON_CONTENT_TYPE}
    for _, _, media in sorted(candidates):
        if media in SUPPORTED_CONTENT_TYPES:
            return media
        if media in wildcards:
            return wildcards[media]
    raise NotAcceptable(
        f"cannot answer in any of {accept!r}; accepted: {list(SUPPORTED_CONTENT_TYPES)} or */*"
    )


def _decode(body: bytes | bytearray | memoryview | str) -> str:
    if isinstance(body, str):
        return body
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the body is not UTF-8 text: {error}") from None
    return text[1:] if text.startswith("\ufeff") else text


def _number(row: int, column: str, value: Any, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if not low <= value <= high:  # also false for NaN
        raise _row_error(row, column, f"{value!r} is outside the plausible range [{low}, {high}]")
    return value


def _product_type(row: int, value: Any) -> str:
    if not isinstance(value, str) or value not in _PRODUCT_TYPES:
        raise _row_error(row, "type", f"{value!r} is not a product type {list(PRODUCT_TYPES)}")
    return value


@dataclasses.dataclass(frozen=True)
class Readings:
    """Validated readings of one request, column by column (what :func:`input_fn` frames)."""

    types: list[str]
    #: One list per numeric reading, in ``READING_COLUMNS[1:]`` order.
    columns: tuple[list[float], ...]

    def __len__(self) -> int:
        return len(self.types)


def _parse_csv(text: str) -> Readings:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # LF, CRLF or CR rows
    while lines and not lines[-1].strip():  # the final line break (and trailing blank lines)
        lines.pop()
    if not lines:
        raise InvalidInput(
            "the body holds no rows; send one CSV row per line: " + ",".join(CSV_FIELDS)
        )
    types: list[str] = []
    columns: list[list[float]] = [[] for _ in _NUMERIC_COLUMNS]
    for row, raw_line in enumerate(lines):
        line = raw_line[:-1] if raw_line.endswith("\r") else raw_line
        fields = next(csv.reader([line], skipinitialspace=True)) if '"' in line else line.split(",")
        if len(fields) != _FIELD_COUNT:
            if len(fields) < _FIELD_COUNT:
                problem = "missing" if line.strip() else "missing (the row is empty)"
                raise _row_error(
                    row,
                    READING_COLUMNS[len(fields)] if line.strip() else READING_COLUMNS[0],
                    f"{problem}: the row has {len(fields) if line.strip() else 0} fields, "
                    f"expected {_FIELD_COUNT}: " + ",".join(CSV_FIELDS),
                )
            raise InvalidInput(
                f"row {row}: {len(fields)} fields, expected {_FIELD_COUNT}: "
                + ",".join(CSV_FIELDS),
                row=row,
            )
        types.append(_product_type(row, fields[0].strip()))
        for index, (column, bounds) in enumerate(zip(_NUMERIC_COLUMNS, _RANGES, strict=True)):
            raw = fields[index + 1]
            # float() alone would also take "29_8.4", "nan" or non-ASCII digits.
            if not _DECIMAL.fullmatch(raw):
                raise _row_error(row, column, f"{raw!r} is not a number")
            value = float(raw)
            columns[index].append(_number(row, column, value, bounds))
    return Readings(types, tuple(columns))


def _parse_json(text: str) -> Readings:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or JSON_INSTANCES_KEY not in payload:
        raise InvalidInput(
            f'the body must be a JSON object {{"{JSON_INSTANCES_KEY}": [...]}}',
            field=JSON_INSTANCES_KEY,
        )
    extra = sorted(set(payload) - {JSON_INSTANCES_KEY})
    if extra:
        raise InvalidInput(
            f"unexpected key {extra[0]!r}: the body holds only {JSON_INSTANCES_KEY!r}",
            field=extra[0],
        )
    return readings_from_instances(payload[JSON_INSTANCES_KEY])


def readings_from_instances(instances: Any) -> Readings:
    """Validates a list of reading objects (the ``instances`` of a JSON request)."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(
            f"{JSON_INSTANCES_KEY!r} must be a non-empty list of readings",
            field=JSON_INSTANCES_KEY,
        )
    types: list[str] = []
    columns: list[list[float]] = [[] for _ in _NUMERIC_COLUMNS]
    for row, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput(
                f"row {row}: an instance must be an object with {list(READING_COLUMNS)}", row=row
            )
        if instance.keys() != _READING_KEYS:
            missing = [column for column in READING_COLUMNS if column not in instance]
            if missing:
                raise _row_error(row, missing[0], "missing")
            unexpected = sorted(str(key) for key in instance if key not in _READING_KEYS)
            raise _row_error(
                row, unexpected[0], f"unexpected field; expected only {list(READING_COLUMNS)}"
            )
        types.append(_product_type(row, instance["type"]))
        for index, (column, bounds) in enumerate(zip(_NUMERIC_COLUMNS, _RANGES, strict=True)):
            value = instance[column]
            if type(value) not in (int, float):  # bool is an int; "298.4" is not a number
                raise _row_error(row, column, f"{value!r} is not a number")
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
            columns[index].append(_number(row, column, number, bounds))
    return Readings(types, tuple(columns))


def parse_readings(
    request_body: bytes | bytearray | memoryview | str, request_content_type: str | None
) -> Readings:
    """Parses and validates a request body; :func:`input_fn` without the frame."""
    content_type = check_content_type(request_content_type)
    if len(request_body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the body has {len(request_body):,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}"
        )
    text = _decode(request_body)
    return _parse_csv(text) if content_type == CSV_CONTENT_TYPE else _parse_json(text)
