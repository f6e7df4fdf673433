"""The MLflow pyfunc that serves the project's model for the endpoint benchmark (models from code).

``serve_mlflow.py build`` saves this file as the pyfunc's ``python_model``, the extracted
``model.tar.gz`` directory (``xgboost-model``, ``model_spec.json``) as its artifact, and the
project's ``src/predictive_maintenance`` as ``code_paths``, so that ``mlflow models serve`` runs
the very code the endpoint runs: :func:`~predictive_maintenance.serving.inference.model_fn` loads
and checks the model (sha256, feature names, one thread per prediction) and
:func:`~predictive_maintenance.serving.inference.predict_fn` computes the features with
``build_features`` (the function training uses) and scores them. MLflow does the rest: it parses
the ``dataframe_split`` JSON and enforces the signature.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class PredictiveMaintenanceModel(PythonModel):
    """Failure scores (float32, one per row) for a frame of readings."""

    def load_context(self, context: Any) -> None:
        # Imported here: the code_paths are on sys.path only once MLflow loads the model.
        from predictive_maintenance.serving.inference import model_fn, predict_fn  # noqa: PLC0415

        self._model = model_fn(context.artifacts["model_dir"])
        self._predict_fn = predict_fn

    # No type hints: MLflow 3 would derive the input schema from them; the signature saved with
    # the model (serve_mlflow.py) is the schema.
    def predict(self, context, model_input, params=None):
        return np.asarray(self._predict_fn(model_input, self._model))


mlflow.models.set_model(PredictiveMaintenanceModel())
