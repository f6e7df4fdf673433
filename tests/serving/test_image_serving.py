"""model.tar.gz served by the stock SageMaker XGBoost 3.0-5 image's own WSGI app.

The stand-in for the image (``image_python``: Python 3.10 with the image's pins and its serving
code) runs ``sagemaker_xgboost_container.serving:main`` under gunicorn with gevent workers, as the
image starts it, on 127.0.0.1, with the package extracted as SageMaker extracts it
(``SAGEMAKER_BASE_DIR``/model, ``SAGEMAKER_PROGRAM=inference.py``, ``code/`` on the path). Every
request goes byte for byte to that server and to the local endpoint (``kedro endpoint serve``'s
server, same model, same version): both must give the same status, content type and body. Scores
are also checked against the booster itself, and each bad request against the status, row and
field it must name, so that the two servers cannot agree on a wrong answer.
"""

from __future__ import annotations

import ast
import http.client
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from predictive_maintenance.modeling import predict_scores
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.contract import MAX_PAYLOAD_BYTES, MODEL_VERSION_HEADER
from predictive_maintenance.serving.inference import respond
from predictive_maintenance.serving.package import extract_model_archive
from tests.conftest import WORKSHOP_READING
from tests.serving.conftest import CSV_ROW, readings_as_csv
from tests.support.net import free_port, wait_for

#: The version the local endpoint fixture serves; the image learns it from its environment, as a
#: SageMaker Model's Environment tells it (``MODEL_VERSION``).
MODEL_VERSION = 7
SHORT_ROW = "M,298.1,308.6,1551,42.8"  # no tool wear


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str | None
    body: bytes
    model_version: str | None


def call(url: str, body: bytes, headers: dict[str, str], path: str = "/invocations") -> Answer:
    """One request with exactly these headers (http.client adds only Host, Content-Length and
    Accept-Encoding)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    try:
        connection.request("POST" if path == "/invocations" else "GET", path, body, headers)
        response = connection.getresponse()
        return Answer(
            response.status,
            response.getheader("Content-Type"),
            response.read(),
            response.getheader(MODEL_VERSION_HEADER),
        )
    finally:
        connection.close()


@contextmanager
def served_on_image(image_python: Path, archive: bytes, base: Path) -> Iterator[str]:
    """The image's serving app under gunicorn (gevent worker, as the image runs it), serving
    ``archive`` extracted under ``base``; yields its URL and stops it."""
    model_dir = extract_model_archive(archive, base / "model")
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


@pytest.fixture(scope="module")
def image_endpoint(
    image_python: Path, training_run: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    base = tmp_path_factory.mktemp("image-endpoint")
    with served_on_image(image_python, training_run.full.archive, base) as url:
        yield url


@dataclass(frozen=True)
class Case:
    body: bytes
    headers: dict[str, str]
    #: For a bad request: the status, row and field its JSON body must name.
    status: int = 200
    row: int | None = None
    field: str | None = None
    #: False where the image cannot give the local endpoint's exact message (see transform_fn).
    same_message: bool = True


def _instances(readings: Any) -> list[dict[str, Any]]:
    return readings[list(READING_COLUMNS)].to_dict(orient="records")


def _json(payload: Any) -> bytes:
    return json.dumps(payload).encode()


CSV = {"Content-Type": "text/csv"}
JSON = {"Content-Type": "application/json"}
MISSING_TORQUE = {key: value for key, value in WORKSHOP_READING.items() if key != "torque_nm"}
BAD_CASES = {
    "unsupported-content-type": Case(CSV_ROW.encode(), {"Content-Type": "text/plain"}, 415),
    "no-content-type": Case(CSV_ROW.encode(), {}, 415),
    "unsupported-charset": Case(
        CSV_ROW.encode(), {"Content-Type": "text/csv; charset=latin-1"}, 415
    ),
    "unsupported-accept": Case(CSV_ROW.encode(), {**CSV, "Accept": "image/png"}, 406),
    "bad-json": Case(b'{"instances": [', JSON, 400),
    "json-not-instances": Case(_json([WORKSHOP_READING]), JSON, 400, None, "instances"),
    "json-missing-field": Case(
        _json({"instances": [WORKSHOP_READING, MISSING_TORQUE]}), JSON, 400, 1, "torque_nm"
    ),
    "json-non-numeric-field": Case(
        _json({"instances": [{**WORKSHOP_READING, "air_temperature_k": "298.4"}]}),
        JSON,
        400,
        0,
        "air_temperature_k",
    ),
    "json-unknown-type": Case(
        _json({"instances": [{**WORKSHOP_READING, "type": "X"}]}), JSON, 400, 0, "type"
    ),
    # CSV errors name the line in the body (first line = 1); JSON ones instances[i] (0-based).
    "csv-short-row": Case(f"{CSV_ROW}\n{SHORT_ROW}\n".encode(), CSV, 400, 2, "tool_wear_min"),
    "csv-long-row": Case(f"{CSV_ROW},1\n".encode(), CSV, 400, 1, None),
    "csv-non-numeric-field": Case(
        b"L,298.4,308.2,fast,70.7,216", CSV, 400, 1, "rotational_speed_rpm"
    ),
    "csv-out-of-range": Case(b"L,298.4,308.2,1582,70.7,-5", CSV, 400, 1, "tool_wear_min"),
    "csv-empty-body": Case(b"", CSV, 400),
    "json-empty-body": Case(b"", JSON, 400),
    "csv-not-utf8-with-charset": Case(
        b"L,298.4,308.2,1582,70.7,21\xff6", {"Content-Type": "text/csv; charset=utf-8"}, 400
    ),
    # The toolkit decodes a text/csv body itself, replacing bytes that are not UTF-8.
    "csv-not-utf8": Case(
        b"L,298.4,308.2,1582,70.7,21\xff6", CSV, 400, 1, "tool_wear_min", same_message=False
    ),
    "above-6-mb": Case(
        (CSV_ROW + "\n").encode() * (MAX_PAYLOAD_BYTES // len(CSV_ROW) + 1), CSV, 413
    ),
}


def test_the_program_hands_the_container_model_fn_and_transform_fn(training_run, tmp_path):
    """The image uses transform_fn only if the user module has no input/predict/output_fn (it
    refuses both kinds), and without transform_fn every bad request gets a 500 HTML page."""
    program = extract_model_archive(training_run.full.archive, tmp_path) / "code" / "inference.py"
    imported = {
        alias.name
        for statement in ast.parse(program.read_text()).body
        if isinstance(statement, ast.ImportFrom)
        for alias in statement.names
    }

    assert imported == {"model_fn", "transform_fn"}, (
        "code/inference.py (package.PROGRAM_SOURCE) must re-export exactly model_fn and "
        f"transform_fn, not {sorted(imported)}"
    )


def test_ping(image_endpoint):
    assert call(image_endpoint, b"", {}, path="/ping").status == 200


@pytest.fixture(scope="module")
def good_cases(training_run: Any) -> dict[str, Case]:
    test_readings = training_run.readings.loc[training_run.test.index]
    csv_rows = (readings_as_csv(test_readings) + "\n").encode()
    json_rows = _json({"instances": _instances(test_readings.iloc[:50])})
    return {
        "csv-accept-csv": Case(csv_rows, {**CSV, "Accept": "text/csv"}),
        "csv-no-accept": Case(csv_rows, CSV),
        "csv-accept-any": Case(csv_rows, {**CSV, "Accept": "*/*"}),
        "csv-accept-json": Case(csv_rows, {**CSV, "Accept": "application/json"}),
        "csv-bom-crlf-charset": Case(
            b"\xef\xbb\xbf" + csv_rows.replace(b"\n", b"\r\n"),
            {"Content-Type": "text/csv; charset=utf-8", "Accept": "text/csv"},
        ),
        "json-accept-json": Case(json_rows, {**JSON, "Accept": "application/json"}),
        "json-no-accept": Case(json_rows, JSON),
        "json-accept-csv-preferred": Case(
            json_rows, {**JSON, "Accept": "application/json;q=0.5, text/csv"}
        ),
    }


@pytest.mark.parametrize(
    "name",
    [
        "csv-accept-csv",
        "csv-no-accept",
        "csv-accept-any",
        "csv-accept-json",
        "csv-bom-crlf-charset",
        "json-accept-json",
        "json-no-accept",
        "json-accept-csv-preferred",
    ],
)
def test_good_requests_get_the_local_endpoints_answer(
    name, good_cases, image_endpoint, server, training_run
):
    case = good_cases[name]

    image = call(image_endpoint, case.body, case.headers)
    local = call(server.url, case.body, case.headers)

    assert image.status == 200, image.body[:2000]
    assert (image.content_type, image.body) == (local.content_type, local.body)
    assert image.model_version == local.model_version == str(MODEL_VERSION)
    # ...and those are the booster's own scores for these rows.
    test_rows = training_run.test if name.startswith("csv") else training_run.test.iloc[:50]
    expected = predict_scores(training_run.full.booster, test_rows)
    if image.content_type == "text/csv":
        scores = np.array(image.body.decode().splitlines(), dtype=np.float32)
    else:
        answer = json.loads(image.body)
        assert answer["model_version"] == MODEL_VERSION
        scores = np.array([p["score"] for p in answer["predictions"]], dtype=np.float32)
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.parametrize("name", list(BAD_CASES))
def test_bad_requests_get_the_local_endpoints_4xx(name, image_endpoint, server):
    case = BAD_CASES[name]

    image = call(image_endpoint, case.body, case.headers)
    local = call(server.url, case.body, case.headers)

    assert image.status == case.status, image.body[:2000]
    assert image.content_type == "application/json", image.body[:2000]  # never an HTML page
    detail = json.loads(image.body)
    assert set(detail) == {"error", "message", "row", "field"}
    assert (detail["row"], detail["field"]) == (case.row, case.field)
    assert image.model_version == str(MODEL_VERSION)
    assert local.status == case.status
    if case.same_message:
        assert image.body == local.body
    else:
        assert detail["error"] == json.loads(local.body)["error"]


def test_the_server_keeps_answering_after_bad_requests(image_endpoint, server):
    headers = {**CSV, "Accept": "text/csv"}
    for _ in range(3):
        assert call(image_endpoint, SHORT_ROW.encode(), headers).status == 400
        answer = call(image_endpoint, CSV_ROW.encode(), headers)
        assert answer.status == 200
        assert answer.body == call(server.url, CSV_ROW.encode(), headers).body


def test_respond_answers_an_unexpected_failure_with_a_json_500(loaded_model, caplog):
    broken = replace(loaded_model, booster=None)  # predict_fn fails: not the input

    status, body, content_type = respond(broken, CSV_ROW.encode(), "text/csv", None)

    assert (status, content_type) == (500, "application/json")
    assert json.loads(body) == {
        "error": "internal_error",
        "message": "the endpoint failed to answer; see its log",
        "row": None,
        "field": None,
    }
    assert "unexpected failure" in caplog.text
    assert respond(loaded_model, SHORT_ROW.encode(), "text/csv", None)[0] == 400
