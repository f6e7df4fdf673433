"""The failure-mode model (issue 16): trained and judged on the committed data's real split."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from predictive_maintenance.failure_modes import (
    MODE_CLASSES,
    RULE_MODES,
    UNPREDICTABLE_MODES,
    likely_modes,
    mode_probabilities,
)
from predictive_maintenance.features import FEATURE_COLUMNS, build_features
from predictive_maintenance.pipelines.training.failure_modes import (
    evaluate_failure_modes,
    mode_targets,
    train_failure_mode_model,
)
from predictive_maintenance.schema import FAILURE_MODE_COLUMNS, LABEL_COLUMNS, TARGET_COLUMN
from tests.conftest import LOW_POWER_READING


@pytest.fixture(scope="module")
def mode_model(splits, parameters) -> xgb.Booster:
    return train_failure_mode_model(
        splits["train"], splits["validation"], parameters["failure_modes"]
    )


@pytest.fixture(scope="module")
def report(mode_model, splits, parameters) -> dict:
    return evaluate_failure_modes(mode_model, splits["test"], parameters["failure_modes"])


def _probabilities(model: xgb.Booster, readings: pd.DataFrame) -> np.ndarray:
    """Of raw readings (as a client sends them) or of split rows (which hold the features)."""
    if "type" in readings.columns:
        return mode_probabilities(model, build_features(readings).to_numpy())
    return mode_probabilities(model, readings[list(FEATURE_COLUMNS)].to_numpy())


def test_the_model_has_one_probability_per_mode_class(mode_model, splits):
    probabilities = _probabilities(mode_model, splits["test"])
    assert probabilities.shape == (len(splits["test"]), len(MODE_CLASSES)) == (1000, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert mode_model.attr("classes") == ",".join(MODE_CLASSES)
    assert mode_model.attr("tree_method") == "exact"
    assert mode_model.num_boosted_rounds() == int(mode_model.attr("best_iteration")) + 1


def test_labels_are_never_features(mode_model):
    assert mode_model.feature_names == list(FEATURE_COLUMNS)
    assert not set(mode_model.feature_names) & set(LABEL_COLUMNS)


def test_the_rule_modes_meet_the_macro_f1_target_on_the_test_split(report, parameters):
    assert parameters["failure_modes"]["target_macro_f1"] == 0.90
    assert report["rule_modes_macro_f1"] >= 0.90
    assert report["target_met"] is True
    for mode in RULE_MODES:
        assert report["per_mode"][mode]["recall"] >= 0.9
        assert report["per_mode"][mode]["precision"] >= 0.9


def test_a_row_that_breaks_the_power_rule_is_a_power_failure(mode_model, splits):
    readings = splits["readings"]
    udi_51 = readings.loc[readings["udi"] == 51].iloc[0]
    assert {column: udi_51[column] for column in LOW_POWER_READING} == LOW_POWER_READING
    assert udi_51["pwf"] == 1
    [answer] = likely_modes(_probabilities(mode_model, pd.DataFrame([LOW_POWER_READING])))
    assert answer["mode"] == "pwf"
    assert answer["name"] == "power"
    assert answer["probability"] > 0.5


def test_a_held_out_heat_dissipation_row_is_a_heat_dissipation_failure(mode_model, splits):
    test = splits["test"]
    only_hdf = test.loc[(test["hdf"] == 1) & (test[list(FAILURE_MODE_COLUMNS)].sum(axis=1) == 1)]
    assert len(only_hdf) >= 10
    answers = likely_modes(_probabilities(mode_model, only_hdf))
    assert [answer["mode"] for answer in answers] == ["hdf"] * len(only_hdf)


def test_a_healthy_reading_is_most_likely_no_failure(mode_model):
    workshop_healthy = {**LOW_POWER_READING, "rotational_speed_rpm": 1500.0, "torque_nm": 40.0}
    probabilities = _probabilities(mode_model, pd.DataFrame([workshop_healthy]))
    assert MODE_CLASSES[int(probabilities.argmax())] == "none"
    assert probabilities[0, 0] > 0.95


def test_the_report_names_every_mode_and_marks_twf_and_rnf_unpredictable(report, splits):
    test = splits["test"]
    assert list(report["per_mode"]) == list(FAILURE_MODE_COLUMNS)
    for mode, figures in report["per_mode"].items():
        assert figures["support"] == int(test[mode].sum())
        assert set(figures) >= {"precision", "recall", "f1", "support", "predictable"}
        assert figures["predictable"] is (mode not in UNPREDICTABLE_MODES)
        assert ("why_unpredictable" in figures) is (mode in UNPREDICTABLE_MODES)
    assert report["rule_modes"] == list(RULE_MODES)
    assert report["rule_modes_macro_f1"] == pytest.approx(
        np.mean([report["per_mode"][mode]["f1"] for mode in RULE_MODES])
    )
    confusion = np.array(report["confusion"]["rows_true_columns_said"])
    assert report["confusion"]["classes"] == list(MODE_CLASSES)
    # One count per (row, mode) pair; a row without any mode counts once as "none".
    modes = test[list(FAILURE_MODE_COLUMNS)].sum(axis=1)
    assert confusion.sum() == int(modes.sum() + (modes == 0).sum())
    assert confusion.sum(axis=1)[1:].tolist() == test[list(FAILURE_MODE_COLUMNS)].sum().tolist()
    given = report["mode_given_failure"]
    assert given["failures"] == int(test[TARGET_COLUMN].sum()) == 34
    assert given["accuracy_rule_modes"] >= 0.9
    assert given["likely_mode_correct"] <= given["failures_with_a_mode"] <= given["failures"]
    # Flat numeric leaves go to MLflow beside metrics.json's: none of their top-level names.
    assert not set(report) & {"rows", "failures", "roc_auc", "pr_auc", "at_chosen_threshold"}
    json.dumps(report, allow_nan=False)


def test_a_row_with_several_modes_counts_once_in_total():
    frame = pd.DataFrame(
        {
            "twf": [0, 0, 1, 0],
            "hdf": [0, 1, 0, 1],
            "pwf": [0, 1, 0, 0],
            "osf": [0, 0, 0, 0],
            "rnf": [0, 1, 0, 0],
        }
    )
    positions, classes, weights = mode_targets(frame)
    assert positions.tolist() == [0, 1, 1, 1, 2, 3]
    assert [MODE_CLASSES[c] for c in classes] == ["none", "hdf", "pwf", "rnf", "twf", "hdf"]
    np.testing.assert_allclose(weights, [1, 1 / 3, 1 / 3, 1 / 3, 1, 1])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda frame: frame.drop(columns="osf"), "missing: osf"),
        (lambda frame: frame.assign(pwf=frame["pwf"].replace(1, 2)), "'pwf' must hold only"),
        (lambda frame: frame.assign(hdf=np.nan), "'hdf' must hold only"),
    ],
)
def test_bad_mode_labels_are_refused_naming_the_column(splits, parameters, change, message):
    with pytest.raises(ValueError, match=message):
        train_failure_mode_model(
            change(splits["train"]), splits["validation"], parameters["failure_modes"]
        )


def test_a_row_with_two_modes_is_said_to_have_both(mode_model, report, splits, parameters):
    test = splits["test"]
    several = test.loc[test[list(RULE_MODES)].sum(axis=1) >= 2]
    assert len(several) >= 1
    probabilities = _probabilities(mode_model, several)
    cut = parameters["failure_modes"]["decision_probability"]
    for row, (_, labels) in zip(probabilities, several.iterrows(), strict=True):
        said = {MODE_CLASSES[k] for k in np.flatnonzero(row >= cut)}
        assert said == {mode for mode in FAILURE_MODE_COLUMNS if labels[mode] == 1}
    assert report["decision_probability"] == cut


def test_a_decision_probability_outside_zero_one_is_refused(mode_model, splits, parameters):
    settings = {**parameters["failure_modes"], "decision_probability": 0}
    with pytest.raises(ValueError, match="decision_probability"):
        evaluate_failure_modes(mode_model, splits["test"], settings)


def test_a_non_multiclass_objective_is_refused(splits, parameters):
    settings = parameters["failure_modes"]
    params = {**settings, "booster_params": {**settings["booster_params"], "objective": "x"}}
    with pytest.raises(ValueError, match="multi:softprob"):
        train_failure_mode_model(splits["train"], splits["validation"], params)


def test_the_image_xgboost_predicts_the_same_probabilities(
    mode_model, splits, image_python, tmp_path
):
    (tmp_path / "model.ubj").write_bytes(bytes(mode_model.save_raw(raw_format="ubj")))
    features = splits["test"][list(FEATURE_COLUMNS)].head(50).to_numpy(dtype=np.float32)
    np.save(tmp_path / "features.npy", features)
    script = (
        "import json, sys, numpy as np, xgboost as xgb\n"
        "booster = xgb.Booster(model_file=sys.argv[1] + '/model.ubj')\n"
        "matrix = np.load(sys.argv[1] + '/features.npy')\n"
        "print(json.dumps(booster.inplace_predict(matrix).tolist()))\n"
    )
    result = subprocess.run(
        [str(image_python), "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    np.testing.assert_allclose(
        np.array(json.loads(result.stdout)), mode_probabilities(mode_model, features), atol=1e-6
    )
