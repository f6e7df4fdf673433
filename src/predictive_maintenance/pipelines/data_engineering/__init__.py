"""``data_engineering``: get the raw data, validate it, build features, split."""

from predictive_maintenance.pipelines.data_engineering.pipeline import create_pipeline

__all__ = ["create_pipeline"]
