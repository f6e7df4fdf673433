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

from predictive_maintenance.schema import (
    ID_COLUMNS,
    PRODUCT_TYPES,
    RAW_COLUMNS,
    RAW_TO_COLUMN,
    READING_COLUMNS,
    READING_RANGES,
)
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    CSV_FIELDS,
    DEFAULT_ACCEPT,
    EXPLAIN_KEY,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MAX_EXPLAINED_ROWS,
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
DECIMAL_NUMBER: Final = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


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
        """The JSON error body: ``error``, ``message``, ``row`` and ``field``.

        ``row``: a CSV body's line (first line = 1), a JSON list's index (0-based), or None.
        """
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


class ExplainTooLarge(PayloadTooLarge):
    """More readings to explain than one answer can hold (413)."""

    error = "too_many_readings"


def check_explained_rows(rows: int) -> None:
    """:class:`ExplainTooLarge`, naming ``explain``, for more than
    :data:`~.contract.MAX_EXPLAINED_ROWS` readings to explain (the endpoint and the API)."""
    if rows > MAX_EXPLAINED_ROWS:
        raise ExplainTooLarge(
            f"{EXPLAIN_KEY!r}: {rows:,} readings to explain; at most {MAX_EXPLAINED_ROWS:,} per "
            "request (the answer must fit a 6 MB response): split the request",
            field=EXPLAIN_KEY,
        )


def row_error(row: int | None, where: str | None, field: str, problem: str) -> InvalidInput:
    prefix = f"{where}, field {field}" if where else f"field {field}"
    return InvalidInput(f"{prefix}: {problem}", row=row, field=field)


#: RFC 9110 optional whitespace: SP and HTAB only (``str.strip()`` would also drop a no-break
#: space, and ``str.lower()`` would fold non-ASCII letters into ASCII ones).
_OWS: Final = " \t"
_TOKEN: Final = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"'
_MEDIA: Final = re.compile(rf"({_TOKEN}/{_TOKEN})[ \t]*", re.ASCII)
_PARAMETER: Final = re.compile(rf";[ \t]*(?:({_TOKEN})=({_TOKEN}|{_QUOTED}))?[ \t]*", re.ASCII)
#: Visible ASCII, space and tab: all a header value may hold here (obs-text is refused).
_HEADER_TEXT: Final = re.compile(r"[\t\x20-\x7e]*")


def check_content_type(
    header: str | None,
    accepted: tuple[str, ...] = SUPPORTED_CONTENT_TYPES,
    *,
    default: str | None = None,
) -> str:
    """The media type a ``Content-Type`` header names, or :class:`UnsupportedMediaType` (415).

    The one parser of the header for the endpoint, the SageMaker handlers and the HTTP API, so
    all three accept and refuse the same values with the same message. ``accepted``: the media
    types the caller takes (the API also takes ``text/plain``); ``default``: the type of a
    request without the header (the endpoint has none: 415). The header is RFC 9110's
    ``type/subtype *(OWS ";" OWS parameter)`` with OWS only spaces and tabs; a character other
    than visible ASCII, space or tab (a no-break space, say) is refused naming the header. A
    ``charset`` parameter must be UTF-8 (``utf-8`` or ``utf8``, any case, quoted or not);
    other parameters are ignored.
    """
    if header in accepted:  # the common case, without parsing
        return header  # type: ignore[return-value]
    if header is None or not header.strip(_OWS):
        if default is not None:
            return default
        raise UnsupportedMediaType(
            f"content type {header!r} is not supported; send one of {list(accepted)}"
        )
    if not _HEADER_TEXT.fullmatch(header):
        bad = next(char for char in header if not _HEADER_TEXT.fullmatch(char))
        raise UnsupportedMediaType(
            f"the Content-Type header {header!r} holds {bad!r}; only visible ASCII, spaces and "
            "tabs are allowed"
        )
    value = header.strip(_OWS)
    media = _MEDIA.match(value)
    if media is None or media.group(1).lower() not in accepted:
        raise UnsupportedMediaType(
            f"content type {header!r} is not supported; send one of {list(accepted)}"
        )
    position = media.end()
    while position < len(value):
        parameter = _PARAMETER.match(value, position)
        if parameter is None or parameter.end() == position:
            raise UnsupportedMediaType(
                f"the Content-Type header {header!r} is malformed at {value[position:]!r}"
            )
        name, raw = parameter.group(1, 2)
        if name is not None and name.lower() == "charset":
            charset = raw[1:-1].replace("\\", "") if raw.startswith('"') else raw
            if charset.lower() not in SUPPORTED_CHARSETS:
                raise UnsupportedMediaType(
                    f"charset {charset!r} is not supported; send UTF-8 ({header!r})"
                )
        position = parameter.end()
    return media.group(1).lower()


def negotiate_accept(accept: str | None, content_type: str | None = None) -> str:
    """The response media type for an ``Accept`` header, or :class:`NotAcceptable`.

    ``*/*`` or no header gives the request type's natural answer (CSV for CSV, JSON for JSON;
    :data:`DEFAULT_ACCEPT` when ``content_type`` is not a supported type). Lists and ``q`` values
    (``application/json;q=0.9, text/csv``) are honoured; ``text/*`` means CSV, ``application/*``
    JSON.
    """
    try:
        natural = check_content_type(content_type)
    except UnsupportedMediaType:
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


def range_problem(value: float, bounds: tuple[float, float]) -> str:
    return f"{value!r} is outside the plausible range [{bounds[0]}, {bounds[1]}]"


def type_problem(value: Any) -> str:
    return f"{value!r} is not a product type {list(PRODUCT_TYPES)}"


@dataclasses.dataclass(frozen=True)
class Readings:
    """Validated readings of one request, column by column (what :func:`input_fn` frames)."""

    types: list[str]
    #: One list per numeric reading, in ``READING_COLUMNS[1:]`` order.
    columns: tuple[list[float], ...]
    #: CSV bodies: the line of each reading in the body (first line = 1, as a spreadsheet
    #: numbers its rows; a header is line 1). Empty for JSON bodies.
    lines: list[int] = dataclasses.field(default_factory=list)
    #: Identifiers a CSV file carried (the data set's ``udi`` and ``product_id`` columns), as
    #: written, by column.
    ids: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    #: A JSON request asked for explanations (``"explain": true``).
    explain: bool = False

    def __len__(self) -> int:
        return len(self.types)


# ---- CSV ---------------------------------------------------------------------------------------
# One parser for every CSV body. The endpoint takes the SageMaker container's contract (rows of
# the six readings in the workshop's order, no header line: ``files=False``); the HTTP API also
# takes files as people save them (``files=True``): a header line naming the columns in any
# order, the data set's own 14-column layout, blank lines. Either way an error names the line
# as a spreadsheet or an editor numbers it.


def normalised_name(name: str) -> str:
    """``"Air temperature [K]"``, ``"air_temperature_k"`` -> ``"airtemperaturek"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


#: Column names a header may use (normalised: case, spaces, brackets and underscores do not
#: matter) -> column: the data set's names (with or without the unit) and the project's.
HEADER_NAMES: Final = {
    normalised_name(name): column
    for raw, column in RAW_TO_COLUMN.items()
    for name in (raw, re.sub(r"\[[^\]]*\]", "", raw), column)  # "Torque [Nm]", "Torque", ...
}
_DATA_SET_POSITIONS: Final = {column: index for index, column in enumerate(RAW_TO_COLUMN.values())}
_DATA_SET_NAMES: Final = {column: raw for raw, column in RAW_TO_COLUMN.items()}


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where the readings (and ids) are among a line's fields."""

    width: int
    #: Position of ``type``, then of each numeric reading (``READING_COLUMNS`` order).
    positions: tuple[int, ...]
    ids: tuple[tuple[str, int], ...] = ()
    #: What a line of this layout holds, for the message about a line that does not.
    expected: str = ""

    def missing(self, count: int) -> str | None:
        """The first reading a line of ``count`` fields lacks."""
        lacking = [
            (position, column)
            for position, column in zip(self.positions, READING_COLUMNS, strict=True)
            if position >= count
        ]
        return min(lacking)[1] if lacking else None


_ROWS: Final = Layout(
    width=_FIELD_COUNT,
    positions=tuple(range(_FIELD_COUNT)),
    expected=f"{_FIELD_COUNT} fields: " + ",".join(CSV_FIELDS),
)
_FILE_ROWS: Final = dataclasses.replace(
    _ROWS,
    expected=_ROWS.expected
    + f" (or the data set's {len(RAW_COLUMNS)} columns, or a header line naming the columns)",
)
_DATA_SET_ROWS: Final = Layout(
    width=len(RAW_COLUMNS),
    positions=tuple(_DATA_SET_POSITIONS[column] for column in READING_COLUMNS),
    ids=tuple((column, _DATA_SET_POSITIONS[column]) for column in ID_COLUMNS),
    expected=f"{len(RAW_COLUMNS)} fields as in the data set's file: " + ",".join(RAW_COLUMNS),
)


def csv_fields(number: int, line: str) -> list[str]:
    if '"' not in line:  # the common case, ten times faster than the csv module
        return line.split(",")
    try:
        return next(csv.reader([line], skipinitialspace=True))
    except csv.Error as error:
        raise InvalidInput(f"line {number} is not valid CSV: {error}", row=number) from None


def _is_header(fields: list[str]) -> bool:
    """No number and no product type: names, not readings."""
    return fields[0].strip() not in _PRODUCT_TYPES and not any(
        DECIMAL_NUMBER.fullmatch(field) for field in fields
    )


def _check_separator(number: int, line: str) -> None:
    """Semicolons or tabs (often with decimal commas, ``L;298,4;...``) as European exports
    write: say so, rather than that a field is missing."""
    by_semicolon, by_tab = line.count(";") + 1, line.count("\t") + 1
    if (
        ("," not in line and (by_semicolon > 1 or by_tab > 1))
        or by_semicolon >= _FIELD_COUNT
        or by_tab >= _FIELD_COUNT
    ):
        separator = "semicolons" if by_semicolon >= by_tab else "tabs"
        raise InvalidInput(
            f"line {number} separates its values with {separator}; save the file as "
            "comma-separated CSV (with decimal points)",
            row=number,
        )


def _header_layout(number: int, fields: list[str]) -> Layout:
    positions: dict[str, int] = {}
    for position, name in enumerate(fields):
        column = HEADER_NAMES.get(normalised_name(name))
        if column is None:
            continue  # another column (labels, notes...): ignored
        if column in positions:
            raise InvalidInput(
                f"line {number} (the header): columns {positions[column] + 1} and "
                f"{position + 1} both name {column}",
                row=number,
                field=column,
            )
        positions[column] = position
    for column in READING_COLUMNS:
        if column not in positions:
            raise InvalidInput(
                f"line {number} (the header) has no column {_DATA_SET_NAMES[column]} ({column}); "
                "name the columns as the data set (" + ",".join(CSV_FIELDS) + ") or the API "
                "(" + ",".join(READING_COLUMNS) + ") does, or leave out the header line",
                row=number,
                field=column,
            )
    return Layout(
        width=len(fields),
        positions=tuple(positions[column] for column in READING_COLUMNS),
        ids=tuple((column, positions[column]) for column in ID_COLUMNS if column in positions),
        expected=f"{len(fields)} fields as the header (line {number})",
    )


def count_error(number: int, layout: Layout, count: int, empty: bool) -> InvalidInput:
    missing = layout.missing(0 if empty else count)
    if count < layout.width and missing is not None:
        problem = "missing (the line is empty)" if empty else "missing"
        return row_error(
            number,
            f"line {number}",
            missing,
            f"{problem}: the line has {0 if empty else count} fields, expected {layout.expected}",
        )
    return InvalidInput(f"line {number}: {count} fields, expected {layout.expected}", row=number)


def file_layout(lines: list[str], first: int, *, files: bool) -> tuple[Layout, int]:
    """The layout of the lines, from the first one; and the index of the first reading."""
    number = first + 1
    if not lines[first].strip():  # an empty first row: the endpoint's loop says it is missing
        return _ROWS, first
    _check_separator(number, lines[first])
    fields = csv_fields(number, lines[first])
    if not _is_header(fields):
        if files and len(fields) == _DATA_SET_ROWS.width:
            return _DATA_SET_ROWS, first
        return (_FILE_ROWS if files else _ROWS), first
    if not files:
        raise InvalidInput(
            f"line {number} is a header line; the endpoint takes rows without one, "
            f"{_ROWS.expected} (the HTTP API, POST /predict, takes files with a header)",
            row=number,
        )
    layout = _header_layout(number, fields)
    if not any(line.strip(" \t,") for line in lines[first + 1 :]):
        raise InvalidInput(f"the body holds a header (line {number}) but no readings", row=number)
    return layout, first + 1


def _parse_csv(text: str, *, files: bool) -> Readings:
    """The readings of a CSV body. ``files``: also what the API takes (a header line, the data
    set's layout, blank lines), besides the endpoint's rows."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # LF, CRLF or CR
    while lines and not lines[-1].strip():  # the final line break (and trailing blank lines)
        lines.pop()
    # A file may hold blank lines (or a spreadsheet's ",,,,," rows); the endpoint's rows may not.
    first = next((i for i, line in enumerate(lines) if line.strip(" \t,")), None) if files else 0
    if not lines or first is None:
        raise InvalidInput(
            "the body holds no rows; send one CSV row per line: " + ",".join(CSV_FIELDS)
        )
    layout, start = file_layout(lines, first, files=files)
    types: list[str] = []
    columns: tuple[list[float], ...] = tuple([] for _ in _NUMERIC_COLUMNS)
    numbers: list[int] = []
    ids: dict[str, list[str]] = {column: [] for column, _ in layout.ids}
    type_position, *positions = layout.positions
    checks = tuple(zip(_NUMERIC_COLUMNS, _RANGES, positions, columns, strict=True))
    for index in range(start, len(lines)):
        line = lines[index]
        if files and not line.strip(" \t,"):
            continue
        number = index + 1
        fields = csv_fields(number, line)
        if len(fields) != layout.width:
            raise count_error(number, layout, len(fields), not line.strip())
        kind = fields[type_position].strip()
        if kind not in _PRODUCT_TYPES:
            raise row_error(number, f"line {number}", "type", type_problem(kind))
        for column, bounds, position, values in checks:
            raw = fields[position]
            # float() alone would also take "29_8.4", "nan" or non-ASCII digits.
            if not DECIMAL_NUMBER.fullmatch(raw):
                raise row_error(number, f"line {number}", column, f"{raw!r} is not a number")
            value = float(raw)
            if not bounds[0] <= value <= bounds[1]:
                raise row_error(number, f"line {number}", column, range_problem(value, bounds))
            values.append(value)
        types.append(kind)
        numbers.append(number)
        for column, position in layout.ids:
            ids[column].append(fields[position].strip())
    return Readings(types, columns, numbers, ids)


# ---- JSON --------------------------------------------------------------------------------------
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (``json`` would keep the last one silently)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise InvalidInput(
                f"the key {key!r} appears twice in a JSON object; send each key once", field=key
            )
        obj[key] = value
    return obj


def load_json(body: bytes | bytearray | memoryview | str) -> Any:
    """A request body as JSON (UTF-8, an optional BOM); :class:`InvalidInput` if it is not valid
    JSON or an object repeats a key (naming it). The endpoint and the HTTP API both read with it.
    """
    text = _decode(body)
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except InvalidInput:
        raise
    except (ValueError, RecursionError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from None


def _parse_json(text: str) -> Readings:
    payload = load_json(text)
    if not isinstance(payload, dict) or JSON_INSTANCES_KEY not in payload:
        raise InvalidInput(
            f'the body must be a JSON object {{"{JSON_INSTANCES_KEY}": [...]}}',
            field=JSON_INSTANCES_KEY,
        )
    return readings_from_request(payload)


def readings_from_request(payload: dict[str, Any]) -> Readings:
    """``{"instances": [...], "explain": true}`` (``explain`` optional): its readings, marked
    to be explained as asked. The endpoint's JSON body, and the API's."""
    extra = sorted(set(payload) - {JSON_INSTANCES_KEY, EXPLAIN_KEY})
    if extra:
        raise InvalidInput(
            f"unexpected key {extra[0]!r}: the body holds only {JSON_INSTANCES_KEY!r} and "
            f"optionally {EXPLAIN_KEY!r}",
            field=extra[0],
        )
    # A JSON body's flag is a JSON boolean: the text forms are for query strings only.
    flag = payload.get(EXPLAIN_KEY, False)
    if not isinstance(flag, bool):
        raise InvalidInput(
            f"{EXPLAIN_KEY!r} must be true or false, not {flag!r}", field=EXPLAIN_KEY
        )
    readings = readings_from_instances(payload[JSON_INSTANCES_KEY])
    return dataclasses.replace(readings, explain=True) if flag else readings


def explain_flag(value: Any) -> bool:
    """The ``explain`` opt-in: a JSON request's ``true``/``false`` (a bool, nothing else), or a
    query parameter's text ``true``, ``false``, ``1`` or ``0`` (any case); anything else is
    :class:`InvalidInput` naming the field."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("true", "1", "false", "0"):
            return text in ("true", "1")
        expected = "true or false (or 1 or 0)"
    else:
        expected = "true or false"
    raise InvalidInput(f"{EXPLAIN_KEY!r} must be {expected}, not {value!r}", field=EXPLAIN_KEY)


def readings_from_instances(instances: Any, key: str | None = JSON_INSTANCES_KEY) -> Readings:
    """Validates a list of reading objects: the ``instances`` of a JSON request.

    An error names the reading as JSON tools show it, ``instances[2]`` (0-based; ``row`` is that
    index), or ``[2]`` with ``key=""`` (a bare list); ``key=None``: ``instances`` holds one
    reading that was sent alone, and errors name only the field (``row`` is None).
    """
    if not isinstance(instances, list) or not instances:
        if key:
            raise InvalidInput(f"{key!r} must be a non-empty list of readings", field=key)
        raise InvalidInput("the body must hold at least one reading")
    types: list[str] = []
    columns: list[list[float]] = [[] for _ in _NUMERIC_COLUMNS]
    for index, instance in enumerate(instances):
        row, where = (None, None) if key is None else (index, f"{key}[{index}]")
        if not isinstance(instance, dict):
            raise InvalidInput(
                f"{where or 'the body'}: a reading must be an object with {list(READING_COLUMNS)}",
                row=row,
            )
        if instance.keys() != _READING_KEYS:
            missing = [column for column in READING_COLUMNS if column not in instance]
            if missing:
                raise row_error(row, where, missing[0], "missing")
            unexpected = sorted(str(name) for name in instance if name not in _READING_KEYS)
            raise row_error(
                row,
                where,
                unexpected[0],
                f"unexpected field; expected only {list(READING_COLUMNS)}",
            )
        kind = instance["type"]
        if not isinstance(kind, str) or kind not in _PRODUCT_TYPES:
            raise row_error(row, where, "type", type_problem(kind))
        types.append(kind)
        for column, bounds, values in zip(_NUMERIC_COLUMNS, _RANGES, columns, strict=True):
            value = instance[column]
            if type(value) not in (int, float):  # bool is an int; "298.4" is not a number
                raise row_error(row, where, column, f"{value!r} is not a number")
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
            if not bounds[0] <= number <= bounds[1]:  # also false for NaN
                raise row_error(row, where, column, range_problem(number, bounds))
            values.append(number)
    return Readings(types, tuple(columns))


def parse_readings(
    request_body: bytes | bytearray | memoryview | str,
    request_content_type: str | None,
    *,
    files: bool = False,
) -> Readings:
    """Parses and validates a request body; :func:`input_fn` without the frame.

    ``text/csv``: rows of the six readings in the workshop's order (:data:`CSV_FIELDS`), no
    header line, as the SageMaker XGBoost container takes them. ``files=True`` (the HTTP API)
    also takes CSV files as people save them: a header line naming the columns (the data set's
    names or the JSON fields, any order, other columns ignored), the data set's 14 columns
    without a header, blank lines. Errors name the line in the file (first line = 1).
    ``application/json``: ``{"instances": [...]}``; errors name ``instances[i]`` (0-based).
    """
    content_type = check_content_type(request_content_type)
    if len(request_body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the body has {len(request_body):,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}"
        )
    text = _decode(request_body)
    if content_type == CSV_CONTENT_TYPE:
        return _parse_csv(text, files=files)
    return _parse_json(text)
