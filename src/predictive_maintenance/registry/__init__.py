"""The model registry: model package groups and immutable, approvable versions (local default)."""

from predictive_maintenance.registry.datasets import LocalModelRegistryDataset
from predictive_maintenance.registry.local import (
    APPROVAL_STATUSES,
    APPROVED,
    PENDING,
    REJECTED,
    LocalModelRegistry,
    ModelNotFoundError,
    ModelVersion,
)

__all__ = [
    "APPROVAL_STATUSES",
    "APPROVED",
    "PENDING",
    "REJECTED",
    "LocalModelRegistry",
    "LocalModelRegistryDataset",
    "ModelNotFoundError",
    "ModelVersion",
]
