"""Plot nodes of the ``training`` pipeline: plotly figures saved as kedro-datasets plotly JSON.

plotly and scikit-learn are imported by the nodes that use them (see ``lazy_types``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from predictive_maintenance.features import FEATURE_COLUMNS
from predictive_maintenance.lazy_types import Booster, Figure
from predictive_maintenance.schema import TARGET_COLUMN

_CLASS_NAMES = {0: "no failure", 1: "failure"}
#: Most points a curve is drawn with: a 1,000-row test set's curves keep all of theirs; a
#: 100,000-row one's would make megabytes of JSON for kedro-viz to preview.
MAX_CURVE_POINTS = 2_000
SCORE_BINS = 50


def _thinned(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """At most :data:`MAX_CURVE_POINTS` evenly spaced points of a curve, both ends kept."""
    size = len(arrays[0])
    if size <= MAX_CURVE_POINTS:
        return arrays
    keep = np.unique(np.linspace(0, size - 1, MAX_CURVE_POINTS).round().astype(int))
    return tuple(array[keep] for array in arrays)


def plot_roc_curve(test_predictions: pd.DataFrame, metrics: dict) -> Figure:
    """ROC curve on the test set, with the chance diagonal."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from sklearn.metrics import roc_curve  # noqa: PLC0415

    fpr, tpr, _ = roc_curve(test_predictions[TARGET_COLUMN], test_predictions["score"])
    fpr, tpr = _thinned(fpr, tpr)
    figure = go.Figure(
        [
            go.Scatter(x=fpr, y=tpr, mode="lines", name=f"model (AUC {metrics['roc_auc']:.3f})"),
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash"}),
        ]
    )
    return figure.update_layout(
        title="ROC curve (test set)",
        xaxis_title="False positive rate",
        yaxis_title="True positive rate",
    )


def plot_precision_recall_curve(test_predictions: pd.DataFrame, metrics: dict) -> Figure:
    """Precision-recall curve on the test set, with the chosen operating point."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from sklearn.metrics import precision_recall_curve  # noqa: PLC0415

    precision, recall, _ = precision_recall_curve(
        test_predictions[TARGET_COLUMN], test_predictions["score"]
    )
    precision, recall = _thinned(precision, recall)
    chosen = metrics["at_chosen_threshold"]
    base_rate = test_predictions[TARGET_COLUMN].mean()
    figure = go.Figure(
        [
            go.Scatter(
                x=recall, y=precision, mode="lines", name=f"model (AP {metrics['pr_auc']:.3f})"
            ),
            go.Scatter(
                x=[0, 1],
                y=[base_rate, base_rate],
                mode="lines",
                name="chance",
                line={"dash": "dash"},
            ),
            go.Scatter(
                x=[chosen["recall"]],
                y=[chosen["precision"]],
                mode="markers",
                marker={"size": 12},
                name=f"threshold {chosen['threshold']:.3f}",
            ),
        ]
    )
    return figure.update_layout(
        title="Precision-recall curve (test set)", xaxis_title="Recall", yaxis_title="Precision"
    )


def plot_confusion_matrix(metrics: dict) -> Figure:
    """Confusion matrix on the test set at the chosen threshold."""
    import plotly.express as px  # noqa: PLC0415

    chosen = metrics["at_chosen_threshold"]
    counts = chosen["confusion_matrix"]
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    labels = ["no failure", "failure"]
    figure = px.imshow(
        matrix,
        x=labels,
        y=labels,
        text_auto=True,
        color_continuous_scale="Blues",
        labels={"x": "Predicted", "y": "Actual", "color": "Rows"},
    )
    return figure.update_layout(
        title=f"Confusion matrix (test set, threshold {chosen['threshold']:.3f})"
    )


def plot_feature_importance(model: Booster) -> Figure:
    """Total gain each feature brings to the model's splits."""
    import plotly.express as px  # noqa: PLC0415

    gain = model.get_score(importance_type="total_gain")
    importance = (
        pd.Series(
            {feature: gain.get(feature, 0.0) for feature in FEATURE_COLUMNS}, name="total gain"
        )
        .sort_values()
        .rename_axis("feature")
        .reset_index()
    )
    figure = px.bar(importance, x="total gain", y="feature", orientation="h")
    return figure.update_layout(title="Feature importance (total gain)")


def plot_score_distribution(test_predictions: pd.DataFrame, decision_threshold: dict) -> Figure:
    """Histogram of test scores per actual class, with the decision threshold.

    Binned here rather than by plotly in the browser, so the figure holds 50 counts per class
    whatever the number of rows (plotly express would embed every score).
    """
    import plotly.graph_objects as go  # noqa: PLC0415

    edges = np.linspace(0.0, 1.0, SCORE_BINS + 1)
    scores = test_predictions["score"].to_numpy()
    labels = test_predictions[TARGET_COLUMN].to_numpy()
    figure = go.Figure(
        [
            go.Bar(
                x=(edges[:-1] + edges[1:]) / 2,
                y=np.histogram(scores[labels == label], bins=edges)[0],
                width=np.diff(edges),
                name=name,
                opacity=0.6,
            )
            for label, name in _CLASS_NAMES.items()
        ]
    )
    figure.add_vline(
        x=decision_threshold["threshold"],
        line_dash="dash",
        annotation_text=f"threshold {decision_threshold['threshold']:.3f}",
    )
    return figure.update_layout(
        title="Score distribution by actual class (test set)",
        barmode="overlay",
        xaxis={"title": "score", "range": [0, 1]},
        yaxis={"title": "rows", "type": "log"},
        legend_title_text="actual",
    )


def plot_reliability(calibration_report: dict) -> Figure:
    """Reliability curve on the test set: observed failure frequency against mean predicted
    probability per equal-mass bin, raw score and calibrated, with the diagonal of perfect
    calibration; a point's row count shows on hover."""
    import plotly.graph_objects as go  # noqa: PLC0415

    traces = [
        go.Scatter(
            x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated", line={"dash": "dash"}
        )
    ]
    for kind, name in (("raw", "raw score"), ("calibrated", "calibrated")):
        curve = calibration_report["reliability"][kind]
        traces.append(
            go.Scatter(
                x=[item["mean_predicted"] for item in curve],
                y=[item["observed_frequency"] for item in curve],
                customdata=[item["count"] for item in curve],
                mode="lines+markers",
                name=f"{name} (ECE {calibration_report['ece'][kind]:.4f}, "
                f"Brier {calibration_report['brier'][kind]:.4f})",
                hovertemplate="mean predicted %{x:.4f}<br>observed %{y:.4f}<br>"
                "%{customdata} rows<extra></extra>",
            )
        )
    held_out = calibration_report["held_out"]
    binning = calibration_report["binning"]
    return go.Figure(traces).update_layout(
        title=f"Reliability (test set: {held_out['rows']} rows, {held_out['failures']} failures; "
        f"{binning['bins']} equal-mass bins)",
        xaxis={"title": "mean predicted probability", "range": [0, 1]},
        yaxis={"title": "observed failure frequency", "range": [0, 1]},
    )
