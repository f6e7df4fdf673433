"""Ground truth joined to captured readings: label drift and live precision, recall and F1.

Ground truth arrives later, as CSV files of ``event_id,machine_failure`` (0/1): the capture's
``eventId`` (the endpoint answers it in the ``x-capture-event-id`` header) and what happened to
that machine. A request that carried several readings needs a ``row`` column too (0-based
position of the reading in the request).
"""

from __future__ import annotations

import functools
from typing import Any, Final

import numpy as np
import pandas as pd

from predictive_maintenance.monitoring.drift import psi

EVENT_ID: Final = "event_id"
LABEL: Final = "machine_failure"
ROW: Final = "row"
_MAX_EXAMPLES: Final = 5


@functools.cache
def ground_truth_schema() -> Any:
    """The pandera schema of a ground-truth file (pandera imported on first use: every kedro
    command imports this module, a third of a second for a library only this check needs)."""
    import pandera.pandas as pa  # noqa: PLC0415

    return pa.DataFrameSchema(
        {
            EVENT_ID: pa.Column(str, pa.Check.str_length(min_value=1)),
            LABEL: pa.Column(int, pa.Check.isin([0, 1]), coerce=True),
            ROW: pa.Column(int, pa.Check.ge(0), coerce=True, required=False),
        },
        name="ground_truth",
    )


class GroundTruthError(ValueError):
    """A ground-truth file breaks its schema or contradicts another."""


def validate_ground_truth(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """One ground-truth file (``name`` for messages), typed; :class:`GroundTruthError` naming
    the file, column, lines (the header is line 1) and values otherwise."""
    missing = [column for column in (EVENT_ID, LABEL) if column not in frame.columns]
    if missing:
        raise GroundTruthError(
            f"ground truth {name}: no column(s) {missing}; expected a header "
            f"{EVENT_ID},{LABEL} (and optionally {ROW})"
        )
    from pandera.errors import SchemaErrors  # noqa: PLC0415

    try:
        valid = ground_truth_schema().validate(frame, lazy=True)
    except SchemaErrors as errors:
        cases = errors.failure_cases
        # A column whose values are not even numbers fails every later check on all its rows:
        # say only that.
        coerce = cases["check"].astype(str).str.startswith("coerce_dtype")
        untyped = set(cases.loc[coerce, "column"])
        cases = cases[coerce | ~cases["column"].isin(untyped)]
        parts = []
        for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
            examples = ", ".join(
                f"line {int(index) + 2}: {value!r}" if pd.notna(index) else repr(value)
                for index, value in zip(
                    group["index"].head(_MAX_EXAMPLES),
                    group["failure_case"].head(_MAX_EXAMPLES),
                    strict=True,
                )
            )
            parts.append(f"column {column!r} fails {check} ({examples})")
        raise GroundTruthError(f"ground truth {name}: {'; '.join(parts)}") from None
    if ROW not in valid.columns:
        valid = valid.assign(**{ROW: -1})  # -1: "the request's only reading", checked on join
    return valid[[EVENT_ID, ROW, LABEL]].assign(file=name)


def join_ground_truth(
    readings: pd.DataFrame, files: dict[str, pd.DataFrame]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Readings with their observed label, and counts of ground truth that matched nothing
    (an event id not captured in the window) or was ambiguous (no ``row`` for a request of
    several readings)."""
    truth = pd.concat(
        [validate_ground_truth(name, frame) for name, frame in sorted(files.items())],
        ignore_index=True,
    )
    # Without a row, a line means the request's only reading; for a request of several it is
    # ambiguous, and for an event not captured (in the window) it matches nothing.
    size = truth[EVENT_ID].map(readings.groupby("event_id").size())
    no_row = truth[ROW] < 0
    truth.loc[no_row & (size == 1), ROW] = 0
    ambiguous = truth[no_row & (size > 1)].drop_duplicates([EVENT_ID, LABEL])
    truth = truth[~(no_row & (size > 1))]
    labels = truth.groupby([EVENT_ID, ROW])[LABEL].nunique()
    if (labels > 1).any():
        event, row = labels[labels > 1].index[0]
        where = truth.loc[truth[EVENT_ID] == event, "file"].unique().tolist()
        raise GroundTruthError(
            f"ground truth gives event {event!r}"
            + (f" row {row}" if row >= 0 else "")
            + f" both labels 0 and 1 (in {where})"
        )
    truth = truth.drop_duplicates([EVENT_ID, ROW])
    matched = truth.drop(columns="file").merge(readings, on=[EVENT_ID, ROW], how="inner")
    counts = {
        "ground_truth_rows": len(truth) + len(ambiguous),
        "matched": len(matched),
        "ambiguous": len(ambiguous),
        "unmatched": len(truth) - len(matched),
    }
    return matched, counts


def label_metrics(
    readings: pd.DataFrame,
    files: dict[str, pd.DataFrame],
    *,
    training_failure_rate: float,
    decision_threshold: float,
    psi_threshold: float,
) -> dict[str, Any]:
    """Label drift and live classification metrics; without ground truth, why there are none.

    Predicted labels are the endpoint's own (JSON answers) or score >= ``decision_threshold``
    (CSV answers carry only the score). Label drift: the observed failure rate against the
    training split's, as PSI over {no failure, failure}; prediction drift likewise for the
    share of readings the endpoint predicted to fail.
    """
    predicted = _predicted(readings, decision_threshold)
    scored = predicted.dropna()
    result: dict[str, Any] = {
        "training_failure_rate": training_failure_rate,
        "decision_threshold": decision_threshold,
        "psi_threshold": psi_threshold,
        "prediction_drift": _rate_drift(
            float(scored.mean()) if len(scored) else None,
            training_failure_rate,
            len(scored),
            psi_threshold,
        ),
    }
    if not files:
        result |= {
            "ground_truth": False,
            "reason": "no ground truth yet: put CSV files of event_id,machine_failure under "
            "data/14_monitoring/ground_truth/ to get label drift and live precision and recall",
        }
        return _with_drifted(result)
    matched, counts = join_ground_truth(readings.assign(_predicted=predicted), files)
    result |= {"ground_truth": True, **counts}
    matched = matched.dropna(subset=["_predicted"])
    if matched.empty:
        result["reason"] = "no ground truth matches a scored captured reading of the window"
        return _with_drifted(result)
    actual = matched[LABEL].to_numpy(dtype=np.int64)
    guess = matched["_predicted"].to_numpy(dtype=np.int64)
    true_positives = int(np.sum((actual == 1) & (guess == 1)))
    false_positives = int(np.sum((actual == 0) & (guess == 1)))
    false_negatives = int(np.sum((actual == 1) & (guess == 0)))
    true_negatives = int(np.sum((actual == 0) & (guess == 0)))
    precision = _ratio(true_positives, true_positives + false_positives)
    recall = _ratio(true_positives, true_positives + false_negatives)
    f1 = (
        2 * precision * recall / (precision + recall)
        if precision is not None and recall is not None and precision + recall > 0
        else None
    )
    result |= {
        "labelled_readings": len(matched),
        "label_drift": _rate_drift(
            float(actual.mean()), training_failure_rate, len(actual), psi_threshold
        ),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "accuracy": _ratio(true_positives + true_negatives, len(actual)),
        "confusion_matrix": {
            "true_negatives": true_negatives,
            "false_positives": false_positives,
            "false_negatives": false_negatives,
            "true_positives": true_positives,
        },
    }
    return _with_drifted(result)


def _with_drifted(result: dict[str, Any]) -> dict[str, Any]:
    result["drifted"] = [
        name
        for name in ("label_drift", "prediction_drift")
        if (result.get(name) or {}).get("drifted")
    ]
    return result


def _predicted(readings: pd.DataFrame, threshold: float) -> pd.Series:
    """The endpoint's label when it answered one, else score >= threshold; NaN if unscored."""
    by_score = (readings["score"] >= threshold).astype(float).where(readings["score"].notna())
    labels = readings["predicted_label"].astype("Float64").astype(float)
    return labels.where(labels.notna(), by_score)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _rate_drift(
    rate: float | None, baseline: float, count: int, threshold: float
) -> dict[str, Any] | None:
    """A failure rate against the training split's, as PSI over {no failure, failure}."""
    if rate is None:
        return None
    score = psi(np.array([1 - baseline, baseline]), np.array([1 - rate, rate]))
    return {"rate": rate, "readings": count, "psi": score, "drifted": score > threshold}
