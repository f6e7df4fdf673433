"""Parsing and schema validation of the raw CSV, on the official file and broken copies of it."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from predictive_maintenance.schema import RAW_COLUMNS, READING_COLUMNS
from predictive_maintenance.validation import RawDataError, parse_raw_csv, validate_readings

CRLF = b"\r\n"


def _lines(raw: bytes) -> list[bytes]:
    return raw.rstrip(CRLF).split(CRLF)


def _join(lines: list[bytes]) -> bytes:
    return CRLF.join(lines) + CRLF


def _set_field(raw: bytes, data_row: int, column: str, value: bytes) -> bytes:
    """Replaces one value of the official file; ``data_row`` 0 is CSV line 2."""
    lines = _lines(raw)
    fields = lines[data_row + 1].split(b",")
    fields[RAW_COLUMNS.index(column)] = value
    lines[data_row + 1] = b",".join(fields)
    return _join(lines)


def _load(raw: bytes) -> pd.DataFrame:
    return validate_readings(parse_raw_csv(raw))


def test_official_file_parses_and_validates(raw_csv_bytes):
    readings = _load(raw_csv_bytes)

    assert readings.shape == (10_000, 14)
    assert list(readings.columns[2:8]) == list(READING_COLUMNS)
    assert readings["machine_failure"].sum() == 339
    assert readings["type"].value_counts().to_dict() == {"L": 6000, "M": 2997, "H": 1003}
    assert readings["rotational_speed_rpm"].dtype == "int64"
    assert readings["torque_nm"].dtype == "float64"


def test_lf_line_endings_and_no_bom_parse_the_same(raw_csv_bytes):
    plain = raw_csv_bytes.removeprefix(b"\xef\xbb\xbf").replace(CRLF, b"\n")

    pd.testing.assert_frame_equal(_load(plain), _load(raw_csv_bytes))


def test_missing_column_is_named(raw_csv_bytes):
    lines = [
        b",".join(line.split(b",")[:6] + line.split(b",")[7:]) for line in _lines(raw_csv_bytes)
    ]

    with pytest.raises(RawDataError, match=r"missing \['Torque \[Nm\]'\]"):
        parse_raw_csv(_join(lines))


def test_unexpected_column_is_named(raw_csv_bytes):
    lines = _lines(raw_csv_bytes)
    lines = [lines[0] + b",Operator"] + [line + b",x" for line in lines[1:]]

    with pytest.raises(RawDataError, match=r"unexpected \['Operator'\]"):
        parse_raw_csv(_join(lines))


def test_text_in_numeric_column_names_column_line_and_value(raw_csv_bytes):
    broken = _set_field(raw_csv_bytes, 15, "Torque [Nm]", b"high")

    with pytest.raises(RawDataError) as error:
        _load(broken)

    message = str(error.value)
    assert "column 'Torque [Nm]' fails is_number in 1 row(s) (line 17: 'high')" in message
    # Reported once, not again as dtype or range noise.
    assert message.count("Torque [Nm]") == 1


def test_text_does_not_hide_range_errors_elsewhere_in_its_column(raw_csv_bytes):
    broken = _set_field(raw_csv_bytes, 3, "Torque [Nm]", b"-5.0")
    broken = _set_field(broken, 6, "Torque [Nm]", b"abc")

    with pytest.raises(RawDataError) as error:
        _load(broken)

    assert "fails is_number in 1 row(s) (line 8: 'abc')" in str(error.value)
    assert "fails in_range(0.0, 500.0) in 1 row(s) (line 5: -5.0)" in str(error.value)


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("Air temperature [K]", b"25.1"),  # Celsius where Kelvin is due
        ("Process temperature [K]", b"1308.2"),
        ("Rotational speed [rpm]", b"-1500"),
        ("Torque [Nm]", b"-3.2"),
        ("Tool wear [min]", b"99999"),
    ],
)
def test_out_of_range_reading_names_column_and_line(raw_csv_bytes, column, value):
    broken = _set_field(raw_csv_bytes, 99, column, value)

    with pytest.raises(RawDataError) as error:
        _load(broken)

    assert f"column '{column}' fails in_range" in str(error.value)
    assert re.search(rf"line 101: {value.decode()}\b", str(error.value))


def test_unknown_product_type_is_rejected(raw_csv_bytes):
    with pytest.raises(RawDataError, match=r"'Type' fails isin.*line 4: 'X'"):
        _load(_set_field(raw_csv_bytes, 2, "Type", b"X"))


def test_label_other_than_0_or_1_is_rejected(raw_csv_bytes):
    with pytest.raises(RawDataError, match=r"'HDF' fails isin.*line 2: 2"):
        _load(_set_field(raw_csv_bytes, 0, "HDF", b"2"))


def test_duplicate_udi_names_both_lines(raw_csv_bytes):
    broken = _set_field(raw_csv_bytes, 41, "UDI", b"41")  # UDI 41 is already on line 42

    with pytest.raises(
        RawDataError,
        match=r"'UDI' fails field_uniqueness in 2 row\(s\) \(line 42: 41, line 43: 41\)",
    ):
        _load(broken)


def test_several_problems_are_reported_together(raw_csv_bytes):
    broken = _set_field(raw_csv_bytes, 5, "Type", b"Q")
    broken = _set_field(broken, 6, "Tool wear [min]", b"-1")

    with pytest.raises(RawDataError) as error:
        _load(broken)

    assert "'Type'" in str(error.value)
    assert "'Tool wear [min]'" in str(error.value)


@pytest.mark.parametrize("content", [b"", b"\r\n", b"\xef\xbb\xbf", b"  \n"])
def test_empty_file_is_rejected(content):
    with pytest.raises(RawDataError, match="empty"):
        parse_raw_csv(content)


def test_header_without_rows_is_rejected(raw_csv_bytes):
    with pytest.raises(RawDataError, match="no data lines"):
        parse_raw_csv(_lines(raw_csv_bytes)[0] + CRLF)


def test_truncated_last_line_names_the_line(raw_csv_bytes):
    truncated = raw_csv_bytes.rstrip(CRLF)[:-12]

    with pytest.raises(RawDataError, match=r"line 10001 has \d+.*truncated"):
        parse_raw_csv(truncated)


@pytest.mark.parametrize("delimiter", [b";", b"\t"])
def test_wrong_delimiter_is_named(raw_csv_bytes, delimiter):
    with pytest.raises(RawDataError, match="separated, expected comma-separated"):
        parse_raw_csv(raw_csv_bytes.replace(b",", delimiter))


def test_not_utf8_is_rejected(raw_csv_bytes):
    with pytest.raises(RawDataError, match="not UTF-8"):
        parse_raw_csv(raw_csv_bytes.replace(b"M14860", b"M\xff4860"))


def test_trailing_blank_lines_are_not_rows(raw_csv_bytes):
    assert len(parse_raw_csv(raw_csv_bytes + CRLF + CRLF)) == 10_000


def test_blank_line_inside_the_file_is_named(raw_csv_bytes):
    lines = _lines(raw_csv_bytes)

    with pytest.raises(RawDataError, match="line 11 of the raw CSV is blank"):
        parse_raw_csv(_join([*lines[:10], b"", *lines[10:]]))


def test_value_spanning_lines_is_rejected_so_line_numbers_stay_true(raw_csv_bytes):
    lines = _lines(raw_csv_bytes)
    lines[5] = lines[5].replace(b"L47184", b'"L47' + CRLF + b'184"')

    with pytest.raises(
        RawDataError, match="line 6 of the raw CSV holds a quoted value that spans lines"
    ):
        parse_raw_csv(_join(lines))
