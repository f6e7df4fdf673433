"""``kedro api serve``: the Lambda handler behind a local HTTP server, as ``sam local start-api``.

Each HTTP request becomes an API Gateway HTTP API event (payload 2.0) and the handler's answer
becomes the HTTP response, so what runs locally is exactly what runs in Lambda. The server is the
endpoint's (:mod:`predictive_maintenance.serving.http`: uvicorn, the same limits, JSON errors and
security headers); the handler, which blocks on its call to the endpoint, runs in a thread pool.
Above the concurrency cap a request gets 429 with ``Retry-After``, as API Gateway throttles.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from predictive_maintenance.serving.http import (
    Gate,
    HttpError,
    HttpServer,
    Limits,
    Receive,
    Scope,
    Send,
    ServedApp,
    read_body,
    send_error,
    send_response,
)
from predictive_maintenance.serving.ports import listen

#: API Gateway's payload limit; the handler itself refuses bodies above Lambda's 6 MB with 413.
API_MAX_BODY_BYTES: Final = 10 * 1024 * 1024
#: Threads running the handler: each spends most of its time waiting for the endpoint.
HANDLER_THREADS: Final = 16
_TEXT_TYPES: Final = ("application/json", "text/")


def http_event(method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The API Gateway v2 event for one HTTP request."""
    parts = urlsplit(target)
    content_type = headers.get("content-type", "")
    textual = not body or content_type.startswith(_TEXT_TYPES)
    try:
        text = body.decode("utf-8") if textual else None
    except UnicodeDecodeError:
        text = None
    now = time.time()
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.path or "/",
        "rawQueryString": parts.query,
        "headers": headers,
        "queryStringParameters": dict(parse_qsl(parts.query)) or None,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "http": {
                "method": method,
                "path": parts.path or "/",
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": text if text is not None else base64.b64encode(body).decode(),
        "isBase64Encoded": text is None,
    }


def api_limits(values: dict[str, Any] | None = None) -> Limits:
    """The API's limits: :class:`~predictive_maintenance.serving.http.Limits` with API Gateway's
    10 MB body limit, and ``values`` (configuration) on top."""
    return Limits.from_mapping(values, max_body_bytes=API_MAX_BODY_BYTES)


class ApiServer(ServedApp):
    """The handler ``api`` (event, context -> response) as an ASGI application on uvicorn."""

    def __init__(
        self,
        api: Any,
        address: tuple[str, int] = ("127.0.0.1", 3000),
        *,
        listener: socket.socket | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.api = api
        warm_up = getattr(api, "warm_up", None)
        if warm_up is not None:
            warm_up()
        self.limits = limits or api_limits()
        if listener is None:
            listener = listen(*address, backlog=self.limits.backlog)
        self.gate = Gate(self.limits.max_concurrency, self._throttled)
        self._executor = ThreadPoolExecutor(HANDLER_THREADS, thread_name_prefix="api-handler")
        self.http = HttpServer(self, listener, self.limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers: dict[str, str] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            # API Gateway v2 joins repeated headers with commas.
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        try:
            with self.gate.admit():
                body = await read_body(scope, receive, self.limits)
                target = scope["raw_path"].decode("latin-1")
                if scope["query_string"]:
                    target += "?" + scope["query_string"].decode("latin-1")
                event = http_event(scope["method"], target, headers, body)
                loop = asyncio.get_running_loop()
                response = await loop.run_in_executor(self._executor, self.api, event, None)
        except HttpError as error:
            # The server's own answers (413, 429, 408) carry the handler's CORS headers, so a
            # page on an allowed origin can read them.
            cors = getattr(self.api, "cors_headers", None)
            await send_error(send, error, cors(headers).items() if cors is not None else ())
            return
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
        answer_headers = {
            str(name).lower(): str(value) for name, value in (response.get("headers") or {}).items()
        }
        answer_headers.pop("content-length", None)
        content_type = answer_headers.pop("content-type", "application/json")
        await send_response(
            send, int(response["statusCode"]), payload, content_type, answer_headers.items()
        )

    def _throttled(self) -> HttpError:
        return HttpError(
            429,
            "too_many_requests",
            f"the API is answering {self.limits.max_concurrency} requests, its limit; "
            f"retry in {self.limits.retry_after} s",
            headers=(("retry-after", str(self.limits.retry_after)),),
        )

    def close(self) -> None:
        super().close()
        self._executor.shutdown(wait=False, cancel_futures=True)


def make_server(host: str, port: int, api: Any, *, limits: Limits | None = None) -> ApiServer:
    """The API's server on ``host:port`` (bound now; :class:`~.ports.ListenError` if it cannot)."""
    return ApiServer(api, (host, port), limits=limits)
