"""The Lambda handler against any event it can be given: API Gateway's two payload formats with
junk in every field, and events that are not API Gateway's at all. Every answer is a 2xx or a
4xx naming the cause, never a 500; the model endpoint is called only with valid readings."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictive_maintenance.api.handler import ROUTES, Api, ApiSettings
from predictive_maintenance.serving.requests import ServingError, parse_readings
from tests.api.conftest import ENDPOINT_NAME
from tests.api.events import v1_event, v2_event
from tests.conftest import WORKSHOP_READING

API_KEY = "s3cret"
ORIGIN = "https://app.example"
WORKSHOP_LINE = "L,298.4,308.2,1582,70.7,216"


class FakeRuntime:
    """SageMaker Runtime's InvokeEndpoint: fails the test unless it is sent valid readings."""

    def invoke_endpoint(self, *, EndpointName, ContentType, Accept, Body, InferenceId):
        assert (EndpointName, ContentType, Accept) == (
            ENDPOINT_NAME,
            "text/csv",
            "application/json",
        )
        assert 0 < len(InferenceId) <= 64
        try:
            readings = parse_readings(Body, "text/csv")
        except ServingError as error:  # pragma: no cover - the failure this test looks for
            pytest.fail(f"the endpoint was called with invalid readings: {error.message}")
        answer = {
            "predictions": [{"score": 0.25, "predicted_label": 0}] * len(readings),
            "decision_threshold": 0.5,
            "model_version": 7,
        }
        return {"Body": io.BytesIO(json.dumps(answer).encode())}


class FakeSageMaker:
    def describe_endpoint(self, *, EndpointName):
        return {"EndpointName": EndpointName, "EndpointStatus": "InService"}


def make_api() -> Api:
    return Api(
        ApiSettings(
            endpoint_name=ENDPOINT_NAME,
            api_key=API_KEY,
            cors_origins=(ORIGIN,),
            region="eu-west-1",
        ),
        runtime_client=FakeRuntime(),
        sagemaker_client=FakeSageMaker(),
    )


def check_answer(response: Any) -> None:
    """A Lambda proxy answer: 2xx or 4xx, string headers, a JSON error naming the cause."""
    assert isinstance(response, dict)
    status = response["statusCode"]
    assert type(status) is int
    assert 200 <= status < 300 or 400 <= status < 500, response
    headers = response["headers"]
    assert isinstance(headers, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    assert isinstance(response["body"], str)
    assert response["isBase64Encoded"] is False
    json.dumps(response)  # the Lambda runtime serialises it
    if status >= 400:
        assert headers["content-type"] == "application/json"
        body = json.loads(response["body"])
        assert isinstance(body["error"], str)
        assert isinstance(body["message"], str)
        assert body["error"]
        assert body["message"]


# ---- strategies ----------------------------------------------------------------------------------
#: Any text, lone surrogates, NUL and non-ASCII digits included.
TEXT = st.text(
    st.characters(exclude_categories=()) | st.sampled_from("\ud800\udfff\x00²é\u00a0;,=\r\n"),
    max_size=12,
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=6,
)
METHODS = st.sampled_from(["GET", "POST", "OPTIONS", "post", "PUT", "TRACE", "HEAD", ""]) | TEXT
PATHS = st.sampled_from([*ROUTES, "/predict/", "/prod/predict", "/nope", ""]) | TEXT
HEADER_NAMES = st.sampled_from(
    ["content-type", "Content-Type", "x-api-key", "X-Api-Key", "origin", "content-length"]
)
HEADER_VALUES = (
    st.sampled_from(
        [
            "application/json",
            "text/csv; charset=utf-8",
            "text/plain",
            "application/json; charset=latin-1",
            "\u00a0application/json",
            API_KEY,
            f"{API_KEY}\ud800",
            ORIGIN,
            "https://evil.example",
            "12",
            "²",
            "-1",
            "99999999999999999999",
        ]
    )
    | TEXT
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/csv", "text/plain", ""])
HEADERS = st.dictionaries(HEADER_NAMES | TEXT, HEADER_VALUES, max_size=5)
BODIES = (
    st.sampled_from(
        [
            json.dumps(WORKSHOP_READING),
            json.dumps({"instances": [WORKSHOP_READING, WORKSHOP_READING]}),
            json.dumps([WORKSHOP_READING]),
            WORKSHOP_LINE,
            f"{WORKSHOP_LINE}\r\nM,298.4,308.2,1500,20.0,216\r\n",
            '{"type": "L", "type": "M"}',
            '{"instances": []}',
            "[" * 5000,
            "\ufeff" + json.dumps(WORKSHOP_READING),
            "",
        ]
    )
    | TEXT
    | JSON_VALUES.map(json.dumps)
)
#: Fields of either payload format, each replaced by junk (or deleted) in some examples.
V2_FIELDS = ["version", "rawPath", "headers", "body", "isBase64Encoded", "requestContext"]
V1_FIELDS = ["version", "path", "httpMethod", "headers", "multiValueHeaders", "body"]
V1_FIELDS += ["isBase64Encoded", "queryStringParameters"]
DELETED = object()
READING_JSON = json.dumps(WORKSHOP_READING)


@st.composite
def events(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["v2", "v1", "junk"]))
    if kind == "junk":
        return draw(JSON_VALUES)
    # Mostly POST /predict with the API key, so that most examples reach the parsers.
    predict = draw(st.integers(0, 3)) > 0
    method = "POST" if predict and draw(st.booleans()) else draw(METHODS)
    path = "/predict" if predict else draw(PATHS)
    headers = {
        "content-type": draw(CONTENT_TYPES | HEADER_VALUES),
        "x-api-key": draw(st.sampled_from([API_KEY, API_KEY, "wrong", f"{API_KEY}\ud800"])),
        **draw(HEADERS),
    }
    body = draw(BODIES)
    if kind == "v2":
        event = v2_event(
            method, path, body, headers, stage=draw(st.sampled_from(["$default", "prod"]))
        )
        fields = V2_FIELDS
        if draw(st.booleans()):  # junk inside requestContext
            context = dict(event["requestContext"])
            context[draw(st.sampled_from(["http", "stage"]))] = draw(JSON_VALUES | TEXT)
            if isinstance(context.get("http"), dict):
                context["http"] = {**context["http"], "method": draw(JSON_VALUES | METHODS)}
            event["requestContext"] = context
    else:
        event = v1_event(method, path, body, headers)
        fields = V1_FIELDS
    if draw(st.booleans()):  # a base64 body, valid or not
        event["isBase64Encoded"] = True
        if draw(st.booleans()):
            event["body"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode()
    for name in draw(st.lists(st.sampled_from(fields), max_size=2, unique=True)):
        value = draw(st.just(DELETED) | JSON_VALUES | TEXT)
        if value is DELETED:
            event.pop(name, None)
        else:
            event[name] = value
    return event


@settings(
    derandomize=True,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(event=events())
def test_every_event_gets_a_2xx_or_a_4xx_naming_the_cause(event):
    check_answer(make_api()(event, None))


# ---- the shapes measured to answer 500 (issue 13) ---------------------------------------------
def _predict(headers: dict[str, str] | None = None, body: Any = READING_JSON):
    event = v2_event(
        "POST", "/predict", None, {"content-type": "application/json", **(headers or {})}
    )
    event["body"] = body
    return event


def _v1_with_integer_method() -> dict[str, Any]:
    event = v1_event("POST", "/predict", json.dumps(WORKSHOP_READING))
    event["httpMethod"] = 1
    return event


@pytest.mark.parametrize(
    ("event", "status", "error", "field"),
    [
        (_predict({"x-api-key": "s3cret\ud800"}), 403, "forbidden", None),
        (_predict({"x-api-key": API_KEY}, [WORKSHOP_READING]), 400, "invalid_event", "body"),
        (_predict({"x-api-key": API_KEY}, WORKSHOP_READING), 400, "invalid_event", "body"),
        (_v1_with_integer_method(), 400, "invalid_event", "httpMethod"),
        ([v2_event("GET", "/health")], 400, "invalid_event", "event"),
        (_predict({"x-api-key": API_KEY, "content-length": "²"}), 200, None, None),
        (
            _predict({"x-api-key": API_KEY}, '{"type": "L", "type": "M"}'),
            400,
            "invalid_input",
            "type",
        ),
    ],
    ids=[
        "surrogate-api-key",
        "list-body",
        "dict-body",
        "integer-method",
        "list-event",
        "non-ascii-content-length",
        "duplicate-key",
    ],
)
def test_the_shapes_that_answered_500_now_answer_with_their_cause(event, status, error, field):
    response = make_api()(event, None)

    check_answer(response)
    assert response["statusCode"] == status
    if error:
        body = json.loads(response["body"])
        assert (body["error"], body.get("field")) == (error, field)
        assert field is None or repr(field) in body["message"] or field in body["message"]
