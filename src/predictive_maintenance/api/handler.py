"""The Lambda handler: routes, CORS, API key, validation, and the call to the model endpoint.

Routes: ``POST /predict`` (JSON readings, or CSV: the workshop's rows or a file with a header
line, see :func:`~predictive_maintenance.serving.requests.parse_readings`), ``GET /health`` (200
when the model endpoint serves, 503 with the cause when it does not), ``GET /openapi.json``, the
web client (``GET /`` and ``GET /static/...``) and ``OPTIONS`` preflight for any of them. Every
answer is JSON (or the page's files); bad input is a 4xx naming the line (CSV) or reading (JSON)
and the field, a failing endpoint a 502, and nothing escapes as an unhandled error.

Configuration (environment variables, read once per container):

- ``ENDPOINT_NAME``: the SageMaker endpoint (required for ``/predict``);
- ``SAGEMAKER_RUNTIME_ENDPOINT_URL``: another SageMaker Runtime, e.g. ``kedro endpoint serve``
  (whose ``GET /ping`` then tells ``/health`` the endpoint's state; on AWS, ``DescribeEndpoint``);
- ``API_KEY``: if set, ``/predict`` needs it in ``x-api-key``;
- ``CORS_ALLOW_ORIGINS``: comma-separated origins allowed to call the API from a browser (``*``:
  any); none by default.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import math
import os
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Final
from urllib.parse import urlsplit

from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    EXPLAIN_KEY,
    EXPLANATIONS_KEY,
    FAILURE_MODE_KEY,
    INFERENCE_ID_MAX_LENGTH,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MAX_PAYLOAD_BYTES,
    MODEL_CARD_KEY,
    PAGE_SECURITY_POLICY,
    PING_PATH,
    PROBABILITY_KEY,
    SECURITY_HEADERS,
)
from predictive_maintenance.serving.requests import (
    Readings,
    ServingError,
    check_content_type,
    check_explained_rows,
    explain_flag,
    load_json,
    parse_readings,
    readings_from_instances,
    readings_from_request,
)

logger = logging.getLogger(__name__)

#: Content types ``POST /predict`` takes (JSON without the header), and how each is parsed.
TEXT_TYPES: Final = (CSV_CONTENT_TYPE, "text/plain")
API_CONTENT_TYPES: Final = (JSON_CONTENT_TYPE, *TEXT_TYPES)
PREFLIGHT_MAX_AGE: Final = "600"
#: Readings per request: the answer (about 110 bytes each) must fit Lambda's 6 MB response.
MAX_ROWS: Final = 50_000
#: Seconds to wait for the endpoint: below the Lambda's (and API Gateway's) 30 s.
ENDPOINT_READ_TIMEOUT: Final = 25
#: Seconds ``GET /health`` waits for the endpoint's state: a health check answers quickly.
HEALTH_TIMEOUT: Final = 2
#: SageMaker endpoint states in which it answers InvokeEndpoint (an update keeps the old
#: variant serving until the new one is in service).
SERVING_STATES: Final = ("InService", "Updating", "SystemUpdating", "RollingBack")
ALLOWED_HEADERS: Final = "content-type, x-api-key, x-inference-id"
#: The id a prediction is captured under (the endpoint's data capture records it as SageMaker's
#: ``inferenceId``): the client's, when it sends one, else a new one; answered either way, so
#: the client can report what really happened later (the monitoring pipeline's ground truth).
INFERENCE_ID_HEADER: Final = "x-inference-id"
_DIGITS: Final = re.compile(r"[0-9]+")
STATIC_FILES: Final = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
}
ROUTES: Final = {
    "/predict": ("POST",),
    "/health": ("GET",),
    "/openapi.json": ("GET",),
    **{path: ("GET",) for path in STATIC_FILES},
}


@dataclass(frozen=True)
class ApiSettings:
    """What the handler needs to know, from the environment."""

    endpoint_name: str | None = None
    runtime_endpoint_url: str | None = None
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    region: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ApiSettings:
        origins = tuple(
            origin.strip() for origin in environ.get("CORS_ALLOW_ORIGINS", "").split(",")
        )
        return cls(
            endpoint_name=environ.get("ENDPOINT_NAME") or None,
            runtime_endpoint_url=environ.get("SAGEMAKER_RUNTIME_ENDPOINT_URL") or None,
            api_key=environ.get("API_KEY") or None,
            cors_origins=tuple(origin for origin in origins if origin),
            region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or None,
        )


class ApiError(Exception):
    """An answer other than 200, with a JSON body ``{"error", "message", ...}``."""

    def __init__(self, status: int, error: str, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": error, "message": message, **detail}
        self.headers: dict[str, str] = {}


@dataclass
class HttpRequest:
    """An API Gateway event, either payload version, as a plain request."""

    version: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: Any) -> HttpRequest:
        """The request in ``event``; a 400 ``invalid_event`` naming the field when the event is
        not shaped as API Gateway sends it (a misconfigured integration, a hand-made test event).
        """
        _check_event(event)
        headers = {k.lower(): v[-1] for k, v in (event.get("multiValueHeaders") or {}).items() if v}
        headers.update({k.lower(): v for k, v in (event.get("headers") or {}).items()})
        raw = event.get("body") or ""
        if event.get("isBase64Encoded"):
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError) as error:
                raise ApiError(
                    400, "invalid_body", f"the body is not valid base64: {error}"
                ) from None
        else:
            body = raw.encode("utf-8", "surrogatepass")
        if event.get("version") == "2.0":
            context = event.get("requestContext") or {}
            method = (context.get("http") or {}).get("method") or "GET"
            path = event.get("rawPath") or "/"
            stage = context.get("stage")
            if stage and stage != "$default" and path.startswith(f"/{stage}/"):
                path = path[len(stage) + 1 :]
            query = dict(event.get("queryStringParameters") or {})
            return cls("2.0", method.upper(), path, headers, body, query)
        method = event.get("httpMethod") or "GET"
        path = event.get("path") or "/"
        query = dict(event.get("queryStringParameters") or {})
        return cls("1.0", method.upper(), path, headers, body, query)


def _invalid_event(where: str, expected: str) -> ApiError:
    return ApiError(
        400,
        "invalid_event",
        f"the Lambda event's {where} must be {expected}, as API Gateway sends it (payload format "
        "1.0 or 2.0); is the integration a Lambda proxy integration?",
        field=where,
    )


def _check_mapping(event: Mapping[str, Any], key: str, values: str = "string") -> None:
    """``event[key]``: absent, null, or an object of string keys and ``values``."""
    value = event.get(key)
    if value is None:
        return
    if not isinstance(value, Mapping):
        raise _invalid_event(key, f"an object of {values}s, or null")
    for name, item in value.items():
        if values == "string" and isinstance(name, str) and isinstance(item, str):
            continue
        if (
            values == "list of string"
            and isinstance(name, str)
            and isinstance(item, list)
            and all(isinstance(text, str) for text in item)
        ):
            continue
        raise _invalid_event(f"{key}[{name!r}]", f"a {values}")


def _check_event(event: Any) -> None:
    """Checks once, at the entry, every field of the event the handler reads."""
    if not isinstance(event, Mapping):
        raise _invalid_event("event", "a JSON object")
    version = event.get("version")
    if version not in (None, "1.0", "2.0"):
        raise _invalid_event("version", '"1.0", "2.0" or absent')
    _check_mapping(event, "headers")
    _check_mapping(event, "multiValueHeaders", "list of string")
    _check_mapping(event, "queryStringParameters")
    if version == "2.0":
        context = event.get("requestContext")
        if not isinstance(context, Mapping):
            raise _invalid_event("requestContext", "an object")
        http = context.get("http")
        if not isinstance(http, Mapping | None):
            raise _invalid_event("requestContext.http", "an object")
        strings = {
            "requestContext.http.method": (http or {}).get("method"),
            "requestContext.stage": context.get("stage"),
            "rawPath": event.get("rawPath"),
        }
    else:
        strings = {key: event.get(key) for key in ("httpMethod", "path")}
    for where, value in {"body": event.get("body"), **strings}.items():
        if not isinstance(value, str | None):
            raise _invalid_event(where, "a string or null")
    if not isinstance(event.get("isBase64Encoded"), bool | None):
        raise _invalid_event("isBase64Encoded", "true or false")


def _response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    if isinstance(body, bytes | str):
        text = body if isinstance(body, str) else body.decode()
        content_type = {}
    else:
        text = json.dumps(body, allow_nan=False, separators=(",", ":"))
        content_type = {"content-type": "application/json"}
    return {
        "statusCode": status,
        "headers": {
            **content_type,
            "cache-control": "no-store",
            **dict(SECURITY_HEADERS),
            **(headers or {}),
        },
        "body": text,
        "isBase64Encoded": False,
    }


class Api:
    """The handler's logic with its settings and SageMaker Runtime client made explicit."""

    def __init__(
        self, settings: ApiSettings, runtime_client: Any = None, sagemaker_client: Any = None
    ) -> None:
        self.settings = settings
        self._runtime = runtime_client
        self._sagemaker = sagemaker_client

    # ---- entry -----------------------------------------------------------------------------------
    def __call__(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        started = time.perf_counter()
        request: HttpRequest | None = None
        try:
            request = HttpRequest.from_event(event)
            status, body, headers = self._route(request)
            response = _response(status, body, headers)
        except ApiError as error:
            response = _response(error.status, error.body, error.headers)
        except Exception:  # the contract: never an unhandled error, never a stack trace out
            logger.exception("unexpected error")
            response = _response(
                500, {"error": "internal_error", "message": "unexpected error; see logs"}
            )
        if request is not None:
            response["headers"].update(self._cors_headers(request))
            logger.info(
                "%s %s -> %d in %.1f ms",
                request.method,
                request.path,
                response["statusCode"],
                (time.perf_counter() - started) * 1000,
            )
        return response

    def _route(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        methods = ROUTES.get(request.path)
        if methods is None:
            raise ApiError(404, "not_found", f"no route {request.path}; see /openapi.json")
        if request.method == "OPTIONS":
            return self._preflight(request, methods)
        if request.method not in methods:
            error = ApiError(
                405, "method_not_allowed", f"{request.path} answers {', '.join(methods)}"
            )
            error.headers["allow"] = ", ".join((*methods, "OPTIONS"))
            raise error
        if request.path == "/health":
            return self._health()
        if request.path == "/openapi.json":
            from predictive_maintenance.api.openapi import openapi_document  # noqa: PLC0415

            return 200, openapi_document(), {}
        if request.path in STATIC_FILES:
            name, content_type = STATIC_FILES[request.path]
            return (
                200,
                _static(name),
                {
                    "content-type": content_type,
                    "cache-control": "no-cache",
                    "content-security-policy": PAGE_SECURITY_POLICY,
                },
            )
        return self._predict(request)

    # ---- CORS and the API key -----------------------------------------------------------------
    def _allowed_origin(self, request: HttpRequest) -> str | None:
        return self._origin_allowed(request.headers.get("origin"))

    def _origin_allowed(self, origin: str | None) -> str | None:
        if not origin or not self.settings.cors_origins:
            return None
        if "*" in self.settings.cors_origins:
            return "*"
        return origin if origin in self.settings.cors_origins else None

    def _cors_headers(self, request: HttpRequest) -> dict[str, str]:
        return self.cors_headers(request.headers)

    def cors_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """The CORS headers of an answer to a request with ``headers`` (lower-case names).

        Also for the answers the local server gives without the handler (413 above API Gateway's
        10 MB, 429, 408), so that a page calling the API from another origin can read them.
        """
        # With an allow-list the answer depends on the Origin header: caches must know.
        vary = {"vary": "Origin"} if self.settings.cors_origins not in ((), ("*",)) else {}
        allowed = self._origin_allowed(headers.get("origin"))
        if allowed is None:
            return vary
        return {
            "access-control-allow-origin": allowed,
            "access-control-expose-headers": INFERENCE_ID_HEADER,
            **vary,
        }

    def _preflight(self, request: HttpRequest, methods: tuple[str, ...]) -> tuple[int, Any, dict]:
        if request.headers.get("origin") and self._allowed_origin(request) is None:
            raise ApiError(
                403,
                "origin_not_allowed",
                f"origin {request.headers['origin']} may not call this API",
            )
        return (
            204,
            "",
            {
                "access-control-allow-methods": ", ".join((*methods, "OPTIONS")),
                "access-control-allow-headers": ALLOWED_HEADERS,
                "access-control-max-age": PREFLIGHT_MAX_AGE,
                "allow": ", ".join((*methods, "OPTIONS")),
            },
        )

    def _check_api_key(self, request: HttpRequest) -> None:
        expected = self.settings.api_key
        if expected is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            raise ApiError(403, "forbidden", "this API needs an API key in the x-api-key header")
        # Any text compares (an API key with a lone surrogate is a wrong key, not an error).
        if not hmac.compare_digest(
            given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        ):
            raise ApiError(403, "forbidden", "the x-api-key header holds a wrong API key")

    # ---- GET /health: the model endpoint's state -------------------------------------------
    def _health(self) -> tuple[int, Any, dict[str, str]]:
        """200 when the model endpoint serves, else 503 with the cause.

        A SageMaker Runtime of our own (``kedro endpoint serve``) is asked ``GET /ping``; on AWS
        (no ``SAGEMAKER_RUNTIME_ENDPOINT_URL``, or an ``amazonaws.com`` one) SageMaker's
        ``DescribeEndpoint`` tells whether the endpoint is in service.
        """
        name = self.settings.endpoint_name
        url = self.settings.runtime_endpoint_url
        if not name:
            state, detail = "not_configured", {}
            cause = "ENDPOINT_NAME is not set: the API has no model endpoint to call"
        elif url and not _on_aws(url):
            state, detail, cause = _ping(name, url)
        else:
            state, detail, cause = self._describe_endpoint(name)
        endpoint = {"name": name, "status": state, **detail}
        if state == "ok":
            return 200, {"status": "ok", "endpoint": endpoint}, {}
        return 503, {"status": "unavailable", "message": cause, "endpoint": endpoint}, {}

    def _describe_endpoint(self, name: str) -> tuple[str, dict[str, Any], str]:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            description = self._sagemaker_client().describe_endpoint(EndpointName=name)
        except ClientError as error:
            detail = error.response.get("Error", {})
            message = f"{detail.get('Code', 'error')}: {detail.get('Message', error)}"
            if "could not find endpoint" in str(detail.get("Message", "")).lower():
                return "not_found", {}, f"the model endpoint {name} does not exist ({message})"
            return "unknown", {}, f"cannot read the state of the model endpoint {name}: {message}"
        except BotoCoreError as error:
            return "unknown", {}, f"cannot read the state of the model endpoint {name}: {error}"
        status = str(description.get("EndpointStatus"))
        if status in SERVING_STATES:
            return "ok", {"endpoint_status": status}, ""
        reason = description.get("FailureReason")
        return (
            "not_in_service",
            {"endpoint_status": status},
            f"the model endpoint {name} is {status}, not InService"
            + (f": {reason}" if reason else ""),
        )

    def _sagemaker_client(self) -> Any:
        if self._sagemaker is None:
            import boto3  # noqa: PLC0415 -- only /health on AWS needs it
            from botocore.config import Config  # noqa: PLC0415

            self._sagemaker = boto3.client(
                "sagemaker",
                region_name=self.settings.region,
                config=Config(
                    connect_timeout=HEALTH_TIMEOUT,
                    read_timeout=HEALTH_TIMEOUT,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
        return self._sagemaker

    # ---- POST /predict ---------------------------------------------------------------------
    def _predict(self, request: HttpRequest) -> tuple[int, Any, dict[str, str]]:
        self._check_api_key(request)
        declared = request.headers.get("content-length", "")
        # ASCII digits only: str.isdigit() is also true of '²', which int() refuses.
        size = max(len(request.body), int(declared) if _DIGITS.fullmatch(declared) else 0)
        if size > MAX_PAYLOAD_BYTES:
            raise ApiError(
                413,
                "payload_too_large",
                f"the body has {size:,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}",
            )
        readings, many = self._readings(request)
        if len(readings) > MAX_ROWS:
            raise ApiError(
                413,
                "too_many_readings",
                f"{len(readings):,} readings; at most {MAX_ROWS:,} per request (the answer must "
                "fit in a Lambda response)",
            )
        inference_id = _inference_id(request.headers.get(INFERENCE_ID_HEADER))
        explain = readings.explain or self._explain_query(request)
        if explain:
            try:
                check_explained_rows(len(readings))
            except ServingError as error:
                raise ApiError(413, error.error, error.message, field=EXPLAIN_KEY) from None
        answer = self._invoke(readings, inference_id, explain=explain)
        results = _results(answer, len(readings), explain=explain)
        # A CSV file's readings: where each came from (its line) and the ids it carried.
        for index, line in enumerate(readings.lines):
            results[index]["line"] = line
        for column, values in readings.ids.items():
            for result, value in zip(results, values, strict=True):
                result[column] = value
        if many:
            return 200, results, {INFERENCE_ID_HEADER: inference_id}
        card = answer.get(MODEL_CARD_KEY) if explain else None
        if isinstance(card, dict):  # one reading explained: the card its answer rests on
            results[0][MODEL_CARD_KEY] = card
        return 200, results[0], {INFERENCE_ID_HEADER: inference_id}

    @staticmethod
    def _explain_query(request: HttpRequest) -> bool:
        """``?explain=true``: the opt-in for any body (a CSV file, a bare reading), besides the
        ``{"instances": [...], "explain": true}`` field."""
        if EXPLAIN_KEY not in request.query:
            return False
        try:
            return explain_flag(request.query[EXPLAIN_KEY])
        except ServingError as error:
            raise ApiError(400, error.error, error.message, field=EXPLAIN_KEY) from None

    def _readings(self, request: HttpRequest) -> tuple[Readings, bool]:
        try:
            # The endpoint's parser of the header, so both take the same values and charsets.
            content_type = check_content_type(
                request.headers.get("content-type"), API_CONTENT_TYPES, default=JSON_CONTENT_TYPE
            )
            if content_type in TEXT_TYPES:
                readings = parse_readings(request.body, CSV_CONTENT_TYPE, files=True)
                return readings, len(readings) > 1
            return self._json_readings(request.body)
        except ServingError as error:
            raise ApiError(
                error.status_code, error.error, error.message, row=error.row, field=error.field
            ) from None

    def _json_readings(self, body: bytes) -> tuple[Readings, bool]:
        payload = load_json(body)  # ServingError (duplicate keys too): see _readings
        # Errors name a reading as JSON tools show it: instances[2], [2] in a bare list (0-based).
        if isinstance(payload, dict) and JSON_INSTANCES_KEY in payload:
            return readings_from_request(payload), True  # the endpoint's JSON body, as it is
        if isinstance(payload, dict):
            instances, key = [payload], None
        elif isinstance(payload, list):
            instances, key = payload, ""
        else:
            raise ApiError(
                400,
                "invalid_input",
                f"send an object with {list(READING_COLUMNS)}, a list of them, or "
                f'{{"{JSON_INSTANCES_KEY}": [...]}}',
            )
        # ServingError: see _readings
        return readings_from_instances(instances, key), key is not None

    def warm_up(self) -> None:
        """Creates the SageMaker Runtime client now rather than on the first request: in Lambda's
        init phase, and before the local server serves (whose garbage collector then leaves
        botocore's loaded models alone, see ``serving/http.py``)."""
        if self.settings.endpoint_name:
            self._runtime_client()

    def _runtime_client(self) -> Any:
        if self._runtime is None:
            import boto3  # noqa: PLC0415 -- only /predict needs it
            from botocore.config import Config  # noqa: PLC0415

            self._runtime = boto3.client(
                "sagemaker-runtime",
                region_name=self.settings.region,
                endpoint_url=self.settings.runtime_endpoint_url,
                # One attempt that gives up before the Lambda's 30 s, so a slow endpoint is this
                # handler's 502, not API Gateway's bare timeout.
                config=Config(
                    connect_timeout=2,
                    read_timeout=ENDPOINT_READ_TIMEOUT,
                    retries={"mode": "standard", "total_max_attempts": 1},
                ),
            )
        return self._runtime

    def _invoke(
        self, readings: Readings, inference_id: str, *, explain: bool = False
    ) -> dict[str, Any]:
        if not self.settings.endpoint_name:
            raise ApiError(502, "endpoint_not_configured", "ENDPOINT_NAME is not set")
        if explain:
            # The endpoint's JSON field: InvokeEndpoint carries no query string to SageMaker.
            instances = [
                dict(
                    zip(
                        READING_COLUMNS,
                        (kind, *(column[i] for column in readings.columns)),
                        strict=True,
                    )
                )
                for i, kind in enumerate(readings.types)
            ]
            body = json.dumps({JSON_INSTANCES_KEY: instances, EXPLAIN_KEY: True})
            content_type = JSON_CONTENT_TYPE
        else:
            body = "".join(
                ",".join([kind, *(_number_text(column[i]) for column in readings.columns)]) + "\n"
                for i, kind in enumerate(readings.types)
            )
            content_type = CSV_CONTENT_TYPE
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        try:
            response = self._runtime_client().invoke_endpoint(
                EndpointName=self.settings.endpoint_name,
                ContentType=content_type,
                Accept=JSON_CONTENT_TYPE,
                Body=body.encode(),
                InferenceId=inference_id,
            )
            body = response["Body"].read()
        except ClientError as error:
            detail = error.response.get("Error", {})
            raise ApiError(
                502,
                "endpoint_error",
                f"the model endpoint {self.settings.endpoint_name} failed: "
                f"{detail.get('Code', 'error')}: {detail.get('Message', error)}",
            ) from None
        except BotoCoreError as error:
            raise ApiError(
                502,
                "endpoint_unreachable",
                f"the model endpoint {self.settings.endpoint_name} cannot be reached: {error}",
            ) from None
        try:
            return json.loads(body)
        except ValueError:
            raise ApiError(
                502, "endpoint_error", "the model endpoint answered something other than JSON"
            ) from None


def _inference_id(given: str | None) -> str:
    """The client's inference id, checked as SageMaker Runtime checks InferenceId, or a new one."""
    if given is None:
        return uuid.uuid4().hex
    if (
        not 0 < len(given) <= INFERENCE_ID_MAX_LENGTH
        or given[0].isspace()
        or not given.isprintable()
    ):
        raise ApiError(
            400,
            "invalid_inference_id",
            f"{INFERENCE_ID_HEADER} must be 1-{INFERENCE_ID_MAX_LENGTH} printable characters "
            "not starting with a space",
            field=INFERENCE_ID_HEADER,
        )
    return given


def _results(answer: Any, rows: int, *, explain: bool = False) -> list[dict[str, Any]]:
    """The endpoint's JSON answer as the API's predictions (each with its ``explanation`` when
    asked, and beside it the calibrated ``probability`` and the likely ``failure_mode`` when the
    model has them); 502 for anything unexpected."""
    predictions = answer.get("predictions") if isinstance(answer, dict) else None
    threshold = answer.get("decision_threshold") if isinstance(answer, dict) else None
    if explain:
        explanations = answer.get(EXPLANATIONS_KEY) if isinstance(answer, dict) else None
        if not isinstance(explanations, list) or len(explanations) != rows:
            raise ApiError(
                502,
                "endpoint_error",
                f"the model endpoint's answer lacks the {rows} explanations asked for (is it an "
                "older endpoint that does not explain?)",
            )
    results = []
    for item in predictions if isinstance(predictions, list) else []:
        score = item.get("score") if isinstance(item, dict) else None
        if not _finite(score) or item.get("predicted_label") not in (0, 1):
            break
        results.append(
            {
                "failure_probability": score,
                "failure_predicted": bool(item["predicted_label"]),
                "threshold": threshold,
                "model_version": answer.get("model_version"),
            }
        )
    if len(results) != rows or not _finite(threshold):
        raise ApiError(
            502,
            "endpoint_error",
            f"the model endpoint's answer is not {rows} predictions with a decision threshold",
        )
    if explain:
        for result, given in zip(results, explanations, strict=True):
            if not isinstance(given, dict):
                raise ApiError(
                    502, "endpoint_error", "the model endpoint's explanations are not objects"
                )
            explanation = dict(given)
            # Lifted out of the explanation: "how sure" and "which failure" are answers of their
            # own, beside "why" (an older endpoint has neither: then neither key is there).
            for key in (PROBABILITY_KEY, FAILURE_MODE_KEY):
                if key in explanation:
                    result[key] = explanation.pop(key)
            result["explanation"] = explanation
    return results


def _on_aws(url: str) -> bool:
    """Whether ``url`` is SageMaker Runtime on AWS (which has no ``/ping``)."""
    host = (urlsplit(url).hostname or "").lower()
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _ping(name: str, url: str) -> tuple[str, dict[str, Any], str]:
    """The state of a local endpoint (``kedro endpoint serve`` at ``url``) from its ``/ping``."""
    import urllib.error  # noqa: PLC0415 -- only /health of a local endpoint needs it
    import urllib.request  # noqa: PLC0415

    target = url.rstrip("/") + PING_PATH
    try:
        with urllib.request.urlopen(target, timeout=HEALTH_TIMEOUT) as response:
            answer = _json_object(response.read(4096))
    except urllib.error.HTTPError as error:
        answer = _json_object(error.read(4096))
        reason = answer.get("message") or error.reason
        return (
            "not_ready",
            {"url": url},
            f"the model endpoint {name} at {url} does not serve: HTTP {error.code}, {reason}",
        )
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return (
            "unreachable",
            {"url": url},
            f"the model endpoint {name} cannot be reached at {url} ({reason}); is "
            "`kedro endpoint serve` running?",
        )
    return "ok", {"url": url, "model_version": answer.get("model_version")}, ""


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _number_text(value: float) -> str:
    """The shortest text that reads back as ``value`` (``300`` rather than ``300.0``)."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


@cache
def _static(name: str) -> bytes:
    return resources.files("predictive_maintenance.api").joinpath("static", name).read_bytes()


@cache
def _default_api() -> Api:
    api = Api(ApiSettings.from_environ(os.environ))
    api.warm_up()
    return api


def handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """The Lambda entry point (``predictive_maintenance.api.handler``)."""
    return _default_api()(event, context)
