"""Shared fixtures. Tests never reach the network beyond 127.0.0.1. See tests/README.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Also imported from here by older test modules; tests.support.project is their home.
from tests.support.project import (
    PROJECT_ROOT,
    RAW_CSV,
    FinishedRun,
    copy_project,
    finished_run_once,
)

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
# No network beyond 127.0.0.1: MLflow 3 would report usage to config.mlflow-telemetry.io.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Before XGBoost loads OpenMP: waiting threads sleep instead of spinning on a 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: Fixtures that make a test ``slow`` wherever it is: the session's whole-project ``kedro run``
#: (a test using it runs more commands on a trained project) and the SageMaker image's stand-in.
SLOW_FIXTURES = frozenset({"finished_run", "image_python"})

#: The workshop's example reading (``L,298.4,308.2,1582,70.7,216``), by field name.
WORKSHOP_READING = {
    "type": "L",
    "air_temperature_k": 298.4,
    "process_temperature_k": 308.2,
    "rotational_speed_rpm": 1582,
    "torque_nm": 70.7,
    "tool_wear_min": 216,
}
#: UDI 51 of the data set, a power failure (PWF): 4.6 Nm at 2861 rpm is 1378 W, below the
#: 3500 W the power rule allows.
LOW_POWER_READING = {
    "type": "L",
    "air_temperature_k": 298.9,
    "process_temperature_k": 309.1,
    "rotational_speed_rpm": 2861,
    "torque_nm": 4.6,
    "tool_wear_min": 143,
}


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (pyproject.toml): one worker more than cores, since much of the suite waits on
    subprocesses, servers and moto (2 cores, 2026-12-03: 2 workers 4:51, 3 workers 4:22). For
    one test file, or tests of one file: no workers, the tests run in this process (starting
    workers would cost more than they save)."""
    files = {str(arg).split("::")[0] for arg in config.args}
    if len(files) == 1 and Path(files.pop()).is_file():
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the tests of :data:`SLOW_FIXTURES` ``slow``, then puts the modules with a slow test
    first, each module's tests still together and in file order. With xdist (``--dist loadfile
    --no-loadscope-reorder``) the workers take the long modules first and share out the short
    ones at the end, instead of one worker finishing a minute-long module alone."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    slow_modules = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_modules)  # stable: file order kept


@pytest.fixture(scope="session")
def project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture(scope="session")
def raw_csv_bytes() -> bytes:
    """The committed official file, byte for byte."""
    return RAW_CSV.read_bytes()


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A fresh copy of the project in a temporary directory, for whole-project runs."""
    return copy_project(tmp_path / "project")


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The session's one ``kedro run`` of a fresh project copy (read only: a test that runs or
    writes anything works on ``finished_run.copy(tmp_path / "project")``)."""
    return finished_run_once(tmp_path_factory)


@pytest.fixture(scope="session")
def image_python() -> Path:
    """Python 3.10 with the stock SageMaker XGBoost image's libraries and its own serving and
    training code (see tests/support/image_env.py)."""
    from tests.support.image_env import image_python as build  # noqa: PLC0415

    return build()
