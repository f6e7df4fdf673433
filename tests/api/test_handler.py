"""The Lambda handler with real-shaped API Gateway events (payload 2.0 and 1.0), calling a real
local endpoint through boto3's sagemaker-runtime client."""

from __future__ import annotations

import http.client
import importlib
import json
from datetime import datetime, timezone
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from predictive_maintenance.api import handler
from predictive_maintenance.api.handler import Api, ApiSettings
from predictive_maintenance.serving.inference import input_fn, predict_fn
from predictive_maintenance.serving.server import EndpointServer
from tests.api.conftest import ENDPOINT_NAME, MODEL_VERSION, make_api
from tests.api.events import v1_event, v2_event
from tests.conftest import WORKSHOP_READING
from tests.support.net import free_port
from tests.support.project import RAW_CSV

WORKSHOP_LINE = "L,298.4,308.2,1582,70.7,216"
POWER_FAILURE = {**WORKSHOP_READING, "rotational_speed_rpm": 1500, "torque_nm": 20.0}


def json_body(response: dict[str, Any]) -> Any:
    assert response["headers"]["content-type"] == "application/json"
    return json.loads(response["body"])


def expected_score(loaded_model, line: str) -> float:
    return float(predict_fn(input_fn(line, "text/csv"), loaded_model)[0])


# ---- POST /predict ----------------------------------------------------------------------------
@pytest.mark.parametrize("make_event", [v2_event, v1_event], ids=["v2", "v1"])
def test_one_json_reading_gets_probability_decision_threshold_and_version(
    api, loaded_model, make_event
):
    event = make_event(
        "POST", "/predict", json.dumps(WORKSHOP_READING), {"content-type": "application/json"}
    )

    response = api(event, None)

    assert response["statusCode"] == 200
    assert set(response) == {"statusCode", "headers", "body", "isBase64Encoded"}
    answer = json_body(response)
    assert answer == {
        "failure_probability": pytest.approx(expected_score(loaded_model, WORKSHOP_LINE), abs=1e-7),
        "failure_predicted": True,
        "threshold": pytest.approx(loaded_model.decision_threshold),
        "model_version": MODEL_VERSION,
    }
    assert 0 <= answer["failure_probability"] < 1


def test_the_workshops_text_line_and_many_csv_rows(api, loaded_model):
    one = api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))
    lines = f"{WORKSHOP_LINE}\r\nM,298.4,308.2,1500,20.0,216\r\n"
    many = api(v2_event("POST", "/predict", lines, {"content-type": "text/csv; charset=utf-8"}))

    assert one["statusCode"] == many["statusCode"] == 200
    assert isinstance(json_body(one), dict)
    answers = json_body(many)
    assert [round(a["failure_probability"], 6) for a in answers] == [
        round(expected_score(loaded_model, line), 6)
        for line in (WORKSHOP_LINE, "M,298.4,308.2,1500,20.0,216")
    ]


def test_the_official_data_set_file_gets_one_answer_per_reading_with_its_line_and_ids(
    api, loaded_model
):
    """UCI's ai4i2020.csv as downloaded (BOM, CRLF, header, 14 columns), sent as it is."""
    raw = RAW_CSV.read_bytes()
    response = api(v2_event("POST", "/predict", raw, {"content-type": "text/csv"}))

    assert response["statusCode"] == 200, response["body"][:300]
    answers = json_body(response)
    assert len(answers) == 10_000
    assert [answer["line"] for answer in answers] == list(range(2, 10_002))
    first = raw.decode("utf-8-sig").splitlines()[1].split(",")
    assert (answers[0]["udi"], answers[0]["product_id"]) == (first[0], first[1]) == ("1", "M14860")
    workshop_row = ",".join(first[2:8])
    assert answers[0]["failure_probability"] == pytest.approx(
        expected_score(loaded_model, workshop_row), abs=1e-7
    )


def test_a_header_in_any_column_order_and_blank_lines_are_taken(api, loaded_model):
    rows = [WORKSHOP_LINE, "M,298.4,308.2,1500,20.0,216"]
    header = "tool_wear_min,Type,Torque [Nm],rotational speed,process_temperature_k,Air temperature"

    def reordered(row: str) -> str:
        kind, air, process, speed, torque, wear = row.split(",")
        return ",".join([wear, kind, torque, speed, process, air])

    body = f"{header}\n\n{reordered(rows[0])}\n{reordered(rows[1])}\n"
    response = api(v2_event("POST", "/predict", body, {"content-type": "text/csv"}))

    assert response["statusCode"] == 200, response["body"]
    answers = json_body(response)
    assert [answer["line"] for answer in answers] == [3, 4]
    assert [answer["failure_probability"] for answer in answers] == [
        pytest.approx(expected_score(loaded_model, row), abs=1e-7) for row in rows
    ]
    assert "udi" not in answers[0]


@pytest.mark.parametrize(
    ("body", "content_type", "message", "row"),
    [
        (
            f"{WORKSHOP_LINE}\n\nL,298.4,308.2,1582,600,216\n",
            "text/csv",
            "line 3, field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]",
            3,
        ),
        (
            json.dumps({**WORKSHOP_READING, "torque_nm": 600}),
            "application/json",
            "field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]",
            None,
        ),
        (
            json.dumps([WORKSHOP_READING, {**WORKSHOP_READING, "torque_nm": 600}]),
            "application/json",
            "[1], field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]",
            1,
        ),
        (
            json.dumps({"instances": [WORKSHOP_READING, {**WORKSHOP_READING, "torque_nm": 600}]}),
            "application/json",
            "instances[1], field torque_nm: 600.0 is outside the plausible range [0.0, 500.0]",
            1,
        ),
    ],
    ids=["csv-line", "json-object", "json-list", "json-instances"],
)
def test_errors_name_the_line_of_a_file_or_the_index_of_a_json_reading(
    api, body, content_type, message, row
):
    response = api(v2_event("POST", "/predict", body, {"content-type": content_type}))
    assert response["statusCode"] == 400
    assert json_body(response) == {
        "error": "invalid_input",
        "message": message,
        "row": row,
        "field": "torque_nm",
    }


@pytest.mark.parametrize(
    "payload",
    [[WORKSHOP_READING, POWER_FAILURE], {"instances": [WORKSHOP_READING, POWER_FAILURE]}],
    ids=["list", "instances"],
)
def test_many_json_readings_get_a_list(api, payload):
    response = api(
        v2_event("POST", "/predict", json.dumps(payload), {"content-type": "application/json"})
    )
    answers = json_body(response)
    assert response["statusCode"] == 200
    assert len(answers) == 2
    assert {a["model_version"] for a in answers} == {MODEL_VERSION}


def test_a_base64_encoded_body_is_decoded(api):
    event = v2_event("POST", "/predict", WORKSHOP_LINE.encode(), {"content-type": "text/plain"})
    assert event["isBase64Encoded"] is True
    assert api(event)["statusCode"] == 200


def test_a_named_stage_prefix_is_not_part_of_the_route(api):
    event = v2_event(
        "POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}, stage="prod"
    )
    assert event["rawPath"] == "/prod/predict"
    assert api(event)["statusCode"] == 200


# ---- bad input: 4xx naming the field, never a 5xx ----------------------------------------------
@pytest.mark.parametrize(
    ("body", "content_type", "field"),
    [
        (
            {k: v for k, v in WORKSHOP_READING.items() if k != "torque_nm"},
            "application/json",
            "torque_nm",
        ),
        ({**WORKSHOP_READING, "torque_nm": "70.7"}, "application/json", "torque_nm"),
        ({**WORKSHOP_READING, "air_temperature_k": 25.0}, "application/json", "air_temperature_k"),
        ({**WORKSHOP_READING, "type": "X"}, "application/json", "type"),
        ({**WORKSHOP_READING, "spindle": 1}, "application/json", "spindle"),
        ({"instances": [WORKSHOP_READING], "extra": 1}, "application/json", "extra"),
        ("L,298.4,308.2,fast,70.7,216", "text/plain", "rotational_speed_rpm"),
        ("L,298.4,308.2,1582,70.7", "text/csv", "tool_wear_min"),
    ],
    ids=[
        "missing",
        "string",
        "range",
        "type",
        "unexpected",
        "wrapper-key",
        "csv-text",
        "csv-short",
    ],
)
def test_bad_readings_are_400_naming_the_field(api, body, content_type, field):
    text = body if isinstance(body, str) else json.dumps(body)
    response = api(v2_event("POST", "/predict", text, {"content-type": content_type}))
    assert response["statusCode"] == 400
    answer = json_body(response)
    assert answer["error"] == "invalid_input"
    assert answer["field"] == field
    assert field in answer["message"]


@pytest.mark.parametrize("body", ["", "{", "[]", '"L"', "null", "[1, 2]", "{" * 100_000])
def test_malformed_json_is_400(api, body):
    response = api(v2_event("POST", "/predict", body, {"content-type": "application/json"}))
    assert response["statusCode"] == 400
    assert json_body(response)["message"]


def test_an_unsupported_content_type_is_415(api):
    response = api(v2_event("POST", "/predict", "<reading/>", {"content-type": "application/xml"}))
    assert response["statusCode"] == 415


def test_a_body_above_6_mb_is_413(api):
    body = "L,298.4,308.2,1582,70.7,216\n" * 250_000
    assert len(body) > 6 * 1024 * 1024
    response = api(v2_event("POST", "/predict", body, {"content-type": "text/csv"}))
    assert response["statusCode"] == 413
    assert json_body(response)["error"] == "payload_too_large"


def test_invalid_base64_is_400(api):
    event = v2_event("POST", "/predict", "x", {"content-type": "text/plain"})
    event["body"], event["isBase64Encoded"] = "not base64!!", True
    assert api(event)["statusCode"] == 400


def test_unknown_routes_and_methods(api):
    assert api(v2_event("GET", "/nope"))["statusCode"] == 404
    response = api(v2_event("GET", "/predict"))
    assert response["statusCode"] == 405
    assert response["headers"]["allow"] == "POST, OPTIONS"


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"version": "2.0"},
        {"httpMethod": "POST", "path": "/predict", "body": None},
        {"headers": None},
    ],
    ids=["empty", "bare-v2", "no-body", "null-headers"],
)
def test_odd_events_get_an_answer_not_an_exception(api, event):
    response = api(event)
    assert response["statusCode"] < 500  # an empty event is a GET / (the web client)
    assert isinstance(response["body"], str)


# ---- health, API key, CORS ----------------------------------------------------------------------
def test_health_reports_the_endpoint_that_serves(api, endpoint):
    response = api(v1_event("GET", "/health"))
    assert response["statusCode"] == 200
    assert json_body(response) == {
        "status": "ok",
        "endpoint": {
            "name": ENDPOINT_NAME,
            "status": "ok",
            "url": endpoint.url,
            "model_version": MODEL_VERSION,
        },
    }


def test_health_is_503_with_the_cause_when_the_endpoint_does_not_serve():
    url = f"http://127.0.0.1:{free_port()}"
    down = make_api(url)(v2_event("GET", "/health"))
    with EndpointServer(("127.0.0.1", 0), model=None, endpoint_name=ENDPOINT_NAME) as running:
        starting = make_api(running.start().url)(v2_event("GET", "/health"))
        starting_url = running.url
    unnamed = make_api(url, endpoint_name=None)(v2_event("GET", "/health"))

    assert down["statusCode"] == starting["statusCode"] == unnamed["statusCode"] == 503
    assert json_body(down) == {
        "status": "unavailable",
        "message": f"the model endpoint {ENDPOINT_NAME} cannot be reached at {url} ([Errno 111] "
        "Connection refused); is `kedro endpoint serve` running?",
        "endpoint": {"name": ENDPOINT_NAME, "status": "unreachable", "url": url},
    }
    assert json_body(starting) == {
        "status": "unavailable",
        "message": f"the model endpoint {ENDPOINT_NAME} at {starting_url} does not serve: HTTP "
        "503, no model is loaded yet",
        "endpoint": {"name": ENDPOINT_NAME, "status": "not_ready", "url": starting_url},
    }
    assert json_body(unnamed) == {
        "status": "unavailable",
        "message": "ENDPOINT_NAME is not set: the API has no model endpoint to call",
        "endpoint": {"name": None, "status": "not_configured"},
    }


def _sagemaker_with(answer: dict | None = None, error: tuple[str, str] | None = None):
    """A real boto3 SageMaker client whose DescribeEndpoint answers ``answer`` or ``error``."""
    client = boto3.client("sagemaker", region_name="eu-west-1")
    stubber = Stubber(client)
    expected = {"EndpointName": ENDPOINT_NAME}
    if error:
        stubber.add_client_error(
            "describe_endpoint", error[0], error[1], 400, expected_params=expected
        )
    else:
        stubber.add_response("describe_endpoint", answer, expected)
    stubber.activate()
    return client


def _description(status: str, **extra) -> dict:
    return {
        "EndpointName": ENDPOINT_NAME,
        "EndpointArn": f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{ENDPOINT_NAME}",
        "EndpointConfigName": "config",
        "EndpointStatus": status,
        "CreationTime": datetime(2025, 1, 1, tzinfo=timezone.utc),
        "LastModifiedTime": datetime(2025, 1, 1, tzinfo=timezone.utc),
        **extra,
    }


@pytest.mark.parametrize(
    ("client", "status", "body"),
    [
        (
            lambda: _sagemaker_with(_description("InService")),
            200,
            {
                "status": "ok",
                "endpoint": {"name": ENDPOINT_NAME, "status": "ok", "endpoint_status": "InService"},
            },
        ),
        (
            lambda: _sagemaker_with(_description("Updating")),
            200,
            {
                "status": "ok",
                "endpoint": {"name": ENDPOINT_NAME, "status": "ok", "endpoint_status": "Updating"},
            },
        ),
        (
            lambda: _sagemaker_with(_description("Failed", FailureReason="image not found")),
            503,
            {
                "status": "unavailable",
                "message": f"the model endpoint {ENDPOINT_NAME} is Failed, not InService: image "
                "not found",
                "endpoint": {
                    "name": ENDPOINT_NAME,
                    "status": "not_in_service",
                    "endpoint_status": "Failed",
                },
            },
        ),
        (
            lambda: _sagemaker_with(
                error=(
                    "ValidationException",
                    f'Could not find endpoint "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/'
                    f'{ENDPOINT_NAME}".',
                )
            ),
            503,
            {
                "status": "unavailable",
                "message": f"the model endpoint {ENDPOINT_NAME} does not exist (ValidationException"
                ': Could not find endpoint "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/'
                f'{ENDPOINT_NAME}".)',
                "endpoint": {"name": ENDPOINT_NAME, "status": "not_found"},
            },
        ),
        (
            lambda: _sagemaker_with(error=("AccessDeniedException", "not authorized")),
            503,
            {
                "status": "unavailable",
                "message": f"cannot read the state of the model endpoint {ENDPOINT_NAME}: "
                "AccessDeniedException: not authorized",
                "endpoint": {"name": ENDPOINT_NAME, "status": "unknown"},
            },
        ),
    ],
    ids=["in-service", "updating", "failed", "not-found", "access-denied"],
)
@pytest.mark.parametrize(
    "runtime_url", [None, "https://runtime.sagemaker.eu-west-1.amazonaws.com"], ids=["aws", "url"]
)
def test_on_aws_health_asks_sagemaker_for_the_endpoints_state(client, status, body, runtime_url):
    api = Api(
        ApiSettings(
            endpoint_name=ENDPOINT_NAME, runtime_endpoint_url=runtime_url, region="eu-west-1"
        ),
        sagemaker_client=client(),
    )
    response = api(v2_event("GET", "/health"))
    assert (response["statusCode"], json_body(response)) == (status, body)


def test_the_api_key_guards_predict_but_not_health(endpoint):
    api = make_api(endpoint.url, api_key="s3cret")
    request = {"content-type": "text/plain"}

    missing = api(v2_event("POST", "/predict", WORKSHOP_LINE, request))
    wrong = api(v2_event("POST", "/predict", WORKSHOP_LINE, {**request, "x-api-key": "guess"}))
    right = api(
        v1_event(
            "POST", "/predict", WORKSHOP_LINE, {"Content-Type": "text/plain", "X-Api-Key": "s3cret"}
        )
    )

    assert missing["statusCode"] == wrong["statusCode"] == 403
    assert "x-api-key" in json_body(missing)["message"]
    assert right["statusCode"] == 200
    assert api(v2_event("GET", "/health"))["statusCode"] == 200


def test_cors_allow_list_and_preflight(endpoint):
    api = make_api(endpoint.url, cors_origins=("https://maintenance.example.com",))
    allowed = {"origin": "https://maintenance.example.com"}
    other = {"origin": "https://evil.example"}

    preflight = api(
        v2_event(
            "OPTIONS", "/predict", headers={**allowed, "access-control-request-method": "POST"}
        )
    )
    refused = api(v2_event("OPTIONS", "/predict", headers=other))
    answer = api(
        v2_event("POST", "/predict", WORKSHOP_LINE, {**allowed, "content-type": "text/plain"})
    )
    foreign = api(
        v2_event("POST", "/predict", WORKSHOP_LINE, {**other, "content-type": "text/plain"})
    )

    assert preflight["statusCode"] == 204
    assert preflight["headers"]["access-control-allow-origin"] == "https://maintenance.example.com"
    assert "POST" in preflight["headers"]["access-control-allow-methods"]
    assert "x-api-key" in preflight["headers"]["access-control-allow-headers"]
    assert refused["statusCode"] == 403
    assert answer["headers"]["access-control-allow-origin"] == "https://maintenance.example.com"
    assert "access-control-allow-origin" not in foreign["headers"]
    anyone = make_api(endpoint.url, cors_origins=("*",))
    assert (
        anyone(v2_event("GET", "/health", headers=other))["headers"]["access-control-allow-origin"]
        == "*"
    )


# ---- the endpoint failing ------------------------------------------------------------------------
def test_an_unreachable_endpoint_is_502_with_a_message():
    api = make_api(f"http://127.0.0.1:{free_port()}")
    response = api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))
    assert response["statusCode"] == 502
    assert json_body(response)["error"] == "endpoint_unreachable"
    assert ENDPOINT_NAME in json_body(response)["message"]


def test_an_endpoint_error_is_502_with_its_message(endpoint):
    api = make_api(endpoint.url, endpoint_name="no-such-endpoint")
    response = api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))
    assert response["statusCode"] == 502
    answer = json_body(response)
    assert answer["error"] == "endpoint_error"
    assert "no-such-endpoint" in answer["message"]


def test_without_an_endpoint_name_predict_is_502_and_health_503(endpoint):
    api = make_api(endpoint.url, endpoint_name=None)
    predict = api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))
    assert predict["statusCode"] == 502
    assert json_body(predict)["error"] == "endpoint_not_configured"
    assert api(v2_event("GET", "/health"))["statusCode"] == 503


# ---- the Lambda entry point --------------------------------------------------------------------
def test_the_module_handler_reads_its_settings_from_the_environment(endpoint, monkeypatch):
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT_NAME)
    monkeypatch.setenv("SAGEMAKER_RUNTIME_ENDPOINT_URL", endpoint.url)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("API_KEY", "k")
    # The package's `handler` is the function; its module is predictive_maintenance.api.handler.
    api_module = importlib.import_module("predictive_maintenance.api.handler")
    api_module._default_api.cache_clear()
    try:
        response = handler(
            v2_event(
                "POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain", "x-api-key": "k"}
            ),
            None,
        )
    finally:
        api_module._default_api.cache_clear()
    assert response["statusCode"] == 200
    assert np.isfinite(json_body(response)["failure_probability"])


def test_openapi_document_is_served(api):
    response = api(v2_event("GET", "/openapi.json"))
    document = json_body(response)
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/predict", "/health"}
    reading = document["components"]["schemas"]["Reading"]
    assert set(reading["required"]) == set(WORKSHOP_READING)


# ---- the Content-Type header: the endpoint and the API share its parser ---------------------
@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/csv; charset=UTF-8", 200),
        ('application/json; charset="utf8"', 200),
        (" \ttext/csv \t", 200),
        ("Application/JSON;charset=utf-8;x=y", 200),
        ("text/csv; charset=latin-1", 415),
        ("text/csv; charset=iso-8859-1", 415),
        ("application/json; charset=utf-16", 415),
        ('application/json; charset="UTF-16LE"', 415),
        ("text/csv; charset=us-ascii", 200),
        ("\u00a0application/json", 415),
        ("text/csv\u00a0", 415),
        ("text/csv;\u00a0charset=utf-8", 415),
        ("\u00e9text/csv", 415),
        ("text/csv; charset=", 415),
        ("text/csv, application/json", 415),
    ],
)
def test_the_endpoint_and_the_api_answer_each_content_type_alike(
    api, endpoint, content_type, status
):
    """Odd headers: the same status, and for a refusal the same message, on both."""
    is_json = "json" in content_type.lower()
    body = json.dumps({"instances": [WORKSHOP_READING]}) if is_json else WORKSHOP_LINE
    # http.client sends the header as Latin-1, so the endpoint reads the same characters.
    connection = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=30)
    try:
        connection.request("POST", "/invocations", body.encode(), {"Content-Type": content_type})
        answer = connection.getresponse()
        endpoint_body = json.loads(answer.read())
        endpoint_status = answer.status
    finally:
        connection.close()

    response = api(v2_event("POST", "/predict", body, {"content-type": content_type}))

    assert (endpoint_status, response["statusCode"]) == (status, status), response["body"]
    if status != 200:
        refused = json_body(response)
        assert refused["error"] == endpoint_body["error"] == "unsupported_media_type"
        assert refused["message"] == endpoint_body["message"]
        assert repr(content_type) in refused["message"]  # each refusal names the header


def test_the_api_alone_takes_text_plain_and_a_missing_content_type_as_before(api):
    plain = api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))
    missing = api(v2_event("POST", "/predict", json.dumps(WORKSHOP_READING)))
    xml = api(v2_event("POST", "/predict", "<reading/>", {"content-type": "application/xml"}))

    assert (plain["statusCode"], missing["statusCode"], xml["statusCode"]) == (200, 200, 415)
    assert json_body(xml)["message"] == (
        "content type 'application/xml' is not supported; send one of "
        "['application/json', 'text/csv', 'text/plain']"
    )


# ---- inference ids: the key ground truth is reported under ---------------------------------------
def test_the_inference_id_reaches_the_endpoints_capture_and_is_answered(loaded_model, tmp_path):
    from predictive_maintenance.serving.capture import CaptureConfig, DataCapture  # noqa: PLC0415

    capture = DataCapture(CaptureConfig(enabled=True, directory=tmp_path))
    with EndpointServer(
        ("127.0.0.1", 0), model=loaded_model, endpoint_name=ENDPOINT_NAME, capture=capture
    ) as endpoint:
        endpoint.start()
        api = make_api(endpoint.url)
        body = json.dumps(WORKSHOP_READING)
        given = api(
            v2_event(
                "POST",
                "/predict",
                body,
                {"content-type": "application/json", "x-inference-id": "M14860/2026-12-03T10"},
            ),
            None,
        )
        generated = api(v2_event("POST", "/predict", body, {"content-type": "application/json"}))
        refused = api(
            v2_event(
                "POST",
                "/predict",
                body,
                {"content-type": "application/json", "x-inference-id": "x" * 65},
            )
        )
        capture.close()

    assert given["statusCode"] == generated["statusCode"] == 200
    assert given["headers"]["x-inference-id"] == "M14860/2026-12-03T10"
    new_id = generated["headers"]["x-inference-id"]
    assert len(new_id) == 32
    assert refused["statusCode"] == 400
    assert json_body(refused)["field"] == "x-inference-id"
    records = [
        json.loads(line)
        for path in sorted(tmp_path.rglob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert [r["eventMetadata"]["inferenceId"] for r in records] == [
        "M14860/2026-12-03T10",
        new_id,
    ]
