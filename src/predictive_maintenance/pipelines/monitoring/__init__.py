"""``monitoring``: captured traffic checked against the training data's baseline."""

from predictive_maintenance.pipelines.monitoring.pipeline import create_pipeline

__all__ = ["create_pipeline"]
