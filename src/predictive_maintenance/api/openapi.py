"""The API's OpenAPI 3.0 document, built from the project's schema (field names, ranges, types)."""

from __future__ import annotations

from typing import Any

from predictive_maintenance import __version__
from predictive_maintenance.schema import PRODUCT_TYPES, READING_RANGES
from predictive_maintenance.serving.contract import JSON_INSTANCES_KEY

#: Units and descriptions of the readings, for the document and the web client.
READING_DESCRIPTIONS = {
    "type": "Product quality variant: L (low), M (medium), H (high)",
    "air_temperature_k": "Air temperature [K]",
    "process_temperature_k": "Process temperature [K]",
    "rotational_speed_rpm": "Rotational speed [rpm]",
    "torque_nm": "Torque [Nm]",
    "tool_wear_min": "Tool wear [min]",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document() -> dict[str, Any]:
    reading_properties: dict[str, Any] = {
        "type": {
            "type": "string",
            "enum": list(PRODUCT_TYPES),
            "description": READING_DESCRIPTIONS["type"],
        }
    }
    for column, (low, high) in READING_RANGES.items():
        reading_properties[column] = {
            "type": "number",
            "minimum": low,
            "maximum": high,
            "description": READING_DESCRIPTIONS[column],
        }
    reading = {
        "type": "object",
        "required": list(reading_properties),
        "properties": reading_properties,
        "additionalProperties": False,
        "example": {
            "type": "L",
            "air_temperature_k": 298.4,
            "process_temperature_k": 308.2,
            "rotational_speed_rpm": 1582,
            "torque_nm": 70.7,
            "tool_wear_min": 216,
        },
    }
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
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Predictive maintenance API",
            "version": __version__,
            "description": "Failure probability of a milling machine from six readings "
            "(AI4I 2020), from the model deployed to the endpoint.",
        },
        "paths": {
            "/predict": {
                "post": {
                    "operationId": "predict",
                    "summary": "Failure probability of one or many readings",
                    "security": [{}, {"ApiKey": []}],
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
                                        {
                                            "type": "object",
                                            "required": [JSON_INSTANCES_KEY],
                                            "additionalProperties": False,
                                            "properties": {
                                                JSON_INSTANCES_KEY: {
                                                    "type": "array",
                                                    "minItems": 1,
                                                    "items": {
                                                        "$ref": "#/components/schemas/Reading"
                                                    },
                                                }
                                            },
                                        },
                                    ]
                                }
                            },
                            "text/csv": {
                                "schema": {
                                    "type": "string",
                                    "example": "L,298.4,308.2,1582,70.7,216",
                                }
                            },
                            "text/plain": {
                                "schema": {
                                    "type": "string",
                                    "example": "L,298.4,308.2,1582,70.7,216",
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One prediction per reading (a list for many)",
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
                        "400": _error("A reading is missing, not a number or implausible"),
                        "403": _error("The API key is missing or wrong"),
                        "413": _error(
                            "The body is larger than 6 MB, or holds over 50,000 readings"
                        ),
                        "415": _error("The content type is not JSON, CSV or plain text"),
                        "502": _error("The model endpoint failed or cannot be reached"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "The API answers",
                    "responses": {
                        "200": {
                            "description": "Alive",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {
                                            "status": {"type": "string", "enum": ["ok"]},
                                            "endpoint": {"type": "string", "nullable": True},
                                        },
                                    }
                                }
                            },
                        }
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Reading": reading,
                "Prediction": prediction,
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string"},
                        "message": {"type": "string"},
                        "row": {"type": "integer", "nullable": True},
                        "field": {"type": "string", "nullable": True},
                    },
                },
            },
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
    }
