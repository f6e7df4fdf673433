"""The ``data_engineering`` pipeline: raw file -> validated readings -> features -> splits."""

from kedro.pipeline import Node, Pipeline

from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_dataset_manifest,
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=ingest_raw_data,
                inputs=["ai4i2020_raw", "params:raw_data.sha256"],
                outputs=["raw_readings", "raw_file"],
                name="ingest_raw_data",
                namespace="prepare",
            ),
            Node(
                func=validate_raw_readings,
                inputs=["raw_readings", "raw_file"],
                outputs=["readings", "raw_data_provenance"],
                name="validate_raw_readings",
                namespace="prepare",
            ),
            Node(
                func=create_model_input_table,
                inputs="readings",
                outputs="model_input_table",
                name="create_model_input_table",
                namespace="prepare",
            ),
            Node(
                func=split_data,
                inputs=["model_input_table", "params:split"],
                outputs=["train", "validation", "test"],
                name="split_data",
                namespace="prepare",
            ),
            Node(
                func=create_dataset_manifest,
                inputs=["raw_data_provenance", "train", "validation", "test", "params:split"],
                outputs="dataset_manifest",
                name="create_dataset_manifest",
                namespace="prepare",
            ),
        ],
        tags="data_engineering",
    )
