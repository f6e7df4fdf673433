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

import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from predictive_maintenance.schema import (
    FAILURE_MODE_COLUMNS,
    PRODUCT_TYPES,
    RAW_COLUMNS,
    RAW_TO_COLUMN,
    TARGET_COLUMN,
)

#: Physically plausible ranges (inclusive) for the readings: a factory floor, a machine tool.
#: The data set itself spans far less (e.g. air 295-305 K); these bounds reject unit mistakes
#: (Celsius for Kelvin, rad/s for rpm) and sensor garbage, not unusual but real readings.
READING_RANGES: Final = {
    "air_temperature_k": (250.0, 350.0),
    "process_temperature_k": (250.0, 400.0),
    "rotational_speed_rpm": (1.0, 10_000.0),
    "torque_nm": (0.0, 500.0),
    "tool_wear_min": (0.0, 1_000.0),
}

_MAX_EXAMPLES: Final = 5
_COLUMN_TO_RAW: Final = {column: raw for raw, column in RAW_TO_COLUMN.items()}


class RawDataError(ValueError):
    """The raw data cannot be parsed or breaks the schema."""


def _line(row_index: object) -> str:
    return f"line {int(row_index) + 2}" if isinstance(row_index, int) else f"row {row_index}"


def parse_raw_csv(raw_csv: bytes) -> pd.DataFrame:
    """Parses the raw CSV into a frame of strings with the project's column names.

    Args:
        raw_csv: The file's bytes (UTF-8, optional BOM, LF or CRLF line ends).

    Returns:
        One row per data line, every value still a string; :func:`validate_readings` types them.
    """
    try:
        text = raw_csv.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise RawDataError(
            f"the raw CSV is not UTF-8: undecodable byte at offset {error.start}"
        ) from error
    if not text.strip():
        raise RawDataError("the raw CSV is empty: expected a header line and data lines")

    lines = list(csv.reader(io.StringIO(text, newline="")))
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

    rows = [row for row in lines[1:] if row]  # a trailing blank line is not a row
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
            str, pa.Check.str_matches(r"^[LMH]\d+$"), unique=True, title="Product ID"
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


def _describe_failures(errors: SchemaErrors) -> str:
    cases = errors.failure_cases
    # A value that cannot be typed also fails the column's dtype and range checks; report it once.
    is_coercion = cases["check"].astype(str).str.startswith("coerce_dtype")
    uncoercible = set(cases.loc[is_coercion, "column"])
    cases = cases[is_coercion | ~cases["column"].isin(uncoercible)]
    parts = []
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        raw_name = _COLUMN_TO_RAW.get(column, column)
        first = group.head(_MAX_EXAMPLES)
        examples = ", ".join(
            f"{_line(index)}: {value!r}"
            for index, value in zip(first["index"], first["failure_case"], strict=True)
        )
        parts.append(f"column {raw_name!r} fails {check} in {len(group)} row(s) ({examples})")
    return "; ".join(parts)


def validate_readings(readings: pd.DataFrame) -> pd.DataFrame:
    """Checks and types parsed readings against :data:`READINGS_SCHEMA`.

    Raises:
        RawDataError: listing, per column and rule, the first offending CSV lines and values.
    """
    try:
        return READINGS_SCHEMA.validate(readings, lazy=True)
    except SchemaErrors as errors:
        raise RawDataError(
            f"the raw data breaks the schema: {_describe_failures(errors)}"
        ) from None
