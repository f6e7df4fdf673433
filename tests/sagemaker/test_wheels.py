"""The wheels a job ships for what the stock image lacks (sagemaker/wheels.py).

Resolution reads this environment's installed metadata; the download test fetches two tiny
pure-Python wheels from the package index once (cached per test session).
"""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from packaging.utils import parse_wheel_filename

from predictive_maintenance.sagemaker import wheels
from predictive_maintenance.sagemaker.config import (
    JobEnvironment,
    SageMakerConfigError,
    parse_settings,
)
from tests.support.project import PROJECT_ROOT


def project_environment() -> JobEnvironment:
    config = yaml.safe_load((PROJECT_ROOT / "conf/base/sagemaker.yml").read_text())
    config.update(bucket="b", execution_role_arn="arn:aws:iam::123456789012:role/r", region=None)
    return parse_settings(config, PROJECT_ROOT).job_environment


def names(pins: list[str]) -> set[str]:
    return {pin.split("=")[0].split(">")[0].split("<")[0] for pin in pins}


def test_the_projects_closure_has_what_the_image_lacks_and_nothing_it_has():
    environment = project_environment()

    pins = wheels.resolve(environment)

    assert {"kedro", "pandera", "plotly", "pydantic", "omegaconf"} <= names(pins)
    image = {text.split("==")[0].lower() for text in environment.image_packages}
    assert not names(pins) & image
    # Pinned to what `kedro run` uses here...
    assert f"kedro=={importlib.metadata.version('kedro')}" in pins
    # ...and what Python 3.10 needs but 3.11 does not: the backport comes by its specifier.
    assert any(pin.startswith("tomli") for pin in pins)


def test_a_version_newer_than_the_images_python_allows_is_left_to_pip():
    # more-itertools 11 requires Python >= 3.11: the image's 3.10 gets an earlier release.
    version = importlib.metadata.version("more-itertools")
    requires = importlib.metadata.metadata("more-itertools").get("Requires-Python") or ""
    if "3.11" not in requires:
        pytest.skip(f"more-itertools {version} installs on Python 3.10 ({requires!r})")

    pins = wheels.resolve(JobEnvironment(requirements=("more-itertools",)))

    assert pins == ["more-itertools"]


def test_an_image_package_that_does_not_satisfy_the_closure_is_an_error():
    environment = JobEnvironment(
        requirements=("pandera[pandas]",), image_packages=("pandas==1.0.0",)
    )

    with pytest.raises(wheels.WheelError, match=r"needs pandas.*the image has pandas 1\.0\.0"):
        wheels.resolve(environment)


def test_image_packages_must_pin_one_version():
    environment = JobEnvironment(requirements=("kedro",), image_packages=("pandas>=2",))

    with pytest.raises(wheels.WheelError, match=r"image_packages: 'pandas>=2' must pin"):
        wheels.resolve(environment)


def test_requirements_are_checked_as_requirements():
    with pytest.raises(wheels.WheelError, match=r"job_environment\.requirements: 'kedro =='"):
        wheels.resolve(JobEnvironment(requirements=("kedro ==",)))


def test_no_requirements_ship_no_wheels(tmp_path):
    assert wheels.wheelhouse(JobEnvironment(wheel_cache=tmp_path)) == {}
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def tiny_environment(tmp_path_factory) -> JobEnvironment:
    """Two small pure-Python distributions installed here (as dependencies of the project)."""
    return JobEnvironment(
        requirements=("text-unidecode", "parse"),
        wheel_cache=tmp_path_factory.mktemp("wheel-cache"),
    )


def test_the_wheels_are_downloaded_for_the_image_once_and_then_come_from_the_cache(
    tiny_environment, monkeypatch
):
    first = wheels.wheelhouse(tiny_environment)

    versions = {
        str(parse_wheel_filename(name)[0]): str(parse_wheel_filename(name)[1]) for name in first
    }
    assert sorted(versions) == ["parse", "text-unidecode"]
    for name, content in first.items():
        with zipfile.ZipFile(io.BytesIO(content)) as wheel:
            assert any(member.endswith("/METADATA") for member in wheel.namelist()), name
    assert versions["parse"] == importlib.metadata.version("parse")

    def no_index(arguments: list[str]):
        raise AssertionError(f"pip was asked again: {arguments}")

    monkeypatch.setattr(wheels, "_pip", no_index)
    assert wheels.wheelhouse(tiny_environment) == first
    # A different wheel set is a different cache entry (and would need pip).
    with pytest.raises(AssertionError, match="pip was asked again"):
        wheels.wheelhouse(replace(tiny_environment, requirements=("parse",)))


def test_a_failed_download_leaves_no_half_written_cache_entry(tmp_path, monkeypatch):
    environment = JobEnvironment(requirements=("parse",), wheel_cache=tmp_path)

    def failing(arguments: list[str]):
        class Result:
            returncode = 1
            stderr = "ERROR: no index"

        return Result()

    monkeypatch.setattr(wheels, "_pip", failing)
    with pytest.raises(wheels.WheelError, match=r"no wheel of parse==.* for Python 3\.10"):
        wheels.wheelhouse(environment)
    assert [path.name for path in tmp_path.iterdir()] == []


#: What the stand-in asks of a package in a range whose newest release is the image's pin (the
#: image's Dockerfile: protobuf>=3.20.0,<=3.20.3).
STAND_IN_RANGES = {"protobuf==3.20.3": '"protobuf<=3.20.3"'}


def test_the_stand_in_has_the_image_packages_the_configuration_names():
    tool = (PROJECT_ROOT / "deploy/image/xgboost-image-env").read_text()
    for pin in project_environment().image_packages:
        name = pin.split("==")[0]
        if name == "xgboost":  # the image's conda xgboost; the stand-in installs xgboost-cpu
            continue
        assert pin in tool or STAND_IN_RANGES.get(pin, pin) in tool or (name == "six"), (
            f"{pin} is not what the stand-in installs"
        )


def test_mlflow_ships_for_the_image_with_the_images_protobuf():
    """The jobs log to MLflow (mlflow-skinny, AWS's plugin, the sqlite store's sqlalchemy and
    alembic) with the image's protobuf 3.20.3: the two packages whose installed versions need
    protobuf 5 are shipped at versions that accept it (job_environment.versions), their
    requirements read from their published wheels."""
    environment = project_environment()

    pins = wheels.resolve(environment)

    assert {"mlflow-skinny", "sagemaker-mlflow", "sqlalchemy", "alembic"} <= names(pins)
    assert "protobuf" not in names(pins)  # the image's own
    assert "opentelemetry-proto==1.27.0" in pins
    assert "databricks-sdk==0.67.0" in pins
    assert "greenlet" in names(pins)  # sqlalchemy 2.0.58's, on x86-64 (not the 2.1 here)
    assert f"mlflow-skinny=={importlib.metadata.version('mlflow-skinny')}" in pins
    # Without the chosen versions, the closure asks what the image's protobuf cannot give.
    with pytest.raises(wheels.WheelError, match=r"needs protobuf.*the image has protobuf 3\.20\.3"):
        wheels.resolve(replace(environment, versions={}))


def test_a_chosen_version_that_does_not_fit_names_the_setting(tmp_path):
    environment = JobEnvironment(
        requirements=("opentelemetry-proto<1.20",),
        versions={"opentelemetry-proto": "1.27.0"},
        wheel_cache=tmp_path,
    )
    (tmp_path / "metadata").mkdir()
    # The published metadata as the cache keeps it: no download for this check.
    (tmp_path / "metadata/opentelemetry-proto-1.27.0.json").write_text(
        '{"version": "1.27.0", "requires_python": ">=3.8", "requires": ["protobuf<5,>=3.19"]}'
    )

    with pytest.raises(
        wheels.WheelError,
        match=r"needs opentelemetry-proto<1\.20, but job_environment\.versions gives "
        r"opentelemetry-proto 1\.27\.0: set job_environment\.versions\.opentelemetry-proto",
    ):
        wheels.resolve(environment)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"versions": {"databricks-sdk": 0.67}}, r"versions\.databricks-sdk .*quote it"),
        ({"versions": {"databricks-sdk": ">=0.6"}}, r"must be a version, got '>=0\.6'"),
        ({"versions": ["databricks-sdk==0.67.0"]}, r"job_environment\.versions must be Mapping"),
    ],
)
def test_chosen_versions_are_checked(block, message):
    config = {"bucket": "b", "execution_role_arn": "arn:aws:iam::123456789012:role/r"}

    with pytest.raises(SageMakerConfigError, match=message):
        parse_settings({**config, "job_environment": block}, PROJECT_ROOT)


def test_wheel_cache_paths_resolve_against_the_project(tmp_path: Path):
    config = {
        "bucket": "b",
        "execution_role_arn": "arn:aws:iam::123456789012:role/r",
        "job_environment": {"wheel_cache": "data/wheels", "python_version": "3.10"},
    }

    assert parse_settings(config, tmp_path).job_environment.wheel_cache == tmp_path / "data/wheels"
