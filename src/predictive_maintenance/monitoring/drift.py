"""Drift of captured readings from the baseline: PSI and Kolmogorov-Smirnov per reading.

The baseline side always comes from ``statistics.json`` (the KLL sketch, or the buckets; the
categories for ``type``), never from the training data, so the same works from a baseline
SageMaker made. The current side is the captured readings themselves.

* **PSI** (population stability index) over the baseline's quantile bins (deciles by default;
  the outer bins open-ended): ``sum((c - b) * ln(c / b))`` over the bins' shares, with empty
  shares floored at :data:`PSI_FLOOR`. For ``type``, over the categories.
* **KS**: the largest distance between the baseline's and the current cumulative distributions,
  and its two-sample p-value from the Kolmogorov distribution (asymptotic, with Stephens'
  small-sample correction), the baseline counting as ``num_present`` values.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
import pandas as pd

from predictive_maintenance.monitoring.baseline import NUMERIC_TYPES, features_by_name
from predictive_maintenance.monitoring.sketch import cdf, quantiles, weighted_items
from predictive_maintenance.schema import READING_COLUMNS

#: Shares below this count as this in PSI (an empty bin would make it infinite).
PSI_FLOOR: Final = 1e-4


def ks_p_value(statistic: float, baseline_count: float, current_count: float) -> float:
    """Two-sample KS p-value of ``statistic`` for samples of these sizes (asymptotic)."""
    effective = baseline_count * current_count / (baseline_count + current_count)
    if effective <= 0:
        return 1.0
    root = math.sqrt(effective)
    scaled = (root + 0.12 + 0.11 / root) * statistic
    if scaled < 0.2:  # the series below converges slowly there, and the answer is 1
        return 1.0
    total = sum((-1) ** (term - 1) * math.exp(-2.0 * term**2 * scaled**2) for term in range(1, 101))
    return float(min(1.0, max(0.0, 2.0 * total)))


def ks_statistic(values: np.ndarray, weights: np.ndarray, current: np.ndarray) -> float:
    """The largest distance between the baseline's (weighted ``values``) and ``current``'s
    cumulative distributions. Both are step functions, so checking every point where either
    steps is exact."""
    current = np.sort(current)
    points = np.union1d(values, current)
    here = np.searchsorted(current, points, side="right") / len(current)
    return float(np.max(np.abs(cdf(values, weights, points) - here)))


def psi(baseline_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Population stability index of two share vectors over the same bins."""
    base = np.maximum(baseline_shares, PSI_FLOOR)
    now = np.maximum(current_shares, PSI_FLOOR)
    return float(np.sum((now - base) * np.log(now / base)))


def numeric_drift(distribution: dict[str, Any], current: np.ndarray, *, bins: int) -> dict:
    """PSI and KS of ``current`` against a baseline ``distribution`` block; also the bins'
    edges and shares (for the plot)."""
    values, weights = weighted_items(distribution)
    inner = np.unique(quantiles(values, weights, np.arange(1, bins) / bins))
    base_cumulative = np.concatenate([[0.0], cdf(values, weights, inner), [1.0]])
    current = current[~np.isnan(current)]
    now_cumulative = np.concatenate(
        [[0.0], np.searchsorted(np.sort(current), inner, side="right") / len(current), [1.0]]
    )
    base_shares, now_shares = np.diff(base_cumulative), np.diff(now_cumulative)
    statistic = ks_statistic(values, weights, current)
    return {
        "psi": psi(base_shares, now_shares),
        "ks_statistic": statistic,
        "ks_p_value": ks_p_value(statistic, float(weights.sum()), float(len(current))),
        "bins": {
            "upper_edges": [*inner.tolist(), None],
            "baseline_shares": base_shares.tolist(),
            "current_shares": now_shares.tolist(),
        },
    }


def categorical_drift(buckets: list[dict[str, Any]], current: pd.Series) -> dict:
    """PSI and the largest difference of a category's share (L-infinity distance, SageMaker's
    categorical drift measure) of ``current`` against the baseline's categories."""
    base = {str(bucket["value"]): float(bucket["count"]) for bucket in buckets}
    now = current.dropna().astype(str).value_counts()
    categories = list(dict.fromkeys([*base, *now.index]))
    base_shares = np.array([base.get(value, 0.0) for value in categories]) / sum(base.values())
    now_shares = np.array([float(now.get(value, 0)) for value in categories]) / max(now.sum(), 1)
    return {
        "psi": psi(base_shares, now_shares),
        "linf_distance": float(np.max(np.abs(base_shares - now_shares))),
        "categories": {
            "values": categories,
            "baseline_shares": base_shares.tolist(),
            "current_shares": now_shares.tolist(),
        },
    }


def drift_scores(
    readings: pd.DataFrame, statistics: dict[str, Any], settings: dict[str, Any]
) -> dict[str, Any]:
    """Per reading, PSI and KS (numbers) or PSI and L-infinity distance (``type``) of the
    captured ``readings`` against the baseline ``statistics``, and whether it drifted.

    A number drifted when its PSI exceeds ``psi.threshold``, or when its KS statistic exceeds
    ``ks.statistic_threshold`` and its p-value is below ``ks.p_value_threshold`` (a large
    distance alone can be chance in a small sample, a tiny p-value alone a harmless shift in a
    huge one); ``type`` when its PSI exceeds the PSI threshold. With fewer than ``min_rows``
    readings nothing is scored and the result says so.
    """
    baseline = features_by_name(statistics, "baseline statistics")
    psi_threshold = float(settings["psi"]["threshold"])
    ks_statistic_threshold = float(settings["ks"]["statistic_threshold"])
    ks_p_threshold = float(settings["ks"]["p_value_threshold"])
    result: dict[str, Any] = {
        "rows": len(readings),
        "thresholds": {
            "psi": psi_threshold,
            "ks_statistic": ks_statistic_threshold,
            "ks_p_value": ks_p_threshold,
        },
        "scored": len(readings) >= int(settings["min_rows"]),
        "features": [],
        "drifted": [],
    }
    if not result["scored"]:
        result["reason"] = (
            f"{len(readings)} captured readings, fewer than drift.min_rows = "
            f"{settings['min_rows']}: too few to tell drift from chance"
        )
        return result
    for name in READING_COLUMNS:
        feature = baseline.get(name)
        if feature is None:
            result["features"].append({"name": name, "scored": False, "reason": "not baselined"})
            continue
        if feature["inferred_type"] in NUMERIC_TYPES:
            scores = numeric_drift(
                feature["numerical_statistics"]["distribution"],
                readings[name].to_numpy(dtype=np.float64),
                bins=int(settings["psi"]["bins"]),
            )
            drifted = scores["psi"] > psi_threshold or (
                scores["ks_statistic"] > ks_statistic_threshold
                and scores["ks_p_value"] < ks_p_threshold
            )
        else:
            scores = categorical_drift(
                feature["string_statistics"]["distribution"]["categorical"]["buckets"],
                readings[name],
            )
            drifted = scores["psi"] > psi_threshold
        result["features"].append({"name": name, "scored": True, "drifted": drifted, **scores})
        if drifted:
            result["drifted"].append(name)
    return result
