"""Nodes of the data-quality baseline (training pipeline, namespace ``baseline``) and of the
``monitoring`` pipeline (namespace ``monitor``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pandas as pd

from predictive_maintenance.monitoring.baseline import (
    data_quality_constraints,
    data_quality_statistics,
    readings_frame,
)
from predictive_maintenance.monitoring.capture import CaptureReader, parse_time
from predictive_maintenance.monitoring.constraints import check_constraints
from predictive_maintenance.monitoring.drift import drift_scores as readings_drift
from predictive_maintenance.monitoring.labels import label_metrics as live_label_metrics
from predictive_maintenance.schema import READING_COLUMNS

logger = logging.getLogger(__name__)


def create_data_quality_baseline(
    train: pd.DataFrame, baseline: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """SageMaker Model Monitor's ``statistics.json`` and ``constraints.json`` of the training
    split's six readings: what live traffic is checked against.

    Args:
        train: The training split (``type_code`` or ``type``, and the numeric readings).
        baseline: ``buckets``, ``kll`` (k, c, seed) and the ``monitoring_config`` to write.
    """
    statistics = data_quality_statistics(
        readings_frame(train), kll=baseline["kll"], buckets=int(baseline["buckets"])
    )
    return statistics, data_quality_constraints(statistics, baseline["monitoring_config"])


class NoCapturedDataError(LookupError):
    """There is no capture file of the endpoint (in the window) to monitor."""


class MonitoringAlarm(RuntimeError):
    """Captured traffic breaks the baseline's constraints or drifts, and ``on_violation`` is
    ``fail``: raised after every report is saved."""


def read_captured_data(
    captured_data: dict[str, Callable[[], Any]], monitoring: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The endpoint's captured readings in the window, and what was read, skipped and refused.

    Args:
        captured_data: Capture files by path below the capture directory (loaded lazily).
        monitoring: ``endpoint_name``, ``capture_directory`` and ``window`` (``start``, ``end``).
    """
    window = monitoring.get("window") or {}
    reader = CaptureReader(
        endpoint_name=monitoring["endpoint_name"],
        start=parse_time(window.get("start"), "monitoring.window.start"),
        end=parse_time(window.get("end"), "monitoring.window.end"),
    )
    reader.read(captured_data)
    if not reader.counts["files"]:
        where = f"{monitoring['capture_directory']}/{reader.endpoint_name}/AllTraffic"
        raise NoCapturedDataError(
            f"no capture file under {where}"
            + (" in the monitoring window" if reader.counts["files_outside_window"] else "")
            + ": turn data capture on (data_capture.enabled in conf/base/globals.yml, or "
            "`kedro endpoint serve --data-capture`), send traffic, then run the monitoring again"
        )
    summary = reader.summary()
    logger.info(
        "Captured traffic: %d readings in %d records of %d files; %d lines skipped, %d readings "
        "refused by the endpoint's parser",
        summary["readings"],
        summary["records"],
        summary["files"],
        summary["skipped_lines"],
        summary["refused_readings"],
    )
    return reader.frame(), summary


def check_data_quality(
    captured_readings: pd.DataFrame,
    capture_summary: dict[str, Any],
    baseline_statistics: dict[str, Any],
    baseline_constraints: dict[str, Any],
    baseline: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``constraint_violations.json`` of the captured readings against the baseline, and their
    own ``statistics.json`` (as a SageMaker monitoring execution writes both)."""
    violations = check_constraints(
        captured_readings,
        capture_summary["problems"],
        baseline_constraints,
        baseline_statistics,
    )
    statistics = data_quality_statistics(
        captured_readings[list(READING_COLUMNS)],
        kll=baseline["kll"],
        buckets=int(baseline["buckets"]),
    )
    return violations, statistics


def score_drift(
    captured_readings: pd.DataFrame, baseline_statistics: dict[str, Any], drift: dict[str, Any]
) -> dict[str, Any]:
    """PSI and KS of each reading against the baseline, and which drifted."""
    return readings_drift(captured_readings, baseline_statistics, drift)


def score_labels(
    captured_readings: pd.DataFrame,
    ground_truth: dict[str, Callable[[], pd.DataFrame]],
    dataset_manifest: dict[str, Any],
    model_spec: dict[str, Any],
    monitoring: dict[str, Any],
) -> dict[str, Any]:
    """Label and prediction drift, and live precision, recall and F1 where ground truth has
    arrived (none yet: the result says so)."""
    threshold = monitoring["ground_truth"].get("decision_threshold")
    return live_label_metrics(
        captured_readings,
        {name: load() for name, load in ground_truth.items()},
        training_failure_rate=float(dataset_manifest["splits"]["train"]["failure_rate"]),
        decision_threshold=float(
            model_spec["decision_threshold"] if threshold is None else threshold
        ),
        psi_threshold=float(monitoring["drift"]["psi"]["threshold"]),
    )


def summarise_monitoring(
    capture_summary: dict[str, Any],
    constraint_violations: dict[str, Any],
    drift_scores: dict[str, Any],
    label_metrics: dict[str, Any],
    on_violation: str,
) -> dict[str, Any]:
    """The run's verdict: ``ok``, or ``violations`` with each finding; and what the run does
    about it (``on_violation``: flag or fail)."""
    if on_violation not in {"flag", "fail"}:
        raise ValueError(f"monitoring.on_violation is {on_violation!r}; use flag or fail")
    findings = [
        f"{v['constraint_check_type']} on {v['feature_name']}: {v['description']}"
        for v in constraint_violations["violations"]
    ]
    findings += [
        f"drift of {feature['name']}: PSI {feature['psi']:.3f}"
        + (
            f", KS {feature['ks_statistic']:.3f} (p = {feature['ks_p_value']:.2g})"
            if "ks_statistic" in feature
            else ""
        )
        for feature in drift_scores["features"]
        if feature.get("drifted")
    ]
    findings += [
        f"{name.replace('_', ' ')}: failure rate {label_metrics[name]['rate']:.4f} against "
        f"{label_metrics['training_failure_rate']:.4f} in training (PSI "
        f"{label_metrics[name]['psi']:.3f})"
        for name in label_metrics.get("drifted", [])
    ]
    notes = []
    if not drift_scores["scored"]:
        notes.append(f"drift not scored: {drift_scores['reason']}")
    if not label_metrics.get("ground_truth") or "reason" in label_metrics:
        notes.append(f"label metrics: {label_metrics.get('reason', 'none')}")
    if capture_summary["skipped_lines"]:
        notes.append(
            f"{capture_summary['skipped_lines']} capture line(s) skipped (capture_summary.json "
            "lists them with file and line)"
        )
    live = {
        key: label_metrics.get(key) for key in ("labelled_readings", "precision", "recall", "f1")
    }
    return {
        "status": "violations" if findings else "ok",
        "on_violation": on_violation,
        "action": ("failed" if on_violation == "fail" else "flagged") if findings else "none",
        "findings": findings,
        "notes": notes,
        "readings": capture_summary["readings"],
        "refused_readings": capture_summary["refused_readings"],
        "skipped_lines": capture_summary["skipped_lines"],
        "violations": len(constraint_violations["violations"]),
        "drifted": drift_scores["drifted"],
        "live_metrics": live if label_metrics.get("labelled_readings") else None,
        "window": capture_summary["window"],
    }


def raise_monitoring_alarm(monitoring_report: dict[str, Any], *reports_saved_before: Any) -> None:
    """Logs what was found; with ``on_violation: fail`` ends the run with
    :class:`MonitoringAlarm`. Takes the plots too, only so that it runs after they are saved."""
    findings = monitoring_report["findings"]
    if not findings:
        logger.info(
            "Monitoring: no constraint violation, no drift in %d readings",
            monitoring_report["readings"],
        )
        return
    listed = "; ".join(findings[:5]) + (
        f"; and {len(findings) - 5} more" if len(findings) > 5 else ""
    )
    message = (
        f"captured traffic breaks the baseline ({len(findings)} finding(s)): {listed}. "
        "Details: data/14_monitoring/monitoring_report.json"
    )
    if monitoring_report["on_violation"] == "fail":
        raise MonitoringAlarm(message)
    logger.warning("Monitoring flagged: %s", message)
