"""The API's OpenAPI 3.0 document, built from the project's schema (field names, ranges, types)."""

from __future__ import annotations

from typing import Any

from predictive_maintenance import __version__
from predictive_maintenance.serving.contract import (
    FAILURE_MODE_KEY,
    MODEL_CARD_KEY,
    PROBABILITY_KEY,
)
from predictive_maintenance.serving.openapi import (
    FAILURE_MODE_PROPERTY,
    MODEL_CARD_PROPERTY,
    PROBABILITY_PROPERTY,
    RETRY_AFTER_HEADER,
    error_response,
    explain_parameter,
    explanation_schema,
    failure_mode_schema,
    instances_schema,
    reading_schema,
)

#: What ``POST /predict`` takes as CSV (``text/csv`` or ``text/plain``).
CSV_DESCRIPTION = (
    "One reading per line. Without a header line: the six fields in the workshop's order "
    "(Type, Air temperature [K], Process temperature [K], Rotational speed [rpm], Torque [Nm], "
    "Tool wear [min]) or the data set's 14 columns (UDI, Product ID, Type, the five readings, "
    "Machine failure, TWF, HDF, PWF, OSF, RNF; the labels are ignored). With a header line: "
    "columns named as in the data set or as the JSON fields, in any order; other columns are "
    "ignored. Blank lines are skipped. Each answer carries its line (first line = 1) and the "
    "file's UDI and Product ID if it has them; errors name the line."
)


#: Above the concurrency limit: API Gateway throttles (and `kedro api serve` answers) with 429.
_THROTTLED = error_response(
    "Too many requests at once (the API's concurrency limit); retry after Retry-After seconds",
    **{"Retry-After": RETRY_AFTER_HEADER},
)


def openapi_document() -> dict[str, Any]:
    reading = reading_schema()
    prediction = {
        "type": "object",
        "required": ["failure_probability", "failure_predicted", "threshold", "model_version"],
        "properties": {
            "failure_probability": {"type": "number", "minimum": 0, "maximum": 1},
            "failure_predicted": {
                "type": "boolean",
                "description": "failure_probability >= threshold",
            },
            "threshold": {"type": "number", "description": "The model's decision threshold"},
            "model_version": {
                "type": "integer",
                "nullable": True,
                "description": "Registry version of the model that answered",
            },
            "line": {
                "type": "integer",
                "minimum": 1,
                "description": "CSV bodies: the reading's line in the file (first line = 1)",
            },
            "udi": {"type": "string", "description": "The file's UDI column, if it has one"},
            "product_id": {
                "type": "string",
                "description": "The file's Product ID column, if it has one",
            },
            "explanation": {
                "$ref": "#/components/schemas/Explanation",
                "description": 'Only when asked (?explain=true, or "explain": true beside '
                '"instances"): why this reading got its probability',
            },
            PROBABILITY_KEY: {
                **PROBABILITY_PROPERTY,
                "description": "Only with the explanation: "
                + PROBABILITY_PROPERTY["description"]
                + ". (failure_probability stays the model's raw score, as before.)",
            },
            FAILURE_MODE_KEY: {
                **FAILURE_MODE_PROPERTY,
                "description": "Only with the explanation: " + FAILURE_MODE_PROPERTY["description"],
            },
            MODEL_CARD_KEY: {
                **MODEL_CARD_PROPERTY,
                "description": "Only with the explanation of a single reading (a bare reading, "
                "not a list, CSV file or instances): " + MODEL_CARD_PROPERTY["description"],
            },
        },
    }
    csv_body = {
        "type": "string",
        "description": CSV_DESCRIPTION,
        "example": "L,298.4,308.2,1582,70.7,216",
    }
    endpoint_state = {
        "type": "object",
        "required": ["name", "status"],
        "properties": {
            "name": {"type": "string", "nullable": True, "description": "ENDPOINT_NAME"},
            "status": {
                "type": "string",
                "enum": [
                    "ok",
                    "not_configured",
                    "unreachable",
                    "not_ready",
                    "not_found",
                    "not_in_service",
                    "unknown",
                ],
            },
            "url": {"type": "string", "description": "A local endpoint's URL"},
            "model_version": {
                "type": "integer",
                "nullable": True,
                "description": "A local endpoint: the registry version it serves",
            },
            "endpoint_status": {
                "type": "string",
                "description": "A SageMaker endpoint: its EndpointStatus",
            },
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Predictive maintenance API",
            "version": __version__,
            "description": "Failure probability of a milling machine from six readings "
            "(AI4I 2020), from the model deployed to the endpoint. Every error is JSON naming "
            "the cause (malformed HTTP too: 400); every answer carries X-Content-Type-Options, "
            "X-Frame-Options, Content-Security-Policy and Referrer-Policy.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Failure probability of one or many readings",
                    "security": [{}, {"ApiKey": []}],
                    "parameters": [
                        {
                            "name": "X-Inference-Id",
                            "in": "header",
                            "required": False,
                            "description": "Your id for this prediction (e.g. machine and time): "
                            "data capture records it, and the answer echoes it",
                            "schema": {"type": "string", "pattern": "^[!-~][ -~]{0,63}$"},
                        },
                        explain_parameter("this API and the local endpoint"),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Reading"},
                                        {
                                            "type": "array",
                                            "minItems": 1,
                                            "items": {"$ref": "#/components/schemas/Reading"},
                                        },
                                        instances_schema(),
                                    ]
                                }
                            },
                            "text/csv": {"schema": csv_body},
                            "text/plain": {"schema": csv_body},
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per reading (a list for many)",
                            "headers": {
                                "X-Inference-Id": {
                                    "description": "The id the endpoint's data capture records "
                                    "this prediction under (the request's X-Inference-Id, else "
                                    "a new one): report ground truth under it",
                                    "required": True,
                                    "schema": {"type": "string", "minLength": 1, "maxLength": 64},
                                }
                            },
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "oneOf": [
                                            {"$ref": "#/components/schemas/Prediction"},
                                            {
                                                "type": "array",
                                                "items": {
                                                    "$ref": "#/components/schemas/Prediction"
                                                },
                                            },
                                        ]
                                    }
                                }
                            },
                        },
                        "400": error_response(
                            "A reading is missing, not a number or implausible; the body is not "
                            "JSON or CSV as described; explain is not true or false (field: "
                            "explain)"
                        ),
                        "403": error_response("The API key is missing or wrong"),
                        "408": error_response("The request did not arrive in time"),
                        "413": error_response(
                            "The body is larger than 6 MB (Lambda's limit; above 10 MB, API "
                            "Gateway's, it is refused unread), or holds over 50,000 readings"
                        ),
                        "415": error_response(
                            "The content type is not JSON, CSV or plain text, or its charset is "
                            "not UTF-8 (utf-8, utf8, us-ascii or ascii, any case)"
                        ),
                        "429": _THROTTLED,
                        "502": error_response("The model endpoint failed or cannot be reached"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the API and its model endpoint serve",
                    "description": "Asks the model endpoint, briefly: a local one its GET "
                    "/ping, SageMaker its DescribeEndpoint.",
                    "responses": {
                        "200": {
                            "description": "The API and the model endpoint serve",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status", "endpoint"],
                                        "properties": {
                                            "status": {"type": "string", "enum": ["ok"]},
                                            "endpoint": endpoint_state,
                                        },
                                    }
                                }
                            },
                        },
                        "503": {
                            "description": "The model endpoint does not serve: the cause",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status", "message", "endpoint"],
                                        "properties": {
                                            "status": {"type": "string", "enum": ["unavailable"]},
                                            "message": {"type": "string"},
                                            "endpoint": endpoint_state,
                                        },
                                    }
                                }
                            },
                        },
                        "429": _THROTTLED,
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Reading": reading,
                "Prediction": prediction,
                "Explanation": explanation_schema(),
                "FailureMode": failure_mode_schema(),
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "row": {
                            "type": "integer",
                            "nullable": True,
                            "description": "Where the bad reading is. CSV: its line in the file "
                            "(first line = 1, as a spreadsheet numbers rows; a header is line 1). "
                            "JSON: its index in the list (0-based, as instances[i] in the "
                            "message); null for a single reading",
                        },
                        "field": {"type": "string", "nullable": True},
                    },
                },
            },
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
