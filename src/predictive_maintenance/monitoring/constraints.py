"""Captured readings checked against ``constraints.json``: SageMaker's
``constraint_violations.json``.

Check types, as SageMaker Model Monitor names them: ``data_type_check``, ``completeness_check``,
``baseline_drift_check``, ``missing_column_check``, ``extra_column_check``,
``categorical_values_check``; and ``non_negative_check`` for ``num_constraints.is_non_negative``
(SageMaker's container reports no such type; its format lets a container add checks).

Each reading's share is taken over the readings whose value is known: the accepted readings
plus the refused ones whose problem is that reading (the endpoint's parser stops at a reading's
first bad field, so a refused reading tells nothing about its later fields).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import numpy as np
import pandas as pd

from predictive_maintenance.monitoring import capture
from predictive_maintenance.monitoring.baseline import (
    INTEGRAL,
    NUMERIC_TYPES,
    features_by_name,
)
from predictive_maintenance.monitoring.drift import ks_p_value, ks_statistic
from predictive_maintenance.monitoring.sketch import weighted_items

DATA_TYPE: Final = "data_type_check"
COMPLETENESS: Final = "completeness_check"
BASELINE_DRIFT: Final = "baseline_drift_check"
MISSING_COLUMN: Final = "missing_column_check"
EXTRA_COLUMN: Final = "extra_column_check"
CATEGORICAL_VALUES: Final = "categorical_values_check"
NON_NEGATIVE: Final = "non_negative_check"
#: Records one violation: feature name, check type, description.
_Report = Callable[[str, str, str], None]
#: "Robust" comparison: the distance must also be significant at this level.
ROBUST_SIGNIFICANCE: Final = 0.05


def _enabled(value: Any) -> bool:
    return str(value).lower() in {"enabled", "true"}


def _percent(share: float) -> str:
    return f"{100 * share:.4g}%"


def check_constraints(
    readings: pd.DataFrame,
    problems: dict[str, dict[str, int]],
    constraints: dict[str, Any],
    statistics: dict[str, Any],
) -> dict[str, Any]:
    """``{"violations": [...]}`` of the captured readings against the baseline.

    Args:
        readings: The accepted captured readings (one row each).
        problems: Refused readings by field and kind (:class:`.capture.CaptureReader`).
        constraints: The baseline's ``constraints.json``.
        statistics: The baseline's ``statistics.json`` (the drift check's reference).
    """
    config = constraints.get("monitoring_config") or {}
    if not _enabled(config.get("evaluate_constraints", "Enabled")):
        return {"violations": []}
    violations: list[dict[str, str]] = []

    def violation(feature: str, check: str, description: str) -> None:
        violations.append(
            {"feature_name": feature, "constraint_check_type": check, "description": description}
        )

    baselined = features_by_name(constraints, "baseline constraints")
    reference = features_by_name(statistics, "baseline statistics")
    for name, constraint in baselined.items():
        kinds = problems.get(name, {})
        if name not in readings.columns:
            continue
        values = readings[name]
        known = len(values) + sum(kinds.get(kind, 0) for kind in _VALUE_KINDS)
        if known == 0:
            continue
        missing = int(values.isna().sum()) + kinds.get(capture.MISSING_VALUE, 0)
        completeness = 1 - missing / known
        expected = float(constraint.get("completeness", 1.0))
        if completeness < expected - 1e-12:
            violation(
                name,
                COMPLETENESS,
                f"Data completeness requirement is not met. Expected: {_percent(expected)}. "
                f"Observed: only {_percent(completeness)} of {known} values are present.",
            )
        numeric = constraint.get("inferred_type") in NUMERIC_TYPES
        check = _check_numeric if numeric else _check_string
        check(name, constraint, values, config=config, kinds=kinds, known=known, report=violation)
        if len(values.dropna()) and name in reference:
            _check_distribution(name, reference[name], config, values, violation)

    for name, kinds in problems.items():
        if kinds.get(capture.MISSING_COLUMN):
            violation(
                name,
                MISSING_COLUMN,
                f"There are missing columns in the current data: {kinds[capture.MISSING_COLUMN]} "
                f"reading(s) end before column {name}.",
            )
        if kinds.get(capture.EXTRA_COLUMN):
            violation(
                name,
                EXTRA_COLUMN,
                f"There are extra columns in the current data: {kinds[capture.EXTRA_COLUMN]} "
                f"reading(s) carry {name}, which the baseline does not have.",
            )
    return {"violations": violations}


#: Problems that concern one reading's value (not the row's shape).
_VALUE_KINDS: Final = (
    capture.MISSING_VALUE,
    capture.WRONG_TYPE,
    capture.UNKNOWN_CATEGORY,
    capture.NEGATIVE,
    capture.OUT_OF_RANGE,
)


def _check_numeric(
    name: str,
    constraint: dict[str, Any],
    values: pd.Series,
    *,
    config: dict[str, Any],
    kinds: dict[str, int],
    known: int,
    report: _Report,
) -> None:
    present = values.dropna().to_numpy(dtype=np.float64)
    mismatched = kinds.get(capture.WRONG_TYPE, 0)
    expected_type = constraint["inferred_type"]
    if expected_type == INTEGRAL:
        mismatched += int(np.sum(present != np.round(present)))
    required = float(config.get("datatype_check_threshold", 1.0))
    matching = 1 - mismatched / known
    if matching < required - 1e-12:
        report(
            name,
            DATA_TYPE,
            f"Data type match requirement is not met. Expected data type: {expected_type}, "
            f"expected match: {_percent(required)}. Observed: only {_percent(matching)} of "
            f"{known} values are {expected_type}.",
        )
    if (constraint.get("num_constraints") or {}).get("is_non_negative"):
        negative = kinds.get(capture.NEGATIVE, 0) + int(np.sum(present < 0))
        if negative:
            report(
                name,
                NON_NEGATIVE,
                f"The baseline's values are never negative; {negative} of {known} current "
                "values are.",
            )


def _check_string(
    name: str,
    constraint: dict[str, Any],
    values: pd.Series,
    *,
    config: dict[str, Any],
    kinds: dict[str, int],
    known: int,
    report: _Report,
) -> None:
    domain = (constraint.get("string_constraints") or {}).get("domains")
    if not domain:
        return
    outside = kinds.get(capture.UNKNOWN_CATEGORY, 0) + int(
        (~values.dropna().astype(str).isin([str(value) for value in domain])).sum()
    )
    required = float(config.get("domain_content_threshold", 1.0))
    inside = 1 - outside / known
    if inside < required - 1e-12:
        report(
            name,
            CATEGORICAL_VALUES,
            f"Categorical value requirement is not met. Expected: {_percent(required)} of "
            f"values in the baseline's domain {list(domain)}. Observed: only "
            f"{_percent(inside)} of {known} values are.",
        )


def _check_distribution(
    name: str,
    feature: dict[str, Any],
    config: dict[str, Any],
    values: pd.Series,
    violation: _Report,
) -> None:
    settings = config.get("distribution_constraints") or {}
    if not _enabled(settings.get("perform_comparison", "Enabled")):
        return
    if feature["inferred_type"] in NUMERIC_TYPES:
        threshold = float(settings.get("comparison_threshold", 0.1))
        base_values, weights = weighted_items(feature["numerical_statistics"]["distribution"])
        current = values.dropna().to_numpy(dtype=np.float64)
        distance = ks_statistic(base_values, weights, current)
        significant = True
        if str(settings.get("comparison_method", "Simple")).lower() == "robust":
            p_value = ks_p_value(distance, float(weights.sum()), float(len(current)))
            significant = p_value < ROBUST_SIGNIFICANCE
    else:
        threshold = float(settings.get("categorical_comparison_threshold", 0.1))
        buckets = feature["string_statistics"]["distribution"]["categorical"]["buckets"]
        base = pd.Series({str(b["value"]): float(b["count"]) for b in buckets})
        now = values.dropna().astype(str).value_counts()
        shares = pd.concat([base / base.sum(), now / now.sum()], axis=1).fillna(0.0)
        distance = float((shares.iloc[:, 0] - shares.iloc[:, 1]).abs().max())
        significant = True
    if distance > threshold and significant:
        violation(
            name,
            BASELINE_DRIFT,
            f"Baseline drift distance: {distance:.4f} exceeds threshold: {threshold}",
        )
