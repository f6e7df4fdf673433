"""The whole project as a user runs it: ``kedro run`` and ``kedro viz`` in a temporary copy.

The session's one ``kedro run`` (the ``finished_run`` fixture) is checked here; the commands that
follow it (viz, a second run, approve, deploy, serve) run in copies of it. A run stopped by bad raw
data is the pipeline's behaviour, not the command line's: it runs in-process (``run_session``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import boto3
import pytest

from predictive_maintenance.datasets import XGBoostModelDataset
from predictive_maintenance.features import FEATURE_COLUMNS
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.registry import LocalModelRegistry
from predictive_maintenance.validation import RawDataError
from tests.support.cli import kedro, launch, run_session
from tests.support.net import free_port, wait_for
from tests.support.project import FinishedRun, project_pipeline, written_outputs

pytestmark = pytest.mark.slow

GROUP = "predictive-maintenance"
PLOTS = (
    "roc_curve",
    "precision_recall_curve",
    "confusion_matrix",
    "feature_importance",
    "score_distribution",
    "reliability",
)


@pytest.fixture
def project_after_run(finished_run: FinishedRun, tmp_path: Path) -> Path:
    """A copy of the finished run, for a test that runs more commands in it."""
    return finished_run.copy(tmp_path / "project")


def test_kedro_run_succeeds(finished_run):
    assert finished_run.returncode == 0, finished_run.stdout[-3000:] + finished_run.stderr[-3000:]


def test_kedro_run_writes_every_output(finished_run):
    project = finished_run.project
    outputs = written_outputs(project)

    assert {path for path in outputs if not path.startswith("10_model_registry/")} == {
        "02_intermediate/readings.parquet",
        "02_intermediate/raw_data_provenance.json",
        "04_feature/model_input_table.parquet",
        "05_model_input/train.parquet",
        "05_model_input/validation.parquet",
        "05_model_input/test.parquet",
        "05_model_input/dataset_manifest.json",
        "06_models/model.ubj",
        "06_models/model.ubj.sha256",
        "06_models/decision_threshold.json",
        "06_models/model_spec.json",
        "06_models/calibration.json",
        "06_models/failure_mode_model.ubj",
        "06_models/failure_mode_model.ubj.sha256",
        "06_models/baseline/statistics.json",
        "06_models/baseline/constraints.json",
        "07_model_output/test_predictions.parquet",
        "08_reporting/metrics.json",
        "08_reporting/quality_gate.json",
        "08_reporting/calibration.json",
        "08_reporting/failure_modes.json",
        "08_reporting/model_card.json",
        "06_models/model.tar.gz",
        *(f"08_reporting/{plot}.json" for plot in PLOTS),
        "09_tracking/run_timings.json",
    }
    # Registered, pending approval (the default), so nothing is deployed yet.
    versions = LocalModelRegistry(project / "data/10_model_registry").list_versions(GROUP)
    assert [(v.version, v.approval_status) for v in versions] == [(1, "PendingManualApproval")]


def test_kedro_run_metrics_are_sane(finished_run):
    project = finished_run.project
    metrics = json.loads((project / "data/08_reporting/metrics.json").read_text())

    assert metrics["rows"] == 1000
    assert metrics["failures"] == 34
    assert metrics["roc_auc"] > 0.95
    assert metrics["pr_auc"] > 0.8
    assert metrics["at_chosen_threshold"]["f1"] > 0.8
    for mode in ("HDF", "PWF", "OSF"):
        assert metrics["recall_by_failure_mode"][mode]["recall"] >= 0.9


def test_kedro_run_model_loads_and_matches_its_spec(finished_run):
    project = finished_run.project
    spec = json.loads((project / "data/06_models/model_spec.json").read_text())
    threshold = json.loads((project / "data/06_models/decision_threshold.json").read_text())

    model_file = project / "data/06_models/model.ubj"
    model = XGBoostModelDataset(filepath=str(model_file)).load()

    assert model.feature_names == spec["features"] == list(FEATURE_COLUMNS)
    recorded = (project / "data/06_models/model.ubj.sha256").read_text().split()[0]
    assert spec["model_sha256"] == recorded == sha256_hex(model_file.read_bytes())
    assert spec["decision_threshold"] == threshold["threshold"]
    assert (
        spec["training_data"]["raw_sha256"]
        == "dc6630cd9b1f0f853922fad78a1b6436570d3f1ec863f1dd5c4340ac56bc8a8e"
    )


def test_kedro_run_records_node_timings(finished_run):
    project = finished_run.project
    timings = json.loads((project / "data/09_tracking/run_timings.json").read_text())

    assert len(timings["nodes"]) == len(project_pipeline().nodes)
    assert {"prepare.ingest_raw_data", "train.train_model", "deploy.select_deployment"} <= set(
        timings["nodes"]
    )
    assert 0 < timings["nodes_total_seconds"] <= timings["pipeline_wall_seconds"]


def test_kedro_viz_build_shows_every_pipeline_with_previews(project_after_run):
    project = project_after_run

    result = kedro(project, "viz", "build", "--include-previews")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = project / "build" / "api"
    main = json.loads((api / "main").read_text())
    assert {pipeline["id"] for pipeline in main["pipelines"]} >= {
        "__default__",
        "data_engineering",
        "training",
    }
    tasks = {node["name"] for node in main["nodes"] if node["type"] == "task"}
    assert {"ingest_raw_data", "validate_raw_readings", "train_model", "evaluate_model"} <= tasks
    # kedro-viz shows each namespace (a workshop step) as a collapsible group of its nodes.
    groups = {node["id"] for node in main["nodes"] if node["type"] == "modularPipeline"}
    assert {"prepare", "train", "evaluate", "gate", "register", "deploy"} <= groups
    assert (project / "build" / "index.html").is_file()
    datasets = {node["name"]: node["id"] for node in main["nodes"] if node["type"] == "data"}
    for plot in PLOTS:
        details = json.loads((api / "nodes" / datasets[f"{plot}_plot"]).read_text())
        assert details["preview_type"] == "PlotlyPreview", plot
        assert details["preview"]["data"], plot
    metrics = json.loads((api / "nodes" / datasets["metrics"]).read_text())
    assert metrics["preview_type"] == "JSONPreview"


def test_training_pipeline_reruns_from_the_saved_splits(project_after_run):
    project = project_after_run

    result = kedro(project, "run", "--pipelines", "training")

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    timings = json.loads((project / "data/09_tracking/run_timings.json").read_text())
    assert timings["pipelines"] == ["training"]
    assert "prepare.ingest_raw_data" not in timings["nodes"]
    assert "train.train_model" in timings["nodes"]


def test_tampered_raw_file_stops_the_run_before_anything_is_written(project_copy, monkeypatch):
    raw = project_copy / "data/01_raw/ai4i2020.csv"
    raw.write_bytes(raw.read_bytes().replace(b"298.1", b"298.2", 1))

    with pytest.raises(ChecksumMismatchError) as raised:
        run_session(project_copy, monkeypatch)

    assert "dc6630cd9b1f0f853922fad78a1b6436570d3f1ec863f1dd5c4340ac56bc8a8e" in str(raised.value)
    assert written_outputs(project_copy) == []


def test_invalid_raw_data_stops_the_run_before_anything_is_written(project_copy, monkeypatch):
    raw = project_copy / "data/01_raw/ai4i2020.csv"
    raw.write_bytes(raw.read_bytes().replace(b"\r\n3,L47182,L,", b"\r\n3,L47182,Q,", 1))

    # As `kedro run --params raw_data.sha256=null`.
    with pytest.raises(RawDataError) as raised:
        run_session(project_copy, monkeypatch, runtime_params={"raw_data": {"sha256": None}})

    assert "'Type' fails isin" in str(raised.value)
    assert "line 4: 'Q'" in str(raised.value)
    assert written_outputs(project_copy) == []


def test_approve_deploy_serve_and_invoke_like_the_workshop(project_after_run):
    """Approve, deploy (`kedro run --nodes deploy.select_deployment`), serve, invoke with boto3."""
    project = project_after_run

    approved = kedro(project, "model", "approve", "1", "--note", "checked the metrics")
    deployed = kedro(project, "run", "--nodes", "deploy.select_deployment")

    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    state = json.loads((project / "data/11_endpoints/predictive-maintenance.json").read_text())
    assert (state["model_group"], state["model_version"]) == (GROUP, 1)

    port = free_port()
    server = launch(
        project,
        "endpoint",
        "serve",
        "--port",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ping = f"http://127.0.0.1:{port}/ping"
        wait_for(server, lambda: urllib.request.urlopen(ping, timeout=1).status == 200)
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="eu-west-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )
        response = runtime.invoke_endpoint(
            EndpointName="predictive-maintenance",
            ContentType="text/csv",
            Accept="application/json",
            Body="L,298.4,308.2,1582,70.7,216\nM,298.1,308.6,1551,42.8,0",
        )
        answer = json.loads(response["Body"].read())
    finally:
        server.terminate()
        server.wait(timeout=10)

    overstrained, healthy = answer["predictions"]
    assert answer["model_version"] == 1
    assert overstrained["predicted_label"] == 1
    assert overstrained["score"] > 0.5
    assert healthy["predicted_label"] == 0
    assert healthy["score"] < 0.1
