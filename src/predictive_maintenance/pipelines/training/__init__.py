"""``training``: XGBoost failure score, decision threshold, test evaluation and plots."""

from predictive_maintenance.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
