"""``kedro api serve``: the Lambda handler behind a local HTTP server, as ``sam local start-api``.

Each HTTP request becomes an API Gateway HTTP API event (payload 2.0) and the handler's answer
becomes the HTTP response, so what runs locally is exactly what runs in Lambda.
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from predictive_maintenance.serving.contract import MAX_PAYLOAD_BYTES

logger = logging.getLogger(__name__)

#: Bodies above this are not read at all (the handler answers 413 above 6 MB; API Gateway's own
#: limit is 10 MB).
READ_LIMIT: Final = MAX_PAYLOAD_BYTES + 1024 * 1024
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


def make_server(host: str, port: int, api: Any) -> ThreadingHTTPServer:
    """A server that hands every request to ``api`` (the handler: event, context -> response)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "predictive-maintenance-api"
        # Headers and body leave in one write, without Nagle: two small writes on a keep-alive
        # connection otherwise wait for the client's delayed ACK (40 ms per request).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            try:
                body, oversized = self._read_body()
            except ValueError as error:
                message = json.dumps({"error": "bad_request", "message": str(error)})
                response = {
                    "statusCode": 400,
                    "headers": {"content-type": "application/json"},
                    "body": message,
                }
                self._send(response, close=True)
                return
            headers = {name.lower(): value for name, value in self.headers.items()}
            response = api(http_event(self.command, self.path, headers, body), None)
            self._send(response, close=oversized)

        def _read_body(self) -> tuple[bytes, bool]:
            """The body and whether the connection must close after the answer (a body above
            READ_LIMIT is not kept). Content-Length or chunked transfer encoding."""
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                return self._read_chunks()
            raw = self.headers.get("content-length") or "0"
            if not raw.strip().isdigit():
                raise ValueError(f"Content-Length {raw!r} is not a byte count")
            length = int(raw)
            if length > READ_LIMIT:
                # Not read at all: the handler answers 413 from Content-Length; then we close.
                return b"", True
            return self.rfile.read(length), False

        def _read_chunks(self) -> tuple[bytes, bool]:
            parts: list[bytes] = []
            kept = 0
            while True:
                line = self.rfile.readline(1024).split(b";")[0].strip()
                try:
                    size = int(line, 16)
                except ValueError:
                    raise ValueError(f"chunk size {line!r} is not hexadecimal") from None
                if size == 0:
                    while self.rfile.readline(1024).strip():  # trailers
                        pass
                    return b"".join(parts), kept > READ_LIMIT
                chunk = self.rfile.read(min(size, max(READ_LIMIT + 1 - kept, 0)))
                self._discard(size - len(chunk))
                parts.append(chunk)
                kept += size
                self.rfile.readline(8)  # the CRLF after the chunk

        def _discard(self, remaining: int) -> None:
            while remaining > 0:
                read = len(self.rfile.read(min(remaining, 1 << 16)))
                if not read:
                    return
                remaining -= read

        def _send(self, response: dict[str, Any], close: bool = False) -> None:
            raw = response.get("body") or ""
            payload = (
                base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode("utf-8")
            )
            self.send_response(int(response["statusCode"]))
            for name, value in (response.get("headers") or {}).items():
                self.send_header(name, str(value))
            self.send_header("content-length", str(len(payload)))
            if close:
                self.send_header("connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def __getattr__(self, name: str) -> Any:
            # Every method (TRACE, PROPFIND...) goes to the handler, which answers 404 or 405 as
            # API Gateway would, rather than the standard library's 501.
            if name.startswith("do_"):
                return self._handle
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug(format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
