"""``predictive_maintenance.calibration``: the isotonic map as JSON, Brier score, ECE, reliability.

Synthetic scores here; the map of the real model on the real splits is tested in
``tests/pipelines/test_training.py``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from predictive_maintenance.calibration import (
    CalibrationMap,
    apply_calibration,
    brier_score,
    expected_calibration_error,
    fit_calibration_map,
    fit_isotonic,
    reliability_bins,
    sealed,
)
from predictive_maintenance.integrity import ChecksumMismatchError


def _overconfident(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn with probability p, scored p ** 0.5 (too high everywhere but 0 and 1)."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(0.5, 8, rows)
    return (rng.random(rows) < truth).astype(int), np.sqrt(truth)


@pytest.fixture(scope="module")
def fitted() -> dict:
    labels, scores = _overconfident(5_000, seed=1)
    return sealed(fit_isotonic(scores, labels))


def test_the_map_is_monotonic_and_in_zero_one(fitted):
    x, y = np.asarray(fitted["x"]), np.asarray(fitted["y"])

    assert (np.diff(x) > 0).all()
    assert (np.diff(y) >= 0).all()
    assert y[0] >= 0
    assert y[-1] <= 1
    grid = np.linspace(-0.5, 1.5, 2_001)
    assert (np.diff(apply_calibration(fitted, grid)) >= 0).all()
    assert (fitted["method"], fitted["rows"]) == ("isotonic", 5_000)


def test_numpy_interp_of_the_breakpoints_is_scikit_learns_prediction():
    labels, scores = _overconfident(5_000, seed=1)
    regression = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, labels)
    document = fit_isotonic(scores, labels)
    # Inside, between and outside the fitted range (clipped to the end values).
    probe = np.concatenate([scores[:500], np.linspace(-1, 2, 301)])

    np.testing.assert_allclose(
        CalibrationMap.from_document(document).apply(probe), regression.predict(probe), atol=1e-12
    )


def test_the_map_round_trips_through_json_with_its_checksum(fitted):
    text = json.dumps(fitted, indent=2)  # as the catalog's JSONDataset saves it
    again = json.loads(text)
    probe = np.linspace(0, 1, 1_001)

    assert again == fitted
    assert sealed(again)["sha256"] == fitted["sha256"]  # canonical: indentation does not matter
    np.testing.assert_array_equal(apply_calibration(again, probe), apply_calibration(fitted, probe))


def test_calibration_reduces_ece_and_brier_on_held_out_rows(fitted):
    labels, scores = _overconfident(20_000, seed=2)  # not the rows the map was fitted on
    calibrated = apply_calibration(fitted, scores)

    assert expected_calibration_error(labels, scores) > 0.05
    assert expected_calibration_error(labels, calibrated) < 0.01
    assert brier_score(labels, calibrated) < brier_score(labels, scores)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x": [0.1, 0.3, 0.2], "y": [0.0, 0.1, 0.2]}, r"'x' must be strictly increasing: x\[2\]"),
        ({"x": [0.1, 0.1], "y": [0.0, 0.1]}, r"'x' must be strictly increasing"),
        ({"x": [0.1, 0.2, 0.3], "y": [0.0, 0.1]}, r"'x' and 'y' differ in length \(3 and 2\)"),
        ({"x": [0.1, 0.2], "y": [0.0, 1.5]}, r"'y' must lie in \[0, 1\]: y\[1\] = 1.5"),
        ({"x": [0.1, 0.2], "y": [-0.1, 0.5]}, r"'y' must lie in \[0, 1\]: y\[0\]"),
        ({"x": [0.1, 0.2], "y": [0.5, 0.4]}, r"'y' must be non-decreasing"),
        ({"x": [], "y": []}, r"'x' is empty"),
        ({"x": None}, r"'x' must be a list of numbers, got NoneType"),
        ({"y": "0.1,0.2"}, r"'y' must be a list of numbers, got str"),
        ({"x": [0.1, "0.2"]}, r"'x' must hold finite numbers: x\[1\] = '0.2'"),
        ({"y": [0.0, float("nan")]}, r"'y' must hold finite numbers"),
        ({"method": "platt"}, r"'method' must be one of \['sigmoid', 'isotonic'\], got 'platt'"),
    ],
)
def test_a_malformed_map_is_refused_naming_the_field(change, message):
    document = {"method": "isotonic", "x": [0.1, 0.2], "y": [0.0, 0.5], **change}

    with pytest.raises(ValueError, match=message):
        CalibrationMap.from_document(document)


def test_a_changed_map_fails_its_checksum(fitted):
    edited = {**fitted, "y": [*fitted["y"][:-1], 0.999]}

    with pytest.raises(ChecksumMismatchError, match="field 'sha256'"):
        CalibrationMap.from_document(edited)
    with pytest.raises(ValueError, match="expected a JSON object, got list"):
        CalibrationMap.from_document([fitted])


def test_fitting_needs_both_classes():
    with pytest.raises(ValueError, match="both classes"):
        fit_isotonic([0.1, 0.2, 0.3], [0, 0, 0])


def test_brier_score_and_ece_by_hand():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([0.0, 0.5, 0.5, 1.0])

    assert brier_score(labels, probabilities) == pytest.approx((0 + 0.25 + 0.25 + 0) / 4)
    # The quantile edge is 0.5; rows equal to an edge go above it, so the two 0.5 rows share a
    # bin: {0.0} (observed 0) and {0.5, 0.5, 1.0} (mean 2/3, observed 2/3): perfectly calibrated.
    assert reliability_bins(labels, probabilities, bins=2) == [
        {"mean_predicted": 0.0, "observed_frequency": 0.0, "count": 1},
        {
            "mean_predicted": pytest.approx(2 / 3),
            "observed_frequency": pytest.approx(2 / 3),
            "count": 3,
        },
    ]
    assert expected_calibration_error(labels, probabilities, bins=2) == pytest.approx(0.0)
    # One bin: mean 0.5, observed 0.5; four: {0.0}, {0.5, 0.5}, {1.0}, all exact.
    assert expected_calibration_error([0, 0, 0, 1], [0.1, 0.1, 0.1, 0.1], bins=1) == pytest.approx(
        0.15
    )
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        brier_score([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        brier_score([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="one length"):
        brier_score([0, 1], [0.1])


def test_reliability_bins_are_equal_mass_and_ties_share_a_bin():
    rng = np.random.default_rng(3)
    probabilities = rng.random(1_000)
    labels = (rng.random(1_000) < probabilities).astype(int)

    curve = reliability_bins(labels, probabilities, bins=10)
    assert [item["count"] for item in curve] == [100] * 10
    means = [item["mean_predicted"] for item in curve]
    assert means == sorted(means)

    tied = np.where(probabilities < 0.9, 0.05, probabilities)  # 90 % of the rows at one value
    curve = reliability_bins(labels, tied, bins=10)
    # The tie (913 rows) is one bin; the 87 rows above it, one bin's mass, the other.
    assert [item["count"] for item in curve] == [int((tied == 0.05).sum()), 87]
    assert curve[0]["mean_predicted"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        reliability_bins(labels, probabilities, bins=0)


def test_a_perfectly_calibrated_score_has_a_small_ece():
    rng = np.random.default_rng(4)
    probabilities = rng.beta(0.5, 8, 100_000)
    labels = (rng.random(probabilities.size) < probabilities).astype(int)

    assert expected_calibration_error(labels, probabilities) < 0.005


# ---- sigmoid (Platt scaling) ---------------------------------------------------------------------
def test_sigmoid_recovers_the_map_that_generated_the_labels():
    generator = np.random.default_rng(7)
    scores = generator.uniform(0.001, 0.999, 200_000)
    logits = np.log(scores / (1 - scores))
    labels = generator.random(scores.size) < 1 / (1 + np.exp(-(0.7 * logits - 1.2)))

    document = fit_calibration_map("sigmoid", scores, labels.astype(int))

    assert document["method"] == "sigmoid"
    assert document["slope"] == pytest.approx(0.7, abs=0.02)
    assert document["intercept"] == pytest.approx(-1.2, abs=0.03)
    mapped = CalibrationMap.from_document(sealed(document)).apply([0.0, 0.5, 1.0])
    assert 0 < mapped[0] < mapped[1] < mapped[2] < 1  # never a certain 0 or 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"slope": -0.5}, r"'slope' must be positive"),
        ({"slope": None}, r"'slope' must be a finite number"),
        ({"intercept": float("nan")}, r"'intercept' must be a finite number"),
    ],
)
def test_a_malformed_sigmoid_map_is_refused_naming_the_field(change, message):
    document = {"method": "sigmoid", "slope": 1.0, "intercept": 0.0, **change}
    with pytest.raises(ValueError, match=message):
        CalibrationMap.from_document(document)


def test_an_unknown_method_cannot_be_fitted():
    with pytest.raises(ValueError, match=r"calibration\.method must be one of"):
        fit_calibration_map("beta", [0.1, 0.9], [0, 1])
