"""The ``deployment`` pipeline: quality gate -> model card -> package -> register -> deploy."""

from kedro.pipeline import Node, Pipeline

from predictive_maintenance.pipelines.deployment.nodes import (
    check_quality_gate,
    create_model_card,
    package_model,
    register_model,
    select_deployment,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=check_quality_gate,
                inputs=["metrics", "params:quality_gate"],
                outputs="quality_gate_report",
                name="check_quality_gate",
                namespace="gate",
            ),
            Node(
                func=create_model_card,
                inputs=[
                    "model_spec",
                    "metrics",
                    "calibration_report",
                    "failure_mode_report",
                    "params:model_card",
                ],
                outputs="model_card",
                name="create_model_card",
                namespace="evaluate",
            ),
            Node(
                func=package_model,
                inputs=["model", "model_spec", "failure_mode_model", "model_card"],
                outputs="model_archive",
                name="package_model",
                namespace="evaluate",
            ),
            Node(
                func=register_model,
                # By keyword: the baseline files are keyword-only arguments.
                inputs={
                    "model_archive": "model_archive",
                    "model_spec": "model_spec",
                    "metrics": "metrics",
                    "quality_gate_report": "quality_gate_report",
                    "registration": "params:registration",
                    "baseline_statistics": "baseline_statistics",
                    "baseline_constraints": "baseline_constraints",
                    # This kedro run's MLflow run (None when tracking is off): the version
                    # records its id, the run records the version.
                    "tracking_run": "tracking_run",
                    # Stored with the version: `kedro model list`/`show` read it there.
                    "model_card": "model_card",
                },
                outputs="model_registry",
                name="register_model",
                namespace="register",
            ),
            Node(
                func=select_deployment,
                inputs=["model_registry", "params:deploy_model", "params:endpoint"],
                outputs="endpoint",
                name="select_deployment",
                namespace="deploy",
            ),
        ],
        tags="deployment",
    )
