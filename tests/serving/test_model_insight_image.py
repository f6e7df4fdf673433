"""The explained answer with its insight (issue 16) from the stock SageMaker XGBoost image.

The insight archive (calibration map in the spec, failure-mode model, model card: the
``insight_model`` fixture) served by the image's own WSGI app under gunicorn, as
tests/serving/test_image_serving.py serves the plain archive: Python 3.10 and the image's numpy
and XGBoost load the mode model and apply the map. Its answers must be the local endpoint's,
byte for byte, for an explained request and for the plain contract.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from predictive_maintenance.serving.inference import respond
from predictive_maintenance.serving.package import extract_model_archive
from tests.conftest import WORKSHOP_READING
from tests.serving.conftest import CSV_ROW
from tests.serving.test_image_serving import MODEL_VERSION, call
from tests.support.net import free_port, wait_for

JSON = "application/json"

#: UDI 51 of the data set, a power failure (PWF).
LOW_POWER_ROW = {
    "type": "L",
    "air_temperature_k": 298.9,
    "process_temperature_k": 309.1,
    "rotational_speed_rpm": 2861,
    "torque_nm": 4.6,
    "tool_wear_min": 143,
}


@pytest.fixture(scope="module")
def insight_image_endpoint(
    image_python: Path, insight_model: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The image's serving app under gunicorn (gevent worker) with the insight archive."""
    base = tmp_path_factory.mktemp("insight-image-endpoint")
    model_dir = extract_model_archive(insight_model.archive, base / "model")
    port = free_port()
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(base),
        "LANG": "C.UTF-8",
        "SAGEMAKER_BASE_DIR": str(base),
        "SAGEMAKER_PROGRAM": "inference.py",
        "PYTHONPATH": str(model_dir / "code"),
        "MODEL_VERSION": str(MODEL_VERSION),
        "OMP_NUM_THREADS": "1",
    }
    log_path = base / "gunicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                str(image_python),
                "-m",
                "gunicorn",
                "--no-control-socket",
                "-k",
                "gevent",
                "-w",
                "1",
                "--timeout",
                "60",
                "-b",
                f"127.0.0.1:{port}",
                "sagemaker_xgboost_container.serving:main",
            ],
            cwd=base,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(process, lambda: call(url, b"", {}, path="/ping").status == 200, 120)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{log_path.read_text(errors='replace')}") from None
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # our own session: gunicorn and its worker
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (
            json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_ROW], "explain": True}).encode(),
            {"Content-Type": "application/json"},
        ),
        (CSV_ROW.encode(), {"Content-Type": "text/csv"}),
        (json.dumps({"instances": [LOW_POWER_ROW]}).encode(), {"Content-Type": "application/json"}),
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
    body = json.dumps({"instances": [LOW_POWER_ROW], "explain": True}).encode()

    answer = json.loads(
        call(insight_image_endpoint, body, {"Content-Type": "application/json"}).body
    )

    (explanation,) = answer["explanations"]
    assert explanation["failure_mode"]["mode"] == "pwf"
    assert 0 < explanation["probability"] < 1
    assert answer["model_card"] == insight_model.card
