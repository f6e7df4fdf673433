"""Reading captured traffic: records, malformed lines (skipped, counted, never a crash), and
readings the endpoint's parser refuses (classified for the constraint checks)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from predictive_maintenance.monitoring import capture
from predictive_maintenance.monitoring.datasets import OptionalPartitionedDataset
from predictive_maintenance.pipelines.monitoring.nodes import (
    NoCapturedDataError,
    read_captured_data,
)
from predictive_maintenance.serving.requests import (
    InvalidInput,
    parse_readings,
    readings_from_instances,
)
from tests.monitoring.capture_files import START, record, write_capture

GOOD = "L,298.1,308.6,1551,42.8,0"
SETTINGS = {"endpoint_name": "ep", "capture_directory": "data/13_data_capture", "window": {}}


def refusal(body: str | dict) -> InvalidInput:
    """The endpoint parser's error for one CSV line or one JSON reading."""
    parse = (
        (lambda: parse_readings(body, "text/csv"))
        if isinstance(body, str)
        else (lambda: readings_from_instances([body], key=None))
    )
    with pytest.raises(InvalidInput) as caught:
        parse()
    return caught.value


def instance(**changes):
    reading = dict(
        zip(
            ("type", "air_temperature_k", "process_temperature_k", "rotational_speed_rpm"),
            ("L", 298.1, 308.6, 1551),
            strict=True,
        ),
        torque_nm=42.8,
        tool_wear_min=0,
    )
    return {key: value for key, value in (reading | changes).items() if value != "DROP"}


@pytest.mark.parametrize(
    ("body", "kind", "field"),
    [
        ("L,298.1,308.6,1551,42.8", capture.MISSING_COLUMN, "tool_wear_min"),
        ("L,298.1,308.6,1551,42.8,0,7", capture.EXTRA_COLUMN, None),
        ("L,,308.6,1551,42.8,0", capture.MISSING_VALUE, "air_temperature_k"),
        (",298.1,308.6,1551,42.8,0", capture.MISSING_VALUE, "type"),
        ("L,abc,308.6,1551,42.8,0", capture.WRONG_TYPE, "air_temperature_k"),
        ("X,298.1,308.6,1551,42.8,0", capture.UNKNOWN_CATEGORY, "type"),
        ("L,298.1,308.6,1551,-4,0", capture.NEGATIVE, "torque_nm"),
        ("L,298.1,308.6,1551,900,0", capture.OUT_OF_RANGE, "torque_nm"),
        ("Type,Air,Process,Speed,Torque,Wear", capture.UNPARSABLE, None),
        (instance(torque_nm="DROP"), capture.MISSING_VALUE, "torque_nm"),
        (instance(torque_nm=None), capture.MISSING_VALUE, "torque_nm"),
        (instance(torque_nm="42.8"), capture.WRONG_TYPE, "torque_nm"),
        (instance(type="Q"), capture.UNKNOWN_CATEGORY, "type"),
        (instance(colour="red"), capture.EXTRA_COLUMN, "colour"),
    ],
)
def test_each_refusal_of_the_endpoints_parser_is_classified(body, kind, field):
    error = refusal(body)

    assert (capture.classify(error), error.field) == (kind, field)


def test_surplus_csv_fields_get_sparks_column_names():
    assert capture.extra_fields(refusal("L,298.1,308.6,1551,42.8,0,7,8")) == ["_c6", "_c7"]


def test_malformed_lines_are_skipped_and_reported_with_file_and_line():
    good_csv = record(GOOD, "0.1\n", event_id="csv-1")
    good_json = record(
        json.dumps({"instances": [instance()]}),
        json.dumps({"predictions": [{"score": 0.7, "predicted_label": 1}]}),
        content_type="application/json",
        answer_type="application/json",
        event_id="json-1",
    )
    base64_csv = record(GOOD.encode(), "0.2", content_type="text/csv", event_id="b64-1")
    base64_csv["captureData"]["endpointInput"]["encoding"] = "BASE64"
    base64_csv["captureData"]["endpointInput"]["data"] = "TCwyOTguMSwzMDguNiwxNTUxLDQyLjgsMA=="
    no_metadata = {k: v for k, v in good_csv.items() if k != "eventMetadata"}
    bad_base64 = json.loads(json.dumps(base64_csv))
    bad_base64["captureData"]["endpointInput"]["data"] = "not base64!"
    plain_text = record("hello", None, content_type="text/plain")
    bad_time = json.loads(json.dumps(good_csv))
    bad_time["eventMetadata"]["inferenceTime"] = "yesterday"
    lines = [
        json.dumps(good_csv),
        "{not json",
        "",
        json.dumps(no_metadata),
        json.dumps(good_json),
        json.dumps(bad_base64),
        json.dumps(plain_text),
        json.dumps(bad_time),
        json.dumps(base64_csv),
    ]
    content = "\n".join(lines).encode() + b"\n\xff\xfe not utf-8\n" + json.dumps(good_csv).encode()
    name = "ep/AllTraffic/2026/12/03/14/00-00-000-x"

    readings, summary = read_captured_data({name: lambda: content}, SETTINGS)

    assert list(readings["event_id"]) == ["csv-1", "json-1", "b64-1", "csv-1"]
    assert list(readings["line"]) == [1, 5, 9, 11]
    assert list(readings["score"]) == [0.1, 0.7, 0.2, 0.1]
    assert readings["predicted_label"].fillna(-1).tolist() == [-1, 1, -1, -1]
    assert readings.loc[0, "torque_nm"] == 42.8
    assert (summary["records"], summary["readings"], summary["lines"]) == (4, 4, 11)
    assert (summary["skipped_lines"], summary["blank_lines"]) == (6, 1)
    skipped = {entry["line"]: entry["reason"] for entry in summary["skipped"]}
    assert set(skipped) == {2, 4, 6, 7, 8, 10}
    assert all(entry["file"] == name for entry in summary["skipped"])
    assert skipped[2].startswith("not a JSON record")
    assert skipped[4] == "eventMetadata is missing"
    assert "not valid base64" in skipped[6]
    assert "content type 'text/plain' is not supported" in skipped[7]
    assert "not an ISO 8601 time" in skipped[8]
    assert skipped[10].startswith("the line is not UTF-8")


def test_the_good_readings_of_a_refused_request_still_count():
    csv_body = "\n".join([GOOD, "L,298.1,308.6,1551,-4,0", GOOD.replace("L", "H", 1)])
    json_body = json.dumps({"instances": [instance(), instance(type="Q"), instance(colour=1)]})
    error = json.dumps({"error": "invalid_input", "message": "..."})
    records = [
        record(csv_body, error, event_id="csv", answer_type="application/json"),
        record(json_body, error, content_type="application/json", event_id="json"),
        record("\n".join([GOOD, GOOD]), "0.1\n0.3\n", event_id="two"),
    ]
    content = "\n".join(json.dumps(r) for r in records)

    readings, summary = read_captured_data({"ep/a": lambda: content}, SETTINGS)

    assert list(zip(readings["event_id"], readings["row"], strict=True)) == [
        ("csv", 0),
        ("csv", 2),
        ("json", 0),
        ("two", 0),
        ("two", 1),
    ]
    assert list(readings["type"]) == ["L", "H", "L", "L", "L"]
    # A refused request got no scores; a whole one gets one per reading.
    assert readings["score"].isna().sum() == 3
    assert list(readings["score"].dropna()) == [0.1, 0.3]
    assert summary["refused_readings"] == 3
    assert summary["unscored_readings"] == 3
    assert summary["problems"] == {
        "torque_nm": {"negative": 1},
        "type": {"unknown_category": 1},
        "colour": {"extra_column": 1},
    }
    refused = {(r["line"], r["row"]): r for r in summary["refused"]}
    assert refused[(1, 1)]["message"].startswith("line 2, field torque_nm")  # line in the body
    assert refused[(1, 1)]["file"] == "ep/a"
    assert refused[(2, 1)]["kind"] == "unknown_category"


def test_the_window_and_the_endpoint_select_the_records(tmp_path):
    early = [record(GOOD, "0.1", time=START + timedelta(minutes=m)) for m in (0, 30)]
    late = [record(GOOD, "0.1", time=START + timedelta(hours=2, minutes=m)) for m in (0, 30)]
    write_capture(tmp_path, "ep", [*early, *late])
    write_capture(tmp_path, "other", early)
    partitions = OptionalPartitionedDataset(
        path=str(tmp_path), dataset="text.TextDataset", filename_suffix=".jsonl"
    ).load()
    window = {"start": "2026-12-03T14:15:00Z", "end": "2026-12-03T16:15:00"}

    readings, summary = read_captured_data(partitions, SETTINGS | {"window": window})

    assert list(readings["inference_time"].dt.minute) == [30, 0]
    assert summary["records_outside_window"] == 2  # 14:00 and 16:30, in files that overlap
    assert summary["other_endpoint_files"] == 1
    assert summary["window"] == {"start": "2026-12-03T14:15:00Z", "end": "2026-12-03T16:15:00Z"}
    after = SETTINGS | {"window": {"start": "2026-12-03T17:00:00Z", "end": None}}
    with pytest.raises(NoCapturedDataError, match=r"no capture file under .*/ep/AllTraffic in"):
        read_captured_data(partitions, after)


def test_no_capture_at_all_says_how_to_turn_capture_on(tmp_path):
    partitions = OptionalPartitionedDataset(
        path=str(tmp_path / "missing"), dataset="text.TextDataset", filename_suffix=".jsonl"
    ).load()

    with pytest.raises(NoCapturedDataError, match="turn data capture on"):
        read_captured_data(partitions, SETTINGS)
