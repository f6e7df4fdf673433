"""The acceptance test of the export: the compiled definition, executed on this machine by
``kedro sagemaker run-local``, gives the same test metrics (and model) as ``kedro run``.

run-local executes the JSON definition itself: the job steps prepare and evaluate (processing)
and train (training) run as local jobs of the job contract (a subprocess each, in an
/opt/ml-shaped tree, reading ``kedro_jobs/<step>/job.json`` from their ``kedro-job`` input), the
quality gate's condition is evaluated from the definition, RegisterModel lands in the local
registry and deploy (a catalog step: registry and endpoint) runs with the project's nodes. The
acceptance run executes the jobs on the stock XGBoost image's stand-in (``--python``).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from predictive_maintenance.registry import LocalModelRegistry
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


@pytest.fixture(scope="module")
def compiled(finished_run, tmp_path_factory) -> tuple[Path, dict, dict]:
    """A copy of the project after `kedro run`, with its metrics and model spec, and
    pipeline.json."""
    assert finished_run.returncode == 0, finished_run.stdout[-3000:] + finished_run.stderr[-3000:]
    project = finished_run.copy(tmp_path_factory.mktemp("export") / "project")
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
        assert json.loads(archive.extractfile("model_spec.json").read()) == ran_spec


def test_a_parameter_reaches_its_node_and_a_failed_gate_stops_registration(compiled):
    project, _, _ = compiled
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
