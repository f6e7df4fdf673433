"""The ``training`` pipeline: model, threshold, spec, test evaluation and plots."""

from kedro.pipeline import Node, Pipeline

from predictive_maintenance.pipelines.monitoring.nodes import create_data_quality_baseline
from predictive_maintenance.pipelines.training.failure_modes import (
    evaluate_failure_modes,
    train_failure_mode_model,
)
from predictive_maintenance.pipelines.training.nodes import (
    create_model_spec,
    evaluate_calibration,
    evaluate_model,
    fit_calibration,
    score_test_set,
    select_threshold,
    train_model,
)
from predictive_maintenance.pipelines.training.plots import (
    plot_confusion_matrix,
    plot_feature_importance,
    plot_precision_recall_curve,
    plot_reliability,
    plot_roc_curve,
    plot_score_distribution,
)


def create_pipeline(**kwargs) -> Pipeline:
    model_nodes = [
        Node(
            func=train_model,
            inputs=["train", "validation", "params:xgboost"],
            outputs="model",
            name="train_model",
            namespace="train",
            tags="training_job",
        ),
        Node(
            func=select_threshold,
            inputs=["model", "validation", "params:decision_threshold"],
            outputs="decision_threshold",
            name="select_threshold",
            namespace="evaluate",
        ),
        # Which failure (issue 16): a second booster, trained on the mode labels. In the
        # exported pipeline's train step with the failure model; SageMakerRunner keeps it
        # in-process (no "training_job" tag): it trains in ~2 s, a job costs minutes.
        Node(
            func=train_failure_mode_model,
            inputs=["train", "validation", "params:failure_modes"],
            outputs="failure_mode_model",
            name="train_failure_mode_model",
            namespace="train",
        ),
        Node(
            func=create_model_spec,
            inputs={
                "model": "model",
                "decision_threshold": "decision_threshold",
                "dataset_manifest": "dataset_manifest",
                "xgboost": "params:xgboost",
                "calibration": "calibration",
                "failure_mode_model": "failure_mode_model",
            },
            outputs="model_spec",
            name="create_model_spec",
            namespace="evaluate",
        ),
        Node(
            func=score_test_set,
            inputs=["model", "test"],
            outputs="test_predictions",
            name="score_test_set",
            namespace="evaluate",
        ),
        Node(
            func=evaluate_model,
            inputs=["test_predictions", "decision_threshold"],
            outputs="metrics",
            name="evaluate_model",
            namespace="evaluate",
        ),
        # Calibrated risk (issue 16): the map is fitted on validation like the threshold, judged
        # on test like the metrics. Additive: the score, threshold and metrics are untouched.
        Node(
            func=fit_calibration,
            inputs=["model", "validation", "params:calibration"],
            outputs="calibration",
            name="fit_calibration",
            namespace="evaluate",
        ),
        Node(
            func=evaluate_calibration,
            inputs=["test_predictions", "calibration", "params:calibration"],
            outputs="calibration_report",
            name="evaluate_calibration",
            namespace="evaluate",
        ),
        Node(
            func=evaluate_failure_modes,
            inputs=["failure_mode_model", "test", "params:failure_modes"],
            outputs="failure_mode_report",
            name="evaluate_failure_modes",
            namespace="evaluate",
        ),
    ]
    plot_nodes = [
        Node(
            plot_roc_curve,
            ["test_predictions", "metrics"],
            "roc_curve_plot",
            name="plot_roc_curve",
            namespace="evaluate",
        ),
        Node(
            plot_precision_recall_curve,
            ["test_predictions", "metrics"],
            "precision_recall_curve_plot",
            name="plot_precision_recall_curve",
            namespace="evaluate",
        ),
        Node(
            plot_confusion_matrix,
            "metrics",
            "confusion_matrix_plot",
            name="plot_confusion_matrix",
            namespace="evaluate",
        ),
        Node(
            plot_feature_importance,
            "model",
            "feature_importance_plot",
            name="plot_feature_importance",
            namespace="evaluate",
        ),
        Node(
            plot_score_distribution,
            ["test_predictions", "decision_threshold"],
            "score_distribution_plot",
            name="plot_score_distribution",
            namespace="evaluate",
        ),
        Node(
            plot_reliability,
            "calibration_report",
            "reliability_plot",
            name="plot_reliability",
            namespace="evaluate",
        ),
    ]
    # SageMaker Model Monitor's data-quality baseline of the training data, registered with the
    # model version; its own namespace, so the SageMaker export makes it its own step (as
    # SageMaker's QualityCheckStep).
    baseline_node = Node(
        func=create_data_quality_baseline,
        inputs=["train", "params:data_quality_baseline"],
        outputs=["baseline_statistics", "baseline_constraints"],
        name="create_data_quality_baseline",
        namespace="baseline",
    )
    return (
        Pipeline(model_nodes, tags="training")
        + Pipeline(plot_nodes, tags=["training", "plots"])
        + Pipeline([baseline_node], tags=["training", "baseline"])
    )
