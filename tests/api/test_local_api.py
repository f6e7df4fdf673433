"""The local API as users run it: `kedro api serve` in front of a running endpoint, and
schemathesis against the OpenAPI document the API serves (no 5xx, responses as documented)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from predictive_maintenance.api.openapi import openapi_document
from predictive_maintenance.api.server import make_server
from tests.api.conftest import ENDPOINT_NAME, MODEL_VERSION, make_api
from tests.conftest import WORKSHOP_READING
from tests.support.cli import KEDRO
from tests.support.net import free_port, wait_for
from tests.support.project import PROJECT_ROOT


@pytest.fixture(scope="module")
def local_api(endpoint) -> Iterator[str]:
    """The API's local server (the handler behind real HTTP), in this process."""
    with make_server("127.0.0.1", 0, make_api(endpoint.url)) as server:
        yield server.start().url


def post(url: str, body: bytes, content_type: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, body, {"content-type": content_type}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_kedro_api_serve_answers_in_front_of_the_endpoint(endpoint):
    port = free_port()
    process = subprocess.Popen(
        [KEDRO, "api", "serve", "--port", str(port), "--endpoint-url", endpoint.url],
        cwd=PROJECT_ROOT,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(process, lambda: urllib.request.urlopen(f"{base}/health", timeout=2).status == 200)
        status, answer = post(f"{base}/predict", b"L,298.4,308.2,1582,70.7,216", "text/plain")
        assert status == 200
        assert answer["model_version"] == MODEL_VERSION
        assert answer["failure_predicted"] is True
        status, answer = post(
            f"{base}/predict", json.dumps({"type": "L"}).encode(), "application/json"
        )
        assert status == 400
        assert answer["field"] == "air_temperature_k"
        with urllib.request.urlopen(f"{base}/", timeout=10) as page:
            assert page.headers["content-type"].startswith("text/html")
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert f"calling endpoint {ENDPOINT_NAME}" in output


def test_the_local_server_turns_requests_into_v2_events(local_api):
    status, answer = post(
        f"{local_api}/predict", json.dumps([WORKSHOP_READING] * 3).encode(), "application/json"
    )
    assert status == 200
    assert len(answer) == 3
    oversized = b"L,298.4,308.2,1582,70.7,216\n" * 250_000
    status, answer = post(f"{local_api}/predict", oversized, "text/csv")
    assert status == 413


schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def api_base(local_api) -> str:
    return local_api


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_answers_as_documented(case, api_base):
    # Connection: close, so that no connection is left waiting for the keep-alive timeout.
    response = case.call(base_url=api_base, headers={"Connection": "close"}, timeout=10)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    assert response.status_code < 500
