"""Ground truth joined on the capture's event id: live precision, recall, F1 and label drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from predictive_maintenance.monitoring.labels import GroundTruthError, label_metrics

SETTINGS = {"training_failure_rate": 0.034, "decision_threshold": 0.5, "psi_threshold": 0.2}


@pytest.fixture
def readings() -> pd.DataFrame:
    """e1: CSV answer (score only); e2: JSON answer whose label wins over its score; e3: one
    request of two readings; e4: not scored."""
    return pd.DataFrame(
        {
            "event_id": ["e1", "e2", "e3", "e3", "e4"],
            "row": [0, 0, 0, 1, 0],
            "line": [1, 2, 3, 3, 4],
            "score": [0.9, 0.6, 0.1, 0.8, np.nan],
            "predicted_label": pd.array([None, 0, None, None, None], dtype="Int8"),
        }
    )


def csv(text: str) -> pd.DataFrame:
    from io import StringIO  # noqa: PLC0415

    return pd.read_csv(StringIO(text), dtype={"event_id": str}, keep_default_na=False)


def test_ground_truth_is_joined_on_event_id_and_row(readings):
    files = {
        "a": csv("event_id,machine_failure\ne1,1\ne2,1\ne9,0\n"),
        "b": csv("event_id,row,machine_failure\ne3,1,1\ne3,0,0\ne1,0,1\n"),
        "c": csv("event_id,machine_failure\ne3,1\ne1,1\n"),  # e3 needs a row; e1 again
    }

    result = label_metrics(readings, files, **SETTINGS)

    assert result["ground_truth"] is True
    # e1 (TP, three times the same fact), e2 (FN: its JSON label 0), e3 row 1 (TP), e3 row 0 (TN)
    assert result["labelled_readings"] == 4
    assert result["confusion_matrix"] == {
        "true_negatives": 1,
        "false_positives": 0,
        "false_negatives": 1,
        "true_positives": 2,
    }
    assert (result["precision"], result["recall"]) == (1.0, 2 / 3)
    assert result["f1"] == pytest.approx(0.8)
    assert (result["unmatched"], result["ambiguous"]) == (1, 1)
    assert result["label_drift"]["rate"] == 0.75
    assert result["drifted"] == ["label_drift", "prediction_drift"]


def test_without_ground_truth_the_result_says_so(readings):
    result = label_metrics(readings, {}, **SETTINGS)

    assert result["ground_truth"] is False
    assert "no ground truth yet" in result["reason"]
    # The endpoint's own predictions still give prediction drift: 2 of the 4 scored readings.
    assert result["prediction_drift"]["rate"] == 0.5


def test_a_bad_ground_truth_file_is_named_with_its_lines(readings):
    files = {"late.csv": csv("event_id,machine_failure\ne1,1\n,0\ne2,yes\n")}

    with pytest.raises(GroundTruthError, match=r"ground truth late\.csv: .*machine_failure"):
        label_metrics(readings, files, **SETTINGS)
    with pytest.raises(GroundTruthError, match=r"event_id.*line 3"):
        label_metrics(readings, {"x": csv("event_id,machine_failure\ne1,1\n,0\n")}, **SETTINGS)
    with pytest.raises(GroundTruthError, match="no column"):
        label_metrics(readings, {"x": csv("id,failure\ne1,1\n")}, **SETTINGS)


def test_contradicting_ground_truth_is_an_error(readings):
    files = {
        "a": csv("event_id,machine_failure\ne1,1\n"),
        "b": csv("event_id,machine_failure\ne1,0\n"),
    }

    with pytest.raises(GroundTruthError, match="event 'e1' row 0 both labels 0 and 1"):
        label_metrics(readings, files, **SETTINGS)
