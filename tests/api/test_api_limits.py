"""The local API's HTTP layer over real sockets: security headers on every answer, the page's
Content-Security-Policy, the concurrency cap (429), API Gateway's 10 MB and Lambda's 6 MB body
limits, malformed framing, slow clients, and the charsets the API and the endpoint share.

Every request says ``Connection: close`` (or is refused, and the server closes), and the servers
made here have timeouts of a second or less, so no test waits for a keep-alive to expire.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from predictive_maintenance.api.openapi import openapi_document
from predictive_maintenance.api.server import ApiServer, api_limits, make_server
from predictive_maintenance.serving.contract import (
    MAX_PAYLOAD_BYTES,
    PAGE_SECURITY_POLICY,
    SECURITY_HEADERS,
)
from tests.api.conftest import make_api
from tests.serving.conftest import (
    CSV_ROW,
    RawResponse,
    exchange,
    parse_response,
    read_until_closed,
)

ORIGIN = "https://maintenance.example.com"
API_GATEWAY_LIMIT = 10 * 1024 * 1024
#: Short timeouts: a test that holds a connection open waits half a second, not 75.
QUICK = {"head_timeout": 0.5, "body_timeout": 0.5, "keep_alive_timeout": 1}


@pytest.fixture(scope="module")
def api_server(endpoint) -> Iterator[ApiServer]:
    """The API (CORS for ORIGIN) in front of the endpoint, with half-second read timeouts."""
    api = make_api(endpoint.url, cors_origins=(ORIGIN,))
    with make_server("127.0.0.1", 0, api, limits=api_limits(QUICK)) as server:
        yield server.start()


def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str | None = "text/csv",
    headers: str = "",
    length: int | None = None,
) -> bytes:
    """A whole request with ``Connection: close`` (``headers``: more header lines, CRLF-ended;
    ``length``: a Content-Length other than the body's)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}"
    if content_type is not None:
        head += f"Content-Type: {content_type}\r\n"
    if body or length is not None or method in ("POST", "PUT"):
        head += f"Content-Length: {len(body) if length is None else length}\r\n"
    return head.encode("latin-1") + b"\r\n" + body


def answer(server: ApiServer | object, *parts: bytes, pause: float = 0.0) -> RawResponse:
    return parse_response(exchange(server.port, *parts, pause=pause, timeout=10.0))


def assert_secured(response: RawResponse, *, page: bool = False) -> None:
    """Each security header once, the page's full policy on the page, and no ``server``."""
    for name, value in SECURITY_HEADERS:
        values = [v for k, v in response.headers if k == name]
        page_policy = page and name == "content-security-policy"
        assert values == [PAGE_SECURITY_POLICY if page_policy else value], (name, response.headers)
    assert response.header("server") is None, response.headers


def assert_error(response: RawResponse, status: int, error: str, *fragments: str) -> dict:
    assert response.status == status, (response.status, response.body[:300])
    body = response.json()
    assert body["error"] == error, body
    for fragment in fragments:
        assert fragment in body["message"], body
    assert_secured(response)
    return body


# ---- security headers --------------------------------------------------------------------------
READING_JSON = json.dumps(
    {
        "type": "L",
        "air_temperature_k": 298.4,
        "process_temperature_k": 308.2,
        "rotational_speed_rpm": 1582,
        "torque_nm": 70.7,
        "tool_wear_min": 216,
    }
).encode()


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(request("GET", "/health", content_type=None), 200, id="health"),
        pytest.param(request("GET", "/openapi.json", content_type=None), 200, id="openapi.json"),
        pytest.param(request("POST", "/predict", CSV_ROW.encode()), 200, id="predict-csv"),
        pytest.param(
            request("POST", "/predict", READING_JSON, content_type="application/json"),
            200,
            id="predict-json",
        ),
        pytest.param(request("POST", "/predict", b"L,1,2,3"), 400, id="invalid-reading"),
        pytest.param(request("GET", "/nope", content_type=None), 404, id="no-route"),
        pytest.param(request("DELETE", "/predict", content_type=None), 405, id="wrong-method"),
        pytest.param(
            request("POST", "/predict", b"x", content_type="image/png"), 415, id="content-type"
        ),
        pytest.param(
            request("OPTIONS", "/predict", content_type=None, headers=f"Origin: {ORIGIN}\r\n"),
            204,
            id="preflight",
        ),
        pytest.param(
            request("POST", "/predict", length=API_GATEWAY_LIMIT + 1), 413, id="server-413"
        ),
        pytest.param(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="malformed-framing",
        ),
    ],
)
def test_every_api_answer_carries_the_security_headers_and_no_server(api_server, raw, status):
    response = answer(api_server, raw)

    assert response.status == status, response.body[:300]
    assert_secured(response)
    if status >= 400:
        body = response.json()
        assert body["error"], body
        assert body["message"], body


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css"])
def test_the_page_and_its_files_carry_the_full_content_security_policy(api_server, path):
    response = answer(api_server, request("GET", path, content_type=None))

    assert response.status == 200
    assert_secured(response, page=True)
    assert "frame-ancestors 'none'" in PAGE_SECURITY_POLICY
    assert "'unsafe-inline'" not in PAGE_SECURITY_POLICY


# ---- the concurrency cap -----------------------------------------------------------------------
def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_above_max_concurrency_the_api_answers_429_with_retry_after(endpoint):
    """One request held open mid-body fills a cap of one: the next gets 429 at once, JSON with
    Retry-After and the API's CORS headers; the held one, completed, is answered."""
    api = make_api(endpoint.url, cors_origins=(ORIGIN,))
    limits = api_limits({**QUICK, "body_timeout": 5, "max_concurrency": 1, "retry_after": 2})
    body = f"{CSV_ROW}\n".encode()
    with make_server("127.0.0.1", 0, api, limits=limits) as server:
        server.start()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as held:
            held.sendall(request("POST", "/predict", body)[: -len(body) + 5])
            wait_until(lambda: server.gate.active == 1)

            refused = answer(
                server, request("POST", "/predict", body, headers=f"Origin: {ORIGIN}\r\n")
            )

            held.sendall(body[5:])
            completed = parse_response(read_until_closed(held))
        assert server.gate.refused == 1
    assert_error(refused, 429, "too_many_requests", "1 requests, its limit")
    assert refused.header("retry-after") == "2"
    assert refused.header("access-control-allow-origin") == ORIGIN
    assert completed.status == 200, completed.body
    assert json.loads(completed.body)["failure_predicted"] is True


# ---- body limits -------------------------------------------------------------------------------
def test_above_api_gateways_10_mb_the_server_answers_413_from_content_length(api_server):
    started = time.monotonic()
    response = answer(
        api_server,
        request("POST", "/predict", length=API_GATEWAY_LIMIT + 1, headers=f"Origin: {ORIGIN}\r\n"),
    )

    assert time.monotonic() - started < 2  # no body was sent, none was waited for
    assert_error(response, 413, "payload_too_large", f"{API_GATEWAY_LIMIT:,}")
    assert response.header("access-control-allow-origin") == ORIGIN


def test_between_6_and_10_mb_the_handler_answers_413_as_lambda(api_server):
    body = f"{CSV_ROW}\n".encode() * (7 * 1024 * 1024 // (len(CSV_ROW) + 1))
    assert MAX_PAYLOAD_BYTES < len(body) < API_GATEWAY_LIMIT

    response = answer(api_server, request("POST", "/predict", body))

    assert_error(response, 413, "payload_too_large", f"{MAX_PAYLOAD_BYTES:,}")
    assert response.header("cache-control") == "no-store"  # the handler's answer, not the server's


# ---- framing and slow clients ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("framing", "reason"),
    [
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n-1\r\nxx\r\n0\r\n\r\n",
            "chunk size",
            id="chunk-size-minus-1",
        ),
        pytest.param(
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Content-Length",
            id="content-length-and-chunked",
        ),
    ],
)
def test_malformed_framing_is_400_json_naming_the_reason(api_server, framing, reason):
    raw = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n" + framing

    response = answer(api_server, raw)

    assert_error(response, 400, "bad_request", "malformed HTTP request", reason)


def test_a_slow_request_head_is_408_json(api_server):
    started = time.monotonic()
    response = answer(api_server, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")

    assert_error(response, 408, "request_timeout", "0.5 s")
    assert 0.4 < time.monotonic() - started < 3


def test_a_slow_body_is_408_json(api_server):
    raw = request("POST", "/predict", f"{CSV_ROW}\n".encode(), headers=f"Origin: {ORIGIN}\r\n")

    response = answer(api_server, raw[:-10])  # ten bytes short, and then silence

    assert_error(response, 408, "request_timeout", "0.5 s")
    assert response.header("access-control-allow-origin") == ORIGIN


# ---- charsets: the API and the endpoint agree ---------------------------------------------------
@pytest.mark.parametrize(
    ("charset", "accepted"),
    [
        ("utf-8", True),
        ("UTF-8", True),
        ("utf8", True),
        ("Utf8", True),
        ('"utf-8"', True),
        ("us-ascii", True),
        ("US-ASCII", True),
        ("ascii", True),
        ("latin-1", False),
        ("ISO-8859-1", False),
        ("utf-16", False),
        ("UTF-16LE", False),
    ],
)
def test_the_api_and_the_endpoint_accept_the_same_charsets(api_server, endpoint, charset, accepted):
    content_type = f"text/csv; charset={charset}"
    body = f"{CSV_ROW}\n".encode()
    api = answer(api_server, request("POST", "/predict", body, content_type=content_type))
    model = answer(endpoint, request("POST", "/invocations", body, content_type=content_type))

    for response in (api, model):
        if accepted:
            assert response.status == 200, response.body
        else:
            assert_error(response, 415, "unsupported_media_type", charset.strip('"'))


def test_the_apis_document_names_the_servers_own_answers():
    responses = openapi_document()["paths"]["/predict"]["post"]["responses"]

    assert {"400", "408", "413", "415", "429"} <= set(responses)
    assert "Retry-After" in responses["429"]["headers"]
    assert "10 MB" in responses["413"]["description"]
