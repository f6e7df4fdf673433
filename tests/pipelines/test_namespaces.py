"""Node namespaces: the steps of the SageMaker workshop (prepare, train, evaluate, gate, ...).

The SageMaker export groups nodes into pipeline steps by namespace, so every node has one, set on
the node itself: datasets and parameters keep their names (``Pipeline(namespace=...)`` would
prefix them).
"""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline

from predictive_maintenance.pipelines.data_engineering import pipeline as data_engineering
from predictive_maintenance.pipelines.deployment import pipeline as deployment
from predictive_maintenance.pipelines.training import pipeline as training

EXPECTED = {
    "prepare.ingest_raw_data",
    "prepare.validate_raw_readings",
    "prepare.create_model_input_table",
    "prepare.split_data",
    "prepare.create_dataset_manifest",
    "baseline.create_data_quality_baseline",
    "train.train_model",
    "train.train_failure_mode_model",
    "evaluate.select_threshold",
    "evaluate.create_model_spec",
    "evaluate.score_test_set",
    "evaluate.evaluate_model",
    "evaluate.fit_calibration",
    "evaluate.evaluate_calibration",
    "evaluate.evaluate_failure_modes",
    "evaluate.create_model_card",
    "evaluate.plot_reliability",
    "evaluate.plot_roc_curve",
    "evaluate.plot_precision_recall_curve",
    "evaluate.plot_confusion_matrix",
    "evaluate.plot_feature_importance",
    "evaluate.plot_score_distribution",
    "evaluate.package_model",
    "gate.check_quality_gate",
    "register.register_model",
    "deploy.select_deployment",
}


@pytest.fixture(scope="module")
def default_pipeline() -> Pipeline:
    return sum(
        (p.create_pipeline() for p in (data_engineering, training, deployment)), Pipeline([])
    )


def test_every_node_has_its_workshop_step_as_namespace(default_pipeline):
    assert {node.name for node in default_pipeline.nodes} == EXPECTED
    for node in default_pipeline.nodes:
        assert node.name == f"{node.namespace}.{node.short_name}"


def test_datasets_and_parameters_keep_their_names(default_pipeline):
    names = default_pipeline.datasets()

    assert {"ai4i2020_raw", "model", "metrics", "model_archive", "model_registry"} <= names
    assert {"params:xgboost", "params:quality_gate", "endpoint"} <= names
    namespaces = {node.namespace for node in default_pipeline.nodes}
    assert namespaces == {
        "prepare",
        "baseline",
        "train",
        "evaluate",
        "gate",
        "register",
        "deploy",
    }
    assert not [name for name in names if name.split(".")[0] in namespaces and "." in name]


def test_nodes_are_selected_by_their_namespaced_names(default_pipeline):
    assert [n.name for n in default_pipeline.only_nodes("train.train_model").nodes] == [
        "train.train_model"
    ]
    assert {n.name for n in default_pipeline.only_nodes_with_namespaces(["gate"]).nodes} == {
        "gate.check_quality_gate"
    }
    with pytest.raises(ValueError, match="train_model"):
        default_pipeline.only_nodes("train_model")
