"""Data-quality statistics and constraints in SageMaker Model Monitor's formats.

``statistics.json`` (per feature: type, completeness, mean/sum/std/min/max and a KLL sketch with
ten equal-width buckets, or the categories and their counts) and ``constraints.json`` (per
feature: type, completeness, non-negativity or the categorical domain; the ``monitoring_config``
thresholds). See
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-statistics.html and
https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-byoc-constraints.html.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from predictive_maintenance.features import TYPE_CODES
from predictive_maintenance.monitoring.sketch import kll_compactors
from predictive_maintenance.schema import PRODUCT_TYPES, READING_COLUMNS

#: ``inferred_type`` values of SageMaker's files.
FRACTIONAL: Final = "Fractional"
INTEGRAL: Final = "Integral"
STRING: Final = "String"
NUMERIC_TYPES: Final = (FRACTIONAL, INTEGRAL)

_TYPE_NAMES: Final = {code: name for name, code in TYPE_CODES.items()}


class BaselineError(ValueError):
    """A baseline file lacks what the checks need, or the data cannot be baselined."""


def readings_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The six readings of ``frame`` (``READING_COLUMNS``), ``type`` as its letter.

    The model-input splits carry the type only as ``type_code`` (features.TYPE_CODES); the letter
    is what a client sends and what the baseline describes.
    """
    readings = pd.DataFrame(index=frame.index)
    if "type" in frame.columns:
        readings["type"] = frame["type"].astype(object)
    elif "type_code" in frame.columns:
        codes = frame["type_code"]
        readings["type"] = codes.map(_TYPE_NAMES).astype(object)
        unknown = codes.notna() & readings["type"].isna()
        if unknown.any():
            rows = frame.index[unknown.to_numpy()][:5].tolist()
            raise BaselineError(
                f"column 'type_code' holds codes outside {sorted(_TYPE_NAMES)} at row(s) {rows}"
            )
    else:
        raise BaselineError("the data has neither a 'type' nor a 'type_code' column")
    missing = [column for column in READING_COLUMNS[1:] if column not in frame.columns]
    if missing:
        raise BaselineError(f"the data lacks column(s) {missing}; expected {list(READING_COLUMNS)}")
    for column in READING_COLUMNS[1:]:
        readings[column] = pd.to_numeric(frame[column], errors="raise").astype(np.float64)
    return readings


def numeric_type(values: np.ndarray) -> str:
    """``Integral`` when every present value is a whole number, else ``Fractional``."""
    present = values[~np.isnan(values)]
    return INTEGRAL if len(present) and np.all(present == np.round(present)) else FRACTIONAL


def data_quality_statistics(
    readings: pd.DataFrame, *, kll: dict[str, Any], buckets: int
) -> dict[str, Any]:
    """``statistics.json`` of ``readings`` (:func:`readings_frame`), features in
    ``READING_COLUMNS`` order.

    Args:
        readings: One row per reading; ``type`` as a letter, the rest numbers (NaN = missing).
        kll: ``k``, ``c`` and ``seed`` of the sketch (:func:`.sketch.kll_compactors`).
        buckets: Equal-width buckets between min and max (SageMaker always uses 10).
    """
    return {
        "version": 0.0,
        "dataset": {"item_count": len(readings)},
        "features": [
            _string_statistics(column, readings[column])
            if column == "type"
            else _numeric_statistics(column, readings[column], kll=kll, buckets=buckets)
            for column in READING_COLUMNS
        ],
    }


def _common(series: pd.Series) -> dict[str, int]:
    missing = int(series.isna().sum())
    return {"num_present": len(series) - missing, "num_missing": missing}


def _string_statistics(name: str, series: pd.Series) -> dict[str, Any]:
    counts = series.dropna().astype(str).value_counts()
    # Product types in their natural order, anything else after them.
    order = [*[value for value in PRODUCT_TYPES if value in counts.index], *counts.index]
    values = list(dict.fromkeys(order))
    return {
        "name": name,
        "inferred_type": STRING,
        "string_statistics": {
            "common": _common(series),
            "distinct_count": float(len(values)),
            "distribution": {
                "categorical": {
                    "buckets": [{"value": value, "count": int(counts[value])} for value in values]
                }
            },
        },
    }


def _numeric_statistics(
    name: str, series: pd.Series, *, kll: dict[str, Any], buckets: int
) -> dict[str, Any]:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    present = values[~np.isnan(values)]
    statistics: dict[str, Any] = {"common": _common(series)}
    if len(present):
        low, high = float(present.min()), float(present.max())
        edges = np.linspace(low, high, buckets + 1) if high > low else np.array([low, high])
        counts = np.histogram(present, bins=edges)[0]  # the last bucket includes its upper bound
        statistics |= {
            "mean": float(present.mean()),
            "sum": float(present.sum()),
            "std_dev": float(present.std()),
            "min": low,
            "max": high,
            "distribution": {
                "kll": {
                    "buckets": [
                        {
                            "lower_bound": float(edges[i]),
                            "upper_bound": float(edges[i + 1]),
                            "count": float(counts[i]),
                        }
                        for i in range(len(counts))
                    ],
                    "sketch": {
                        "parameters": {"c": float(kll["c"]), "k": float(kll["k"])},
                        "data": kll_compactors(
                            present, k=int(kll["k"]), c=float(kll["c"]), seed=int(kll["seed"])
                        ),
                    },
                }
            },
        }
    return {
        "name": name,
        "inferred_type": numeric_type(values),
        "numerical_statistics": statistics,
    }


def data_quality_constraints(
    statistics: dict[str, Any], monitoring_config: dict[str, Any]
) -> dict[str, Any]:
    """``constraints.json`` suggested by ``statistics``, as SageMaker's baselining job suggests
    it: each feature's type and completeness, non-negativity of numbers that were never
    negative, the observed categories as the domain; ``monitoring_config`` as given."""
    item_count = statistics["dataset"]["item_count"]
    features = []
    for feature in statistics["features"]:
        numeric = feature["inferred_type"] in NUMERIC_TYPES
        block = feature["numerical_statistics" if numeric else "string_statistics"]
        present = block["common"]["num_present"]
        constraint: dict[str, Any] = {
            "name": feature["name"],
            "inferred_type": feature["inferred_type"],
            "completeness": present / item_count if item_count else 1.0,
        }
        if numeric:
            constraint["num_constraints"] = {"is_non_negative": block.get("min", 0.0) >= 0}
        else:
            categories = block["distribution"]["categorical"]["buckets"]
            constraint["string_constraints"] = {
                "domains": [bucket["value"] for bucket in categories]
            }
        features.append(constraint)
    return {"version": 0.0, "features": features, "monitoring_config": dict(monitoring_config)}


def features_by_name(document: dict[str, Any], what: str) -> dict[str, dict[str, Any]]:
    """The ``features`` of a statistics or constraints document by name; :class:`BaselineError`
    naming ``what`` (the file) when the list is missing or malformed."""
    features = document.get("features") if isinstance(document, dict) else None
    if not isinstance(features, list) or not all(
        isinstance(feature, dict) and isinstance(feature.get("name"), str) for feature in features
    ):
        raise BaselineError(f"{what}: 'features' must be a list of objects with a 'name'")
    return {feature["name"]: feature for feature in features}
