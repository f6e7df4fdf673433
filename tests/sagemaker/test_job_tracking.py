"""A job's MLflow tracking (sagemaker/job.py with the tracking package's job side), against a
real sqlite store; and the jobs' wheel set on an interpreter that is not the image's.

The whole paths (the runner's local backend, run-local on the image's stand-in) are checked in
test_runner_project.py and test_export_run_local.py; these are the job's own cases.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from kedro.pipeline import Node

from predictive_maintenance.sagemaker.job import NodeFailedError, install_shipped_wheels, run_job
from predictive_maintenance.sagemaker.jobs import job_spec, spec_bytes
from predictive_maintenance.tracking.jobs import EXECUTION_TAG
from predictive_maintenance.tracking.settings import TrackingSettings
from tests.sagemaker import bridge_nodes
from tests.support.project import PROJECT_ROOT

EXECUTION = "arn:aws:sagemaker:eu-west-1:123456789012:pipeline/pm/execution/abc123"


def spec(name: str, nodes: list[Node], parameters: dict[str, Any], tracking: bool) -> dict:
    """A job spec as the compiler writes it, with the tracking block of mlflow.yml-like
    settings (``counts`` is logged as metrics)."""
    written = job_spec(name, nodes, inputs={}, outputs={}, parameters=parameters)
    if tracking:
        written["tracking"] = TrackingSettings(experiment="jobs", metrics=("counts",)).job_spec()
    return json.loads(spec_bytes(written))


COUNT = Node(bridge_nodes.count_items, ["params:values", "params:extra"], "counts", name="count")
EXPLODE = Node(bridge_nodes.explode, "params:extra", "never", name="explode")


def test_two_jobs_of_an_execution_log_into_one_parent_and_a_failed_job_fails_its_run(tmp_path):
    from mlflow import MlflowClient  # noqa: PLC0415 -- seconds; only the tests that read runs

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    environ = {
        "MLFLOW_TRACKING_URI": store,
        "MLFLOW_EXPERIMENT_NAME": "jobs",
        "KEDRO_MLFLOW_EXECUTION": EXECUTION,
        # A pipeline parameter of the execution: the job logs the value it ran with.
        "KEDRO_PARAM_0": '["extra"]=5',
    }
    parameters = {"values": [1, 2, 3], "extra": 1}

    outputs = run_job(spec("evaluate", [COUNT], parameters, True), {}, environ)
    with pytest.raises(NodeFailedError, match="node explode failed"):
        run_job(spec("deploy", [COUNT, EXPLODE], parameters, True), {}, environ)

    assert outputs == {}  # the spec names no outputs: nothing leaves the job but the logs
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("jobs").experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{EXECUTION_TAG}` = '{EXECUTION}'")
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    nested = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert set(nested) == {"evaluate", "deploy"}
    assert nested["evaluate"].info.status == "FINISHED"
    assert nested["evaluate"].data.metrics == {"count": 3.0, "total": 11.0}
    assert nested["evaluate"].data.params["extra"] == "5"
    # The failing job logged what its first node made, then ended its run (and the
    # execution's, which the last job leaves) FAILED.
    assert nested["deploy"].data.metrics == {"count": 3.0, "total": 11.0}
    assert nested["deploy"].info.status == "FAILED"
    assert parent.info.status == "FAILED"
    assert parent.data.metrics == {"count": 3.0, "total": 11.0}


def test_a_job_without_a_tracking_block_imports_neither_mlflow_nor_the_tracking_package():
    """The tracking block decides, not the variables: a store in the environment alone is not
    enough, and the job pays nothing for MLflow (seconds to import)."""
    job = json.dumps(spec("evaluate", [COUNT], {"values": [1], "extra": 0}, False))
    program = (
        "import json, sys\n"
        "from predictive_maintenance.sagemaker.job import run_job\n"
        f"run_job(json.loads({job!r}), {{}}, {{'MLFLOW_TRACKING_URI': 'sqlite:////nowhere.db'}})\n"
        "print(sorted(m for m in sys.modules if m.startswith(('mlflow', "
        "'predictive_maintenance.tracking'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        cwd=PROJECT_ROOT,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_images_wheels_are_not_installed_into_another_python(tmp_path, capsys):
    """The local backend runs jobs with the project's own Python unless told otherwise: the wheel
    set is the image's (cp310 builds, versions chosen for its protobuf), not for it."""
    wheels = tmp_path / "kedro-wheels"
    wheels.mkdir()
    other = "39" if sys.version_info[:2] != (3, 9) else "310"
    for name in (
        f"greenlet-3.5.6-cp{other}-cp{other}-manylinux_2_28_x86_64.whl",
        "opentelemetry_proto-1.27.0-py3-none-any.whl",
        "cryptography-50.0.2-cp39-abi3-manylinux2014_x86_64.whl",  # the stable ABI: any 3.x
    ):
        (wheels / name).write_bytes(b"never opened")

    assert install_shipped_wheels(wheels) is None

    shown = f"3.{other[1:]}"
    assert f"the 3 shipped wheels are for Python {shown}; this is Python" in capsys.readouterr().out
