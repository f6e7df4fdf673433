"""The one feature function. Training and serving both call :func:`build_features`.

Besides the raw readings the model gets the physical quantities that the data set's own description
names as failure causes: power (power failure), the process-air temperature difference relative to
the 8.6 K heat-dissipation limit (heat dissipation failure) and tool wear x torque strain, also as a
fraction of the product type's strain limit (overstrain failure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from predictive_maintenance.schema import PRODUCT_TYPES, READING_COLUMNS

#: Ordinal code of the quality variant: L < M < H.
TYPE_CODES: Final = {product_type: code for code, product_type in enumerate(PRODUCT_TYPES)}

#: Overstrain limits in min*Nm per product type, from the data set description (Matzka, 2020).
STRAIN_LIMIT_MIN_NM: Final = dict(zip(PRODUCT_TYPES, (11_000.0, 12_000.0, 13_000.0), strict=True))

#: Heat dissipation becomes critical below this process-air temperature difference (same source).
HEAT_DISSIPATION_LIMIT_K: Final = 8.6

#: Model input columns, in the order the model was trained with.
FEATURE_COLUMNS: Final = (
    "type_code",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
    "temperature_difference_margin_k",
    "power_w",
    "strain_min_nm",
    "strain_limit_ratio",
)

#: Each feature as a person reads it: a name (the derived ones named for what they are) and the
#: unit of its value. Explanations (serving) show these beside each feature's contribution.
FEATURE_LABELS: Final = {
    "type_code": ("product type (L=0, M=1, H=2)", ""),
    "air_temperature_k": ("air temperature", "K"),
    "process_temperature_k": ("process temperature", "K"),
    "rotational_speed_rpm": ("rotational speed", "rpm"),
    "torque_nm": ("torque", "Nm"),
    "tool_wear_min": ("tool wear", "min"),
    "temperature_difference_margin_k": (
        f"temperature difference above {HEAT_DISSIPATION_LIMIT_K} K (process - air)",
        "K",
    ),
    "power_w": ("power (torque x speed)", "W"),
    "strain_min_nm": ("tool wear x torque", "min*Nm"),
    "strain_limit_ratio": ("tool wear x torque, share of the type's limit", ""),
}

_RPM_TO_RAD_PER_S: Final = 2.0 * math.pi / 60.0
#: The feature frame's column labels, built once: an Index from a list of names costs ~0.1 ms per
#: call (string dtype inference), a tenth of a single-row request.
_FEATURE_INDEX: Final = pd.Index(list(FEATURE_COLUMNS), dtype=object)
#: Strain limit by type code.
_STRAIN_LIMITS: Final = np.array([STRAIN_LIMIT_MIN_NM[name] for name in TYPE_CODES])


class FeatureError(ValueError):
    """The readings cannot be turned into features (missing column, unknown type, ...)."""


def build_features(readings: pd.DataFrame) -> pd.DataFrame:
    """Turns raw readings into model features, in :data:`FEATURE_COLUMNS` order.

    Args:
        readings: One row per observation with the :data:`READING_COLUMNS` (extra columns are
            ignored, so identifiers and labels can never leak into the features).

    Returns:
        A float64 frame with the same index as ``readings``.
    """
    missing = [column for column in READING_COLUMNS if column not in readings.columns]
    if missing:
        raise FeatureError(f"readings lack column(s) {missing}; expected {list(READING_COLUMNS)}")

    product_type = readings["type"].to_numpy(dtype=object)
    type_code = np.full(len(product_type), np.nan)
    for name, code in TYPE_CODES.items():
        type_code[product_type == name] = code
    unknown = np.isnan(type_code)
    if unknown.any():
        first = unknown.nonzero()[0][:5]
        raise FeatureError(
            f"column 'type' has values outside {list(PRODUCT_TYPES)} at row(s) "
            f"{readings.index[first].tolist()}: {product_type[first].tolist()}"
        )

    numbers = [_numbers(readings, column) for column in READING_COLUMNS[1:]]
    features = feature_matrix(type_code, numbers)
    return pd.DataFrame(features, index=readings.index, columns=_FEATURE_INDEX, copy=False)


def feature_matrix(type_code: np.ndarray, numbers: Sequence[np.ndarray]) -> np.ndarray:
    """The arithmetic of :func:`build_features` on validated float64 arrays: one row per reading,
    one column per feature in :data:`FEATURE_COLUMNS` order.

    ``type_code`` holds :data:`TYPE_CODES` values, ``numbers`` the numeric readings in
    ``READING_COLUMNS[1:]`` order. The endpoint calls this directly on the
    readings it parsed (no frame: a tenth of a millisecond less per request); everything else
    goes through :func:`build_features`, which validates a frame and calls this.
    """
    air, process, speed, torque, wear = numbers
    strain_limit = _STRAIN_LIMITS[type_code.astype(np.intp)]
    strain = wear * torque
    columns = {
        "type_code": type_code,
        "air_temperature_k": air,
        "process_temperature_k": process,
        "rotational_speed_rpm": speed,
        "torque_nm": torque,
        "tool_wear_min": wear,
        # Centred on the limit in float64, before XGBoost's float32 blurs it: a difference right
        # at 8.6 K keeps its side of the limit (12 of the 115 HDF rows are ~1e-14 away).
        "temperature_difference_margin_k": process - air - HEAT_DISSIPATION_LIMIT_K,
        "power_w": torque * speed * _RPM_TO_RAD_PER_S,
        "strain_min_nm": strain,
        "strain_limit_ratio": strain / strain_limit,
    }
    return np.column_stack([columns[name] for name in FEATURE_COLUMNS])


def _numbers(readings: pd.DataFrame, column: str) -> np.ndarray:
    """The column as float64; a missing or non-numeric value is a :class:`FeatureError`."""
    series = readings[column]
    try:
        values = (
            series.to_numpy()  # already float64 (serving): no conversion, no copy
            if series.dtype == np.float64
            else series.to_numpy(dtype=np.float64, na_value=np.nan)
        )
    except (TypeError, ValueError):
        values = None
    if values is None or np.isnan(values).any():
        coerced = pd.to_numeric(readings[column], errors="coerce")
        rows = readings.index[coerced.isna().to_numpy()][:5].tolist()
        if not rows:
            return coerced.to_numpy(dtype=np.float64)
        values = readings.loc[rows, column].tolist()
        raise FeatureError(f"column {column!r} is not a number at row(s) {rows}: {values}")
    return values
