"""Real-shaped API Gateway events: HTTP API (payload 2.0) and REST API (payload 1.0)."""

from __future__ import annotations

import base64
from typing import Any


def v2_event(
    method: str,
    path: str,
    body: str | bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    stage: str = "$default",
    route: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event as API Gateway sends it; ``route`` is the route's
    path when it has a parameter (``/static/{file}``), else the $default route is used."""
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    route_key = f"{method} {route}" if route else "$default"
    if isinstance(body, bytes) or base64_body:
        data = body if isinstance(body, bytes) else (body or "").encode()
        encoded, is_base64 = base64.b64encode(data).decode(), True
    else:
        encoded, is_base64 = body, False
    event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-length": str(len(encoded or "")),
            "host": "abc123.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-67891233-abcdef012345678912345678",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": route_key,
            "stage": stage,
            "time": "29/Nov/2026:03:30:00 +0000",
            "timeEpoch": 1795929000000,
        },
        "isBase64Encoded": is_base64,
    }
    if encoded is not None:
        event["body"] = encoded
    if route and "{file}" in route:
        event["pathParameters"] = {"file": path.rpartition("/")[2]}
    return event


def v1_event(
    method: str, path: str, body: str | None = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A REST API (payload format 1.0) proxy event as API Gateway sends it."""
    headers = {
        "Accept": "*/*",
        "Host": "abc123.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": "curl/8.5.0",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "httpMethod": method,
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "resourcePath": path,
            "stage": "prod",
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5.0"},
        },
        "body": body,
        "isBase64Encoded": False,
    }
