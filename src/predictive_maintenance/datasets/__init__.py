"""Kedro datasets the project needs and kedro-datasets does not ship."""

from predictive_maintenance.datasets.xgboost_model_dataset import XGBoostModelDataset

__all__ = ["XGBoostModelDataset"]
