"""Copies of the project for tests that run it whole, and the one ``kedro run`` they share.

A whole-project ``kedro run`` costs seconds, so a test session makes one (:func:`finished_run_once`,
behind the ``finished_run`` fixture) and every test that needs a trained project starts from a
copy of it (:meth:`FinishedRun.copy`). With pytest-xdist the workers share it too: the first one
to ask makes it, under a file lock, in the session's common temporary directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import kedro

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RAW_CSV = PROJECT_ROOT / "data" / "01_raw" / "ai4i2020.csv"


#: ``conf/local/mlflow.yml`` of a copy that does not track: MLflow tracking (``import mlflow``, a
#: new sqlite store) costs a ``kedro run`` seconds, and only the tests of tracking need it.
NO_TRACKING = (
    "# Written by tests/support/project.py: tests track only where they test it.\nenabled: false\n"
)


def without_tracking(project: Path) -> Path:
    """Switches MLflow tracking off in ``project`` (its ``conf/local/mlflow.yml``)."""
    (project / "conf" / "local").mkdir(parents=True, exist_ok=True)
    (project / "conf" / "local" / "mlflow.yml").write_text(NO_TRACKING)
    return project


@cache
def project_parameters() -> dict[str, Any]:
    """The project's base parameters, loaded the way ``kedro run`` loads them (once)."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )
    return loader["parameters"]


def project_pipeline(name: str = "__default__") -> Any:
    """The project's registered pipeline ``name``: tests count its nodes rather than hard-code
    how many there are."""
    from kedro.framework.project import configure_project, pipelines  # noqa: PLC0415

    configure_project("predictive_maintenance")
    return pipelines[name]


def copy_project(destination: Path, *, tracking: bool = False) -> Path:
    """A runnable copy of the project (metadata, source, config, raw data) without any outputs.

    ``tracking=False`` (the default) switches MLflow tracking off in the copy
    (:func:`without_tracking`); ``True`` leaves it as ``conf/base/mlflow.yml`` says (on).
    """
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
    return destination if tracking else without_tracking(destination)


#: The MLflow store under ``data/`` (conf/base/mlflow.yml): not a pipeline output.
TRACKING_STORE = ("09_tracking/mlflow.db", "09_tracking/mlartifacts/")


def written_outputs(project: Path) -> list[str]:
    """Every file a run wrote under ``data/`` (not the raw layer, not .gitkeep placeholders, not
    the MLflow store, :data:`TRACKING_STORE`)."""
    data = project / "data"
    return sorted(
        relative
        for path in data.rglob("*")
        if path.is_file() and path.name != ".gitkeep" and path.parts[len(data.parts)] != "01_raw"
        if not (relative := str(path.relative_to(data))).startswith(TRACKING_STORE)
    )


@dataclass(frozen=True)
class FinishedRun:
    """A project copy after ``kedro run``, with what the command returned and printed.

    ``project`` is shared by every test of the session: read it, never run anything in it; a test
    that runs a command or writes a file works on :meth:`copy`.
    """

    project: Path
    returncode: int
    stdout: str
    stderr: str

    def copy(self, destination: Path, *, tracking: bool = False) -> Path:
        """An independent copy of the finished project at ``destination`` (trained model,
        registry with version 1, reports), as if ``kedro run`` had run there.

        MLflow tracking is off in the copy (its MLflow store is the finished run's, to read)
        unless ``tracking``: then the copy starts without a store, since the store's experiment
        keeps its artifacts under the finished run's absolute path, which is not the copy's.
        """
        shutil.copytree(self.project, destination, symlinks=True)
        if not tracking:
            return without_tracking(destination)
        for path in (destination / "data" / "09_tracking").glob("ml*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return destination


def shared_path(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """``name`` in a directory that every pytest-xdist worker of this session sees (the
    session's own temporary directory without xdist)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # pytest-of-USER/pytest-N, the parent of each worker's popen-gwN
    return base / name


@contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    with lock_file.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def once_per_session(
    tmp_path_factory: pytest.TempPathFactory, name: str, make: Callable[[Path], dict[str, Any]]
) -> tuple[Path, dict[str, Any]]:
    """``make(directory)`` once per test session, even across xdist workers: the directory it
    filled and the JSON-able record it returned, read back by every later caller."""
    directory = shared_path(tmp_path_factory, name)
    record = directory.with_name(f"{name}.json")
    with _exclusive(directory.with_name(f"{name}.lock")):
        if not record.exists():
            if directory.exists():  # a previous attempt failed half-way
                shutil.rmtree(directory)
            record.write_text(json.dumps(make(directory)))
    return directory, json.loads(record.read_text())


def finished_run_once(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    """The session's one ``kedro run`` of a fresh project copy, as a user runs it on a fresh
    machine (no AWS settings, the project's own logging configuration), MLflow tracking on as
    the project ships it."""

    def run(directory: Path) -> dict[str, Any]:
        result = kedro(copy_project(directory, tracking=True), "run", fresh=True)
        return {"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr}

    project, record = once_per_session(tmp_path_factory, "finished-run", run)
    return FinishedRun(project=project, **record)
