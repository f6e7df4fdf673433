"""Fixtures for the serving tests: real models trained once per session with the project's nodes."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import xgboost as xgb
from kedro.config import OmegaConfigLoader

from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_dataset_manifest,
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)
from predictive_maintenance.pipelines.training.nodes import (
    create_model_spec,
    select_threshold,
    train_model,
)
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.inference import LoadedModel, model_fn
from predictive_maintenance.serving.package import build_model_archive, extract_model_archive
from predictive_maintenance.serving.server import EndpointServer
from tests.support.project import PROJECT_ROOT

ENDPOINT_NAME = "predictive-maintenance"
#: A row of the data set in the workshop's CSV order.
CSV_ROW = "L,298.4,308.2,1582,70.7,216"


@dataclass(frozen=True)
class TrainedModel:
    """A booster, its spec and its model.tar.gz, as training and packaging make them."""

    booster: xgb.Booster
    spec: dict[str, Any]
    archive: bytes

    @property
    def model_bytes(self) -> bytes:
        return bytes(self.booster.save_raw(raw_format="ubj"))


@dataclass(frozen=True)
class TrainingRun:
    readings: pd.DataFrame
    test: pd.DataFrame
    full: TrainedModel
    small: TrainedModel
    #: The other splits and the full model's threshold choice, for the model-insight fixtures.
    train: pd.DataFrame | None = None
    validation: pd.DataFrame | None = None
    decision_threshold: dict[str, Any] | None = None
    parameters: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None


def readings_as_csv(readings: pd.DataFrame) -> str:
    """Headerless CSV rows (workshop order) whose floats read back exactly."""
    return "\n".join(
        ",".join([row[0], *(repr(float(value)) for value in row[1:])])
        for row in readings[list(READING_COLUMNS)].itertuples(index=False)
    )


@pytest.fixture(scope="session")
def training_run(raw_csv_bytes: bytes) -> TrainingRun:
    """The committed data through data engineering and training; a full and a 5-round model."""
    parameters = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )["parameters"]
    raw_readings, raw_file = ingest_raw_data(raw_csv_bytes, None)
    readings, provenance = validate_raw_readings(raw_readings, raw_file)
    table = create_model_input_table(readings)
    train, validation, test = split_data(table, parameters["split"])
    manifest = create_dataset_manifest(provenance, train, validation, test, parameters["split"])

    def trained(xgboost: dict[str, Any]) -> TrainedModel:
        booster = train_model(train, validation, xgboost)
        threshold = select_threshold(booster, validation, parameters["decision_threshold"])
        spec = create_model_spec(booster, threshold, manifest, xgboost)
        return TrainedModel(
            booster, spec, build_model_archive(bytes(booster.save_raw(raw_format="ubj")), spec)
        )

    small = {**parameters["xgboost"], "num_boost_round": 5, "early_stopping_rounds": 5}
    full = trained(parameters["xgboost"])
    return TrainingRun(
        readings=readings,
        test=test,
        full=full,
        small=trained(small),
        train=train,
        validation=validation,
        decision_threshold=select_threshold(
            full.booster, validation, parameters["decision_threshold"]
        ),
        parameters=parameters,
        manifest=manifest,
    )


@pytest.fixture(scope="session")
def model_dir(training_run: TrainingRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full model's archive, extracted as SageMaker extracts it to /opt/ml/model."""
    return extract_model_archive(training_run.full.archive, tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="session")
def loaded_model(model_dir: Path) -> LoadedModel:
    return model_fn(model_dir)


@pytest.fixture(scope="module")
def server(loaded_model: LoadedModel) -> Iterator[EndpointServer]:
    """An endpoint serving the full model as version 7, on a free port of 127.0.0.1."""
    with EndpointServer(
        ("127.0.0.1", 0), model=loaded_model.with_version(7), endpoint_name=ENDPOINT_NAME
    ) as running:
        yield running.start()


@dataclass(frozen=True)
class InsightModel:
    """The full model packaged with what an explained answer adds (issue 16), each made by the
    project's own functions on the real data: the calibration map (``fit_calibration``, in the
    spec), the failure-mode booster (``train_failure_mode_model``) and the model card
    (``create_model_card`` from the real test reports)."""

    trained: TrainedModel
    spec: dict[str, Any]  # the spec given to build_model_archive (no model_card_sha256)
    mode_booster: xgb.Booster
    card: dict[str, Any]
    archive: bytes

    @property
    def mode_model_bytes(self) -> bytes:
        return bytes(self.mode_booster.save_raw(raw_format="ubj"))


@pytest.fixture(scope="session")
def insight_model(training_run: TrainingRun) -> InsightModel:
    """The full model with calibration, failure-mode model and card, in one model.tar.gz."""
    from predictive_maintenance.model_card import card_bytes, create_model_card  # noqa: PLC0415
    from predictive_maintenance.pipelines.training.failure_modes import (  # noqa: PLC0415
        evaluate_failure_modes,
        train_failure_mode_model,
    )
    from predictive_maintenance.pipelines.training.nodes import (  # noqa: PLC0415
        evaluate_calibration,
        evaluate_model,
        fit_calibration,
        score_test_set,
    )
    from predictive_maintenance.serving.contract import (  # noqa: PLC0415
        FAILURE_MODE_MODEL_FILE,
        MODEL_CARD_FILE,
    )

    parameters, full = training_run.parameters, training_run.full
    calibration = fit_calibration(full.booster, training_run.validation, parameters["calibration"])
    mode_booster = train_failure_mode_model(
        training_run.train, training_run.validation, parameters["failure_modes"]
    )
    mode_bytes = bytes(mode_booster.save_raw(raw_format="ubj"))
    spec = create_model_spec(
        full.booster,
        training_run.decision_threshold,
        training_run.manifest,
        parameters["xgboost"],
        calibration=calibration,
        failure_mode_model=mode_booster,
    )
    predictions = score_test_set(full.booster, training_run.test)
    card = create_model_card(
        spec,
        evaluate_model(predictions, training_run.decision_threshold),
        evaluate_calibration(predictions, calibration, parameters["calibration"]),
        evaluate_failure_modes(mode_booster, training_run.test, parameters["failure_modes"]),
        parameters["model_card"],
    )
    archive = build_model_archive(
        full.model_bytes,
        spec,
        extra_files={FAILURE_MODE_MODEL_FILE: mode_bytes, MODEL_CARD_FILE: card_bytes(card)},
    )
    return InsightModel(full, spec, mode_booster, card, archive)


@pytest.fixture(scope="session")
def insight_model_dir(
    insight_model: InsightModel, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """:func:`insight_model`'s archive, extracted as SageMaker extracts it."""
    return extract_model_archive(insight_model.archive, tmp_path_factory.mktemp("insight-model"))


@pytest.fixture(scope="session")
def insight_loaded_model(insight_model_dir: Path) -> LoadedModel:
    return model_fn(insight_model_dir)


def spec_of(archive_dir: Path) -> dict[str, Any]:
    return json.loads((archive_dir / "model_spec.json").read_text())


# ---- raw HTTP/1.1, for what http.client cannot send (bad framing, slow or partial requests) -----
def read_until_closed(connection: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset after its answer, when
    it closed with our bytes unread, counts as closed)."""
    received = []
    while True:
        try:
            data = connection.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        received.append(data)
    return b"".join(received)


def exchange(port: int, *parts: bytes, pause: float = 0.0, timeout: float = 10.0) -> bytes:
    """Sends ``parts`` on a new connection to 127.0.0.1:``port`` (``pause`` seconds apart) and
    returns what the server answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        for number, part in enumerate(parts):
            if number and pause:
                time.sleep(pause)
            connection.sendall(part)
        return read_until_closed(connection)


@dataclass(frozen=True)
class RawResponse:
    """One HTTP response as bytes on the wire: status, headers (names lower-cased, in order)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    rest: bytes  # whatever followed the response on the connection

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        assert self.header("content-type") == "application/json", self.headers
        return json.loads(self.body)


def parse_response(raw: bytes) -> RawResponse:
    """The first response in ``raw`` (a body framed by Content-Length, as the servers send)."""
    head, separator, after = raw.partition(b"\r\n\r\n")
    assert separator, f"no complete response head in {raw[:200]!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.lower(), value.strip()))
    length = int(dict(headers).get("content-length", "0"))
    return RawResponse(int(status), headers, after[:length], after[length:])


def serve_command(model_dir: Path, port: int) -> list[str]:
    """The endpoint as its own process, serving ``model_dir`` on ``port`` of 127.0.0.1."""
    return [
        sys.executable,
        "-m",
        "predictive_maintenance.serving.cli",
        "serve",
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
