"""The ``batch_scoring`` pipeline: the registered model to use, then a file of readings -> scores
and labels, rejects, a summary. Exported to SageMaker, ``batch.score_batch`` becomes a Batch
Transform of that model package (``batch_pipeline`` in conf/base/sagemaker.yml)."""

from kedro.pipeline import Node, Pipeline

from predictive_maintenance.pipelines.batch_scoring.nodes import score_batch, select_model


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=select_model,
                inputs=["model_registry", "params:batch_scoring"],
                outputs="batch_model",
                name="select_model",
                namespace="batch",
            ),
            Node(
                func=score_batch,
                inputs=["batch_readings", "batch_model", "params:batch_scoring"],
                outputs=["batch_predictions", "batch_rejects", "batch_summary"],
                name="score_batch",
                namespace="batch",
            ),
        ],
        tags="batch_scoring",
    )
