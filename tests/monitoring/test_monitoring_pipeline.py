"""The monitoring pipeline end to end: SequentialRunner on in-memory catalogs, and the command
line once (exit code 1 when the settings say fail)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from predictive_maintenance.pipelines.monitoring import create_pipeline
from predictive_maintenance.pipelines.monitoring.nodes import MonitoringAlarm
from predictive_maintenance.pipelines.monitoring.pipeline import PLOTS
from tests.catalogs import RecordingDataset, memory_catalog
from tests.monitoring.capture_files import shifted, traffic, write_capture
from tests.support.cli import invoke
from tests.support.project import copy_project

PROJECT = "predictive_maintenance"
REPORTS = ("monitoring_report", "constraint_violations", "drift_scores", "label_metrics", *PLOTS)
MANIFEST = {"splits": {"train": {"failure_rate": 0.034}}}
SPEC = {"decision_threshold": 0.5}


@pytest.fixture(scope="module")
def undrifted(held_out: pd.DataFrame) -> pd.DataFrame:
    return held_out.sample(n=500, random_state=1).reset_index(drop=True)


def run(
    records: list[dict[str, Any] | str],
    baseline: tuple[dict, dict],
    parameters: dict[str, Any],
    ground_truth: dict[str, pd.DataFrame] | None = None,
    saved: dict[str, RecordingDataset] | None = None,
    **monitoring: Any,
) -> dict[str, RecordingDataset]:
    """Runs the pipeline on ``records`` (one capture file); returns the reports it saved (into
    ``saved`` if given: what a failing run saved)."""
    content = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in records).encode()
    name = "predictive-maintenance/AllTraffic/2026/12/03/14/00-00-000-test"
    catalog = memory_catalog(
        {
            "captured_data": {name: lambda: content},
            "ground_truth": {
                key: (lambda f=frame: f) for key, frame in (ground_truth or {}).items()
            },
            "baseline_statistics": baseline[0],
            "baseline_constraints": baseline[1],
            "dataset_manifest": MANIFEST,
            "model_spec": SPEC,
        },
        {
            "monitoring": parameters["monitoring"] | monitoring,
            "data_quality_baseline": parameters["data_quality_baseline"],
        },
    )
    saved = {name: RecordingDataset() for name in REPORTS} if saved is None else saved
    for key, dataset in saved.items():
        catalog[key] = dataset
    SequentialRunner().run(create_pipeline(), catalog)
    return saved


def test_held_out_traffic_passes(baseline, parameters, undrifted, caplog):
    caplog.set_level(logging.INFO)

    saved = run(traffic(undrifted), baseline, parameters)

    report = saved["monitoring_report"].saved
    assert report["status"] == "ok", report["findings"]
    assert report["readings"] == 500
    assert saved["constraint_violations"].saved == {"violations": []}
    assert "no constraint violation, no drift in 500 readings" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and PROJECT in r.name]


def test_a_shift_is_flagged_with_malformed_lines_and_ground_truth(
    baseline, parameters, undrifted, caplog
):
    records = traffic(shifted(undrifted, seed=2))
    truth = pd.DataFrame(
        {
            "event_id": [r["eventMetadata"]["eventId"] for r in records[:200]],
            "machine_failure": undrifted["machine_failure"].head(200),
        }
    )

    saved = run([*records, "{truncated", "not json at all"], baseline, parameters, {"gt": truth})

    report = saved["monitoring_report"].saved
    assert (report["status"], report["action"]) == ("violations", "flagged")
    assert report["drifted"] == ["type", "torque_nm"]
    assert report["skipped_lines"] == 2
    assert report["live_metrics"]["labelled_readings"] == 200
    assert report["live_metrics"]["recall"] == 1.0  # the traffic's scores follow its labels
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and PROJECT in r.name
    ]
    assert len(warnings) == 1
    assert warnings[0].startswith("Monitoring flagged: captured traffic breaks the baseline")
    drift_plot, distributions = (saved[name].saved for name in PLOTS)
    assert [trace.name for trace in drift_plot.data] == ["PSI", "KS statistic"]
    assert len(distributions.data) == 12  # baseline and current, for each of the six readings


def test_fail_mode_raises_after_every_report_is_saved(baseline, parameters, undrifted):
    records = traffic(shifted(undrifted, seed=2))
    saved = {name: RecordingDataset() for name in REPORTS}

    with pytest.raises(MonitoringAlarm, match=r"breaks the baseline \(4 finding\(s\)\)"):
        run(records, baseline, parameters, saved=saved, on_violation="fail")

    assert all(dataset.saved is not None for dataset in saved.values())
    assert saved["monitoring_report"].saved["action"] == "failed"


def test_the_command_fails_with_exit_code_1_on_violations(
    tmp_path: Path, monkeypatch, baseline, undrifted
):
    project = copy_project(tmp_path / "project")
    data = project / "data"
    for path, content in {
        "06_models/baseline/statistics.json": baseline[0],
        "06_models/baseline/constraints.json": baseline[1],
        "05_model_input/dataset_manifest.json": MANIFEST,
        "06_models/model_spec.json": SPEC,
    }.items():
        (data / path).parent.mkdir(parents=True, exist_ok=True)
        (data / path).write_text(json.dumps(content))
    write_capture(
        data / "13_data_capture", "predictive-maintenance", traffic(shifted(undrifted, seed=2))
    )

    result = invoke(
        project,
        monkeypatch,
        "run",
        "--pipelines",
        "monitoring",
        "--params",
        "monitoring.on_violation=fail",
        catch_exceptions=True,
    )

    assert result.exit_code == 1, result.output
    assert "breaks the baseline" in str(result.exception) + result.output
    report = json.loads((data / "14_monitoring/monitoring_report.json").read_text())
    assert (report["status"], report["action"]) == ("violations", "failed")
    assert (data / "08_reporting/monitoring_drift.json").is_file()
    violations = json.loads((data / "14_monitoring/constraint_violations.json").read_text())
    assert {v["constraint_check_type"] for v in violations["violations"]} == {
        "baseline_drift_check"
    }
