"""Kedro datasets the project needs and kedro-datasets does not ship.

Loaded on first use (PEP 562): ``XGBoostModelDataset`` imports xgboost (seconds), and every
``kedro run`` imports every pipeline's nodes, some of which only need ``table_chunks``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from predictive_maintenance.datasets.xgboost_model_dataset import XGBoostModelDataset

__all__ = ["XGBoostModelDataset"]


def __getattr__(name: str) -> Any:
    if name == "XGBoostModelDataset":
        from predictive_maintenance.datasets.xgboost_model_dataset import (  # noqa: PLC0415
            XGBoostModelDataset,
        )

        return XGBoostModelDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
