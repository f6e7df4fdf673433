"""The endpoint's HTTP limits over real sockets: framing, sizes, timeouts, the concurrency cap.

Each test talks to a real :class:`EndpointServer` on 127.0.0.1 with small limits (half-second
timeouts, a 64 KiB body, 10 rows, two requests at once), mostly as raw bytes: what http.client
would never send. Every refusal is checked for its status, a JSON body naming the cause, the
security headers, and the absence of a ``server`` header.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from predictive_maintenance.serving.http import Limits
from predictive_maintenance.serving.server import EndpointServer
from tests.serving.conftest import (
    CSV_ROW,
    ENDPOINT_NAME,
    RawResponse,
    exchange,
    parse_response,
    read_until_closed,
)

LIMITS = Limits(
    head_timeout=0.5,
    body_timeout=0.5,
    keep_alive_timeout=0.5,
    max_concurrency=2,
    max_rows=10,
    max_body_bytes=64 * 1024,
    max_head_bytes=4096,
    max_url_bytes=256,
)
RUNTIME_PATH = f"/endpoints/{ENDPOINT_NAME}/invocations"


@pytest.fixture(scope="module")
def limited(loaded_model) -> Iterator[EndpointServer]:
    """An endpoint under :data:`LIMITS`, serving the full model as version 3."""
    with EndpointServer(
        ("127.0.0.1", 0),
        model=loaded_model.with_version(3),
        endpoint_name=ENDPOINT_NAME,
        limits=LIMITS,
    ) as server:
        yield server.start()


@pytest.fixture
def endpoint(loaded_model) -> Iterator[Callable[..., EndpointServer]]:
    """Starts endpoints under :data:`LIMITS` with some limits changed; stops them afterwards."""
    servers: list[EndpointServer] = []

    def start(**changes: Any) -> EndpointServer:
        server = EndpointServer(
            ("127.0.0.1", 0),
            model=loaded_model.with_version(3),
            endpoint_name=ENDPOINT_NAME,
            limits=dataclasses.replace(LIMITS, **changes),
        )
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.close()


def request(
    method: str = "POST",
    path: str = "/invocations",
    body: bytes = b"",
    *,
    content_type: str = "text/csv",
    length: bool = True,
    close: bool = True,
    extra: bytes = b"",
) -> bytes:
    """A whole request as bytes (``Connection: close`` unless not ``close``; ``extra``: more
    header lines)."""
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    if close:
        head += b"Connection: close\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n".encode()
    if length:
        head += f"Content-Length: {len(body)}\r\n".encode()
    return head + extra + b"\r\n" + body


def answer(server: EndpointServer, *parts: bytes, pause: float = 0.0) -> RawResponse:
    return parse_response(exchange(server.port, *parts, pause=pause))


def assert_hardened(response: RawResponse) -> None:
    """The headers every answer carries, and the one none does."""
    assert response.header("x-content-type-options") == "nosniff"
    assert response.header("x-frame-options") == "DENY"
    assert "frame-ancestors 'none'" in (response.header("content-security-policy") or "")
    assert response.header("server") is None


def assert_error(response: RawResponse, status: int, error: str, *fragments: str) -> dict:
    """``response`` is ``status`` with the JSON ``error`` and a message holding ``fragments``."""
    assert response.status == status, (response.status, response.body)
    body = response.json()
    assert body["error"] == error, body
    for fragment in fragments:
        assert fragment in body["message"], body
    assert_hardened(response)
    return body


def read_response(connection: socket.socket) -> RawResponse:
    """One response from a connection that stays open (its body framed by Content-Length)."""
    received = b""
    while b"\r\n\r\n" not in received:
        data = connection.recv(65536)
        assert data, f"closed after {received!r}"
        received += data
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(parse_response(head + b"\r\n\r\n").header("content-length") or 0)
    while len(body) < length:
        data = connection.recv(65536)
        assert data, "closed mid-body"
        body += data
    return parse_response(head + b"\r\n\r\n" + body)


def time_to_close(connection: socket.socket, limit: float = 5.0) -> float:
    """Seconds until the server closes ``connection`` (which must stay silent until then)."""
    connection.settimeout(limit)
    started = time.monotonic()
    assert read_until_closed(connection) == b""
    return time.monotonic() - started


# ---- framing -----------------------------------------------------------------------------------
SMUGGLED = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@pytest.mark.parametrize(
    ("framing", "reason"),
    [
        pytest.param(
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
            "Transfer-Encoding can't be present with Content-Length",
            id="content-length-and-chunked",
        ),
        pytest.param(
            b"Content-Length: 5\r\nContent-Length: 45\r\n\r\nL,298" + SMUGGLED,
            "Duplicate Content-Length",
            id="two-content-lengths",
        ),
        *(
            pytest.param(
                b"Transfer-Encoding: chunked\r\n\r\n%s\r\n%s\r\n0\r\n\r\n" % (size, b"x" * 16),
                "chunk size",
                id=f"chunk-size-{size.decode()}",
            )
            for size in (b"-1", b"-5", b"0x10", b"1_0", b"zz")
        ),
    ],
)
def test_ambiguous_or_malformed_framing_is_400(limited, framing, reason):
    raw = b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n" + framing

    response = answer(limited, raw)

    assert_error(response, 400, "bad_request", "malformed HTTP request", reason)
    assert response.header("connection") == "close"
    assert response.rest == b""  # one answer: nothing after the framing was taken as a request


def test_an_unknown_method_is_400_json(limited):
    response = answer(limited, request("FOO", "/invocations", CSV_ROW.encode()))

    assert_error(response, 400, "bad_request", "Invalid method")
    assert response.header("connection") == "close"


@pytest.mark.parametrize("method", ["TRACE", "PUT", "DELETE", "GET"])
@pytest.mark.parametrize("path", ["/invocations", RUNTIME_PATH])
def test_other_methods_on_invocations_are_405_json_with_allow(limited, method, path):
    response = answer(limited, request(method, path, content_type="", length=False))

    assert_error(response, 405, "method_not_allowed", method, "use POST")
    assert response.header("allow") == "POST"


def test_unknown_paths_are_404_json(limited):
    response = answer(limited, request("POST", "/predict", CSV_ROW.encode()))

    assert_error(response, 404, "not_found", "/predict", "/invocations")


# ---- sizes -------------------------------------------------------------------------------------
def test_a_long_url_is_414_json(limited):
    response = answer(limited, request("GET", "/ping?" + "a" * 300))

    assert_error(response, 414, "uri_too_long", "256 bytes")
    assert response.header("connection") == "close"


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([b"X-Big: " + b"a" * 5000 + b"\r\n"], id="one-large-header"),
        pytest.param([b"".join(b"X-%d: 1\r\n" % n for n in range(600))], id="many-headers"),
        pytest.param([b"X-Big: " + b"a" * 3000, b"a" * 3000 + b"\r\n"], id="in-two-reads"),
    ],
)
def test_a_large_request_head_is_431_json(limited, parts):
    head = b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"

    response = answer(limited, head + parts[0], *parts[1:], b"\r\n", pause=0.05)

    assert_error(response, 431, "request_header_fields_too_large", "4,096 bytes")
    assert response.header("connection") == "close"


def test_a_head_just_within_the_limit_is_served(limited):
    padding = b"X-Pad: " + b"a" * 3500 + b"\r\n"

    response = answer(
        limited, request("GET", "/ping", content_type="", length=False, extra=padding)
    )

    assert response.status == 200
    assert_hardened(response)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_above_the_limit_is_413_json_and_the_connection_stays_usable(limited, chunked):
    connection = http.client.HTTPConnection("127.0.0.1", limited.port, timeout=10)
    body = b"x" * (100 * 1024)
    parts = iter([body[i : i + 16384] for i in range(0, len(body), 16384)])

    connection.request(
        "POST",
        "/invocations",
        body=parts if chunked else body,
        headers={"Content-Type": "text/csv"},
    )
    refused = connection.getresponse()
    refusal = json.loads(refused.read())
    connection.request("POST", "/invocations", body=CSV_ROW, headers={"Content-Type": "text/csv"})
    after = connection.getresponse()

    assert refused.status == 413
    assert refusal["error"] == "payload_too_large"
    assert "65,536" in refusal["message"]
    assert refused.getheader("x-content-type-options") == "nosniff"
    assert refused.getheader("server") is None
    assert after.status == 200
    assert 0 < float(after.read()) < 1


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [("/invocations", 100_000, 413), ("/nowhere", 30, 404)],
    ids=["413-by-content-length", "404"],
)
def test_a_refusal_before_100_continue_closes_the_connection(limited, path, length, status):
    """The client holds its body back for "100 Continue"; answered first, it sends none, so its
    next bytes must not be taken for the body: the answer says close, and the server closes."""
    extra = b"Expect: 100-continue\r\nContent-Length: %d\r\n" % length
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
        connection.sendall(request(path=path, length=False, close=False, extra=extra))
        response = read_response(connection)
        closed_after = time_to_close(connection)

    assert response.status == status
    assert response.header("connection") == "close"
    assert_hardened(response)
    assert closed_after < LIMITS.body_timeout  # at once, not when the drain gives up


def test_a_body_sent_after_100_continue_is_read(limited):
    body = CSV_ROW.encode()
    head = request(body=body, extra=b"Expect: 100-continue\r\n")[: -len(body)]
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
        connection.sendall(head)
        assert connection.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        connection.sendall(body)
        response = parse_response(read_until_closed(connection))

    assert response.status == 200
    assert 0 < float(response.body) < 1


def test_a_chunked_body_far_beyond_the_limit_is_413_then_closed(limited):
    """Real bytes after a chunk announcing 2 GB: the answer comes once 64 KiB have passed, the
    connection is closed once four times the limit has been dropped."""
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:

        def flood() -> None:
            try:
                connection.sendall(
                    b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n7FFFFFFF\r\n"
                )
                for _ in range(12):
                    connection.sendall(b"x" * (LIMITS.max_body_bytes // 2))
            except OSError:  # closed by the server, as it should be
                pass

        sender = threading.Thread(target=flood)
        sender.start()
        response = parse_response(read_until_closed(connection))
        sender.join()

    assert_error(response, 413, "payload_too_large")


def test_more_rows_than_the_limit_is_413_too_many_rows(limited):
    eleven = "\n".join([CSV_ROW] * 11).encode()
    many = "\n".join([CSV_ROW] * 700).encode()  # above 16 KiB: parsed in the worker thread
    ten = "\n".join([CSV_ROW] * 10).encode()

    for body, count in ((eleven, "11"), (many, "700")):
        response = answer(limited, request(body=body))
        details = assert_error(response, 413, "too_many_rows", f"{count} readings", "limit is 10")
        assert response.header("x-model-version") == "3"
        assert (details["row"], details["field"]) == (None, None)
    assert answer(limited, request(body=ten)).status == 200


def test_a_post_that_frames_no_body_is_411_json(limited):
    """Neither Content-Length nor chunked: HTTP/1.1 reads no body, so the endpoint says what it
    needs instead of "no rows"; Content-Length: 0 is a length, and the body is judged empty."""
    unframed = answer(limited, request(body=b"", length=False))
    on_runtime = answer(limited, request(path=RUNTIME_PATH, body=b"", length=False))
    empty = answer(limited, request(body=b""))

    assert_error(unframed, 411, "length_required", "Content-Length")
    assert unframed.header("connection") == "close"
    assert_error(on_runtime, 411, "length_required")
    assert on_runtime.header("x-amzn-errortype") == "ValidationError"
    assert_error(empty, 400, "invalid_input", "no rows")


def test_an_unsupported_content_type_is_415_json(limited):
    response = answer(limited, request(body=CSV_ROW.encode(), content_type="application/x-npy"))

    assert_error(response, 415, "unsupported_media_type", "application/x-npy")


def test_duplicate_json_keys_are_400_naming_the_key(limited):
    reading = (
        '{"type": "L", "air_temperature_k": 298.4, "process_temperature_k": 308.2, '
        '"rotational_speed_rpm": 1582, "torque_nm": 70.7, "tool_wear_min": 216}'
    )
    twice_at_top = f'{{"instances": [], "instances": [{reading}]}}'.encode()
    twice_in_a_reading = f'{{"instances": [{reading[:-1]}, "torque_nm": 3.0}}]}}'.encode()

    for body, key in ((twice_at_top, "instances"), (twice_in_a_reading, "torque_nm")):
        response = answer(limited, request(body=body, content_type="application/json"))
        details = assert_error(response, 400, "invalid_input", f"'{key}'", "twice")
        assert details["field"] == key


# ---- time --------------------------------------------------------------------------------------
def test_a_slow_request_head_is_408_json(limited):
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
        connection.sendall(b"POST /invoca")  # half a request line, then nothing
        started = time.monotonic()
        response = parse_response(read_until_closed(connection))
        waited = time.monotonic() - started

    assert_error(response, 408, "request_timeout", "request line and headers", "0.5 s")
    assert response.header("connection") == "close"
    assert 0.4 < waited < 3


def test_a_slow_body_is_408_json(limited):
    head = request(body=b"x" * 50)[:-50]  # the whole head, announcing 50 bytes
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
        connection.sendall(head + CSV_ROW[:10].encode())
        started = time.monotonic()
        response = parse_response(read_until_closed(connection))
        waited = time.monotonic() - started

    assert_error(response, 408, "request_timeout", "body did not arrive within 0.5 s", "10 bytes")
    assert response.header("connection") == "close"
    assert 0.4 < waited < 3


def test_an_idle_keep_alive_connection_is_closed_after_its_timeout(limited):
    with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
        for _ in range(2):  # kept alive between requests...
            connection.sendall(b"GET /ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            response = read_response(connection)
            assert response.status == 200
            assert response.header("connection") is None
        idle = time_to_close(connection)  # ...and closed, silently, once idle

    assert_hardened(response)
    assert 0.4 < idle < 3


def test_a_trickling_head_is_cut_at_the_head_timeout_while_others_are_served(limited):
    """One byte every 50 ms never completes the head: the connection gets 408 once head_timeout
    has passed since its first byte, however steadily bytes arrive; a normal request meanwhile
    is answered at once."""
    outcome: dict[str, Any] = {}

    def trickle() -> None:
        with socket.create_connection(("127.0.0.1", limited.port), timeout=10) as connection:
            started = time.monotonic()
            for byte in b"GET /ping HTTP/1.1\r\nX-Slow: " + b"a" * 200:
                connection.sendall(bytes([byte]))
                if select.select([connection], [], [], 0.05)[0]:
                    break
            outcome["after"] = time.monotonic() - started
            outcome["response"] = parse_response(read_until_closed(connection))

    trickler = threading.Thread(target=trickle)
    trickler.start()
    time.sleep(0.15)
    started = time.monotonic()
    normal = answer(limited, request("GET", "/ping", content_type="", length=False))
    latency = time.monotonic() - started
    trickler.join()

    assert normal.status == 200
    assert latency < 0.5
    assert_error(outcome["response"], 408, "request_timeout")
    assert 0.4 < outcome["after"] < 3  # cut at 0.5 s, not after the 10 s the bytes would take


def test_slow_connections_cost_no_threads(endpoint):
    server = endpoint(head_timeout=30)
    answer(server, request(body=CSV_ROW.encode()))  # anything started lazily has started
    threads = threading.active_count()
    connections = server.http.server.server_state.connections
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(200)]
    try:
        for connection in slow:
            connection.sendall(b"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        deadline = time.monotonic() + 10
        while len(connections) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        normal = answer(server, request(body=CSV_ROW.encode()))
        latency = time.monotonic() - started
        held = len(connections)
        during = threading.active_count()
    finally:
        for connection in slow:
            connection.close()

    assert held >= 200  # all 200 are open on the server (plus the normal request's)
    assert during == threads
    assert normal.status == 200
    assert latency < 1


# ---- concurrency -------------------------------------------------------------------------------
def test_above_the_concurrency_cap_is_503_json_with_retry_after(endpoint):
    server = endpoint(body_timeout=10)
    body = CSV_ROW.encode()
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        for connection in held:  # the whole head, half the body: each holds a place
            connection.sendall(request(body=body)[: -len(body) // 2])
        deadline = time.monotonic() + 10
        while server.gate.active < 2 and time.monotonic() < deadline:
            time.sleep(0.01)

        refused = answer(server, request(body=body))
        ping = answer(server, request("GET", "/ping", content_type="", length=False))
        held[0].sendall(body[-len(body) // 2 :])  # one held request completes: a place is free
        completed = read_response(held[0])
        admitted = answer(server, request(body=body))
    finally:
        for connection in held:
            connection.close()

    assert_error(refused, 503, "too_many_requests", "2 requests", "retry in 1 s")
    assert refused.header("retry-after") == "1"
    assert server.gate.refused == 1
    assert ping.status == 200  # /ping is not a request the cap counts
    assert completed.status == 200
    assert admitted.status == 200
    deadline = time.monotonic() + 5
    while server.gate.active and time.monotonic() < deadline:  # the other left mid-body
        time.sleep(0.01)
    assert server.gate.active == 0


def test_the_listen_backlog_is_at_least_1024(limited):
    assert Limits().backlog >= 1024
    with pytest.raises(ValueError, match="backlog must be at least 1024"):
        Limits(backlog=128)
    if shutil.which("ss") is None:
        pytest.skip("ss (iproute2) is not installed: cannot read the socket's backlog")
    listing = subprocess.run(
        ["ss", "-ltnH", f"sport = :{limited.port}"], capture_output=True, text=True, check=True
    ).stdout.split()

    # For a listening socket, ss's Send-Q is the accept queue's length: the listen backlog.
    assert listing[0] == "LISTEN"
    assert int(listing[2]) >= min(1024, _somaxconn())
    assert int(listing[2]) == min(LIMITS.backlog, _somaxconn())


def _somaxconn() -> int:
    try:
        with open("/proc/sys/net/core/somaxconn") as limit:
            return int(limit.read())
    except OSError:
        return 4096


def test_1100_simultaneous_connections_are_all_answered(endpoint):
    server = endpoint(head_timeout=30)
    connections = [
        socket.create_connection(("127.0.0.1", server.port), timeout=20) for _ in range(1100)
    ]
    try:
        for connection in connections:
            connection.sendall(request("GET", "/ping", content_type="", length=False))
        statuses = [parse_response(read_until_closed(c)).status for c in connections]
    finally:
        for connection in connections:
            connection.close()

    assert statuses == [200] * 1100
