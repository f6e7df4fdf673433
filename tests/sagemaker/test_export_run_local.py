"""The acceptance test of the export: the compiled definition, executed on this machine by
``kedro sagemaker run-local``, gives the same test metrics (and model) as ``kedro run``.

run-local executes the JSON definition itself: the job steps prepare and evaluate (processing)
and train (training) run as local jobs of the job contract (a subprocess each, in an
/opt/ml-shaped tree, reading ``kedro_jobs/<step>/job.json`` from their ``kedro-job`` input), the
quality gate's condition is evaluated from the definition, RegisterModel lands in the local
registry and deploy (a catalog step: registry and endpoint) runs with the project's nodes. The
acceptance run executes the jobs on the stock XGBoost image's stand-in (``--python``).

The export is compiled with a SageMaker MLflow tracking server (``mlflow.tracking_server_arn``):
run-local logs as SageMaker would, into the project's own MLflow store instead of the server.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.registry import LocalModelRegistry
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE, MODEL_CARD_FILE
from tests.support.cli import kedro

pytestmark = pytest.mark.slow

GROUP = "predictive-maintenance"
#: run-local's summary line of a step: name, type, status.
STEP_LINE = re.compile(
    r"^  (\S+) +(Processing|Training|Condition|RegisterModel|Fail) +(\S+) ", re.MULTILINE
)


def step_statuses(output: str) -> dict[str, list[str]]:
    """step -> [type, status], from run-local's summary."""
    return {
        match.group(1): [match.group(2), match.group(3)] for match in STEP_LINE.finditer(output)
    }


def execution_file(project: Path, log: str, relative: str) -> Path:
    """A file an execution wrote, in the local store standing in for S3."""
    (execution,) = [
        line.split()[1].rstrip(":") for line in log.splitlines() if line.startswith("Execution ")
    ]
    (path,) = (project / "data/12_sagemaker").glob(f"*/*/runner/executions/{execution}/{relative}")
    return path


TRACKING_SERVER = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/pm-tests"
EXECUTION_TAG = "sagemaker.pipeline_execution_arn"
JOB_STEPS = {"prepare", "baseline", "train", "evaluate", "deploy"}


def execution_runs(
    project: Path, output: str, store: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """The MLflow client, the execution's parent run and its nested runs by name, from the
    project's store (conf/base/mlflow.yml) or ``store``."""
    from mlflow import MlflowClient  # noqa: PLC0415 -- seconds; only the tests that read runs

    (execution,) = re.findall(r"^Execution (\S+): ", output, re.MULTILINE)
    arn = f"arn:aws:sagemaker:local:000000000000:pipeline/{GROUP}/execution/{execution}"
    client = MlflowClient(store or f"sqlite:///{project / 'data/09_tracking/mlflow.db'}")
    experiment = client.get_experiment_by_name(GROUP).experiment_id
    runs = client.search_runs([experiment], filter_string=f"tags.`{EXECUTION_TAG}` = '{arn}'")
    (parent,) = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    nested = {
        run.info.run_name: run
        for run in runs
        if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    assert len(nested) == len(runs) - 1, [run.info.run_name for run in runs]  # all in one parent
    return client, parent, nested


@pytest.fixture(scope="module")
def compiled(finished_run, tmp_path_factory) -> tuple[Path, dict, dict]:
    """A copy of the project after `kedro run` (MLflow tracking on, its own store), with its
    metrics and model spec, and pipeline.json compiled for a SageMaker MLflow tracking server."""
    assert finished_run.returncode == 0, finished_run.stdout[-3000:] + finished_run.stderr[-3000:]
    project = finished_run.copy(tmp_path_factory.mktemp("export") / "project", tracking=True)
    (project / "conf/local/sagemaker.yml").write_text(
        f"mlflow:\n  tracking_server_arn: {TRACKING_SERVER}\n  experiment: {GROUP}\n"
    )
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())
    spec = json.loads((project / "data/06_models/model_spec.json").read_text())
    result = kedro(project, "sagemaker", "compile", "--output", "pipeline.json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Wrote pipeline.json" in result.stdout
    return project, metrics, spec


def test_run_local_on_the_image_gives_the_metrics_of_kedro_run(compiled, image_python):
    """Every job on the stock image's stand-in: Python 3.10 with the image's libraries, what the
    image lacks installed from the shipped wheels with no index, the training step through the
    image's own training toolkit in script mode."""
    project, metrics, spec = compiled

    result = kedro(
        project,
        "sagemaker",
        "run-local",
        "pipeline.json",
        "--python",
        str(image_python),
        timeout=600,
    )

    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Invoking script with the following command" in log  # the image's training toolkit
    assert f"{image_python} -m kedro_job_entry --kedro_job train" in log
    # The first job installs the wheels; the local backend keeps the set for the jobs after it.
    assert re.search(r"kedro job: (installed|reused) \d+ shipped wheels", log)
    assert "Succeeded" in result.stdout
    assert step_statuses(result.stdout) == {
        "prepare": ["Processing", "Succeeded"],
        "baseline": ["Processing", "Succeeded"],
        "train": ["Training", "Succeeded"],
        "evaluate": ["Processing", "Succeeded"],
        "gate": ["Condition", "Succeeded"],
        "register": ["RegisterModel", "Succeeded"],
        "deploy": ["Processing", "Succeeded"],
    }, result.stdout
    ran = json.loads(
        execution_file(project, result.stdout, "evaluate/metrics/metrics.json").read_text()
    )
    assert ran == metrics  # the acceptance criterion
    ran_spec = json.loads(
        execution_file(project, result.stdout, "evaluate/model_spec/model_spec.json").read_text()
    )
    assert ran_spec["model_sha256"] == spec["model_sha256"]  # the same booster, byte for byte
    # The spec records where it was made: the image's Python and pandas, not this project's.
    assert ran_spec["library_versions"]["python"].startswith("3.10.")
    assert ran_spec["library_versions"]["pandas"] == "2.2.3"
    assert ran_spec["library_versions"]["xgboost"] == spec["library_versions"]["xgboost"]
    without_versions = {key: value for key, value in spec.items() if key != "library_versions"}
    assert {k: v for k, v in ran_spec.items() if k != "library_versions"} == without_versions
    registry = LocalModelRegistry(project / "data/10_model_registry")
    versions = registry.list_versions(GROUP)
    assert [v.version for v in versions] == [1, 2]  # kedro run, then the exported pipeline
    assert versions[-1].approval_status == "PendingManualApproval"
    with tarfile.open(fileobj=io.BytesIO(registry.read_archive(GROUP, 2))) as archive:
        archived = json.loads(archive.extractfile("model_spec.json").read())
        card = archive.extractfile(MODEL_CARD_FILE).read()
        mode_model = archive.extractfile(FAILURE_MODE_MODEL_FILE).read()
    # The archive's spec is the run's, plus the digest of the card packaged beside it.
    assert archived.pop("model_card_sha256") == sha256_hex(card)
    assert archived == ran_spec
    assert sha256_hex(mode_model) == ran_spec["failure_modes"]["model_sha256"]
    # MLflow, as on SageMaker: one parent run for the execution, a nested run per job step
    # (logged by the jobs on the image: mlflow-skinny from the shipped wheels, the image's own
    # protobuf), the model in XGBoost's format in train's; the registration records the run.
    assert "MLflow tracking off" not in log
    client, parent, nested = execution_runs(project, result.stdout)
    assert set(nested) == JOB_STEPS
    assert parent.data.metrics["roc_auc"] == metrics["roc_auc"]
    assert nested["evaluate"].data.metrics["roc_auc"] == metrics["roc_auc"]
    depth = "xgboost.booster_params.max_depth"
    assert (
        parent.data.params[depth]
        == nested["train"].data.params[depth]
        == str(spec["parameters"]["booster_params"]["max_depth"])
    )
    (model,) = [
        model
        for model in client.search_logged_models([parent.info.experiment_id])
        if model.source_run_id == nested["train"].info.run_id
    ]
    files = {path.name for path in Path(urlsplit(model.artifact_location).path).rglob("*")}
    assert "model.ubj" in files
    assert not [name for name in files if name.endswith((".pkl", ".pickle"))]
    assert versions[-1].lineage["mlflow"]["run_id"] == parent.info.run_id
    assert parent.data.tags["model_registry.version"] == "2"


def test_a_parameter_reaches_its_node_and_a_failed_gate_stops_registration(compiled, tmp_path):
    project, _, _ = compiled
    store = f"sqlite:///{tmp_path / 'other.db'}"
    before = len(LocalModelRegistry(project / "data/10_model_registry").list_versions(GROUP))

    result = kedro(
        project,
        "sagemaker",
        "run-local",
        "pipeline.json",
        "--parameters",
        "MaxDepth=2",
        "--parameters",
        "MinRocAuc=0.9999",
        "--tracking-uri",
        store,
        timeout=600,
    )

    assert result.returncode == 1, result.stdout[-3000:]
    assert step_statuses(result.stdout) == {
        "prepare": ["Processing", "Succeeded"],
        "baseline": ["Processing", "Succeeded"],
        "train": ["Training", "Succeeded"],
        "evaluate": ["Processing", "Succeeded"],
        "gate": ["Condition", "Succeeded"],  # it ran, and took the else branch
        "gate-failed": ["Fail", "Failed"],
    }, result.stdout
    assert " roc_auc 0.9" in result.stdout
    assert ", 0.9999;" in result.stdout
    assert (
        "The model fails the quality gate (metric value, minimum):" in result.stdout + result.stderr
    )
    spec = json.loads(
        execution_file(project, result.stdout, "evaluate/model_spec/model_spec.json").read_text()
    )
    assert spec["parameters"]["booster_params"]["max_depth"] == 2
    # The execution's MLflow runs (in the store --tracking-uri names) record the pipeline
    # parameter's value.
    _, parent, nested = execution_runs(project, result.stdout, store)
    assert set(nested) == JOB_STEPS - {"deploy"}  # the gate failed before it
    depth = "xgboost.booster_params.max_depth"
    assert parent.data.params[depth] == nested["train"].data.params[depth] == "2"
    assert (
        len(LocalModelRegistry(project / "data/10_model_registry").list_versions(GROUP)) == before
    )


def test_run_local_refuses_a_definition_of_other_code(compiled, tmp_path):
    project, _, _ = compiled
    stale = tmp_path / "stale.json"
    stale.write_text((project / "pipeline.json").read_text().replace("/code/", "/code/0"))

    result = kedro(project, "sagemaker", "run-local", str(stale))

    assert result.returncode == 1
    assert "was not compiled from this project's current code" in result.stdout + result.stderr
