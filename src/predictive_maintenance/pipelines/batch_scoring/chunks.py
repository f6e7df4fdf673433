"""One chunk of a batch file -> validated readings, ids and line numbers, and the rejected rows.

The rules are the endpoint's and the HTTP API's (:mod:`predictive_maintenance.serving.requests`),
applied to a whole column at once with pyarrow instead of line by line in Python, so that a
million rows take a second, not a minute:

- a CSV file is what the API takes (``files=True``): a header line naming the columns in any
  order (the data set's names or the JSON fields; other columns ignored), the data set's own
  14 columns without a header, or the endpoint's six readings per line; blank lines (and a
  spreadsheet's ``,,,,,`` rows) are skipped; a line with a quote is split by the ``csv`` module,
  the others at commas, as the endpoint splits them;
- the product type, stripped of spaces, is one of ``PRODUCT_TYPES``; a number is a plain decimal
  as the endpoint's pattern takes it (``DECIMAL_NUMBER``: no ``nan``, ``inf``, ``1_000``), within
  ``READING_RANGES`` (inclusive);
- a bad row's reason is the endpoint's own message for it, naming the line (CSV, first line = 1)
  or the row (Parquet, first row = 1) and the field; the first problem in the endpoint's order
  (field count, type, then each reading in order) is the one named.

``tests/pipelines/test_batch_scoring.py`` checks these decisions and messages against
``parse_readings`` line by line.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from predictive_maintenance.features import TYPE_CODES
from predictive_maintenance.schema import ID_COLUMNS, READING_COLUMNS, READING_RANGES
from predictive_maintenance.serving.requests import (
    DECIMAL_NUMBER,
    HEADER_NAMES,
    InvalidInput,
    Layout,
    count_error,
    csv_fields,
    file_layout,
    normalised_name,
    range_problem,
    row_error,
    type_problem,
)

if TYPE_CHECKING:
    import pyarrow as pa

NUMERIC_COLUMNS: Final = READING_COLUMNS[1:]
#: The endpoint's number pattern for RE2 (pyarrow): Python's ASCII ``\s`` also matches ``\v``,
#: RE2's does not; anchored, as ``fullmatch``.
NUMBER_PATTERN: Final = "^" + DECIMAL_NUMBER.pattern.replace(r"\s", r"[ \t\n\r\f\v]") + "$"
_ASCII_SPACE: Final = " \t\n\r\f\v"
#: Columns of the rejects file.
REJECT_COLUMNS: Final = ("line", "field", "reason")


class BatchInputError(ValueError):
    """The file as a whole cannot be scored (its header, or a Parquet column of the wrong type)."""


@dataclasses.dataclass(frozen=True)
class Columns:
    """Where the readings and ids are: CSV field positions, or Parquet column names."""

    readings: tuple[Any, ...]  # READING_COLUMNS order
    ids: tuple[tuple[str, Any], ...]  # (id column, position or name)
    layout: Layout | None = None  # CSV only
    #: CSV: lines before this one (a header, blank lines) are not readings.
    first_line: int = 1


@dataclasses.dataclass
class ValidChunk:
    """The readings of a chunk's good rows, ready for the model, and the chunk's rejects."""

    lines: np.ndarray
    ids: dict[str, pa.Array]
    type_code: np.ndarray
    numbers: list[np.ndarray]
    rejects: list[tuple[int, str | None, str]]
    blank: int = 0

    def __len__(self) -> int:
        return len(self.lines)


# ---- Layout ------------------------------------------------------------------------------------
def csv_columns(first_lines: list[tuple[int, str]]) -> Columns | None:
    """The layout of a CSV file from its first two non-blank lines ``(line, text)``, as the API
    reads a file; None when there is no such line."""
    if not first_lines:
        return None
    number, text = first_lines[0]
    # A header alone (a file without readings) is checked against a copy of itself as the line
    # after it, so that a bad header is still an error naming it.
    following = first_lines[1][1] if len(first_lines) > 1 else text
    try:
        layout, start = file_layout([text, following], 0, files=True)
    except InvalidInput as error:
        raise BatchInputError(_renumbered(str(error), number)) from None
    return Columns(
        readings=layout.positions,
        ids=layout.ids,
        layout=layout,
        first_line=number + start,
    )


def parquet_columns(names: list[str], where: str) -> Columns:
    """The readings and ids among a Parquet file's columns, named as a CSV header may name them."""
    found: dict[str, str] = {}
    for name in names:
        column = HEADER_NAMES.get(normalised_name(name))
        if column is None:
            continue
        if column in found:
            raise BatchInputError(
                f"{where}: columns {found[column]!r} and {name!r} both name {column}"
            )
        found[column] = name
    missing = [column for column in READING_COLUMNS if column not in found]
    if missing:
        raise BatchInputError(
            f"{where} has no column {missing[0]}; it needs {list(READING_COLUMNS)} (or the data "
            f"set's names for them), and may have {list(ID_COLUMNS)}; its columns are {names}"
        )
    return Columns(
        readings=tuple(found[column] for column in READING_COLUMNS),
        ids=tuple((column, found[column]) for column in ID_COLUMNS if column in found),
    )


def _renumbered(message: str, line: int) -> str:
    """A message about the first line of a two-line body, about ``line`` of the file."""
    return message.replace("line 1", f"line {line}", 1) if line != 1 else message


def blank_lines(text: pa.Array) -> pa.Array:
    """Where a line is blank: nothing but spaces, tabs and commas (skipped, as the API does)."""
    import pyarrow.compute as pc  # noqa: PLC0415

    return pc.match_substring_regex(text, r"^[ \t,]*$")


# ---- Validation --------------------------------------------------------------------------------
def csv_chunk(table: pa.Table, columns: Columns) -> ValidChunk:
    """Splits a chunk of CSV lines (``line``, ``text``) into fields and validates them."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    layout = columns.layout
    assert layout is not None
    lines = table.column("line").combine_chunks()
    text = table.column("text").combine_chunks()
    keep = pc.greater_equal(lines, columns.first_line)
    blank = blank_lines(text)
    blank_count = pc.sum(pc.and_(keep, blank)).as_py() or 0
    keep = pc.and_(keep, pc.invert(blank))
    lines, text = lines.filter(keep), text.filter(keep)

    rejects: list[tuple[int, str | None, str]] = []
    quoted = pc.match_substring(text, '"').to_numpy(zero_copy_only=False)
    if quoted.any():
        fields, parsed = _fields_with_quotes(lines, text, quoted, rejects)
        lines = lines.filter(pa.array(parsed))
    else:
        fields = pc.split_pattern(text, ",")
    line_numbers = lines.to_numpy()

    counts = pc.list_value_length(fields).to_numpy()
    width_ok = counts == layout.width
    if not width_ok.all():
        for index in np.flatnonzero(~width_ok):
            number = int(line_numbers[index])
            error = count_error(number, layout, int(counts[index]), empty=False)  # no blank line
            rejects.append((number, error.field, error.message))
        fields = fields.filter(pa.array(width_ok))
        line_numbers = line_numbers[width_ok]

    values = {
        column: pc.list_element(fields, position)
        for column, position in zip(READING_COLUMNS, columns.readings, strict=True)
    }
    ids = {
        column: pc.utf8_trim_whitespace(pc.list_element(fields, position))
        for column, position in columns.ids
    }
    return _validated(line_numbers, values, ids, rejects, unit="line", blank=blank_count)


def _fields_with_quotes(
    lines: pa.Array, text: pa.Array, quoted: np.ndarray, rejects: list[tuple[int, str | None, str]]
) -> tuple[pa.Array, list[bool]]:
    """The fields of every line: lines with a quote through the ``csv`` module, as the endpoint
    does; a line that is not valid CSV is rejected (``parsed`` false)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    plain = np.flatnonzero(~quoted)
    split = pc.split_pattern(text.take(pa.array(plain)), ",")
    parsed = [True] * len(text)
    quoted_fields, quoted_rows = [], []
    for index in np.flatnonzero(quoted):
        number = lines[index].as_py()
        try:
            quoted_fields.append(csv_fields(number, text[index].as_py()))
            quoted_rows.append(index)
        except InvalidInput as error:
            rejects.append((number, error.field, error.message))
            parsed[index] = False
    extra = pa.array(quoted_fields, split.type)
    order = np.argsort(np.concatenate([plain, np.array(quoted_rows, dtype=np.int64)]))
    return pa.concat_arrays([split, extra]).take(pa.array(order)), parsed


def parquet_chunk(table: pa.Table, columns: Columns, where: str) -> ValidChunk:
    """Validates a chunk of a Parquet file: text columns as CSV fields, numbers as numbers."""
    import pyarrow.compute as pc  # noqa: PLC0415

    values = {}
    for column, name in zip(READING_COLUMNS, columns.readings, strict=True):
        array = table.column(name).combine_chunks()
        if _is_dictionary(array):
            array = array.dictionary_decode()
        values[column] = _checked_type(array, column, name, where)
    ids = {column: pc.cast(table.column(name), "large_string") for column, name in columns.ids}
    lines = table.column("line").to_numpy()
    return _validated(lines, values, ids, [], unit="row", blank=0)


def _is_dictionary(array: pa.Array) -> bool:
    import pyarrow as pa  # noqa: PLC0415

    return pa.types.is_dictionary(array.type)


def _checked_type(array: pa.Array, column: str, name: str, where: str) -> pa.Array:
    import pyarrow as pa  # noqa: PLC0415

    kind = array.type
    text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    number = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    if text or (number and column != "type"):
        return array
    expected = "text (L, M or H)" if column == "type" else "numbers or text"
    raise BatchInputError(f"{where}: column {name!r} holds {kind}; {column} must be {expected}")


def _validated(
    line_numbers: np.ndarray,
    values: dict[str, pa.Array],
    ids: dict[str, pa.Array],
    rejects: list[tuple[int, str | None, str]],
    *,
    unit: str,
    blank: int,
) -> ValidChunk:
    """Checks each reading column at once; names the first problem of every bad row."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    kinds = values["type"]
    if pa.types.is_string(kinds.type) or pa.types.is_large_string(kinds.type):
        kinds = pc.utf8_trim_whitespace(kinds)
    type_index = pc.index_in(kinds, value_set=pa.array(list(TYPE_CODES))).to_numpy(
        zero_copy_only=False
    )
    type_ok = ~np.isnan(type_index.astype(np.float64))
    checks: list[tuple[str, np.ndarray, np.ndarray]] = []
    numbers = []
    for column in NUMERIC_COLUMNS:
        number, is_number = _numbers(values[column])
        low, high = READING_RANGES[column]
        with np.errstate(invalid="ignore"):
            in_range = (number >= low) & (number <= high)
        numbers.append(number)
        checks.append((column, is_number, in_range))
    good = type_ok.copy()
    for _, is_number, in_range in checks:
        good &= is_number & in_range

    for index in np.flatnonzero(~good):
        number = int(line_numbers[index])
        where = f"{unit} {number}"
        if not type_ok[index]:
            kind = kinds[index].as_py()
            problem = "missing" if kind is None else type_problem(kind)
            rejects.append(_reject(number, where, "type", problem))
            continue
        for (column, is_number, in_range), array in zip(checks, numbers, strict=True):
            raw = values[column][index].as_py()
            if raw is None:
                rejects.append(_reject(number, where, column, "missing"))
                break
            if not is_number[index]:
                rejects.append(_reject(number, where, column, f"{raw!r} is not a number"))
                break
            if not in_range[index]:
                bounds = READING_RANGES[column]
                rejects.append(
                    _reject(number, where, column, range_problem(float(array[index]), bounds))
                )
                break

    codes = np.array(list(TYPE_CODES.values()), dtype=np.float64)
    mask = pa.array(good)
    return ValidChunk(
        lines=line_numbers[good],
        ids={column: array.filter(mask) for column, array in ids.items()},
        type_code=codes[type_index[good].astype(np.intp)],
        numbers=[np.ascontiguousarray(number[good]) for number in numbers],
        rejects=rejects,
        blank=blank,
    )


def _reject(number: int, where: str, field: str, problem: str) -> tuple[int, str, str]:
    return number, field, row_error(number, where, field, problem).message


def _numbers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """float64 values (NaN where there is none) and where a value is a number at all."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        is_number = pc.fill_null(pc.match_substring_regex(array, NUMBER_PATTERN), False)
        text = pc.utf8_trim(pc.if_else(is_number, array, pa.scalar(None, array.type)), _ASCII_SPACE)
        number = pc.cast(text, pa.float64())
    else:  # a null is missing; NaN is a number outside every range, as in a JSON request
        number = pc.cast(array, pa.float64())
        is_number = pc.is_valid(array)
    values = np.asarray(number.to_numpy(zero_copy_only=False), dtype=np.float64)
    return values, np.asarray(is_number.to_numpy(zero_copy_only=False), dtype=bool)
