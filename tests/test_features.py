"""The one feature function, used by training and serving."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from predictive_maintenance.features import FEATURE_COLUMNS, FeatureError, build_features
from predictive_maintenance.schema import FAILURE_MODE_COLUMNS, ID_COLUMNS, TARGET_COLUMN
from tests.conftest import WORKSHOP_READING

READING = WORKSHOP_READING


def test_physics_features_are_computed_from_one_reading():
    features = build_features(pd.DataFrame([READING]))

    row = features.iloc[0]
    assert list(features.columns) == list(FEATURE_COLUMNS)
    assert row["type_code"] == 0.0
    assert row["temperature_difference_margin_k"] == pytest.approx(9.8 - 8.6)
    assert row["power_w"] == pytest.approx(70.7 * 1582 * 2 * math.pi / 60)
    assert row["strain_min_nm"] == pytest.approx(216 * 70.7)
    assert row["strain_limit_ratio"] == pytest.approx(216 * 70.7 / 11_000)
    assert (features.dtypes == "float64").all()


@pytest.mark.parametrize(
    ("air", "process", "side"),
    [(300.8, 309.4, -1), (302.4, 311.0, 1)],  # UDI 3237 (HDF) and UDI 3765 (no HDF)
)
def test_temperature_margin_keeps_readings_at_the_limit_on_their_side(air, process, side):
    # Both differences print as 8.6 K; the data set's generator computed them in float64 and
    # flagged heat dissipation failure for the one just below. float32 would make them equal.
    readings = pd.DataFrame(
        [{**READING, "air_temperature_k": air, "process_temperature_k": process}]
    )

    margin = build_features(readings)["temperature_difference_margin_k"].astype("float32").iloc[0]

    assert abs(margin) < 1e-12
    assert np.sign(margin) == side


@pytest.mark.parametrize(
    ("product_type", "code", "limit"), [("L", 0, 11_000), ("M", 1, 12_000), ("H", 2, 13_000)]
)
def test_type_sets_code_and_strain_limit(product_type, code, limit):
    features = build_features(pd.DataFrame([{**READING, "type": product_type}]))

    assert features.loc[0, "type_code"] == code
    assert features.loc[0, "strain_limit_ratio"] == pytest.approx(216 * 70.7 / limit)


def test_identifiers_and_labels_never_become_features():
    def with_labels(value: int) -> pd.DataFrame:
        extra = {**dict.fromkeys(ID_COLUMNS, value), TARGET_COLUMN: value}
        return pd.DataFrame([{**READING, **extra, **dict.fromkeys(FAILURE_MODE_COLUMNS, value)}])

    features = build_features(with_labels(1))

    pd.testing.assert_frame_equal(features, build_features(with_labels(0)))
    assert set(features.columns).isdisjoint({*ID_COLUMNS, TARGET_COLUMN, *FAILURE_MODE_COLUMNS})


def test_index_and_row_order_are_kept():
    readings = pd.DataFrame([READING, {**READING, "type": "H", "torque_nm": 10.0}], index=[7, 3])

    features = build_features(readings)

    assert list(features.index) == [7, 3]
    assert features.loc[3, "type_code"] == 2


def test_string_dtype_readings_give_the_same_features():
    as_text = pd.DataFrame([{key: str(value) for key, value in READING.items()}], dtype=str)

    pd.testing.assert_frame_equal(build_features(as_text), build_features(pd.DataFrame([READING])))


def test_missing_reading_is_named():
    with pytest.raises(FeatureError, match=r"\['torque_nm'\]"):
        build_features(pd.DataFrame([{k: v for k, v in READING.items() if k != "torque_nm"}]))


@pytest.mark.parametrize("bad", ["fast", None, ""])
def test_reading_that_is_not_a_number_is_named_with_its_row(bad):
    readings = pd.DataFrame([READING, {**READING, "rotational_speed_rpm": bad}], index=[4, 5])

    with pytest.raises(
        FeatureError, match=r"'rotational_speed_rpm' is not a number at row\(s\) \[5\]"
    ):
        build_features(readings)


def test_unknown_type_is_named_with_its_row():
    readings = pd.DataFrame([READING, {**READING, "type": "X"}], index=[10, 11])

    with pytest.raises(FeatureError, match=r"'type'.*row\(s\) \[11\]: \['X'\]"):
        build_features(readings)
