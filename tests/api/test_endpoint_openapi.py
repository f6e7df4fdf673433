"""The endpoint's OpenAPI document (serving/openapi.py) against the endpoint itself: schemathesis
sends what the document allows, and bodies it does not, to a real EndpointServer on 127.0.0.1;
no answer is a 5xx, and every answer is one the document describes (status, content type, body)."""

from __future__ import annotations

import subprocess
import sys

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from predictive_maintenance.api.openapi import openapi_document
from predictive_maintenance.serving.openapi import endpoint_openapi_document
from tests.api.conftest import ENDPOINT_NAME

#: SageMaker Runtime's route with the endpoint's own name as its example, and other names (404).
schema = schemathesis.openapi.from_dict(endpoint_openapi_document(ENDPOINT_NAME))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_5xx_and_answers_as_documented(case, endpoint):
    # Connection: close, so that no connection is left waiting for the keep-alive timeout.
    response = case.call(base_url=endpoint.url, headers={"Connection": "close"}, timeout=10)
    case.validate_response(response, checks=CHECKS)
    assert response.status_code < 500


def test_the_document_needs_only_the_standard_library():
    """It imports where uvicorn (or numpy) is missing: a fresh interpreter loads none of them."""
    program = (
        "import sys\n"
        "from predictive_maintenance.serving.openapi import endpoint_openapi_document\n"
        "document = endpoint_openapi_document()\n"
        "heavy = sorted(name for name in ('uvicorn', 'httptools', 'uvloop', 'numpy', 'pandas',"
        " 'xgboost') if name in sys.modules)\n"
        "print(heavy, sorted(document['paths']))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    ).stdout

    assert output.strip() == (
        "[] ['/capture-stats', '/endpoints/{EndpointName}/invocations', '/invocations', '/ping']"
    )


def test_both_documents_describe_a_reading_and_an_error_alike():
    endpoint = endpoint_openapi_document()["components"]["schemas"]
    api = openapi_document()["components"]["schemas"]

    assert endpoint["Reading"] == api["Reading"]
    assert endpoint["Error"]["required"] == api["Error"]["required"] == ["error", "message"]
    assert set(endpoint["Error"]["properties"]) == set(api["Error"]["properties"])


def test_every_invocation_error_is_documented_as_json():
    operations = endpoint_openapi_document()["paths"]
    for path in ("/invocations", "/endpoints/{EndpointName}/invocations"):
        responses = operations[path]["post"]["responses"]
        for status in ("400", "404", "405", "406", "408", "411", "413", "414", "415", "431", "503"):
            content = responses[status]["content"]
            assert list(content) == ["application/json"], (path, status)
        assert "Retry-After" in responses["503"]["headers"]
        assert set(responses["200"]["content"]) == {"text/csv", "application/json"}
