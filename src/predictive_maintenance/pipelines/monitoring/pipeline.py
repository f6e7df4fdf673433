"""The ``monitoring`` pipeline (namespace ``monitor``): captured traffic against the baseline."""

from collections.abc import Callable
from typing import Any

from kedro.pipeline import Node, Pipeline

from predictive_maintenance.pipelines.monitoring.nodes import (
    check_data_quality,
    raise_monitoring_alarm,
    read_captured_data,
    score_drift,
    score_labels,
    summarise_monitoring,
)
from predictive_maintenance.pipelines.monitoring.plots import (
    plot_distributions,
    plot_drift_scores,
)

PLOTS = ("monitoring_drift_plot", "monitoring_distributions_plot")


def create_pipeline(**kwargs) -> Pipeline:
    nodes = [
        _node(
            read_captured_data,
            ["captured_data", "params:monitoring"],
            ["captured_readings", "capture_summary"],
            "read_captured_data",
        ),
        _node(
            check_data_quality,
            [
                "captured_readings",
                "capture_summary",
                "baseline_statistics",
                "baseline_constraints",
                "params:data_quality_baseline",
            ],
            ["constraint_violations", "current_statistics"],
            "check_data_quality",
        ),
        _node(
            score_drift,
            ["captured_readings", "baseline_statistics", "params:monitoring.drift"],
            "drift_scores",
            "score_drift",
        ),
        _node(
            score_labels,
            [
                "captured_readings",
                "ground_truth",
                "dataset_manifest",
                "model_spec",
                "params:monitoring",
            ],
            "label_metrics",
            "score_labels",
        ),
        _node(plot_drift_scores, "drift_scores", PLOTS[0], "plot_drift_scores"),
        _node(plot_distributions, "drift_scores", PLOTS[1], "plot_distributions"),
        _node(
            summarise_monitoring,
            [
                "capture_summary",
                "constraint_violations",
                "drift_scores",
                "label_metrics",
                "params:monitoring.on_violation",
            ],
            "monitoring_report",
            "summarise_monitoring",
        ),
        # Last, so that a failing run has saved every report and plot first.
        _node(
            raise_monitoring_alarm,
            ["monitoring_report", *PLOTS],
            None,
            "raise_monitoring_alarm",
        ),
    ]
    return Pipeline(nodes, tags="monitoring")


def _node(func: Callable[..., Any], inputs: Any, outputs: Any, name: str) -> Node:
    """A node of the ``monitor`` namespace (datasets and parameters keep their names)."""
    return Node(func, inputs, outputs, name=name, namespace="monitor")
