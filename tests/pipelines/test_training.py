"""Nodes, plots and the pipeline of ``training``."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import xgboost as xgb
from kedro.runner import SequentialRunner

from predictive_maintenance.calibration import (
    CalibrationMap,
    brier_score,
    expected_calibration_error,
)
from predictive_maintenance.failure_modes import MODE_CLASSES
from predictive_maintenance.features import FEATURE_COLUMNS
from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.pipelines.training import create_pipeline
from predictive_maintenance.pipelines.training.nodes import (
    THRESHOLD_RULES,
    booster_params_for,
    cost_optimal_threshold,
    create_model_spec,
    early_stopping_rounds_for,
    evaluate_calibration,
    evaluate_model,
    expected_cost_per_1000,
    f1_optimal_threshold,
    fit_calibration,
    score_test_set,
    select_threshold,
    train_model,
)
from predictive_maintenance.pipelines.training.plots import (
    plot_confusion_matrix,
    plot_feature_importance,
    plot_precision_recall_curve,
    plot_reliability,
    plot_roc_curve,
    plot_score_distribution,
)
from predictive_maintenance.schema import FAILURE_MODE_COLUMNS, ID_COLUMNS, TARGET_COLUMN
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE
from tests.catalogs import RecordingDataset, memory_catalog


@pytest.fixture(scope="module")
def model(splits, parameters) -> xgb.Booster:
    return train_model(splits["train"], splits["validation"], parameters["xgboost"])


def _predictions(labels: list[int], scores: list[float], modes: dict[str, list[int]] | None = None):
    frame = pd.DataFrame({TARGET_COLUMN: labels, "score": scores})
    for mode in FAILURE_MODE_COLUMNS:
        frame[mode] = (modes or {}).get(mode, [0] * len(labels))
    return frame


def test_model_uses_exactly_the_feature_columns(model):
    assert model.feature_names == list(FEATURE_COLUMNS)


def test_model_is_cut_to_its_best_iteration(model, parameters):
    best = int(model.attr("best_iteration"))

    assert model.num_boosted_rounds() == best + 1
    assert best < parameters["xgboost"]["num_boost_round"] - 1


def test_training_is_deterministic(splits, parameters, model):
    again = train_model(splits["train"], splits["validation"], parameters["xgboost"])

    assert bytes(again.save_raw("ubj")) == bytes(model.save_raw("ubj"))


def test_training_rejects_an_objective_without_probability_scores(splits, parameters):
    xgboost = {**parameters["xgboost"]}
    xgboost["booster_params"] = {**xgboost["booster_params"], "objective": "reg:squarederror"}

    with pytest.raises(ValueError, match="binary:logistic"):
        train_model(splits["train"], splits["validation"], xgboost)


def test_scores_are_probabilities(model, splits):
    predictions = score_test_set(model, splits["test"])

    assert predictions["score"].between(0, 1, inclusive="left").all()
    assert list(predictions.columns) == [*ID_COLUMNS, TARGET_COLUMN, *FAILURE_MODE_COLUMNS, "score"]


def test_f1_optimal_threshold_cuts_between_scores():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])

    # Flagging {0.35, 0.4, 0.8} gives F1 0.8, the best; the cut sits midway between 0.1 and 0.35.
    assert f1_optimal_threshold(labels, scores) == pytest.approx(0.225)


def test_f1_optimal_threshold_ties_go_to_the_cut_nearest_one_half():
    labels = np.array([1, 0, 0, 1])
    scores = np.array([0.1, 0.2, 0.8, 0.9])

    # Flag everything (cut 0.05) or only 0.9 (cut 0.85): both F1 2/3; 0.85 is nearer 0.5.
    assert f1_optimal_threshold(labels, scores) == pytest.approx(0.85)


def test_f1_tolerance_prefers_the_prior_over_a_slightly_better_cut():
    labels = np.array([0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.9])
    # Cut 0.15 flags {0.2, 0.3, 0.6, 0.9}: F1 6/7 = 0.857, the best; cut 0.45 flags {0.6, 0.9}:
    # F1 0.8, within a tolerance of 0.06 and nearer the prior 0.5.

    assert f1_optimal_threshold(labels, scores) == pytest.approx(0.15)
    assert f1_optimal_threshold(labels, scores, f1_tolerance=0.06) == pytest.approx(0.45)
    assert f1_optimal_threshold(labels, scores, f1_tolerance=0.06, prior=0.1) == pytest.approx(0.15)


def test_f1_optimal_threshold_needs_a_failure():
    with pytest.raises(ValueError, match="no failures"):
        f1_optimal_threshold(np.array([0, 0]), np.array([0.2, 0.3]))


def test_threshold_is_chosen_on_validation_only(model, splits, parameters):
    chosen = select_threshold(model, splits["validation"], parameters["decision_threshold"])
    node = next(
        node for node in create_pipeline().nodes if node.name == "evaluate.select_threshold"
    )

    assert node.inputs == ["model", "validation", "params:decision_threshold"]
    assert 0 < chosen["threshold"] < 1
    assert chosen["rule"] == THRESHOLD_RULES[parameters["decision_threshold"]["rule"]]
    assert chosen["rule_settings"] == parameters["decision_threshold"]
    assert chosen["validation"]["f1"] > 0.8
    assert chosen["validation"]["expected_cost_per_1000"] > 0


COSTS = {"missed_failure": 10.0, "false_alarm": 1.0}


def test_cost_optimal_threshold_prices_misses_above_false_alarms():
    # Four failures: catching the one at 0.2 costs two false alarms (0.1 below it stays clear).
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.25, 0.3, 0.2, 0.6, 0.7, 0.8, 0.9])

    # A miss costs 10 false alarms: flag everything from 0.2 up (2 false alarms + the 0.6 one).
    assert cost_optimal_threshold(labels, scores, COSTS) == pytest.approx(0.15)
    # Equal costs: missing the 0.2 failure (10 -> 1) beats two false alarms.
    equal = {"missed_failure": 1.0, "false_alarm": 1.0}
    assert cost_optimal_threshold(labels, scores, equal) == pytest.approx(0.65)


def test_cost_tolerance_prefers_the_prior_among_nearly_cheapest_cuts():
    labels = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.1, 0.25, 0.3, 0.2, 0.6, 0.7, 0.8, 0.9])
    # Cut 0.15: 3 false alarms, cost 3; cut 0.45: 1 miss + 1 false alarm, cost 11.
    assert cost_optimal_threshold(labels, scores, COSTS, cost_tolerance=3.0) == pytest.approx(0.45)


def test_expected_cost_is_per_thousand_machines():
    assert expected_cost_per_1000(2, 5, 500, COSTS) == pytest.approx(1000 * (20 + 5) / 500)


@pytest.mark.parametrize("bad", [0, -1.0, "10", None, True])
def test_costs_must_be_positive_numbers(bad):
    with pytest.raises(ValueError, match=r"decision_threshold\.costs\.false_alarm"):
        cost_optimal_threshold(
            np.array([0, 1]), np.array([0.2, 0.8]), {"missed_failure": 1.0, "false_alarm": bad}
        )


def test_an_unknown_threshold_rule_is_named(model, splits, parameters):
    settings = {**parameters["decision_threshold"], "rule": "accuracy"}
    with pytest.raises(ValueError, match=r"decision_threshold\.rule must be"):
        select_threshold(model, splits["validation"], settings)


def test_evaluation_counts_at_both_thresholds():
    predictions = _predictions(
        labels=[0, 0, 0, 1, 1, 1],
        scores=[0.1, 0.3, 0.6, 0.35, 0.7, 0.9],
        modes={"hdf": [0, 0, 0, 1, 1, 0], "twf": [0, 0, 0, 0, 0, 1], "rnf": [1, 0, 0, 0, 0, 0]},
    )

    metrics = evaluate_model(predictions, {"threshold": 0.32, "rule_settings": {"costs": COSTS}})

    assert metrics["rows"] == 6
    assert metrics["failures"] == 3
    assert metrics["at_chosen_threshold"]["confusion_matrix"] == {
        "tn": 2,
        "fp": 1,
        "fn": 0,
        "tp": 3,
    }
    assert metrics["at_chosen_threshold"]["recall"] == 1.0
    assert metrics["at_chosen_threshold"]["precision"] == 0.75
    assert metrics["at_0_5"]["confusion_matrix"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert metrics["at_0_5"]["f1"] == pytest.approx(2 / 3)
    # One false alarm at the chosen threshold; one miss and one false alarm at 0.5.
    assert metrics["at_chosen_threshold"]["expected_cost_per_1000"] == pytest.approx(1000 / 6)
    assert metrics["at_0_5"]["expected_cost_per_1000"] == pytest.approx(11000 / 6)
    assert metrics["expected_cost_per_1000_without_model"] == {
        "no_alarms": pytest.approx(30000 / 6),
        "alarm_for_every_machine": pytest.approx(3000 / 6),
    }
    assert metrics["roc_auc"] == pytest.approx(8 / 9)
    assert metrics["recall_by_failure_mode"]["HDF"] == {"failures": 2, "detected": 2, "recall": 1.0}
    assert metrics["recall_by_failure_mode"]["TWF"] == {"failures": 1, "detected": 1, "recall": 1.0}
    # RNF flagged on a machine that did not fail is not a failure to detect.
    assert metrics["recall_by_failure_mode"]["RNF"] == {
        "failures": 0,
        "detected": 0,
        "recall": None,
    }
    json.dumps(metrics)  # the metrics dataset is JSON


def test_model_spec_tells_a_server_everything(model, splits, parameters):
    threshold = select_threshold(model, splits["validation"], parameters["decision_threshold"])

    spec = create_model_spec(model, threshold, splits["dataset_manifest"], parameters["xgboost"])

    assert spec["features"] == list(FEATURE_COLUMNS)
    assert spec["type_codes"] == {"L": 0, "M": 1, "H": 2}
    assert spec["decision_threshold"] == threshold["threshold"]
    assert spec["model_sha256"] == sha256_hex(bytes(model.save_raw("ubj")))
    assert spec["training_data"]["raw_sha256"] == splits["dataset_manifest"]["raw_data"]["sha256"]
    assert spec["trees"] == model.num_boosted_rounds()
    assert {"python", "xgboost", "pandas", "kedro"} <= set(spec["library_versions"])
    assert spec["training_data"]["split"] == parameters["split"]
    assert json.loads(json.dumps(spec)) == spec
    assert "calibration" not in spec
    assert "failure_modes" not in spec


def test_model_spec_carries_the_calibration_and_the_mode_model_digest(
    model, splits, parameters, calibration
):
    threshold = select_threshold(model, splits["validation"], parameters["decision_threshold"])
    modes = xgb.train(
        {"objective": "multi:softprob", "num_class": len(MODE_CLASSES), "nthread": 1},
        xgb.DMatrix(
            splits["train"][list(FEATURE_COLUMNS)].head(60),
            label=np.arange(60) % len(MODE_CLASSES),
        ),
        num_boost_round=2,
    )

    spec = create_model_spec(
        model,
        threshold,
        splits["dataset_manifest"],
        parameters["xgboost"],
        calibration=calibration,
        failure_mode_model=modes,
    )

    assert spec["calibration"] == calibration
    assert spec["failure_modes"] == {
        "classes": list(MODE_CLASSES),
        "model_file": FAILURE_MODE_MODEL_FILE,
        "model_sha256": sha256_hex(bytes(modes.save_raw("ubj"))),
    }
    other = {**calibration, "model_sha256": "0" * 64}
    with pytest.raises(ValueError, match="fitted for another model"):
        create_model_spec(
            model,
            threshold,
            splits["dataset_manifest"],
            parameters["xgboost"],
            calibration=other,
        )


def test_plots_are_serialisable_figures(model, splits, parameters):
    predictions = score_test_set(model, splits["test"])
    threshold = select_threshold(model, splits["validation"], parameters["decision_threshold"])
    metrics = evaluate_model(predictions, threshold)

    figures = {
        "roc": plot_roc_curve(predictions, metrics),
        "pr": plot_precision_recall_curve(predictions, metrics),
        "confusion": plot_confusion_matrix(metrics),
        "importance": plot_feature_importance(model),
        "distribution": plot_score_distribution(predictions, threshold),
    }

    for figure in figures.values():
        assert isinstance(figure, go.Figure)
        assert go.Figure(json.loads(figure.to_json())).layout.title.text
    confusion = metrics["at_chosen_threshold"]["confusion_matrix"]
    assert np.asarray(figures["confusion"].data[0].z).sum() == sum(confusion.values())
    assert set(figures["importance"].data[0].y) == set(FEATURE_COLUMNS)
    assert {trace.name for trace in figures["distribution"].data} == {"no failure", "failure"}


def test_pipeline_trains_evaluates_and_plots(splits, parameters):
    catalog = memory_catalog(splits, parameters)
    catalog["metrics"] = recorded_metrics = RecordingDataset()
    catalog["calibration"] = recorded_calibration = RecordingDataset()
    catalog["calibration_report"] = recorded_report = RecordingDataset()

    outputs = SequentialRunner().run(create_pipeline(), catalog)

    metrics = recorded_metrics.saved
    assert metrics["roc_auc"] > 0.95
    assert metrics["at_chosen_threshold"]["f1"] > 0.8
    assert outputs["model_spec"].load()["decision_threshold"] == pytest.approx(
        metrics["at_chosen_threshold"]["threshold"]
    )
    for plot in (
        "roc_curve",
        "precision_recall_curve",
        "confusion_matrix",
        "feature_importance",
        "score_distribution",
        "reliability",
    ):
        assert isinstance(outputs[f"{plot}_plot"].load(), go.Figure)
    calibration = recorded_calibration.saved
    report = recorded_report.saved
    assert calibration["model_sha256"] == outputs["model_spec"].load()["model_sha256"]
    assert report["held_out"] == {"split": "test", "rows": metrics["rows"], "failures": 34}
    assert report["ece_target_met"] is True


# ---- calibrated risk (issue 16) -----------------------------------------------------------------
@pytest.fixture(scope="module")
def calibration(model, splits, parameters) -> dict:
    return fit_calibration(model, splits["validation"], parameters["calibration"])


def test_calibration_map_is_fitted_on_validation_for_this_model(calibration, model, splits):
    node = next(node for node in create_pipeline().nodes if node.name == "evaluate.fit_calibration")
    validation = splits["validation"][TARGET_COLUMN]

    assert node.inputs == ["model", "validation", "params:calibration"]
    assert (calibration["rows"], calibration["failures"]) == (len(validation), validation.sum())
    assert calibration["fitted_on"] == "validation"
    assert calibration["model_sha256"] == sha256_hex(bytes(model.save_raw("ubj")))
    assert calibration["method"] == "sigmoid"
    assert calibration["slope"] > 0
    # As the catalog saves and loads it: the checksum holds and the map maps the same.
    again = json.loads(json.dumps(calibration, indent=2))
    scores = score_test_set(model, splits["test"])["score"]
    np.testing.assert_array_equal(
        CalibrationMap.from_document(again).apply(scores),
        CalibrationMap.from_document(calibration).apply(scores),
    )
    # Monotonic and never a certain 0 or 1, whatever the score.
    mapped = CalibrationMap.from_document(calibration).apply(np.sort(scores))
    assert (np.diff(mapped) >= 0).all()
    assert mapped.min() > 0
    assert mapped.max() < 1


def test_calibration_report_meets_the_ece_target_on_the_test_split(
    calibration, model, splits, parameters
):
    predictions = score_test_set(model, splits["test"])

    report = evaluate_calibration(predictions, calibration, parameters["calibration"])

    # The shipped model's raw score is already close to calibrated (logloss early stopping): on
    # this split the map does not lower ECE (0.0040 -> 0.0058, 34 failures), nor reliably in
    # pooled 5-fold CV (benchmarks/cross_validation.py); both stay within the issue's target.
    assert report["ece"]["calibrated"] <= parameters["calibration"]["ece_target"]
    assert report["ece"]["raw"] <= parameters["calibration"]["ece_target"]
    labels = predictions[TARGET_COLUMN]
    assert report["brier"]["raw"] == pytest.approx(brier_score(labels, predictions["score"]))
    for kind in ("raw", "calibrated"):
        assert sum(item["count"] for item in report["reliability"][kind]) == len(labels)
    figure = plot_reliability(report)
    assert [trace.name.split(" (")[0] for trace in figure.data] == [
        "perfectly calibrated",
        "raw score",
        "calibrated",
    ]
    assert list(figure.data[1].customdata) == [b["count"] for b in report["reliability"]["raw"]]
    assert go.Figure(json.loads(figure.to_json())).layout.title.text


def test_calibration_repairs_a_miscalibrated_model_on_held_out_data(splits, parameters):
    """A 5-round model's scores sit near XGBoost's starting score, far from the failure rates:
    the map fitted on validation brings the test set's ECE and Brier score down."""
    xgboost = {**parameters["xgboost"], "num_boost_round": 5, "early_stopping_rounds": 5}
    short = train_model(splits["train"], splits["validation"], xgboost)
    predictions = score_test_set(short, splits["test"])
    labels = predictions[TARGET_COLUMN]

    calibrated = CalibrationMap.from_document(
        fit_calibration(short, splits["validation"], parameters["calibration"])
    ).apply(predictions["score"])

    raw_ece = expected_calibration_error(labels, predictions["score"])
    assert expected_calibration_error(labels, calibrated) < raw_ece / 2
    assert brier_score(labels, calibrated) < brier_score(labels, predictions["score"])


# ---- at scale: the threshold from one sort, the tree method by data size ------------------------
def _f1_threshold_by_matrix(labels, scores, f1_tolerance, prior):
    """The rule as first written: every row against every cut, a (cuts x rows) matrix."""
    distinct = np.unique(scores)
    cuts = np.concatenate([[distinct[0] / 2], (distinct[:-1] + distinct[1:]) / 2])
    predicted = scores[None, :] >= cuts[:, None]
    true_positives = (predicted & (labels[None, :] == 1)).sum(axis=1)
    f1 = 2 * true_positives / (predicted.sum(axis=1) + labels.sum())
    eligible = np.flatnonzero(f1 >= f1.max() - f1_tolerance - 1e-12)
    return float(cuts[eligible[np.argmin(np.abs(cuts[eligible] - prior))]])


def test_f1_optimal_threshold_equals_the_matrix_definition():
    rng = np.random.default_rng(5)
    for case in range(300):
        rows = int(rng.integers(1, 200))
        labels = (rng.random(rows) < rng.random()).astype(int)
        labels[0] = 1
        scores = (  # ties, XGBoost's float32, one score for all
            np.round(rng.random(rows), 2),
            rng.random(rows).astype(np.float32),
            np.full(rows, 0.3),
        )[case % 3]
        for tolerance in (0.0, 0.02, 0.2):
            expected = _f1_threshold_by_matrix(labels, scores, tolerance, 0.5)
            assert f1_optimal_threshold(labels, scores, tolerance, 0.5) == expected


def test_f1_optimal_threshold_of_a_hundred_thousand_distinct_scores_has_the_best_f1():
    """The matrix would hold 10^10 cells here; scikit-learn's PR curve gives the best F1."""
    from sklearn.metrics import f1_score, precision_recall_curve  # noqa: PLC0415

    rng = np.random.default_rng(0)
    scores = rng.random(100_000)
    labels = (scores + rng.normal(0, 0.1, scores.size) > 0.9).astype(int)

    threshold = f1_optimal_threshold(labels, scores, 0.0, 0.5)

    precision, recall, _ = precision_recall_curve(labels, scores)
    best = np.nanmax(2 * precision * recall / (precision + recall))
    assert f1_score(labels, scores >= threshold) == pytest.approx(best, abs=1e-12)


def test_tree_method_is_exact_for_small_data_and_hist_for_large_or_distributed(parameters):
    xgboost = parameters["xgboost"]
    large = xgboost["large_data"]

    small = booster_params_for(xgboost, large["min_rows"] - 1, distributed=False)
    big = booster_params_for(xgboost, large["min_rows"], distributed=False)

    assert small == xgboost["booster_params"]
    assert small["tree_method"] == "exact"
    assert (big["tree_method"], big["max_bin"]) == (large["tree_method"], large["max_bin"])
    assert booster_params_for(xgboost, 100, distributed=True)["tree_method"] == "hist"
    unset = {key: value for key, value in xgboost.items() if key != "large_data"}
    assert booster_params_for(unset, 10**9, distributed=False)["tree_method"] == "exact"
    assert booster_params_for(unset, 100, distributed=True)["tree_method"] == "hist"
    patience = xgboost["early_stopping_rounds"]
    assert early_stopping_rounds_for(xgboost, large["min_rows"] - 1, False) == patience
    assert (
        early_stopping_rounds_for(xgboost, large["min_rows"], False)
        == large["early_stopping_rounds"]
    )
    assert early_stopping_rounds_for(xgboost, 100, True) == large["early_stopping_rounds"]
    assert early_stopping_rounds_for(unset, 100, True) == patience


def _trained_tree_method(model: xgb.Booster) -> str:
    return json.loads(model.save_config())["learner"]["gradient_booster"]["gbtree_train_param"][
        "tree_method"
    ]


def test_model_and_spec_record_the_tree_method_used(model, splits, parameters, monkeypatch):
    assert model.attr("tree_method") == _trained_tree_method(model) == "exact"  # 8,000 rows

    monkeypatch.setattr(xgb.collective, "is_distributed", lambda: True)
    distributed = train_model(
        splits["train"].head(2000), splits["validation"], parameters["xgboost"]
    )
    threshold = select_threshold(
        distributed, splits["validation"], parameters["decision_threshold"]
    )
    spec = create_model_spec(
        distributed, threshold, splits["dataset_manifest"], parameters["xgboost"]
    )

    assert spec["tree_method"] == _trained_tree_method(distributed) == "hist"


def test_the_cheapest_validation_cut_is_recorded_beside_the_choice(model, splits, parameters):
    chosen = select_threshold(model, splits["validation"], parameters["decision_threshold"])

    cheapest = chosen["validation_cheapest_cut"]
    # The rule's cut costs at most cost_tolerance more than the cheapest on validation.
    tolerance = parameters["decision_threshold"]["cost_tolerance"]
    assert cheapest["expected_cost_per_1000"] <= chosen["validation"]["expected_cost_per_1000"]
    assert (
        chosen["validation"]["expected_cost_per_1000"]
        <= cheapest["expected_cost_per_1000"] * (1 + tolerance) + 1e-6
    )


def test_missing_costs_are_named(model, splits, parameters):
    settings = {k: v for k, v in parameters["decision_threshold"].items() if k != "costs"}
    with pytest.raises(ValueError, match=r"decision_threshold\.costs must map"):
        select_threshold(model, splits["validation"], settings)
    with pytest.raises(ValueError, match=r"decision_threshold\.rule_settings\.costs is missing"):
        evaluate_model(score_test_set(model, splits["test"]), {"threshold": 0.5})
