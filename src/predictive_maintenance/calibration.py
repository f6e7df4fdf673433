"""Calibrated failure risk: a map of the booster's score to a probability; Brier, ECE, reliability.

Two methods, both fitted on the validation split and kept as plain JSON, so a server needs
neither scikit-learn nor a serialised Python object to apply them (numpy only: it runs in the
SageMaker XGBoost container too):

- ``sigmoid`` (the default): Platt scaling, ``1 / (1 + exp(-(slope * logit(score) +
  intercept)))``, fitted by Newton's method on the log-odds (:func:`fit_sigmoid`);
- ``isotonic``: scikit-learn's ``IsotonicRegression`` breakpoints ``x`` (raw scores, strictly
  increasing) and ``y`` (probabilities, non-decreasing), applied with ``numpy.interp``, which is
  exactly ``IsotonicRegression.predict`` with ``out_of_bounds="clip"`` (:func:`fit_isotonic`).

The document carries the sha256 of its canonical content (``sha256``), as the model carries its
own, so a truncated or edited map is refused rather than silently used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex

#: The calibration methods: ``sigmoid`` (Platt scaling of the score's log-odds: two numbers, a
#: smooth map that never says 0 or 1) and ``isotonic`` (a monotonic step map).
METHODS = ("sigmoid", "isotonic")
#: Scores are clipped to [EPSILON, 1 - EPSILON] before their log-odds are taken.
EPSILON = 1e-7
#: How the ECE and the reliability curve group rows (see :func:`reliability_bins`).
BINNING = "equal_mass"


def _fail(field: str, problem: str) -> ValueError:
    return ValueError(f"calibration map: field {field!r} {problem}")


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """The document without its ``sha256`` as canonical JSON (sorted keys, no spaces): what the
    checksum covers, the same bytes whatever indentation the file was saved with."""
    content = {key: value for key, value in document.items() if key != "sha256"}
    return json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def sealed(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` with ``sha256``, the digest of :func:`canonical_bytes`, added last."""
    content = {key: value for key, value in document.items() if key != "sha256"}
    return {**content, "sha256": sha256_hex(canonical_bytes(content))}


@dataclass(frozen=True)
class CalibrationMap:
    """A monotonic calibration map, checked; :meth:`apply` maps raw scores.

    ``sigmoid``: ``1 / (1 + exp(-(slope * logit(score) + intercept)))``. ``isotonic``: the
    breakpoints ``x``/``y``, linear between them.
    """

    x: np.ndarray
    y: np.ndarray
    method: str = "isotonic"
    slope: float = 1.0
    intercept: float = 0.0

    @classmethod
    def from_document(cls, document: Any) -> CalibrationMap:
        """Reads and checks a map document (as :func:`fit_calibration_map` makes it).

        Raises:
            ValueError: naming the field at fault: ``method`` not one of :data:`METHODS`;
                sigmoid: ``slope`` or ``intercept`` not a finite number, ``slope`` not positive;
                isotonic: ``x`` or ``y`` missing, empty, not finite numbers, of different
                lengths, ``x`` not strictly increasing, ``y`` decreasing or outside [0, 1].
                ``ChecksumMismatchError`` (a ValueError) when ``sha256`` is present and does not
                match the content.
        """
        if not isinstance(document, Mapping):
            raise ValueError(
                f"calibration map: expected a JSON object, got {type(document).__name__}"
            )
        method = document.get("method")
        if method not in METHODS:
            raise _fail("method", f"must be one of {list(METHODS)}, got {method!r}")
        _check_seal(document)
        if method == "sigmoid":
            slope, intercept = (_number(document, name) for name in ("slope", "intercept"))
            if slope <= 0:
                raise _fail("slope", f"must be positive (a monotonic map), got {slope!r}")
            empty = np.empty(0)
            return cls(empty, empty, method, slope, intercept)
        x = _numbers(document, "x")
        y = _numbers(document, "y")
        if len(x) != len(y):
            raise ValueError(
                f"calibration map: fields 'x' and 'y' differ in length ({len(x)} and {len(y)})"
            )
        steps = np.flatnonzero(np.diff(x) <= 0)
        if steps.size:
            i = int(steps[0]) + 1
            raise _fail(
                "x",
                f"must be strictly increasing: x[{i}] = {float(x[i])!r} after {float(x[i - 1])!r}",
            )
        outside = np.flatnonzero((y < 0) | (y > 1))
        if outside.size:
            i = int(outside[0])
            raise _fail("y", f"must lie in [0, 1]: y[{i}] = {float(y[i])!r}")
        falls = np.flatnonzero(np.diff(y) < 0)
        if falls.size:
            i = int(falls[0]) + 1
            raise _fail(
                "y",
                f"must be non-decreasing (a monotonic map): y[{i}] = {float(y[i])!r} after "
                f"{float(y[i - 1])!r}",
            )
        return cls(x, y)

    def apply(self, scores: Any) -> np.ndarray:
        """Calibrated probabilities of raw ``scores``. Isotonic: linear between breakpoints,
        clipped to the end values outside them (``IsotonicRegression(out_of_bounds="clip")``)."""
        scores = np.asarray(scores, dtype=np.float64)
        if self.method == "sigmoid":
            return _sigmoid(self.slope * _logit(scores) + self.intercept)
        return np.interp(scores, self.x, self.y)


def _check_seal(document: Mapping[str, Any]) -> None:
    if "sha256" in document:
        expected = document["sha256"]
        actual = sha256_hex(canonical_bytes(document))
        if actual != expected:
            raise ChecksumMismatchError(
                f"calibration map: field 'sha256' is {expected!r}, but the content's "
                f"canonical sha256 is {actual}: the map was changed after it was fitted"
            )


def _logit(scores: np.ndarray) -> np.ndarray:
    clipped = np.clip(scores, EPSILON, 1 - EPSILON)
    return np.log(clipped / (1 - clipped))


def _sigmoid(margin: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-margin))


def _number(document: Mapping[str, Any], field: str) -> float:
    value = document.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(field, f"must be a finite number, got {value!r}")
    return float(value)


def _numbers(document: Mapping[str, Any], field: str) -> np.ndarray:
    values = document.get(field)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise _fail(field, f"must be a list of numbers, got {type(values).__name__}")
    if not values:
        raise _fail(field, "is empty")
    for i, value in enumerate(values):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise _fail(field, f"must hold finite numbers: {field}[{i}] = {value!r}")
    return np.asarray(values, dtype=np.float64)


def apply_calibration(document: Mapping[str, Any], scores: Any) -> np.ndarray:
    """Calibrated probabilities of ``scores`` with a map document (checked first)."""
    return CalibrationMap.from_document(document).apply(scores)


def _checked(labels: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.ndim != 1 or labels.shape != probabilities.shape:
        raise ValueError(
            f"labels and probabilities must be 1-D of one length, got shapes {labels.shape} "
            f"and {probabilities.shape}"
        )
    if labels.size == 0:
        raise ValueError("no rows to calibrate or score")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if (
        not np.isfinite(probabilities).all()
        or (probabilities < 0).any()
        or (probabilities > 1).any()
    ):
        raise ValueError("probabilities must be finite and in [0, 1]")
    return labels.astype(np.float64), probabilities


def fit_isotonic(scores: Any, labels: Any) -> dict[str, Any]:
    """Fits an isotonic map of raw ``scores`` to the 0/1 ``labels``; the map as a JSON document.

    ``IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1)``: monotonic (a higher raw score
    never gets a lower risk, so rankings, ROC and PR AUC are kept up to ties), no parametric
    shape assumed; but on ~34 failures it fits a step per tie and puts most machines at exactly
    0, hence :func:`fit_sigmoid` as the project's default. The document
    holds ``method``, the breakpoints ``x``/``y`` (scikit-learn's ``X_thresholds_`` and
    ``y_thresholds_``) and the ``rows``/``failures`` it was fitted on; no ``sha256`` (see
    :func:`sealed`).
    """
    from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415 -- seconds to import

    labels, scores = _checked(labels, scores)
    failures = int(labels.sum())
    if failures in (0, labels.size):
        raise ValueError(
            f"cannot calibrate on {labels.size} rows with {failures} failures: both classes "
            "must be present"
        )
    regression = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(scores, labels)
    return {
        "method": "isotonic",
        "x": [float(value) for value in regression.X_thresholds_],
        "y": [float(value) for value in regression.y_thresholds_],
        "out_of_bounds": "clip",
        "interpolation": "linear",
        "rows": int(labels.size),
        "failures": failures,
    }


def fit_sigmoid(scores: Any, labels: Any) -> dict[str, Any]:
    """Platt scaling: a logistic regression of the 0/1 ``labels`` on the log-odds of ``scores``.

    Two numbers (``slope``, ``intercept``) fitted on ~34 failures where an isotonic map fits a
    step per tie: the map stays smooth and never says "0 in 100" (isotonic maps on the validation
    split put most machines at exactly 0, failures among them). Platt's target smoothing (labels
    ``(failures + 1) / (failures + 2)`` and ``1 / (healthy + 2)``) keeps the fit off the extremes.
    """
    labels, scores = _checked(labels, scores)
    failures = int(labels.sum())
    healthy = int(labels.size) - failures
    if failures in (0, labels.size):
        raise ValueError(
            f"cannot calibrate on {labels.size} rows with {failures} failures: both classes "
            "must be present"
        )
    targets = np.where(labels == 1, (failures + 1) / (failures + 2), 1 / (healthy + 2))
    features = _logit(scores)
    slope, intercept = 1.0, 0.0
    # Newton's method on the (convex) cross-entropy of the smoothed targets: converges in a few
    # steps from the identity map, no solver settings to carry.
    for _ in range(100):
        predicted = _sigmoid(slope * features + intercept)
        weight = np.maximum(predicted * (1 - predicted), 1e-12)
        residual = predicted - targets
        gradient = np.array([residual @ features, residual.sum()])
        hessian = np.array(
            [
                [weight @ (features * features), weight @ features],
                [weight @ features, weight.sum()],
            ]
        )
        step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
        slope, intercept = slope - step[0], intercept - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return {
        "method": "sigmoid",
        "slope": float(slope),
        "intercept": float(intercept),
        "rows": int(labels.size),
        "failures": failures,
    }


def fit_calibration_map(method: str, scores: Any, labels: Any) -> dict[str, Any]:
    """The map document of ``method`` (:data:`METHODS`) fitted on ``scores`` and ``labels``."""
    if method == "sigmoid":
        return fit_sigmoid(scores, labels)
    if method == "isotonic":
        return fit_isotonic(scores, labels)
    raise ValueError(f"calibration.method must be one of {list(METHODS)}, got {method!r}")


def brier_score(labels: Any, probabilities: Any) -> float:
    """Mean squared difference between the predicted probability and the 0/1 outcome."""
    labels, probabilities = _checked(labels, probabilities)
    return float(np.mean((probabilities - labels) ** 2))


def reliability_bins(labels: Any, probabilities: Any, bins: int = 10) -> list[dict[str, Any]]:
    """The reliability curve: per bin the mean predicted probability, the observed failure
    frequency and the row count (empty bins left out), ordered by probability.

    Equal-mass bins (edges at the probability quantiles), not equal-width: about 97 % of machines
    score below 0.1, so ten equal-width bins would put nearly every row in the first one and
    average its miscalibration away, while the few high-risk rows would each get a bin of their
    own. Equal-mass bins give every bin ~``rows / bins`` rows, i.e. the resolution where the data
    is. Rows with the same probability always share a bin (an isotonic map gives many rows the
    same value): each nominal boundary (every ``rows / bins`` rows in probability order) moves to
    the nearest place where the probability changes, so a large tie makes fewer, larger bins.
    """
    labels, probabilities = _checked(labels, probabilities)
    if not isinstance(bins, int) or isinstance(bins, bool) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    order = np.argsort(probabilities, kind="stable")
    ranked = probabilities[order]
    # Where a new value starts in the sorted rows: the only places a bin may end.
    starts = np.concatenate([[0], np.flatnonzero(np.diff(ranked)) + 1, [ranked.size]])
    nominal = np.round(np.arange(1, bins) * ranked.size / bins)
    nearest = np.abs(starts[None, :] - nominal[:, None]).argmin(axis=1)
    ends = np.unique(np.concatenate([starts[nearest], [ranked.size]]))
    curve = []
    for first, last in zip(np.concatenate([[0], ends[:-1]]), ends, strict=True):
        if last == first:
            continue
        rows = order[first:last]
        curve.append(
            {
                "mean_predicted": float(probabilities[rows].mean()),
                "observed_frequency": float(labels[rows].mean()),
                "count": int(last - first),
            }
        )
    return curve


def expected_calibration_error(labels: Any, probabilities: Any, bins: int = 10) -> float:
    """ECE: the row-weighted mean over :func:`reliability_bins` (equal-mass, see there) of
    ``|observed frequency - mean predicted|``.

    On a few dozen failures it is noisy and biased upward (a perfectly calibrated model scores
    above 0 by sampling alone): compare models on the same rows, or pooled over CV folds.
    """
    curve = reliability_bins(labels, probabilities, bins)
    rows = sum(item["count"] for item in curve)
    return float(
        sum(
            item["count"] * abs(item["observed_frequency"] - item["mean_predicted"])
            for item in curve
        )
        / rows
    )
