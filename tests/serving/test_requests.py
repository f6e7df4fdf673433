"""The one CSV parser, as the HTTP API uses it (``files=True``): the files people save.

The endpoint's stricter contract (headerless rows only) is tested with the handlers in
test_inference.py; the API's answers to these files in tests/api/.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from predictive_maintenance.schema import RAW_COLUMNS, READING_COLUMNS
from predictive_maintenance.serving.requests import (
    InvalidInput,
    Readings,
    UnsupportedMediaType,
    check_content_type,
    load_json,
    parse_readings,
)
from tests.support.project import RAW_CSV

NORMAL = "M,298.1,308.6,1551,42.8,0"
OVERSTRAIN = "L,299,309.5,1500,55,220"
DATA_SET_HEADER = ",".join(RAW_COLUMNS)
WORKSHOP_HEADER = (
    "Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],Torque [Nm],"
    "Tool wear [min]"
)


def parse(text: str | bytes) -> Readings:
    return parse_readings(text, "text/csv", files=True)


def values(readings: Readings) -> list[tuple]:
    """The readings as rows, in ``READING_COLUMNS`` order."""
    return list(zip(readings.types, *readings.columns, strict=True))


EXPECTED = values(parse_readings(f"{NORMAL}\n{OVERSTRAIN}", "text/csv"))  # the endpoint's rows


def _reordered(row: str) -> str:
    kind, air, process, speed, torque, wear = row.split(",")
    return ",".join([wear, kind, torque, speed, process, air])


@pytest.mark.parametrize(
    ("text", "lines", "ids"),
    [
        pytest.param(f"{NORMAL}\n{OVERSTRAIN}\n", [1, 2], {}, id="workshop-rows"),
        pytest.param(f"{WORKSHOP_HEADER}\n{NORMAL}\n{OVERSTRAIN}", [2, 3], {}, id="data-set-names"),
        pytest.param(
            "tool_wear_min,type,torque_nm,rotational_speed_rpm,process_temperature_k,"
            f"air_temperature_k\r\n{_reordered(NORMAL)}\r\n\r\n{_reordered(OVERSTRAIN)}\r\n",
            [2, 4],
            {},
            id="field-names-any-order-crlf-blank-line",
        ),
        pytest.param(
            f"{DATA_SET_HEADER}\n1,M14860,{NORMAL},0,0,0,0,0,0\n2,L47181,{OVERSTRAIN},1,0,0,1,0,0\n",
            [2, 3],
            {"udi": ["1", "2"], "product_id": ["M14860", "L47181"]},
            id="data-set-layout",
        ),
        pytest.param(
            f"1,M14860,{NORMAL},0,0,0,0,0,0\r2,L47181,{OVERSTRAIN},1,0,0,1,0,0",
            [1, 2],
            {"udi": ["1", "2"], "product_id": ["M14860", "L47181"]},
            id="data-set-layout-without-header-cr",
        ),
        pytest.param(
            "Notes, TYPE ,Air Temperature,process temperature,ROTATIONAL SPEED,Torque,Tool "
            f'wear\n"first",{NORMAL}\n,,,,,,\n"second, again",{OVERSTRAIN}\n',
            [2, 4],
            {},
            id="names-without-units-quotes-empty-spreadsheet-row",
        ),
        pytest.param(
            f"\n\n{WORKSHOP_HEADER}\n{NORMAL}\n{OVERSTRAIN}\n\n\n", [4, 5], {}, id="leading-blanks"
        ),
        pytest.param(
            f"\ufeff{WORKSHOP_HEADER}\n{NORMAL}\n{OVERSTRAIN}".encode(), [2, 3], {}, id="bom"
        ),
    ],
)
def test_a_file_gives_the_readings_their_line_numbers_and_ids(text, lines, ids):
    readings = parse(text)

    assert values(readings) == EXPECTED
    assert readings.lines == lines
    assert readings.ids == ids


def test_the_official_data_set_file_is_taken_as_it_is():
    """UCI's ai4i2020.csv: a UTF-8 BOM, CRLF, 14 columns, 10,000 readings from line 2."""
    raw = RAW_CSV.read_bytes()

    readings = parse(raw)

    frame = pd.read_csv(RAW_CSV, encoding="utf-8-sig")
    assert len(readings) == len(frame) == 10_000
    assert readings.lines == list(range(2, 10_002))
    assert readings.ids["udi"] == [str(udi) for udi in frame["UDI"]]
    assert readings.ids["product_id"] == frame["Product ID"].tolist()
    assert readings.types == frame["Type"].tolist()
    for index, column in enumerate(RAW_COLUMNS[3:8]):
        assert readings.columns[index] == frame[column].astype(float).tolist()


#: Bad files, with the API's exact message: the web page shows the same words.
BAD_FILES = [
    (
        f"{DATA_SET_HEADER}\n1,M14860,{NORMAL},0,0,0,0,0,0\n2,L47181,M,298.1,308.6,1551,abc,0,0,0,"
        "0,0,0,0",
        3,
        "torque_nm",
        "line 3, field torque_nm: 'abc' is not a number",
    ),
    (
        f"{WORKSHOP_HEADER}\n\n{NORMAL}\nL,298.4,308.2,1582,600,216",
        4,
        "torque_nm",
        "line 4, field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]",
    ),
    (
        "Type,Air temperature [K],Torque [Nm]\nL,298.4,70.7\n",
        1,
        "process_temperature_k",
        "line 1 (the header) has no column Process temperature [K] (process_temperature_k); name "
        "the columns as the data set (Type,Air temperature [K],Process temperature [K],Rotational "
        "speed [rpm],Torque [Nm],Tool wear [min]) or the API (type,air_temperature_k,"
        "process_temperature_k,rotational_speed_rpm,torque_nm,tool_wear_min) does, or leave out "
        "the header line",
    ),
    (
        f"type,Type,{WORKSHOP_HEADER}\n",
        1,
        "type",
        "line 1 (the header): columns 1 and 2 both name type",
    ),
    (f"{WORKSHOP_HEADER}\n\n", 1, None, "the body holds a header (line 1) but no readings"),
    (
        f"{DATA_SET_HEADER}\n1,M14860,M,298.1,308.6\n",
        2,
        "rotational_speed_rpm",
        "line 2, field rotational_speed_rpm: missing: the line has 5 fields, expected 14 fields "
        "as the header (line 1)",
    ),
    (
        f"{NORMAL}\n{NORMAL},0",
        2,
        None,
        "line 2: 7 fields, expected 6 fields: Type,Air temperature [K],Process temperature [K],"
        "Rotational speed [rpm],Torque [Nm],Tool wear [min] (or the data set's 14 columns, or a "
        "header line naming the columns)",
    ),
    (
        "L;298,4;308,2;1582;70,7;216\n",
        1,
        None,
        "line 1 separates its values with semicolons; save the file as comma-separated CSV (with "
        "decimal points)",
    ),
    (
        "L\t298.4\t308.2\t1582\t70.7\t216\n",
        1,
        None,
        "line 1 separates its values with tabs; save the file as comma-separated CSV (with "
        "decimal points)",
    ),
    (
        "\n \n,,,\n",
        None,
        None,
        "the body holds no rows; send one CSV row per line: Type,Air temperature [K],Process "
        "temperature [K],Rotational speed [rpm],Torque [Nm],Tool wear [min]",
    ),
    (
        f'{NORMAL}\nL,"298.4",308.2,1582,"70.7,216',
        2,
        "tool_wear_min",
        "line 2, field tool_wear_min: missing: the line has 5 fields, expected 6 fields: Type,Air "
        "temperature [K],Process temperature [K],Rotational speed [rpm],Torque [Nm],Tool wear "
        "[min] (or the data set's 14 columns, or a header line naming the columns)",
    ),
]


@pytest.mark.parametrize(("text", "row", "field", "message"), BAD_FILES)
def test_a_bad_file_is_refused_naming_its_line(text, row, field, message):
    with pytest.raises(InvalidInput) as raised:
        parse(text)

    assert raised.value.detail == {
        "error": "invalid_input",
        "message": message,
        "row": row,
        "field": field,
    }


def test_a_header_names_every_reading_column_once():
    """The accepted names: the data set's (with or without the unit) and the JSON fields'."""
    for names in (
        READING_COLUMNS,
        WORKSHOP_HEADER.split(","),
        [
            "type",
            "air temperature",
            "PROCESS_TEMPERATURE",
            "rotational-speed",
            "torque",
            "tool wear",
        ],
    ):
        assert values(parse(",".join(names) + f"\n{NORMAL}\n{OVERSTRAIN}")) == EXPECTED


# ---- JSON: the endpoint and the HTTP API read it with load_json ----------------------------
READING = '{"type": "L", "air_temperature_k": 298.4, "process_temperature_k": 308.2, '
READING += '"rotational_speed_rpm": 1582, "torque_nm": 70.7, "tool_wear_min": 216}'


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (f'{{"instances": [{READING}], "instances": []}}', "instances"),
        (f'{{"instances": [{READING[:-1]}, "torque_nm": 5}}]}}', "torque_nm"),
        ('{"a": {"b": 1, "b": 2}}', "b"),
    ],
    ids=["top-level", "in-a-reading", "nested"],
)
def test_a_json_key_given_twice_is_refused_naming_it(body, key):
    """json keeps the last of two equal keys: a client could flip a reading without noticing."""
    with pytest.raises(InvalidInput) as raised:
        parse_readings(body, "application/json")
    with pytest.raises(InvalidInput) as loaded:
        load_json(body.encode())

    for error in (raised.value, loaded.value):
        assert error.detail == {
            "error": "invalid_input",
            "message": f"the key {key!r} appears twice in a JSON object; send each key once",
            "row": None,
            "field": key,
        }


def test_load_json_reads_utf8_with_a_bom_and_refuses_what_is_not_json():
    assert load_json(b"\xef\xbb\xbf" + f'{{"instances": [{READING}]}}'.encode()) == {
        "instances": [json.loads(READING)]
    }
    for body, message in ((b"\xff{}", "not UTF-8 text"), (b"{not json", "not valid JSON")):
        with pytest.raises(InvalidInput, match=message):
            load_json(body)


# ---- the Content-Type header: one parser for the endpoint, the handlers and the API -----------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv", "text/csv"),
        ("application/json", "application/json"),
        ("TEXT/CSV", "text/csv"),
        ("text/csv; charset=utf-8", "text/csv"),
        ("text/csv;charset=UTF-8", "text/csv"),
        ("application/json; charset=utf8", "application/json"),
        ('application/json; charset="UTF-8"', "application/json"),
        ("application/json; CHARSET=Utf-8", "application/json"),
        (" \ttext/csv \t", "text/csv"),
        ("text/csv ; charset=utf-8 ; header=absent", "text/csv"),
        ("text/csv;", "text/csv"),
        # ASCII is a subset of UTF-8: such a body decodes the same.
        ("text/csv; charset=us-ascii", "text/csv"),
        ("application/json; charset=ASCII", "application/json"),
    ],
)
def test_utf8_content_types_are_accepted(header, expected):
    assert check_content_type(header) == expected


@pytest.mark.parametrize(
    ("header", "charset"),
    [
        ("text/csv; charset=latin-1", "latin-1"),
        ("application/json; charset=utf-16", "utf-16"),
        ("application/json; charset=UTF-16LE", "UTF-16LE"),
        ('text/csv; charset="iso-8859-1"', "iso-8859-1"),
        ("text/csv; charset=utf-8; charset=latin-1", "latin-1"),
    ],
)
def test_any_other_charset_is_415_naming_it(header, charset):
    with pytest.raises(UnsupportedMediaType) as refused:
        check_content_type(header)
    assert refused.value.status_code == 415
    assert refused.value.message == f"charset {charset!r} is not supported; send UTF-8 ({header!r})"


@pytest.mark.parametrize(
    "header",
    [
        "\u00a0application/json",
        "application/json\u00a0",
        "text/csv;\u00a0charset=utf-8",
        "\u3000text/csv",
        "text/csv\r\n",
        "text/csv\x00",
        "t\u00e9xt/csv",
        "text/csv\ud800",
    ],
)
def test_whitespace_other_than_space_and_tab_or_non_ascii_is_415_naming_the_header(header):
    with pytest.raises(UnsupportedMediaType) as refused:
        check_content_type(header)
    assert refused.value.message.startswith(f"the Content-Type header {header!r} holds ")


@pytest.mark.parametrize(
    "header",
    [
        "text/csv; charset=",
        'text/csv; charset="utf-8',
        "text/csv; utf-8",
        "text/csv, text/plain",
        "text/csv/x",
    ],
)
def test_a_malformed_content_type_is_415_naming_the_header(header):
    with pytest.raises(UnsupportedMediaType) as refused:
        check_content_type(header)
    assert refused.value.message.startswith(f"the Content-Type header {header!r} is malformed")


@pytest.mark.parametrize(
    "header", [None, "", " ", "text/plain", "application/xml", "text /csv", "csv"]
)
def test_other_or_no_media_types_are_415_on_the_endpoint(header):
    with pytest.raises(UnsupportedMediaType) as refused:
        check_content_type(header)
    assert refused.value.message == (
        f"content type {header!r} is not supported; send one of ['text/csv', 'application/json']"
    )


def test_the_api_passes_its_own_media_types_and_default_through_the_same_parser():
    accepted = ("application/json", "text/csv", "text/plain")
    assert check_content_type(None, accepted, default="application/json") == "application/json"
    assert check_content_type(" ", accepted, default="application/json") == "application/json"
    assert check_content_type("Text/Plain; charset=utf-8", accepted) == "text/plain"
    with pytest.raises(UnsupportedMediaType, match="charset 'latin-1'"):
        check_content_type("text/plain; charset=latin-1", accepted, default="application/json")


def test_the_body_of_an_accepted_content_type_is_parsed():
    readings = parse_readings(NORMAL.encode(), 'text/csv ; charset="utf8"')
    assert values(readings) == [("M", 298.1, 308.6, 1551.0, 42.8, 0.0)]
