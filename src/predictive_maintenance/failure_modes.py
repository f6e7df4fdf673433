"""Failure modes: which failure a machine at risk is heading for, from a model of the mode labels.

The AI4I 2020 data set labels each failure with its mode(s): tool wear (TWF), heat dissipation
(HDF), power (PWF), overstrain (OSF) and random (RNF). The mode model is one XGBoost booster with
a ``multi:softprob`` objective over :data:`MODE_CLASSES` (``none`` and the five modes), trained on
the same features as the failure model (:data:`~predictive_maintenance.features.FEATURE_COLUMNS`);
the mode labels are only ever its targets, never its inputs. HDF, PWF and OSF are exact rules on
the readings, so they can be learned; TWF happens at a random tool wear between 200 and 240 min
and RNF at random (0.1 %), so no model can name them reliably, and the reports say so.

This module is imported by the serving code in the SageMaker XGBoost container (Python 3.10,
numpy and xgboost only): no pandas, no Kedro here.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from predictive_maintenance.schema import FAILURE_MODE_COLUMNS

#: The class a row without any failure mode gets.
NO_FAILURE: Final = "none"
#: The mode model's classes, in the order of its output columns: class k is column k.
MODE_CLASSES: Final = (NO_FAILURE, *FAILURE_MODE_COLUMNS)
#: Each mode as a maintenance engineer names it.
MODE_NAMES: Final = {
    "twf": "tool wear",
    "hdf": "heat dissipation",
    "pwf": "power",
    "osf": "overstrain",
    "rnf": "random",
}
#: The modes that are exact rules on the readings (the data set's documentation): the ones a
#: model can learn, and the ones the macro-F1 target is about.
RULE_MODES: Final = ("hdf", "pwf", "osf")
#: The modes no model can predict from the readings: reported, never promised.
UNPREDICTABLE_MODES: Final = ("twf", "rnf")
#: Decimals of the probabilities an answer shows.
DECIMALS: Final = 6


def mode_probabilities(booster: Any, features: np.ndarray) -> np.ndarray:
    """The mode model's probabilities, one row per feature row, one column per
    :data:`MODE_CLASSES` entry (each row sums to 1).

    ``features``: rows as :func:`~predictive_maintenance.features.feature_matrix` builds them.
    """
    matrix = np.ascontiguousarray(features, dtype=np.float32)
    probabilities = booster.inplace_predict(matrix, validate_features=False)
    return np.asarray(probabilities, dtype=np.float64).reshape(len(matrix), len(MODE_CLASSES))


def most_likely_failure(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, should the machine fail: the column (the :data:`MODE_CLASSES` index) of the most
    likely failure mode, and that mode's probability given a failure, ``P(mode) / (1 -
    P(none))``. For a healthy reading that is usually a random mode (tool wear, random): if such
    a machine fails at all, those are what it fails of."""
    best = 1 + np.argmax(probabilities[:, 1:], axis=1)
    failing = np.maximum(1.0 - probabilities[:, 0], np.finfo(np.float64).tiny)
    return best, probabilities[np.arange(len(best)), best] / failing


def likely_modes(probabilities: np.ndarray) -> list[dict[str, Any]]:
    """Per row: the most likely failure mode should the machine fail (:func:`most_likely_failure`)
    with its probability given a failure, and every class's probability (``none`` included: how
    likely no failure at all is), rounded to six decimals::

        {"mode": "pwf", "name": "power", "probability": 0.99,
         "probabilities": {"none": 0.01, "twf": 0.0, "hdf": 0.0, "pwf": 0.98, ...}}
    """
    rounded = np.round(probabilities, DECIMALS).tolist()
    best, given_failure = most_likely_failure(probabilities)
    answers = []
    for row, column, probability in zip(
        rounded, best.tolist(), np.round(given_failure, DECIMALS).tolist(), strict=True
    ):
        mode = MODE_CLASSES[column]
        answers.append(
            {
                "mode": mode,
                "name": MODE_NAMES[mode],
                "probability": probability,
                "probabilities": dict(zip(MODE_CLASSES, row, strict=True)),
            }
        )
    return answers
