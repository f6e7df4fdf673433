"""Drift scores and constraint checks: the simulated shift is flagged, held-out real traffic is
not; each SageMaker check type fires on its own problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from predictive_maintenance.monitoring import capture
from predictive_maintenance.monitoring.constraints import check_constraints
from predictive_maintenance.monitoring.drift import drift_scores, ks_p_value, psi
from predictive_maintenance.schema import READING_COLUMNS
from tests.monitoring.capture_files import shifted


@pytest.fixture(scope="module")
def undrifted(held_out: pd.DataFrame) -> pd.DataFrame:
    return held_out.sample(n=500, random_state=1)[list(READING_COLUMNS)]


@pytest.fixture(scope="module")
def drifted(undrifted: pd.DataFrame) -> pd.DataFrame:
    return shifted(undrifted, seed=2)


def settings(parameters):
    return parameters["monitoring"]["drift"]


def test_the_simulated_shift_drifts_in_torque_and_type_only(baseline, drifted, parameters):
    statistics, constraints = baseline

    scores = drift_scores(drifted, statistics, settings(parameters))
    violations = check_constraints(drifted, {}, constraints, statistics)["violations"]

    assert scores["scored"]
    assert scores["drifted"] == ["type", "torque_nm"]
    by_name = {feature["name"]: feature for feature in scores["features"]}
    assert by_name["torque_nm"]["psi"] > 0.3
    assert by_name["torque_nm"]["ks_statistic"] > 0.2
    assert by_name["torque_nm"]["ks_p_value"] < 1e-10
    assert by_name["type"]["psi"] > 0.5
    assert [(v["feature_name"], v["constraint_check_type"]) for v in violations] == [
        ("type", "baseline_drift_check"),
        ("torque_nm", "baseline_drift_check"),
    ]


def test_held_out_real_traffic_does_not_drift(baseline, undrifted, parameters):
    statistics, constraints = baseline

    scores = drift_scores(undrifted, statistics, settings(parameters))
    violations = check_constraints(undrifted, {}, constraints, statistics)["violations"]

    assert scores["scored"]
    assert scores["drifted"] == []
    assert max(feature["psi"] for feature in scores["features"]) < 0.05
    assert max(f.get("ks_statistic", 0) for f in scores["features"]) < 0.06
    assert violations == []


def test_too_few_readings_are_not_scored(baseline, undrifted, parameters):
    scores = drift_scores(undrifted.head(20), baseline[0], settings(parameters))

    assert not scores["scored"]
    assert "fewer than drift.min_rows" in scores["reason"]


def test_ks_p_value_matches_scipys_asymptotic_two_sample_test():
    rng = np.random.default_rng(0)
    first, second = rng.normal(0, 1, 3000), rng.normal(0.08, 1, 400)
    reference = stats.ks_2samp(first, second, method="asymp")

    assert ks_p_value(reference.statistic, 3000, 400) == pytest.approx(reference.pvalue, rel=0.05)
    assert ks_p_value(0.01, 3000, 400) == 1.0


def test_psi_of_known_shares():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(
        0.4 * np.log(0.9 / 0.5) + (-0.4) * np.log(0.1 / 0.5)
    )


def test_refused_readings_violate_the_constraints_they_break(baseline, undrifted):
    statistics, constraints = baseline
    readings = undrifted.astype({"rotational_speed_rpm": float})
    readings.loc[readings.index[:5], "rotational_speed_rpm"] += 0.5  # not Integral any more
    problems = {
        "torque_nm": {capture.MISSING_VALUE: 10, capture.NEGATIVE: 2},
        "air_temperature_k": {capture.WRONG_TYPE: 3},
        "type": {capture.UNKNOWN_CATEGORY: 4},
        "tool_wear_min": {capture.MISSING_COLUMN: 6},
        "_c6": {capture.EXTRA_COLUMN: 1},
    }

    violations = check_constraints(readings, problems, constraints, statistics)["violations"]

    found = {(v["feature_name"], v["constraint_check_type"]) for v in violations}
    assert found == {
        ("torque_nm", "completeness_check"),
        ("torque_nm", "non_negative_check"),
        ("air_temperature_k", "data_type_check"),
        ("rotational_speed_rpm", "data_type_check"),
        ("type", "categorical_values_check"),
        ("tool_wear_min", "missing_column_check"),
        ("_c6", "extra_column_check"),
    }
    completeness = next(v for v in violations if v["constraint_check_type"] == "completeness_check")
    # 10 missing of 500 accepted + 12 refused torque values.
    assert "only 98.05% of 512 values are present" in completeness["description"]


def test_thresholds_of_the_constraints_file_apply(baseline, undrifted):
    statistics, constraints = baseline
    lenient = constraints | {
        "monitoring_config": constraints["monitoring_config"]
        | {"datatype_check_threshold": 0.9, "domain_content_threshold": 0.9}
    }
    problems = {"air_temperature_k": {capture.WRONG_TYPE: 3}, "type": {capture.UNKNOWN_CATEGORY: 4}}

    assert check_constraints(undrifted, problems, lenient, statistics) == {"violations": []}
    disabled = constraints | {"monitoring_config": {"evaluate_constraints": "Disabled"}}
    assert check_constraints(undrifted, problems, disabled, statistics) == {"violations": []}
