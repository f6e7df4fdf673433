"""POST /predict over real HTTP with any body: bytes, text, CSV-like and JSON-like documents.

The local API (the Lambda handler behind its uvicorn server) in front of a real endpoint, both on
127.0.0.1. Whatever the body, the answer is a 200 with predictions or a 4xx whose JSON names the
cause; never a 5xx (the endpoint is only called with readings the API has checked).
"""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from predictive_maintenance.api.server import ApiServer, api_limits, make_server
from predictive_maintenance.schema import READING_COLUMNS
from tests.api.conftest import make_api


@pytest.fixture(scope="module")
def api_server(endpoint) -> Iterator[ApiServer]:
    with make_server("127.0.0.1", 0, make_api(endpoint.url), limits=api_limits()) as server:
        yield server.start()


# ---- strategies ----------------------------------------------------------------------------------
#: Field values: valid ones, near misses and junk.
FIELDS = st.sampled_from(
    [
        "L", "M", "H", "l", "X", "", " ", "298.4", "308.2", "1582", "70.7", "216", "0", "-1",
        "1e3", "1e999", "nan", "inf", "-0", "298,4", '"L"', '"', "Type", "UDI", "Product ID",
        "Air temperature [K]", "air_temperature_k", "\u00a0", "\x00", "²", "é", "\ufeff",
    ]
) | st.text(max_size=6)  # fmt: skip
SEPARATORS = st.sampled_from([",", ",", ",", ";", "\t", ", "])
LINE_ENDS = st.sampled_from(["\n", "\r\n", "\r", "\n\n"])


@st.composite
def csv_documents(draw: st.DrawFn) -> bytes:
    separator = draw(SEPARATORS)
    rows = draw(st.lists(st.lists(FIELDS, min_size=0, max_size=16), min_size=0, max_size=6))
    if draw(st.booleans()):  # a valid row among the junk
        rows.insert(draw(st.integers(0, len(rows))), ["L", "298.4", "308.2", "1582", "70.7", "216"])
    end = draw(LINE_ENDS)
    text = end.join(separator.join(row) for row in rows) + draw(st.sampled_from(["", end]))
    return text.encode("utf-8", "surrogatepass")


NUMBERS = st.integers(-(10**20), 10**20) | st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=8) | FIELDS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
READINGS = st.fixed_dictionaries(
    {"type": st.sampled_from(["L", "M", "H"]) | JSON_VALUES},
    optional={column: NUMBERS | JSON_VALUES for column in READING_COLUMNS[1:]},
)
READING_LIKE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["L", "M", "H"]),
        "air_temperature_k": st.floats(250, 350),
        "process_temperature_k": st.floats(250, 400),
        "rotational_speed_rpm": st.integers(1, 10_000),
        "torque_nm": st.floats(0, 500),
        "tool_wear_min": st.integers(0, 1000),
    }
)


@st.composite
def json_documents(draw: st.DrawFn) -> bytes:
    reading = READING_LIKE | READINGS
    payload = draw(
        reading
        | st.lists(reading, max_size=4)
        | st.fixed_dictionaries({"instances": st.lists(reading, max_size=4) | JSON_VALUES})
        | JSON_VALUES
    )
    text = json.dumps(payload)
    if draw(st.integers(0, 5)) == 0:  # broken: cut short, or a key given twice
        text = draw(
            st.sampled_from(
                [text[: len(text) // 2], text.replace("{", '{"type": "L", ', 1), "\ufeff" + text]
            )
        )
    return text.encode("utf-8", "surrogatepass")


CSV_TYPES = ["text/csv", "text/plain", "text/csv; charset=utf-8", "TEXT/CSV; charset=US-ASCII"]
JSON_TYPES = [
    "application/json",
    "application/json; charset=UTF-8",
    "application/json;charset=utf8",
]
OTHER_TYPES = ["text/plain; charset=latin-1", "application/x-npy", "", "text/csv; charset=utf-16"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """A body and its content type: mostly CSV or JSON sent as such, sometimes anything."""
    kind = draw(st.sampled_from(["csv", "json", "any"]))
    if kind == "csv":
        return draw(csv_documents()), draw(st.sampled_from(CSV_TYPES))
    if kind == "json":
        return draw(json_documents()), draw(st.sampled_from(JSON_TYPES))
    body = draw(
        st.binary(max_size=400)
        | st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass"))
        | csv_documents()
        | json_documents()
    )
    return body, draw(st.sampled_from(CSV_TYPES + JSON_TYPES + OTHER_TYPES))


def predict(server: ApiServer, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            "/predict",
            body,
            {"content-type": content_type, "connection": "close"},
        )
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def check_prediction(item: Any) -> None:
    assert isinstance(item, dict), item
    probability = item["failure_probability"]
    assert isinstance(probability, float), item
    assert 0 <= probability <= 1, item
    assert isinstance(item["failure_predicted"], bool), item
    assert math.isfinite(item["threshold"]), item


@settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(sent=requests())
def test_any_body_gets_predictions_or_a_4xx_naming_the_cause(api_server, sent):
    body, content_type = sent
    status, answer_type, raw = predict(api_server, body, content_type)
    event(f"HTTP {status}")  # --hypothesis-show-statistics: how many reached the model

    assert status < 500, raw[:300]
    assert answer_type == "application/json", (status, answer_type)
    answer = json.loads(raw)
    if status == 200:
        for item in answer if isinstance(answer, list) else [answer]:
            check_prediction(item)
        return
    assert 400 <= status < 500, status
    assert isinstance(answer, dict), answer
    for key in ("error", "message"):  # the cause, named
        assert isinstance(answer[key], str), answer
        assert answer[key].strip(), answer
    assert isinstance(answer.get("row"), int | None), answer
    assert isinstance(answer.get("field"), str | None), answer
    if content_type in OTHER_TYPES[:2] or "utf-16" in content_type:
        assert status == 415, answer
