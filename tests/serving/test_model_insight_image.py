"""The explained answer with its insight (issue 16) from the stock SageMaker XGBoost image.

The insight archive (calibration map in the spec, failure-mode model, model card: the
``insight_model`` fixture) served by the image's own WSGI app under gunicorn, as
tests/serving/test_image_serving.py serves the plain archive: Python 3.10 and the image's numpy
and XGBoost load the mode model and apply the map. Its answers must be the local endpoint's,
byte for byte, for an explained request and for the plain contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predictive_maintenance.serving.inference import respond
from tests.conftest import LOW_POWER_READING, WORKSHOP_READING
from tests.serving.conftest import CSV_ROW
from tests.serving.test_image_serving import MODEL_VERSION, call, served_on_image

JSON = "application/json"


@pytest.fixture(scope="module")
def insight_image_endpoint(
    image_python: Path, insight_model: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The image's serving app under gunicorn (gevent worker) with the insight archive."""
    base = tmp_path_factory.mktemp("insight-image-endpoint")
    with served_on_image(image_python, insight_model.archive, base) as url:
        yield url


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (
            json.dumps(
                {"instances": [WORKSHOP_READING, LOW_POWER_READING], "explain": True}
            ).encode(),
            {"Content-Type": "application/json"},
        ),
        (CSV_ROW.encode(), {"Content-Type": "text/csv"}),
        (
            json.dumps({"instances": [LOW_POWER_READING]}).encode(),
            {"Content-Type": "application/json"},
        ),
    ],
    ids=["explained", "plain-csv", "plain-json"],
)
def test_the_image_answers_as_the_local_endpoint(
    insight_image_endpoint, insight_loaded_model, body, headers
):
    answer = call(insight_image_endpoint, body, headers)

    expected = respond(
        insight_loaded_model.with_version(MODEL_VERSION), body, headers["Content-Type"], None
    )
    assert (answer.status, answer.body, answer.content_type) == expected
    assert answer.model_version == str(MODEL_VERSION)


def test_the_image_explains_with_the_mode_calibration_and_card(
    insight_image_endpoint, insight_model
):
    body = json.dumps({"instances": [LOW_POWER_READING], "explain": True}).encode()

    answer = json.loads(
        call(insight_image_endpoint, body, {"Content-Type": "application/json"}).body
    )

    (explanation,) = answer["explanations"]
    assert explanation["failure_mode"]["mode"] == "pwf"
    assert 0 < explanation["probability"] < 1
    assert answer["model_card"] == insight_model.card
