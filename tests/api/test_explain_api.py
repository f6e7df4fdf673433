"""Explanations through the API (issue 16): the opt-in passes to a real local endpoint (on
127.0.0.1, through boto3's sagemaker-runtime client) and each prediction carries its reasons;
with a model that has them, the calibrated probability, the likely failure mode and (a single
reading) the model card."""

from __future__ import annotations

import json

import pytest

from predictive_maintenance.api.openapi import openapi_document
from tests.api.events import v2_event
from tests.conftest import LOW_POWER_READING, WORKSHOP_READING


def predict(api, body: str, content_type: str = "application/json", query: str = ""):
    event = v2_event("POST", "/predict", body, {"content-type": content_type})
    if query:
        event["rawQueryString"] = query
        event["queryStringParameters"] = dict(part.split("=") for part in query.split("&"))
    response = api(event, None)
    return response["statusCode"], json.loads(response["body"])


def test_the_json_field_gives_each_prediction_its_explanation(api):
    _, plain = predict(api, json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING]}))

    status, answer = predict(
        api, json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING], "explain": True})
    )

    assert status == 200
    assert [{k: v for k, v in item.items() if k != "explanation"} for item in answer] == plain
    assert all("explanation" not in item for item in plain)
    reasons = answer[1]["explanation"]["contributions"]
    raising = [item["feature"] for item in reasons if item["direction"] == "raises"]
    assert "power_w" in raising[:3]
    power = next(item for item in reasons if item["feature"] == "power_w")
    assert (power["unit"], round(power["value"])) == ("W", 1378)


def test_the_query_parameter_explains_a_csv_file_and_a_single_reading(api):
    status, rows = predict(
        api,
        "Type,Torque [Nm],Rotational speed [rpm],Air temperature [K],"
        "Process temperature [K],Tool wear [min]\nL,4.6,2861,298.9,309.1,143\n",
        "text/csv",
        "explain=true",
    )
    assert status == 200
    assert rows["line"] == 2
    assert rows["explanation"]["contributions"][0]["feature"] == "power_w"

    status, single = predict(api, json.dumps(LOW_POWER_READING), query="explain=1")
    assert status == 200
    assert single["explanation"] == rows["explanation"]


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (json.dumps({"instances": [WORKSHOP_READING], "explain": "true"}), ""),
        (json.dumps(WORKSHOP_READING), "explain=please"),
    ],
    ids=["json-string", "query-word"],
)
def test_a_bad_explain_is_400_naming_the_field(api, body, query):
    status, answer = predict(api, body, query=query)

    assert (status, answer["field"]) == (400, "explain")
    assert "explain" in answer["message"]


def test_the_api_document_describes_the_opt_in():
    document = openapi_document()
    operation = document["paths"]["/predict"]["post"]

    assert any(parameter["name"] == "explain" for parameter in operation["parameters"])
    prediction = document["components"]["schemas"]["Prediction"]
    assert prediction["properties"]["explanation"]["$ref"] == "#/components/schemas/Explanation"
    assert "contributions" in document["components"]["schemas"]["Explanation"]["properties"]


# ---- how sure, which failure, the card (a model with calibration, mode model and card) -----------
def test_each_explained_result_says_how_sure_and_which_failure(insight_api, insight_loaded_model):
    _, plain = predict(
        insight_api, json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING]})
    )

    status, answer = predict(
        insight_api,
        json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING], "explain": True}),
    )

    assert status == 200
    assert isinstance(answer, list)  # instances: a list, no card
    added = {"explanation", "probability", "failure_mode"}
    assert [{k: v for k, v in item.items() if k not in added} for item in answer] == plain
    power = answer[1]
    assert (power["failure_mode"]["mode"], power["failure_mode"]["name"]) == ("pwf", "power")
    calibrated = insight_loaded_model.calibration.apply([power["failure_probability"]])[0]
    assert power["probability"] == pytest.approx(calibrated, abs=1e-6)
    # Lifted out of the explanation, not repeated in it.
    assert set(power["explanation"]) == {"bias", "margin", "contributions"}
    assert all("model_card" not in item for item in answer)


def test_a_single_explained_reading_carries_the_model_card(insight_api, insight_model):
    status, single = predict(insight_api, json.dumps(LOW_POWER_READING), query="explain=true")

    assert status == 200
    assert single["model_card"] == insight_model.card
    assert single["failure_mode"]["mode"] == "pwf"
    # Not asked: the answer as before, no card.
    _, plain = predict(insight_api, json.dumps(LOW_POWER_READING))
    assert set(plain) == {"failure_probability", "failure_predicted", "threshold", "model_version"}


def test_an_older_model_gives_neither(api):
    status, single = predict(api, json.dumps(LOW_POWER_READING), query="explain=true")

    assert status == 200
    assert "explanation" in single
    assert not {"probability", "failure_mode", "model_card"} & set(single)


def test_the_api_document_describes_how_sure_and_which_failure():
    document = openapi_document()
    prediction = document["components"]["schemas"]["Prediction"]["properties"]

    assert prediction["probability"]["type"] == "number"
    assert prediction["failure_mode"]["$ref"] == "#/components/schemas/FailureMode"
    assert prediction["model_card"]["type"] == "object"
    assert "pwf" in document["components"]["schemas"]["FailureMode"]["properties"]["mode"]["enum"]
