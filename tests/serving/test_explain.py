"""Explanations per prediction (issue 16): XGBoost's SHAP contributions, on the endpoint.

The function on real data (additivity, a row that breaks the power rule), then the local
endpoint over real HTTP: the plain contract unchanged, the JSON field and the query parameter,
and the 400s naming ``explain``.
"""

from __future__ import annotations

import http.client
import json
import math

import numpy as np
import pandas as pd
import pytest

from predictive_maintenance.features import FEATURE_COLUMNS, FEATURE_LABELS, build_features
from predictive_maintenance.serving.contract import MAX_EXPLAINED_ROWS
from predictive_maintenance.serving.inference import explain_features, invoke
from predictive_maintenance.serving.openapi import endpoint_openapi_document
from tests.conftest import LOW_POWER_READING, WORKSHOP_READING
from tests.serving.conftest import CSV_ROW

LOW_POWER_CSV = "L,298.9,309.1,2861,4.6,143"


def post(server, body: str, content_type: str, path: str = "/invocations", **headers: str):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": content_type, **headers})
    response = connection.getresponse()
    answer = (response.status, response.getheader("content-type"), response.read())
    connection.close()
    return answer


def explained(instances: list[dict], **extra) -> str:
    return json.dumps({"instances": instances, "explain": True, **extra})


# ---- the function ------------------------------------------------------------------------------
def test_bias_plus_contributions_is_the_margin_on_real_data(loaded_model, training_run):
    readings = training_run.readings.loc[training_run.test.index]
    features = build_features(readings).to_numpy()

    explanations = explain_features(features, loaded_model)

    margins = loaded_model.booster.inplace_predict(
        np.ascontiguousarray(features, dtype=np.float32), predict_type="margin"
    )
    scores = loaded_model.booster.inplace_predict(np.ascontiguousarray(features, np.float32))
    assert len(explanations) == len(readings)
    for explanation, margin, score in zip(explanations, margins, scores, strict=True):
        total = explanation["bias"] + sum(
            item["contribution"] for item in explanation["contributions"]
        )
        assert total == pytest.approx(float(margin), abs=1e-4)
        assert explanation["margin"] == pytest.approx(float(margin), abs=1e-4)
        assert 1 / (1 + math.exp(-explanation["margin"])) == pytest.approx(float(score), abs=1e-5)


def test_every_feature_is_named_with_its_unit_sorted_by_size(loaded_model):
    features = build_features(pd.DataFrame([LOW_POWER_READING])).to_numpy()

    (explanation,) = explain_features(features, loaded_model)

    items = explanation["contributions"]
    assert sorted(item["feature"] for item in items) == sorted(FEATURE_COLUMNS)
    sizes = [abs(item["contribution"]) for item in items]
    assert sizes == sorted(sizes, reverse=True)
    by_name = {item["feature"]: item for item in items}
    assert (by_name["power_w"]["label"], by_name["power_w"]["unit"]) == FEATURE_LABELS["power_w"]
    assert by_name["power_w"]["value"] == pytest.approx(4.6 * 2861 * 2 * math.pi / 60, abs=1e-3)
    assert by_name["rotational_speed_rpm"]["unit"] == "rpm"
    assert by_name["strain_min_nm"]["label"] == "tool wear x torque"
    for item in items:
        expected = {1: "raises", -1: "lowers", 0: "none"}[int(np.sign(item["contribution"]))]
        assert item["direction"] == expected


def test_a_row_breaking_the_power_rule_has_power_among_its_top_reasons(loaded_model):
    features = build_features(pd.DataFrame([LOW_POWER_READING])).to_numpy()

    (explanation,) = explain_features(features, loaded_model)

    raising = [
        item["feature"] for item in explanation["contributions"] if item["direction"] == "raises"
    ]
    assert "power_w" in raising[:3], explanation
    assert explanation["margin"] > 0  # the model calls it a failure


# ---- the endpoint ------------------------------------------------------------------------------
def test_the_plain_contract_is_unchanged_byte_for_byte(server, loaded_model):
    plain_json = json.dumps({"instances": [WORKSHOP_READING]})
    csv_answer = post(server, CSV_ROW, "text/csv")
    json_answer = post(server, plain_json, "application/json")
    not_asked = post(
        server, json.dumps({"instances": [WORKSHOP_READING], "explain": False}), "application/json"
    )

    assert csv_answer == (
        200,
        "text/csv",
        invoke(loaded_model.with_version(7), CSV_ROW, "text/csv", None)[0],
    )
    expected_json = invoke(loaded_model.with_version(7), plain_json, "application/json", None)[0]
    assert json_answer == (200, "application/json", expected_json)
    assert not_asked == json_answer
    assert b"explanations" not in json_answer[2]


def test_the_json_field_adds_explanations_next_to_the_scores(server):
    plain = json.loads(
        post(
            server,
            json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING]}),
            "application/json",
        )[2]
    )

    status, content_type, body = post(
        server, explained([WORKSHOP_READING, LOW_POWER_READING]), "application/json"
    )

    answer = json.loads(body)
    assert (status, content_type) == (200, "application/json")
    assert answer["predictions"] == plain["predictions"]
    assert len(answer["explanations"]) == 2
    top = [item["feature"] for item in answer["explanations"][1]["contributions"][:3]]
    assert "power_w" in top


def test_the_query_parameter_explains_csv_rows_in_json(server):
    status, content_type, body = post(
        server, LOW_POWER_CSV, "text/csv", "/invocations?explain=true"
    )

    assert (status, content_type) == (200, "application/json")
    assert len(json.loads(body)["explanations"]) == 1
    # The SageMaker Runtime route takes it too (boto3 cannot send it: the JSON field is portable).
    runtime = post(
        server, LOW_POWER_CSV, "text/csv", "/endpoints/predictive-maintenance/invocations?explain=1"
    )
    assert json.loads(runtime[2])["explanations"] == json.loads(body)["explanations"]


@pytest.mark.parametrize(
    ("body", "content_type", "path", "headers"),
    [
        (explained([WORKSHOP_READING], explain="yes"), "application/json", "/invocations", {}),
        (
            json.dumps({"instances": [WORKSHOP_READING], "explain": 1}),
            "application/json",
            "/invocations",
            {},
        ),
        (CSV_ROW, "text/csv", "/invocations?explain=maybe", {}),
        (CSV_ROW, "text/csv", "/invocations?explain=true&explain=false", {}),
        (explained([WORKSHOP_READING]), "application/json", "/invocations", {"Accept": "text/csv"}),
    ],
    ids=["json-string", "json-number", "query-word", "query-twice", "csv-answer"],
)
def test_a_bad_explain_is_400_naming_the_field(server, body, content_type, path, headers):
    status, content_type, answer = post(server, body, content_type, path, **headers)

    detail = json.loads(answer)
    assert (status, detail["error"], detail["field"]) == (400, "invalid_input", "explain")
    assert "explain" in detail["message"]


def test_more_readings_than_an_answer_holds_are_413_naming_explain(server):
    rows = "\n".join([LOW_POWER_CSV] * (MAX_EXPLAINED_ROWS + 1))

    status, _, answer = post(server, rows, "text/csv", "/invocations?explain=true")

    detail = json.loads(answer)
    assert (status, detail["error"], detail["field"]) == (413, "too_many_readings", "explain")
    assert post(server, rows, "text/csv")[0] == 200  # not asked: the usual limit


def test_the_container_handlers_explain_a_json_request(loaded_model):
    body, content_type = invoke(
        loaded_model, explained([LOW_POWER_READING]), "application/json", None
    )

    assert content_type == "application/json"
    assert json.loads(body)["explanations"][0]["contributions"][0]["feature"] in FEATURE_COLUMNS


def test_the_openapi_document_describes_the_opt_in():
    document = endpoint_openapi_document()
    operation = document["paths"]["/invocations"]["post"]

    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["properties"]["explain"]["type"] == "boolean"
    assert any(parameter["name"] == "explain" for parameter in operation["parameters"])
    predictions = document["components"]["schemas"]["Predictions"]
    assert "explanations" in predictions["properties"]
