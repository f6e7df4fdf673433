"""Nodes of the failure-mode model (issue 16): which failure a machine at risk is heading for.

The model is one XGBoost ``multi:softprob`` booster over
:data:`~predictive_maintenance.failure_modes.MODE_CLASSES`, trained on the failure model's
features; the mode labels (:data:`~predictive_maintenance.schema.FAILURE_MODE_COLUMNS`) are its
targets only. XGBoost is imported by the nodes that use it (every ``kedro run`` imports every
pipeline's nodes before running any).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd

from predictive_maintenance.failure_modes import (
    MODE_CLASSES,
    MODE_NAMES,
    RULE_MODES,
    UNPREDICTABLE_MODES,
    likely_modes,
    mode_probabilities,
)
from predictive_maintenance.features import FEATURE_COLUMNS
from predictive_maintenance.lazy_types import Booster
from predictive_maintenance.schema import FAILURE_MODE_COLUMNS, TARGET_COLUMN

logger = logging.getLogger(__name__)

#: How the evaluation reads the model's answer, in the report beside the figures.
DECISION_RULE = (
    "the model says mode m for a row when its probability of m is at least "
    "failure_modes.decision_probability (several modes may be said, as a row may have several); "
    "a row has mode m when its label is 1. The confusion matrix uses the most probable class"
)
#: Why TWF and RNF are reported, not promised (the data set's documentation).
UNPREDICTABLE_REASONS = {
    "twf": "the tool is replaced or fails at a random tool wear between 200 and 240 min, so the "
    "readings cannot tell which of the worn tools fails",
    "rnf": "a random 0.1 % of processes fail regardless of the readings",
}


def mode_targets(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One training row per (row, mode): the row positions, the class index into
    :data:`MODE_CLASSES` and the weight.

    A row with k modes gives k rows of weight 1/k (it counts once in total); a row without any
    gives one ``none`` row of weight 1. Raises ValueError naming the column when a mode label is
    missing or not 0/1.
    """
    labels = _mode_labels(frame)
    modes = labels.sum(axis=1)
    rows, columns = np.nonzero(labels)
    none_rows = np.flatnonzero(modes == 0)
    positions = np.concatenate([none_rows, rows])
    classes = np.concatenate([np.zeros(len(none_rows), dtype=np.int64), columns + 1])
    weights = np.concatenate([np.ones(len(none_rows)), 1.0 / modes[rows]])
    order = np.argsort(positions, kind="stable")
    return positions[order], classes[order], weights[order]


def _mode_labels(frame: pd.DataFrame) -> np.ndarray:
    """The (rows, 5) 0/1 matrix of the mode labels, checked."""
    missing = [column for column in FAILURE_MODE_COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"failure-mode label column(s) missing: {', '.join(missing)}")
    for column in FAILURE_MODE_COLUMNS:
        values = frame[column]
        if values.isna().any() or not values.isin([0, 1]).all():
            raise ValueError(f"failure-mode label column {column!r} must hold only 0 and 1")
    return frame[list(FAILURE_MODE_COLUMNS)].to_numpy(dtype=np.int64)


def _mode_dmatrix(frame: pd.DataFrame) -> Any:
    from predictive_maintenance.modeling import to_dmatrix  # noqa: PLC0415 -- imports xgboost

    positions, classes, weights = mode_targets(frame)
    matrix = to_dmatrix(frame.iloc[positions], pd.Series(classes))
    matrix.set_weight(weights)
    return matrix


def train_failure_mode_model(
    train: pd.DataFrame, validation: pd.DataFrame, failure_modes: dict[str, Any]
) -> Booster:
    """Trains the mode model with early stopping on the validation set's mlogloss.

    Args:
        train: Training rows (the features and the mode labels).
        validation: Validation rows, watched for early stopping.
        failure_modes: ``booster_params`` (``objective`` must be ``multi:softprob``;
            ``num_class`` is set here from :data:`MODE_CLASSES`), ``num_boost_round``,
            ``early_stopping_rounds`` (the rest is read by :func:`evaluate_failure_modes`).

    Returns:
        The booster cut to its best iteration, feature names :data:`FEATURE_COLUMNS`; its
        attributes record the best iteration, the tree method and the classes.
    """
    import xgboost as xgb  # noqa: PLC0415

    params = dict(failure_modes["booster_params"])
    if params.get("objective") != "multi:softprob":
        raise ValueError(
            "failure_modes.booster_params.objective must be 'multi:softprob' (one probability "
            "per mode class)"
        )
    params["num_class"] = len(MODE_CLASSES)
    booster = xgb.train(
        params,
        _mode_dmatrix(train),
        num_boost_round=failure_modes["num_boost_round"],
        evals=[(_mode_dmatrix(validation), "validation")],
        early_stopping_rounds=failure_modes["early_stopping_rounds"],
        verbose_eval=False,
    )
    best = booster[: booster.best_iteration + 1]
    best.set_attr(
        best_iteration=str(booster.best_iteration),
        tree_method=str(params.get("tree_method", "auto")),
        classes=",".join(MODE_CLASSES),
    )
    logger.debug("Failure-mode model: %d rounds", booster.best_iteration + 1)
    return best


def evaluate_failure_modes(
    failure_mode_model: Booster, test: pd.DataFrame, failure_modes: dict[str, Any]
) -> dict[str, Any]:
    """Per-mode precision, recall and F1 on the test set, macro-F1 over the rule modes against
    ``failure_modes.target_macro_f1``, the confusion over the classes and how often the likely
    mode of a failed machine is one of its modes.

    The model says mode m for a row when P(m) >= ``failure_modes.decision_probability``
    (:data:`DECISION_RULE`): a row may have several modes, and training gives each of a row's k
    modes weight 1/k, so such a row's probability is split between its modes.

    Top-level keys do not collide with ``metrics``' or the calibration report's (all are logged
    to MLflow without a prefix): ``per_mode.hdf.f1``, ``rule_modes_macro_f1``, ...
    """
    labels = _mode_labels(test)
    probabilities = mode_probabilities(
        failure_mode_model, test[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64)
    )
    cut = float(failure_modes["decision_probability"])
    if not 0.0 < cut <= 1.0:
        raise ValueError(f"failure_modes.decision_probability must be in (0, 1], got {cut}")
    per_mode = {}
    for column, mode in enumerate(FAILURE_MODE_COLUMNS, start=1):
        per_mode[mode] = {
            "name": MODE_NAMES[mode],
            **_classification(labels[:, column - 1] == 1, probabilities[:, column] >= cut),
            "predictable": mode not in UNPREDICTABLE_MODES,
        }
        if mode in UNPREDICTABLE_REASONS:
            per_mode[mode]["why_unpredictable"] = UNPREDICTABLE_REASONS[mode]
    macro_f1 = float(np.mean([per_mode[mode]["f1"] for mode in RULE_MODES]))
    target = float(failure_modes["target_macro_f1"])
    report = {
        "split": "test",
        "test_rows": len(test),
        "decision_rule": DECISION_RULE,
        "decision_probability": cut,
        "per_mode": per_mode,
        "rule_modes": list(RULE_MODES),
        "rule_modes_macro_f1": macro_f1,
        "target_macro_f1": target,
        "target_met": macro_f1 >= target,
        "confusion": _confusion(labels, probabilities.argmax(axis=1)),
        "mode_given_failure": _mode_given_failure(test, labels, probabilities),
    }
    logger.info(
        "Failure modes (test set): F1 HDF %.3f, PWF %.3f, OSF %.3f; macro-F1 %.4f (target >= %s)",
        per_mode["hdf"]["f1"],
        per_mode["pwf"]["f1"],
        per_mode["osf"]["f1"],
        macro_f1,
        target,
    )
    return report


def _classification(has: np.ndarray, says: np.ndarray) -> dict[str, Any]:
    true_positives = int((has & says).sum())
    support, predicted = int(has.sum()), int(says.sum())
    return {
        "support": support,
        "predicted": predicted,
        "true_positives": true_positives,
        "precision": true_positives / predicted if predicted else 0.0,
        "recall": true_positives / support if support else 0.0,
        # 0 when the mode neither occurs nor is said: no evidence of skill either way.
        "f1": 2 * true_positives / (support + predicted) if support + predicted else 0.0,
    }


def _confusion(labels: np.ndarray, said: np.ndarray) -> dict[str, Any]:
    """Rows: the true class, one count per (row, mode) pair (``none`` for a row without any);
    columns: the most probable class."""
    size = len(MODE_CLASSES)
    matrix = np.zeros((size, size), dtype=np.int64)
    rows, columns = np.nonzero(labels)
    np.add.at(matrix, (columns + 1, said[rows]), 1)
    none_rows = labels.sum(axis=1) == 0
    np.add.at(matrix, (0, said[none_rows]), 1)
    return {
        "classes": list(MODE_CLASSES),
        "rows_true_columns_said": matrix.tolist(),
    }


def _mode_given_failure(
    test: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray
) -> dict[str, Any]:
    """Among failed machines (``machine_failure`` 1): how often the likely mode
    (:func:`likely_modes`, what the endpoint shows) is one of the row's modes."""
    failed = test[TARGET_COLUMN].to_numpy() == 1
    likely = np.array(
        [MODE_CLASSES.index(answer["mode"]) - 1 for answer in likely_modes(probabilities[failed])],
        dtype=np.int64,
    )
    failed_labels = labels[failed]
    hit = failed_labels[np.arange(len(likely)), likely] == 1 if len(likely) else np.array([])
    with_mode = failed_labels.any(axis=1)
    with_rule_mode = failed_labels[:, [FAILURE_MODE_COLUMNS.index(m) for m in RULE_MODES]].any(
        axis=1
    )
    return {
        "failures": int(failed.sum()),
        "failures_with_a_mode": int(with_mode.sum()),
        "failures_with_a_rule_mode": int(with_rule_mode.sum()),
        # A failure without any mode label cannot be matched; it counts as a miss here.
        "likely_mode_correct": int(hit.sum()),
        "accuracy": float(hit.mean()) if len(hit) else 0.0,
        "accuracy_rule_modes": float(hit[with_rule_mode].mean()) if with_rule_mode.any() else 0.0,
    }
