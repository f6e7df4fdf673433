"""Parsing and validation of the raw AI4I 2020 CSV.

Parsing is strict (exact header, same number of fields on every line) so that a truncated file or a
wrong delimiter is reported as such instead of turning into silent NaNs. Content rules live in the
pandera schema :data:`READINGS_SCHEMA`. Every error names the column and the first offending CSV
lines (line 1 is the header, so data row ``i`` is on line ``i + 2``).
"""

from __future__ import annotations

import csv
import io
from typing import Final

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from predictive_maintenance.schema import (
    FAILURE_MODE_COLUMNS,
    PRODUCT_TYPES,
    RAW_COLUMNS,
    RAW_TO_COLUMN,
    READING_RANGES,
    TARGET_COLUMN,
)

_MAX_EXAMPLES: Final = 5
_COLUMN_TO_RAW: Final = {column: raw for raw, column in RAW_TO_COLUMN.items()}


class RawDataError(ValueError):
    """The raw data cannot be parsed or breaks the schema."""


def _line(row_index: object) -> str:
    return f"line {int(row_index) + 2}" if isinstance(row_index, int) else f"row {row_index}"


def _plain_header(raw_csv: bytes) -> list[str] | None:
    """The header's names if it names the raw columns and the file has no quotes, else None."""
    # pyarrow takes a quoted value across lines even with newlines_in_values=False (a speed
    # hint, not a check), which would shift every later line number: quotes take the strict path.
    if b'"' in raw_csv:
        return None
    end = raw_csv.find(b"\n")
    try:
        first_line = (raw_csv if end < 0 else raw_csv[:end]).decode("utf-8-sig").rstrip("\r")
        header = [name.strip() for name in next(csv.reader([first_line]))]
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return None
    if len(header) != len(RAW_COLUMNS) or set(header) != set(RAW_COLUMNS):
        return None
    return header


def _parse_with_arrow(raw_csv: bytes) -> pd.DataFrame | None:
    """The file read by pyarrow's CSV reader, numeric columns typed as :data:`READINGS_SCHEMA`
    says, or ``None`` if it is anything but well formed with numbers where numbers belong (the
    strict parser then finds and names the problem).

    Python's csv module and a frame built from its lists take ~15 s and ~1 GB for 1M rows; this
    takes about a second and the size of the data.
    """
    import pyarrow as pa  # noqa: PLC0415 -- pandas' own parquet engine, already a dependency
    import pyarrow.compute as pa_compute  # noqa: PLC0415
    import pyarrow.csv as pa_csv  # noqa: PLC0415

    header = _plain_header(raw_csv)
    if header is None:
        return None
    types = {}
    for raw_name in header:
        dtype = READINGS_SCHEMA.columns[RAW_TO_COLUMN[raw_name]].dtype.type
        numeric = pd.api.types.is_numeric_dtype(dtype)
        types[raw_name] = pa.from_numpy_dtype(np.dtype(dtype)) if numeric else pa.string()
    try:
        table = pa_csv.read_csv(
            io.BytesIO(raw_csv),
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1),
            # A record is one physical line; a blank line is a record of one field: both are
            # errors here, so the strict parser can report them.
            parse_options=pa_csv.ParseOptions(newlines_in_values=False, ignore_empty_lines=False),
            # No value means "missing": an empty or "NA" reading fails to convert.
            convert_options=pa_csv.ConvertOptions(
                column_types=types, null_values=[], strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows == 0:
        return None
    for raw_name, column_type in types.items():
        # "nan" converts to a float; it is a missing reading, for the strict path to name.
        if (
            pa.types.is_floating(column_type)
            and pa_compute.any(pa_compute.is_nan(table[raw_name])).as_py()
        ):
            return None
    return table.select(list(RAW_COLUMNS)).to_pandas().rename(columns=RAW_TO_COLUMN)


def parse_raw_csv(raw_csv: bytes) -> pd.DataFrame:
    """Parses the raw CSV into a frame of strings with the project's column names.

    Args:
        raw_csv: The file's bytes (UTF-8, optional BOM, LF or CRLF line ends).

    Returns:
        One row per data line. The values are strings, which :func:`validate_readings` types,
        except when pyarrow could read every numeric column as its type: then those columns
        are numbers already (the same numbers: both parsers round decimals correctly).
    """
    fast = _parse_with_arrow(raw_csv)
    if fast is not None:
        return fast
    try:
        text = raw_csv.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RawDataError(
            f"the raw CSV is not UTF-8: undecodable byte at offset {error.start}"
        ) from error
    if not text.strip():
        raise RawDataError("the raw CSV is empty: expected a header line and data lines")

    # Every record must be one physical line, so that data row i is always line i + 2 in errors.
    reader = csv.reader(io.StringIO(text.rstrip("\r\n"), newline=""))
    lines = []
    for record in reader:
        line = len(lines) + 1
        if reader.line_num != line:
            raise RawDataError(f"line {line} of the raw CSV holds a quoted value that spans lines")
        if not record:
            raise RawDataError(f"line {line} of the raw CSV is blank")
        lines.append(record)
    header = [name.strip() for name in lines[0]]
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(sep for sep in ";\t|" if sep in header[0])
        raise RawDataError(
            f"the raw CSV header is one field {header[0]!r}: the file looks {sep!r}-separated, "
            "expected comma-separated values"
        )
    missing = [name for name in RAW_COLUMNS if name not in header]
    unexpected = [name for name in header if name not in RAW_COLUMNS]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if missing or unexpected or duplicated:
        raise RawDataError(
            f"the raw CSV header does not match the AI4I 2020 columns: missing {missing}, "
            f"unexpected {unexpected}, duplicated {duplicated}; expected {list(RAW_COLUMNS)}"
        )

    rows = lines[1:]
    bad = [
        (number, len(row)) for number, row in enumerate(rows, start=2) if len(row) != len(header)
    ]
    if bad:
        examples = ", ".join(f"line {number} has {count}" for number, count in bad[:_MAX_EXAMPLES])
        raise RawDataError(
            f"{len(bad)} line(s) of the raw CSV do not have {len(header)} fields ({examples}): "
            "the file is truncated or a value contains the delimiter"
        )
    if not rows:
        raise RawDataError("the raw CSV has a header but no data lines")

    frame = pd.DataFrame(rows, columns=header, dtype=str)
    return frame[list(RAW_COLUMNS)].rename(columns=RAW_TO_COLUMN)


def _flag(column: str) -> pa.Column:
    return pa.Column(int, pa.Check.isin([0, 1]), coerce=True, title=_COLUMN_TO_RAW[column])


def _reading(column: str, dtype: type) -> pa.Column:
    low, high = READING_RANGES[column]
    return pa.Column(dtype, pa.Check.in_range(low, high), coerce=True, title=_COLUMN_TO_RAW[column])


#: Content rules for parsed readings (after :func:`parse_raw_csv`).
READINGS_SCHEMA: Final = pa.DataFrameSchema(
    {
        "udi": pa.Column(int, pa.Check.gt(0), unique=True, coerce=True, title="UDI"),
        "product_id": pa.Column(
            str,
            pa.Check.str_matches(rf"^[{''.join(PRODUCT_TYPES)}]\d+$"),
            unique=True,
            title="Product ID",
        ),
        "type": pa.Column(str, pa.Check.isin(list(PRODUCT_TYPES)), title="Type"),
        "air_temperature_k": _reading("air_temperature_k", float),
        "process_temperature_k": _reading("process_temperature_k", float),
        "rotational_speed_rpm": _reading("rotational_speed_rpm", int),
        "torque_nm": _reading("torque_nm", float),
        "tool_wear_min": _reading("tool_wear_min", int),
        TARGET_COLUMN: _flag(TARGET_COLUMN),
        **{mode: _flag(mode) for mode in FAILURE_MODE_COLUMNS},
    },
    strict=True,
    ordered=True,
    name="ai4i2020_readings",
)


def _describe(column: str, check: str, failures: pd.DataFrame) -> str:
    first = failures.head(_MAX_EXAMPLES)
    examples = ", ".join(
        f"{_line(index)}: {value!r}"
        for index, value in zip(first["index"], first["failure_case"], strict=True)
    )
    raw_name = _COLUMN_TO_RAW.get(column, column)
    return f"column {raw_name!r} fails {check} in {len(failures)} row(s) ({examples})"


def _untypable_values(readings: pd.DataFrame) -> pd.DataFrame:
    """Numeric-column cells that are not numbers: (column, check, index, failure_case) rows."""
    found = []
    for name, column in READINGS_SCHEMA.columns.items():
        if name not in readings or not pd.api.types.is_numeric_dtype(column.dtype.type):
            continue
        values = readings[name]
        bad = pd.to_numeric(values, errors="coerce").isna()
        found.extend((name, "is_number", index, value) for index, value in values[bad].items())
    return pd.DataFrame(found, columns=["column", "check", "index", "failure_case"])


def _typed_with_arrow(readings: pd.DataFrame) -> pd.DataFrame | None:
    """``readings`` with every numeric column of the schema typed by pyarrow's cast, or ``None``
    if a value does not cast cleanly (the per-value path then names it).

    pandas' ``to_numeric`` on a million strings takes over a second per column; the cast a few
    hundredths. A NaN ("nan" casts to one) counts as not cleanly cast: it is a missing reading.
    """
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pa_compute  # noqa: PLC0415

    typed = {}
    for name, column in READINGS_SCHEMA.columns.items():
        if name not in readings or not pd.api.types.is_numeric_dtype(column.dtype.type):
            continue
        target = pa.from_numpy_dtype(np.dtype(column.dtype.type))
        try:
            values = pa_compute.cast(pa.array(readings[name], from_pandas=True), target)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        if values.null_count or (
            pa.types.is_floating(target) and pa_compute.any(pa_compute.is_nan(values)).as_py()
        ):
            return None
        typed[name] = values.to_numpy(zero_copy_only=False)
    return pd.DataFrame(
        {name: typed.get(name, readings[name]) for name in readings.columns},
        index=readings.index,
        copy=False,
    )


def validate_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """Checks and types parsed readings against :data:`READINGS_SCHEMA`.

    Values that are not numbers are found first, so that the schema can still check every other
    row of their column (pandera cannot range-check a column it could not type).

    Raises:
        RawDataError: listing, per column and rule, the first offending CSV lines and values.
    """
    typed = _typed_with_arrow(readings)
    if typed is not None:
        try:
            # In place: the frame is this function's own, and a copy of a million rows costs
            # seconds.
            return READINGS_SCHEMA.validate(typed, lazy=True, inplace=True)
        except SchemaErrors:
            pass  # the path below checks the strings themselves and reports every failure
    untypable = _untypable_values(readings)
    typable = readings.drop(index=untypable["index"].unique())
    try:
        validated = READINGS_SCHEMA.validate(typable, lazy=True)
        failures = untypable
    except SchemaErrors as errors:
        failures = pd.concat([untypable, errors.failure_cases], ignore_index=True)
    if failures.empty:
        return validated
    parts = [
        _describe(column, check, group)
        for (column, check), group in failures.groupby(
            ["column", "check"], sort=False, dropna=False
        )
    ]
    raise RawDataError(f"the raw data breaks the schema: {'; '.join(parts)}")
