"""``batch_scoring``: score a file of readings of any size with a registered model."""

from predictive_maintenance.pipelines.batch_scoring.pipeline import create_pipeline

__all__ = ["create_pipeline"]
