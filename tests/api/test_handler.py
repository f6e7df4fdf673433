"""The Lambda handler with real-shaped API Gateway events (payload 2.0 and 1.0), calling a real
local endpoint through boto3's sagemaker-runtime client."""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np
import pytest

from predictive_maintenance.api import handler
from predictive_maintenance.serving.inference import input_fn, predict_fn
from tests.api.conftest import ENDPOINT_NAME, MODEL_VERSION, make_api
from tests.api.events import v1_event, v2_event
from tests.conftest import WORKSHOP_READING
from tests.support.net import free_port

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
def test_health(api):
    response = api(v1_event("GET", "/health"))
    assert response["statusCode"] == 200
    assert json_body(response) == {"status": "ok", "endpoint": ENDPOINT_NAME}


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


def test_without_an_endpoint_name_predict_is_502_and_health_still_answers(endpoint):
    api = make_api(endpoint.url, endpoint_name=None)
    assert (
        api(v2_event("POST", "/predict", WORKSHOP_LINE, {"content-type": "text/plain"}))[
            "statusCode"
        ]
        == 502
    )
    assert api(v2_event("GET", "/health"))["statusCode"] == 200


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
