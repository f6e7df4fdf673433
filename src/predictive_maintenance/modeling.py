"""How a feature frame meets XGBoost: one place for training, evaluation and serving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from predictive_maintenance.features import FEATURE_COLUMNS


def to_dmatrix(features: pd.DataFrame, labels: pd.Series | None = None) -> xgb.DMatrix:
    """A DMatrix with the model's feature names, so XGBoost checks the order at predict time."""
    return xgb.DMatrix(
        features[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float32),
        label=None if labels is None else labels.to_numpy(),
        feature_names=list(FEATURE_COLUMNS),
    )


def predict_scores(model: xgb.Booster, features: pd.DataFrame) -> np.ndarray:
    """Failure scores in [0, 1) for each row of ``features``, using every tree of ``model``."""
    return model.predict(to_dmatrix(features))
