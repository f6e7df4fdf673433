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


def plot_roc_curve(test_predictions: pd.DataFrame, metrics: dict) -> Figure:
    """ROC curve on the test set, with the chance diagonal."""
    import plotly.graph_objects as go  # noqa: PLC0415
    from sklearn.metrics import roc_curve  # noqa: PLC0415

    fpr, tpr, _ = roc_curve(test_predictions[TARGET_COLUMN], test_predictions["score"])
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
    """Histogram of test scores per actual class, with the decision threshold."""
    import plotly.express as px  # noqa: PLC0415

    frame = test_predictions.assign(actual=test_predictions[TARGET_COLUMN].map(_CLASS_NAMES))
    figure = px.histogram(
        frame,
        x="score",
        color="actual",
        nbins=50,
        range_x=[0, 1],
        barmode="overlay",
        log_y=True,
        category_orders={"actual": list(_CLASS_NAMES.values())},
    )
    figure.add_vline(
        x=decision_threshold["threshold"],
        line_dash="dash",
        annotation_text=f"threshold {decision_threshold['threshold']:.3f}",
    )
    return figure.update_layout(title="Score distribution by actual class (test set)")
