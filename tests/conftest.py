"""Shared fixtures. Tests never reach the network beyond 127.0.0.1."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# Before XGBoost loads OpenMP: waiting threads sleep instead of spinning on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RAW_CSV = PROJECT_ROOT / "data" / "01_raw" / "ai4i2020.csv"

#: The workshop's example reading (``L,298.4,308.2,1582,70.7,216``), by field name.
WORKSHOP_READING = {
    "type": "L",
    "air_temperature_k": 298.4,
    "process_temperature_k": 308.2,
    "rotational_speed_rpm": 1582,
    "torque_nm": 70.7,
    "tool_wear_min": 216,
}


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def raw_csv_bytes() -> bytes:
    """The committed official file, byte for byte."""
    return RAW_CSV.read_bytes()


def copy_project(destination: Path) -> Path:
    """A runnable copy of the project (metadata, source, config, raw data) without any outputs."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(
        PROJECT_ROOT / "src",
        destination / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    shutil.copytree(
        PROJECT_ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local")
    )
    (destination / "conf" / "local").mkdir()
    for layer in sorted((PROJECT_ROOT / "data").iterdir()):
        if layer.is_dir():
            (destination / "data" / layer.name).mkdir(parents=True)
    shutil.copy2(RAW_CSV, destination / "data" / "01_raw" / RAW_CSV.name)
    return destination


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary directory, for whole-project runs."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def image_python() -> Path:
    """Python 3.10 with the stock SageMaker XGBoost image's libraries and its own serving and
    training code (see tests/support/image_env.py)."""
    from tests.support.image_env import image_python as build  # noqa: PLC0415

    return build()
