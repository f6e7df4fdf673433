"""The model endpoint's OpenAPI 3.0 document: the SageMaker container contract as served locally.

``GET /ping``, ``POST /invocations`` and SageMaker Runtime's ``POST
/endpoints/{EndpointName}/invocations`` (:mod:`.server`), with their request bodies (CSV rows in
the workshop's order, or ``{"instances": [...]}``), their answers (one score per line, or the
predictions as JSON) and every error status with its JSON body. Built from the project's schema
(field names, ranges), like the API's document (:mod:`predictive_maintenance.api.openapi`, which
the Lambda package ships without this module; a test checks both describe a reading alike).

Standard library only (plus :mod:`predictive_maintenance.schema` and :mod:`.contract`): it imports
where the server's dependencies (uvicorn) are not installed, e.g. to publish the document.
"""

from __future__ import annotations

from typing import Any, Final

from predictive_maintenance import __version__
from predictive_maintenance.schema import FAILURE_MODE_COLUMNS, PRODUCT_TYPES, READING_RANGES
from predictive_maintenance.serving.contract import (
    CAPTURE_STATS_PATH,
    CSV_CONTENT_TYPE,
    CSV_FIELDS,
    EVENT_ID_HEADER,
    EXPLAIN_KEY,
    EXPLANATIONS_KEY,
    FAILURE_MODE_KEY,
    INFERENCE_ID_HEADER,
    INVOCATIONS_PATH,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MAX_PAYLOAD_BYTES,
    MODEL_CARD_KEY,
    MODEL_VERSION_HEADER,
    PING_PATH,
    PROBABILITY_KEY,
    RUNTIME_PREFIX,
    RUNTIME_SUFFIX,
)

#: Units and descriptions of the readings, for the documents and the web client.
READING_DESCRIPTIONS: Final = {
    "type": "Product quality variant: L (low), M (medium), H (high)",
    "air_temperature_k": "Air temperature [K]",
    "process_temperature_k": "Process temperature [K]",
    "rotational_speed_rpm": "Rotational speed [rpm]",
    "torque_nm": "Torque [Nm]",
    "tool_wear_min": "Tool wear [min]",
}
#: One reading, as the example of both documents.
READING_EXAMPLE: Final = {
    "type": "L",
    "air_temperature_k": 298.4,
    "process_temperature_k": 308.2,
    "rotational_speed_rpm": 1582,
    "torque_nm": 70.7,
    "tool_wear_min": 216,
}
#: The endpoint's CSV: rows without a header line, the six fields in the workshop's order.
ENDPOINT_CSV_DESCRIPTION: Final = (
    "One reading per line, no header line: the six fields in the workshop's order "
    f"({', '.join(CSV_FIELDS)}), as the SageMaker XGBoost container takes them. Errors name the "
    "line (first line = 1)."
)
_ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}


def reading_schema() -> dict[str, Any]:
    """One reading as a JSON object: the six fields, their types and plausible ranges."""
    properties: dict[str, Any] = {
        "type": {
            "type": "string",
            "enum": list(PRODUCT_TYPES),
            "description": READING_DESCRIPTIONS["type"],
        }
    }
    for column, (low, high) in READING_RANGES.items():
        properties[column] = {
            "type": "number",
            "minimum": low,
            "maximum": high,
            "description": READING_DESCRIPTIONS[column],
        }
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
        "example": dict(READING_EXAMPLE),
    }


def error_schema() -> dict[str, Any]:
    """The JSON body of every error of the endpoint and the API."""
    return {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "The cause, machine-readable"},
            "message": {"type": "string", "description": "The cause, for people"},
            "row": {
                "type": "integer",
                "nullable": True,
                "description": "Where the bad reading is. CSV: its line in the file (first "
                "line = 1, as a spreadsheet numbers rows; a header is line 1). JSON: its index "
                "in the list (0-based, as instances[i] in the message); null for a single "
                "reading or an error that is not about one reading",
            },
            "field": {
                "type": "string",
                "nullable": True,
                "description": "The field (or JSON key, or header) at fault, if one is",
            },
        },
    }


def error_response(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    """A documented error answer: ``description``, the JSON error schema, ``headers``."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON_CONTENT_TYPE: {"schema": _ERROR_REF}},
    }
    if headers:
        answer["headers"] = headers
    return answer


RETRY_AFTER_HEADER: Final = {
    "description": "Seconds to wait before retrying",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
_MODEL_VERSION: Final = {
    "description": "Registry version of the model that answered (when it is known)",
    "schema": {"type": "integer"},
}


#: The ``explain`` opt-in as a JSON key: the portable way (InvokeEndpoint has no query string).
EXPLAIN_PROPERTY: Final = {
    "type": "boolean",
    "default": False,
    "description": "true: the answer also carries why each reading got its score "
    f"({EXPLANATIONS_KEY}). The portable way to ask: SageMaker Runtime's InvokeEndpoint passes "
    "no query string. Any other value is a 400 naming the field",
}


def explain_parameter(where: str) -> dict[str, Any]:
    """The ``?explain=`` query parameter of ``where`` (the local endpoint, the API)."""
    return {
        "name": EXPLAIN_KEY,
        "in": "query",
        "required": False,
        "description": f"true (or 1): explanations in the answer, as the JSON field {EXPLAIN_KEY} "
        f"asks; for any body type, CSV included. Only {where}: SageMaker Runtime's "
        "InvokeEndpoint cannot carry a query string, so on AWS send the JSON field. Another "
        "value, or the parameter twice, is a 400 naming it",
        "schema": {"type": "string", "enum": ["true", "false", "1", "0"]},
    }


def explanation_schema() -> dict[str, Any]:
    """Why one reading got its score: XGBoost's SHAP contributions in log-odds."""
    return {
        "type": "object",
        "required": ["bias", "margin", "contributions"],
        "description": "XGBoost's SHAP contributions (pred_contribs), in log-odds: bias plus "
        "every contribution is margin, and score = 1 / (1 + exp(-margin))",
        "properties": {
            "bias": {"type": "number", "description": "The log-odds before any feature"},
            "margin": {"type": "number", "description": "The score's log-odds"},
            "contributions": {
                "type": "array",
                "description": "One per model feature, largest absolute contribution first",
                "items": {
                    "type": "object",
                    "required": ["feature", "label", "unit", "value", "contribution", "direction"],
                    "properties": {
                        "feature": {"type": "string", "description": "The model's feature name"},
                        "label": {"type": "string", "description": "The feature, for people"},
                        "unit": {"type": "string", "description": "value's unit (K, rpm, W...)"},
                        "value": {"type": "number", "description": "The feature, in its unit"},
                        "contribution": {
                            "type": "number",
                            "description": "Its push on the log-odds",
                        },
                        "direction": {"type": "string", "enum": ["raises", "lowers", "none"]},
                    },
                },
            },
        },
    }


#: The calibrated probability of an explained reading (endpoint and API alike).
PROBABILITY_PROPERTY: Final = {
    "type": "number",
    "minimum": 0,
    "maximum": 1,
    "description": "How sure: the score calibrated on the validation data (the model spec's "
    "calibration map), the failure probability a person can read (0.03: about 3 in 100). Only "
    "when the model has a calibration map",
}
#: The likely failure mode of an explained reading.
FAILURE_MODE_PROPERTY: Final = {
    "$ref": "#/components/schemas/FailureMode",
    "description": "Which failure: the failure-mode model's answer for this reading. Only when "
    "the model has a failure-mode model",
}
#: The model card an explained answer carries.
MODEL_CARD_PROPERTY: Final = {
    "type": "object",
    "description": "The model's card (model_card.json of its archive): model, data, test "
    "metrics, calibration, failure-mode results, intended use and known limits. Only with "
    "explanations, and only when the model has a card",
}


def failure_mode_schema() -> dict[str, Any]:
    """The failure-mode model's answer for one reading (``failure_modes.likely_modes``)."""
    return {
        "type": "object",
        "required": ["mode", "name", "probability", "probabilities"],
        "description": "The mode a failure of this reading would most likely be, should it "
        "fail (the most probable of the five modes; 'none' is never the answer: its "
        "probability is probabilities.none), and every class's probability. For a healthy "
        "reading that is mostly tool wear (TWF) or random (RNF): random in the data set, no "
        "model predicts them; read them as what a failure would be, not as a prediction",
        "properties": {
            "mode": {"type": "string", "enum": list(FAILURE_MODE_COLUMNS)},
            "name": {"type": "string", "description": "The mode, for people (e.g. power)"},
            "probability": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The mode's probability given a failure: P(mode) / (1 - P(none))",
            },
            "probabilities": {
                "type": "object",
                "description": "Each class's probability: none (no failure) and each mode; they "
                "sum to 1",
                "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    }


def instances_schema() -> dict[str, Any]:
    """``{"instances": [reading, ...]}``: the JSON body the endpoint and the API both take."""
    return {
        "type": "object",
        "required": [JSON_INSTANCES_KEY],
        "additionalProperties": False,
        "properties": {
            JSON_INSTANCES_KEY: {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/Reading"},
            },
            EXPLAIN_KEY: dict(EXPLAIN_PROPERTY),
        },
        "example": {JSON_INSTANCES_KEY: [dict(READING_EXAMPLE)]},
    }


def _invocation(*, runtime: bool, endpoint_name: str | None = None) -> dict[str, Any]:
    """``POST /invocations`` (the container), or with ``runtime`` SageMaker Runtime's route."""
    instances = instances_schema()
    parameters: list[dict[str, Any]] = [
        {
            "name": "Accept",
            "in": "header",
            "required": False,
            "description": "text/csv or application/json (q values and text/*, application/*, "
            "*/* honoured); */* or none: the request's own type",
            "schema": {"type": "string"},
        },
        {
            "name": INFERENCE_ID_HEADER,
            "in": "header",
            "required": False,
            "description": "SageMaker Runtime's InvokeEndpoint InferenceId (boto3: InferenceId=): "
            "data capture records it as the capture's inferenceId, the key of ground truth",
            "schema": {"type": "string", "pattern": "^[!-~][ -~]{0,63}$"},
        },
        explain_parameter("this local endpoint"),
    ]
    if runtime:
        parameters.insert(
            0,
            {
                "name": "EndpointName",
                "in": "path",
                "required": True,
                "description": "The endpoint this server is (any name when it has none)",
                "schema": {"type": "string", "minLength": 1},
                **({"example": endpoint_name} if endpoint_name else {}),
            },
        )
    ok_headers = {
        MODEL_VERSION_HEADER: _MODEL_VERSION,
        EVENT_ID_HEADER: _header(
            "With data capture on, the eventId this request and its answer were captured under"
        ),
    }
    error_description = (
        " SageMaker Runtime's route also names the error in x-amzn-ErrorType "
        "(ModelError for an invalid reading, with OriginalStatusCode and OriginalMessage)."
        if runtime
        else ""
    )
    responses: dict[str, Any] = {
        "200": {
            "description": "One score per reading, in the type Accept asks for; asked to "
            "explain, JSON with the explanations",
            "headers": ok_headers,
            "content": {
                CSV_CONTENT_TYPE: {
                    "schema": {
                        "type": "string",
                        "description": "One failure probability per line, in request order",
                        "example": "0.9312\n",
                    }
                },
                JSON_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Predictions"}},
            },
        },
        "400": error_response(
            "A reading is missing, not a number or implausible; the body is not CSV or JSON as "
            f"described; {EXPLAIN_KEY} is not true or false, or asks for explanations in CSV "
            f"(they come only as JSON); {INFERENCE_ID_HEADER} is not 1-64 printable characters; "
            "the request is "
            "malformed HTTP (conflicting Content-Length, "
            "Transfer-Encoding with Content-Length, a bad chunk size)." + error_description
        ),
        "404": error_response(
            "Another endpoint's name (SageMaker Runtime's route), or no such path"
            if runtime
            else "No such path"
        ),
        "405": error_response(
            "A method other than POST", Allow=_header("The method allowed: POST")
        ),
        "406": error_response("Accept names neither text/csv nor application/json"),
        "408": error_response("The request's head or body did not arrive in time"),
        "411": error_response(
            "A POST that frames no body: neither Content-Length nor chunked transfer encoding"
        ),
        "413": error_response(
            f"The body is larger than the limit ({MAX_PAYLOAD_BYTES:,} bytes by default, as "
            "SageMaker), or holds more readings than the limit (50,000 by default)"
        ),
        "414": error_response("The request target is too long"),
        "415": error_response(
            "The content type is not text/csv or application/json, or its charset is not UTF-8 "
            "(utf-8, utf8, us-ascii or ascii, any case)"
        ),
        "431": error_response("The request line and headers are too large"),
        "503": error_response(
            "No model is loaded yet, or the endpoint is answering as many requests as its limit "
            "allows (then with Retry-After)",
            **{"Retry-After": {**RETRY_AFTER_HEADER, "required": False}},
        ),
    }
    operation: dict[str, Any] = {
        "operationId": "invokeEndpoint" if runtime else "invocations",
        "summary": "SageMaker Runtime's InvokeEndpoint, as boto3 calls it"
        if runtime
        else "Failure probabilities of readings (the SageMaker container contract)",
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                CSV_CONTENT_TYPE: {
                    "schema": {
                        "type": "string",
                        "description": ENDPOINT_CSV_DESCRIPTION,
                        "example": "L,298.4,308.2,1582,70.7,216\n",
                    }
                },
                JSON_CONTENT_TYPE: {"schema": instances},
            },
        },
        "responses": responses,
    }
    return {"post": operation}


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "string"}}


def endpoint_openapi_document(endpoint_name: str | None = None) -> dict[str, Any]:
    """The endpoint's OpenAPI 3.0 document (``kedro endpoint serve``, the SageMaker container);
    ``endpoint_name``: the name SageMaker Runtime's route takes, as its example."""
    predictions = {
        "type": "object",
        "required": ["predictions", "model_version"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["score"],
                    "properties": {
                        "score": {"type": "number", "minimum": 0, "maximum": 1},
                        "predicted_label": {
                            "type": "integer",
                            "enum": [0, 1],
                            "description": "score >= decision_threshold",
                        },
                    },
                },
            },
            "model_version": {
                "type": "integer",
                "nullable": True,
                "description": "Registry version of the model that answered",
            },
            "decision_threshold": {
                "type": "number",
                "description": "The model's decision threshold",
            },
            EXPLANATIONS_KEY: {
                "type": "array",
                "description": f"Only when asked ({EXPLAIN_KEY}): one per reading, in order",
                "items": {"$ref": "#/components/schemas/Explanation"},
            },
            MODEL_CARD_KEY: dict(MODEL_CARD_PROPERTY),
        },
    }
    explanation = explanation_schema()
    # The endpoint's explanation carries "how sure" and "which failure" (the API lifts them out).
    explanation["properties"][PROBABILITY_KEY] = dict(PROBABILITY_PROPERTY)
    explanation["properties"][FAILURE_MODE_KEY] = dict(FAILURE_MODE_PROPERTY)
    ping = {
        "get": {
            "operationId": "ping",
            "summary": "Whether a model is loaded (SageMaker's health check)",
            "responses": {
                "200": {
                    "description": "A model is loaded and serves",
                    "headers": {MODEL_VERSION_HEADER: _MODEL_VERSION},
                    "content": {
                        JSON_CONTENT_TYPE: {
                            "schema": {
                                "type": "object",
                                "required": ["status", "model_version"],
                                "properties": {
                                    "status": {"type": "string", "enum": ["ready"]},
                                    "model_version": {"type": "integer", "nullable": True},
                                },
                            }
                        }
                    },
                },
                "400": error_response("Malformed HTTP"),
                "405": error_response("A method other than GET", Allow=_header("GET")),
                "408": error_response("The request's head did not arrive in time"),
                "414": error_response("The request target is too long"),
                "431": error_response("The request line and headers are too large"),
                "503": error_response("No model is loaded yet"),
            },
        }
    }
    capture_stats = {
        "get": {
            "operationId": "captureStats",
            "summary": "Data capture's counters (not part of the SageMaker contract)",
            "responses": {
                "200": {
                    "description": "The counters (requests, captured, written, dropped, write "
                    'errors, files...), or {"enabled": false} with capture off',
                    "content": {
                        JSON_CONTENT_TYPE: {
                            "schema": {
                                "type": "object",
                                "required": ["enabled"],
                                "properties": {"enabled": {"type": "boolean"}},
                            }
                        }
                    },
                },
                "400": error_response("Malformed HTTP"),
                "404": error_response("Asked from another machine: the counters name paths"),
                "405": error_response("A method other than GET", Allow=_header("GET")),
                "408": error_response("The request's head did not arrive in time"),
                "414": error_response("The request target is too long"),
                "431": error_response("The request line and headers are too large"),
            },
        }
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Predictive maintenance model endpoint",
            "version": __version__,
            "description": "The SageMaker inference container contract (GET /ping, POST "
            "/invocations) and SageMaker Runtime's InvokeEndpoint route, as `kedro endpoint "
            "serve` answers them. Every error is JSON naming the cause; every response carries "
            "X-Content-Type-Options, X-Frame-Options, Content-Security-Policy and "
            "Referrer-Policy.",
        },
        "paths": {
            PING_PATH: ping,
            CAPTURE_STATS_PATH: capture_stats,
            INVOCATIONS_PATH: _invocation(runtime=False),
            f"{RUNTIME_PREFIX}{{EndpointName}}{RUNTIME_SUFFIX}": _invocation(
                runtime=True, endpoint_name=endpoint_name
            ),
        },
        "components": {
            "schemas": {
                "Reading": reading_schema(),
                "Predictions": predictions,
                "Explanation": explanation,
                "FailureMode": failure_mode_schema(),
                "Error": error_schema(),
            }
        },
    }
