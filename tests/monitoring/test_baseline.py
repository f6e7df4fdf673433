"""The data-quality baseline: SageMaker Model Monitor's statistics.json and constraints.json."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictive_maintenance.monitoring.baseline import BaselineError, readings_frame
from predictive_maintenance.monitoring.sketch import cdf, kll_compactors, weighted_items
from predictive_maintenance.schema import READING_COLUMNS


def test_statistics_describe_each_reading_in_sagemakers_shape(baseline, baseline_rows, real_data):
    statistics, _ = baseline
    truth = real_data.loc[baseline_rows.index]

    assert statistics["version"] == 0.0
    assert statistics["dataset"] == {"item_count": 8000}
    features = statistics["features"]
    assert [f["name"] for f in features] == list(READING_COLUMNS)
    assert {f["name"]: f["inferred_type"] for f in features} == {
        "type": "String",
        "air_temperature_k": "Fractional",
        "process_temperature_k": "Fractional",
        "rotational_speed_rpm": "Integral",
        "torque_nm": "Fractional",
        "tool_wear_min": "Integral",
    }
    # The letter comes back from type_code, with the file's own counts.
    categorical = features[0]["string_statistics"]
    assert categorical["common"] == {"num_present": 8000, "num_missing": 0}
    buckets = categorical["distribution"]["categorical"]["buckets"]
    assert {b["value"]: b["count"] for b in buckets} == truth["type"].value_counts().to_dict()
    for feature in features[1:]:
        numbers = feature["numerical_statistics"]
        values = truth[feature["name"]]
        assert numbers["common"] == {"num_present": 8000, "num_missing": 0}
        assert numbers["mean"] == pytest.approx(values.mean())
        assert numbers["sum"] == pytest.approx(values.sum())
        assert numbers["std_dev"] == pytest.approx(values.std(ddof=0))
        assert (numbers["min"], numbers["max"]) == (values.min(), values.max())
        kll = numbers["distribution"]["kll"]
        assert len(kll["buckets"]) == 10
        assert sum(b["count"] for b in kll["buckets"]) == 8000
        assert kll["buckets"][0]["lower_bound"] == values.min()
        assert kll["buckets"][-1]["upper_bound"] == values.max()
        assert kll["sketch"]["parameters"] == {"c": 0.64, "k": 2048.0}
        # Items of compactor h stand for 2**h values: together, every value once.
        assert sum(len(level) * 2**h for h, level in enumerate(kll["sketch"]["data"])) == 8000


def test_constraints_are_suggested_from_the_statistics(baseline):
    _, constraints = baseline

    assert constraints["version"] == 0.0
    by_name = {f["name"]: f for f in constraints["features"]}
    assert list(by_name) == list(READING_COLUMNS)
    assert by_name["type"]["string_constraints"] == {"domains": ["L", "M", "H"]}
    for name in READING_COLUMNS[1:]:
        assert by_name[name]["completeness"] == 1.0
        assert by_name[name]["num_constraints"] == {"is_non_negative": True}
    config = constraints["monitoring_config"]
    assert config["evaluate_constraints"] == "Enabled"
    assert config["distribution_constraints"]["comparison_threshold"] == 0.1


def test_the_sketch_keeps_quantiles_within_a_percent_and_is_reproducible():
    values = np.random.default_rng(3).normal(40, 10, 200_000)

    data = kll_compactors(values, k=2048, c=0.64, seed=0)

    assert data == kll_compactors(values, k=2048, c=0.64, seed=0)
    assert sum(len(level) * 2**h for h, level in enumerate(data)) == len(values)
    assert sum(len(level) for level in data) < 10_000  # a sketch, not the data
    items, weights = weighted_items({"kll": {"sketch": {"data": data}}})
    points = np.quantile(values, np.linspace(0.01, 0.99, 99))
    exact = np.searchsorted(np.sort(values), points, side="right") / len(values)
    assert np.max(np.abs(cdf(items, weights, points) - exact)) < 0.01


def test_a_baseline_with_buckets_only_still_gives_a_distribution():
    # A statistics.json without the sketch (another tool's): the buckets are all there is.
    buckets = [
        {"lower_bound": 0.0, "upper_bound": 10.0, "count": 30.0},
        {"lower_bound": 10.0, "upper_bound": 20.0, "count": 70.0},
    ]

    items, weights = weighted_items({"kll": {"buckets": buckets}})

    assert weights.sum() == pytest.approx(100.0)
    assert cdf(items, weights, np.array([10.0]))[0] == pytest.approx(0.3 + 70 / 5 / 100)
    assert cdf(items, weights, np.array([20.0]))[0] == pytest.approx(1.0)


def test_an_unknown_type_code_is_named_with_its_rows():
    frame = pd.DataFrame(
        {"type_code": [0.0, 7.0], **{c: [1.0, 1.0] for c in READING_COLUMNS[1:]}}, index=[4, 9]
    )

    with pytest.raises(BaselineError, match=r"outside \[0, 1, 2\] at row\(s\) \[9\]"):
        readings_frame(frame)
