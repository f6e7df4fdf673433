"""What ``kedro`` prints: a page a person reads, expected failures in one or two lines.

The session's one whole-project ``kedro run`` (``finished_run``, on a fresh machine: no AWS
settings, the project's own logging configuration) serves every check of a run's output; the
failure cases are short ``kedro`` commands on one copy of that trained project (the command line
is what is under test). The rest runs in-process.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import boto3
import click
import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from click.testing import CliRunner
from kedro.io import DatasetError

from predictive_maintenance import console
from tests.support.cli import environment, kedro
from tests.support.project import FinishedRun, project_pipeline

NODE_LINE = re.compile(r"^  (\S+)\s+\d+\.\d\d s$")
NODES = len(project_pipeline().nodes)


@pytest.fixture(scope="module")
def trained(finished_run: FinishedRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished project, for this module's failing commands (they write only
    kedro.log)."""
    return finished_run.copy(tmp_path_factory.mktemp("cli_output") / "project")


def log_file(project: Path) -> str:
    return (project / console.LOG_FILE).read_text()


def failing(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return kedro(project, *args, fresh=True)


def assert_reported(result: subprocess.CompletedProcess[str], exit_code: int, *phrases: str):
    """One or two lines on stderr naming the cause (``phrases``), no traceback, the exit code."""
    assert result.returncode == exit_code, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("Error: ")
    for phrase in phrases:
        assert phrase in result.stderr
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "WARNING" not in output
    assert "ERROR" not in output


# ---- a successful run ----------------------------------------------------------------------------
def test_first_run_prints_a_line_per_node_and_the_results(finished_run):
    result = finished_run

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    nodes = [match[1] for line in lines if (match := NODE_LINE.match(line))]
    assert len(nodes) == len(set(nodes)) == NODES
    assert {"prepare.ingest_raw_data", "train.train_model", "deploy.select_deployment"} <= set(
        nodes
    )
    results = [line for line in lines if not NODE_LINE.match(line)]
    assert results[0] == f"Running {NODES} nodes of __default__"
    assert any(line.startswith("Test set: ROC AUC 0.9") for line in results)
    assert any(line.startswith("Pipeline took ") for line in results)
    assert any(line.startswith("Failure modes (test set): F1 HDF") for line in results)
    assert any(line.startswith("Calibration (test set, 34 failures): Brier") for line in results)
    # The rest: the quality gate, the registered version, the endpoint, the MLflow run (a few
    # lines, no more).
    assert len(results) <= 9, result.stdout
    assert result.stderr == ""


def test_first_run_prints_no_warning_and_keeps_the_detail_in_the_log_file(finished_run):
    output = finished_run.stdout + finished_run.stderr

    for noise in (
        "WARNING",
        "Warning",
        "register_new_resolver",
        "Loading data from",
        "logging.yml",
    ):
        assert noise not in output
    detail = log_file(finished_run.project)
    assert "Using 'conf/logging.yml' as logging configuration" in detail
    assert "Loading data from model (XGBoostModelDataset)" in detail
    assert f"Completed {NODES} out of {NODES} tasks" in detail
    assert "register_new_resolver" not in detail


# ---- expected failures ---------------------------------------------------------------------------
def test_a_model_below_the_quality_gate_is_two_lines_and_exit_code_1(trained):
    project = trained

    result = failing(
        project,
        "run",
        "--nodes",
        "gate.check_quality_gate",
        "--params",
        "quality_gate.minimums.roc_auc=1.01",
    )

    assert_reported(
        result,
        1,
        "the model fails the quality gate and is not registered: roc_auc = 0.9",
        "is below the minimum 1.01",
        "quality_gate.minimums (conf/base/parameters_deployment.yml)",
        f"Full traceback: {console.LOG_FILE}",
    )
    detail = log_file(project).rsplit("Running node: check_quality_gate", 1)[1]
    assert "Traceback" in detail
    assert "QualityGateError" in detail
    assert "failed with error" in detail  # Kedro's own report: in the log file, not the console


def test_verbose_shows_the_detail_and_the_traceback(trained):
    result = failing(
        trained,
        "run",
        "-v",
        "--nodes",
        "gate.check_quality_gate",
        "--params",
        "quality_gate.minimums.roc_auc=1.01",
    )

    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "Traceback" in output
    assert "QualityGateError: the model fails the quality gate" in output
    assert "Loading data from metrics" in output


def test_no_aws_credentials_is_two_lines_naming_the_fix(trained):
    project = trained

    result = failing(project, "run", "--env", "sagemaker", "--nodes", "deploy.select_deployment")

    assert_reported(
        result, 1, "Error: no usable AWS credentials: Unable to locate credentials", "aws configure"
    )
    assert "NoCredentialsError" in log_file(project)


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (
            ("--pipelines", "traning"),
            (
                "no pipeline named 'traning'",
                "batch_scoring, data_engineering, deployment, monitoring, training",
            ),
        ),
        (
            (
                "--runner",
                "predictive_maintenance.sagemaker.SageMakerRunner",
                "--runner-params",
                "backend=foo",
            ),
            ("unknown backend 'foo'", "backend=local", "backend=sagemaker"),
        ),
        (
            ("--runner", "NoSuchRunner"),
            ("--runner NoSuchRunner: no such runner", "SequentialRunner"),
        ),
    ],
    ids=["misspelled pipeline", "unknown runner backend", "unknown runner"],
)
def test_bad_command_line_input_is_one_line_and_exit_code_2(trained, args, phrases):
    result = failing(trained, "run", *args)

    assert_reported(result, 2, *phrases)
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_help_names_pipelines_and_verbose_only(project_copy: Path):
    result = kedro(project_copy, "run", "--help", fresh=True)

    assert result.returncode == 0
    assert "--pipelines" in result.stdout
    assert "--pipeline " not in result.stdout  # Kedro's deprecated option still works, unlisted
    assert "-v, --verbose" in result.stdout
    assert result.stderr == ""
    assert "logging.yml" not in result.stdout


def test_port_in_use_for_the_api_is_one_line_naming_it_and_the_fix():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        from predictive_maintenance.api.cli import api  # noqa: PLC0415

        result = CliRunner().invoke(
            api, ["serve", "--port", str(port), "--endpoint-name", "x"], catch_exceptions=False
        )

    assert result.exit_code == 1
    assert f"127.0.0.1:{port}" in result.output
    assert "--port" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_sagemaker_commands_report_missing_credentials_in_two_lines(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch
):
    fresh = environment(fresh=True)
    for key in [key for key in os.environ if key.startswith("AWS_") and key not in fresh]:
        monkeypatch.delenv(key)
    for key, value in fresh.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    # boto3's default session keeps the credentials an earlier test of this process resolved.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    monkeypatch.chdir(project_copy)
    # The command bootstraps the copy, which puts its src on sys.path and PYTHONPATH.
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    from predictive_maintenance.sagemaker.cli import sagemaker  # noqa: PLC0415

    result = CliRunner().invoke(sagemaker, ["status", "--env", "sagemaker"], catch_exceptions=False)

    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert lines[0] == "Error: no usable AWS credentials: Unable to locate credentials"
    assert len(lines) == 2
    assert "Traceback" not in result.output


# ---- in-process units ----------------------------------------------------------------------------
def test_an_expected_failure_is_found_behind_kedro_wrapping_it():
    try:
        try:
            raise NoCredentialsError()
        except NoCredentialsError as error:
            raise DatasetError("model_registry: Failed while loading data") from error
    except DatasetError as wrapped:
        report = console.expected_failure(wrapped)

    assert report is not None
    assert report.exit_code == 1
    assert report.message.startswith("no usable AWS credentials: Unable to locate credentials\n")


def test_an_unexpected_error_is_not_an_expected_failure():
    assert console.expected_failure(ValueError("split fractions must be in (0, 1)")) is None
    denied = ClientError({"Error": {"Code": "ValidationException", "Message": "bad"}}, "Create")
    assert console.expected_failure(denied) is None


def test_rejected_credentials_name_the_fix():
    expired = ClientError({"Error": {"Code": "ExpiredToken", "Message": "expired"}}, "ListModels")

    report = console.expected_failure(expired)

    assert report is not None
    assert "AWS refused the credentials" in report.message
    assert "aws configure" in report.message


def test_reporting_logs_the_traceback_and_verbose_lets_the_error_through(caplog):
    failures = logging.getLogger(console.FAILURE_LOGGER)
    failures.addHandler(caplog.handler)  # conf/logging.yml keeps it from the root logger
    try:
        with pytest.raises(click.ClickException) as reported, console.reporting_failures():
            raise NoCredentialsError()
        with pytest.raises(NoCredentialsError), console.reporting_failures(verbose=True):
            raise NoCredentialsError()
        with pytest.raises(KeyError), console.reporting_failures():
            raise KeyError("a bug")
    finally:
        failures.removeHandler(caplog.handler)

    assert reported.value.message.endswith(f"Details: {console.LOG_FILE}.")
    kinds = [record.getMessage().split(":")[0] for record in caplog.records]
    assert kinds == ["expected failure", "expected failure", "unexpected error"]
    assert all(record.exc_info for record in caplog.records)


def test_the_omegaconf_warning_is_silenced_precisely():
    import importlib  # noqa: PLC0415

    from predictive_maintenance import settings  # noqa: PLC0415

    message = "register_new_resolver() is deprecated and will be removed in a future release."
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        importlib.reload(settings)  # its filter, on top of "always"
        warnings.warn_explicit(
            message, UserWarning, "omegaconf_config.py", 637, module="kedro.config.omegaconf_config"
        )
        warnings.warn_explicit(message, UserWarning, "elsewhere.py", 1, module="elsewhere")
        warnings.warn_explicit(
            "another warning",
            UserWarning,
            "omegaconf_config.py",
            1,
            module="kedro.config.omegaconf_config",
        )

    assert [(str(w.message), w.filename) for w in caught] == [
        (message, "elsewhere.py"),
        ("another warning", "omegaconf_config.py"),
    ]


def test_a_run_imports_heavy_libraries_only_for_the_nodes_that_need_them(project_copy: Path):
    """``kedro run`` of a node that needs none of them (start-up: project CLI, settings, every
    pipeline, the context with its parameters' type hints and catalog; the node; the end of the
    run) imports no XGBoost, scikit-learn, plotly.express, boto3 or SageMaker SDK."""
    result = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "kedro",
            "run",
            "--nodes",
            "prepare.ingest_raw_data",
        ],
        cwd=project_copy,
        env=environment(fresh=True),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    imported = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "predictive_maintenance.pipelines.training.nodes" in imported
    heavy = {"xgboost", "sklearn", "plotly.express", "boto3", "sagemaker", "scipy"}
    assert heavy & imported == set()
