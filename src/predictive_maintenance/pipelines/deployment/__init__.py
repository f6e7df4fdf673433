"""``deployment``: quality gate, model package, model registry, endpoint."""

from predictive_maintenance.pipelines.deployment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
