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
    return TrainingRun(
        readings=readings,
        test=test,
        full=trained(parameters["xgboost"]),
        small=trained(small),
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
