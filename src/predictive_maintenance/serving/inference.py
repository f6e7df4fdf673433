"""The SageMaker inference contract: script-mode handlers for the stock XGBoost container.

``model.tar.gz`` carries this module (see :mod:`.package`); the container imports
``code/inference.py`` (``SAGEMAKER_PROGRAM``), which re-exports :func:`model_fn` and
:func:`transform_fn`, and calls them as::

    model = model_fn("/opt/ml/model")
    response = transform_fn(model, request_body, request_content_type, accept)

:func:`transform_fn` runs the four classic handlers (:func:`input_fn`, :func:`predict_fn`,
:func:`output_fn`, through :func:`invoke`) and answers a bad request with its own status and JSON
body. (Given ``input_fn``, ``predict_fn`` and ``output_fn`` instead, the stock XGBoost container
turns any exception they raise into a 500 with an HTML page; and it refuses a module that
defines both ``transform_fn`` and any of those three.)

The local endpoint (:mod:`.server`) calls the very same functions, so both serve identical answers.
Features are computed by :func:`predictive_maintenance.features.build_features`, the function
training uses.

Imports are limited to the standard library, numpy, pandas, xgboost and this project's ``schema``,
``features``, ``integrity``, ``calibration`` and ``failure_modes`` modules, :mod:`.contract` and
:mod:`.requests` (request parsing and validation): the container has nothing else (no Kedro,
pandera, sklearn).
The module must also keep running on the container's Python (3.10 and up).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Final

import numpy as np
import pandas as pd
import xgboost as xgb

from predictive_maintenance.calibration import CalibrationMap
from predictive_maintenance.failure_modes import (
    MODE_CLASSES,
    likely_modes,
    mode_probabilities,
    most_likely_failure,
)
from predictive_maintenance.features import (
    FEATURE_COLUMNS,
    FEATURE_LABELS,
    TYPE_CODES,
    FeatureError,
    build_features,
    feature_matrix,
)
from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    EXPLAIN_KEY,
    EXPLANATIONS_KEY,
    FAILURE_MODE_KEY,
    FAILURE_MODE_MODEL_FILE,
    JSON_CONTENT_TYPE,
    MODEL_CARD_FILE,
    MODEL_CARD_KEY,
    MODEL_FILE,
    MODEL_VERSION_ENV,
    MODEL_VERSION_HEADER,
    PROBABILITY_KEY,
    SPEC_FILE,
)
from predictive_maintenance.serving.requests import (
    InvalidInput,
    Readings,
    ServingError,
    check_content_type,
    check_explained_rows,
    negotiate_accept,
    parse_readings,
)

logger = logging.getLogger(__name__)

#: Column labels of a readings frame, built once (an object Index: no per-request inference).
_READING_INDEX: Final = pd.Index(list(READING_COLUMNS), dtype=object)
#: pandas' internal constructor from column arrays, when this pandas has it (all since 0.23).
_FRAME_FROM_ARRAYS: Final = getattr(pd.DataFrame, "_from_arrays", None)


# ---- Errors ------------------------------------------------------------------------------------
class ModelLoadError(ValueError):
    """A model directory is incomplete, tampered with or inconsistent with this code."""


# ---- The loaded model --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """Everything a request needs: the booster, its spec and the decision threshold; and what an
    explained answer adds, when the model directory has it (older ones do not)."""

    booster: xgb.Booster
    spec: dict[str, Any]
    decision_threshold: float
    model_sha256: str
    model_dir: str
    #: Registry version, if known (``spec["model_version"]``, or the endpoint's deployment state).
    model_version: int | None = None
    #: The failure-mode booster (:mod:`predictive_maintenance.failure_modes`), if packaged.
    mode_booster: xgb.Booster | None = None
    #: The calibration map of the score (``spec["calibration"]``), if the spec has one.
    calibration: CalibrationMap | None = None
    #: The model card (``model_card.json``), if packaged.
    model_card: dict[str, Any] | None = None

    def with_version(self, model_version: int | None) -> LoadedModel:
        """The same model, labelled with another registry version."""
        return dataclasses.replace(self, model_version=model_version)


class Scores(np.ndarray):
    """Failure scores (float32, one per row) that remember the threshold and version behind them.

    :func:`output_fn` gets only the prediction, yet its JSON answer needs the model's decision
    threshold and version: this ``ndarray`` subclass carries them.
    """

    decision_threshold: float | None
    model_version: int | None

    def __array_finalize__(self, obj: Any) -> None:
        self.decision_threshold = getattr(obj, "decision_threshold", None)
        self.model_version = getattr(obj, "model_version", None)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelLoadError(message)


def model_fn(model_dir: str | os.PathLike[str]) -> LoadedModel:
    """Loads ``xgboost-model`` and ``model_spec.json`` from ``model_dir`` and checks they agree.

    The model bytes must have the spec's ``model_sha256``, and the booster's feature names must be
    the spec's ``features`` and :data:`~predictive_maintenance.features.FEATURE_COLUMNS`.
    Prediction uses one thread: requests run concurrently, each on its own core.
    """
    model_dir = os.fspath(model_dir)
    model_path = os.path.join(model_dir, MODEL_FILE)
    spec_path = os.path.join(model_dir, SPEC_FILE)
    for path in (model_path, spec_path):
        _require(os.path.isfile(path), f"{path} is missing: not a model directory")
    with open(model_path, "rb") as file:
        model_bytes = file.read()
    with open(spec_path, encoding="utf-8") as file:
        try:
            spec = json.load(file)
        except ValueError as error:
            raise ModelLoadError(f"{spec_path} is not valid JSON: {error}") from error
    _require(isinstance(spec, dict), f"{spec_path} must hold a JSON object")
    _require(isinstance(spec.get("model_sha256"), str), f"{spec_path} lacks the model's sha256")
    try:
        model_sha256 = verify_sha256(model_bytes, spec["model_sha256"], model_path)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    _require(
        spec.get("objective") == "binary:logistic",
        f"{spec_path}: objective must be 'binary:logistic', not {spec.get('objective')!r}",
    )
    _require(
        spec.get("features") == list(FEATURE_COLUMNS),
        f"{spec_path}: features {spec.get('features')} differ from this code's "
        f"{list(FEATURE_COLUMNS)}",
    )
    _require(
        spec.get("readings", list(READING_COLUMNS)) == list(READING_COLUMNS),
        f"{spec_path}: readings {spec.get('readings')} differ from {list(READING_COLUMNS)}",
    )
    threshold = spec.get("decision_threshold")
    _require(
        isinstance(threshold, int | float)
        and not isinstance(threshold, bool)
        and 0.0 < threshold < 1.0,
        f"{spec_path}: decision_threshold must be a number in (0, 1), not {threshold!r}",
    )
    model_version = spec.get("model_version")
    if model_version is None and os.environ.get(MODEL_VERSION_ENV, "").isdigit():
        model_version = int(os.environ[MODEL_VERSION_ENV])
    _require(
        model_version is None
        or (isinstance(model_version, int) and not isinstance(model_version, bool)),
        f"{spec_path}: model_version must be an integer or absent, not {model_version!r}",
    )

    booster = _load_booster(model_bytes, model_path)
    return LoadedModel(
        booster=booster,
        spec=spec,
        decision_threshold=float(threshold),
        model_sha256=model_sha256,
        model_dir=model_dir,
        model_version=model_version,
        mode_booster=_load_mode_model(model_dir, spec, spec_path),
        calibration=_load_calibration(spec, spec_path, model_sha256),
        model_card=_load_model_card(model_dir, spec, spec_path),
    )


def _load_booster(model_bytes: bytes, model_path: str) -> xgb.Booster:
    """A booster on one thread (requests run concurrently, each on its own core), trained on
    :data:`FEATURE_COLUMNS`."""
    booster = xgb.Booster(params={"nthread": 1})
    try:
        booster.load_model(bytearray(model_bytes))
    except xgb.core.XGBoostError as error:
        raise ModelLoadError(f"{model_path} is not an XGBoost model: {error}") from error
    booster.set_param({"nthread": 1})
    _require(
        booster.feature_names == list(FEATURE_COLUMNS),
        f"{model_path}: feature names {booster.feature_names} differ from {list(FEATURE_COLUMNS)}",
    )
    return booster


def _load_mode_model(model_dir: str, spec: dict[str, Any], spec_path: str) -> xgb.Booster | None:
    """The failure-mode booster the spec's ``failure_modes`` vouches for (absent: ``None``)."""
    described = spec.get("failure_modes")
    if described is None:
        return None
    _require(
        isinstance(described, dict) and isinstance(described.get("model_sha256"), str),
        f"{spec_path}: failure_modes must be an object with the mode model's model_sha256",
    )
    _require(
        described.get("classes") == list(MODE_CLASSES),
        f"{spec_path}: failure_modes.classes {described.get('classes')} differ from this code's "
        f"{list(MODE_CLASSES)}",
    )
    _require(
        described.get("model_file", FAILURE_MODE_MODEL_FILE) == FAILURE_MODE_MODEL_FILE,
        f"{spec_path}: failure_modes.model_file must be {FAILURE_MODE_MODEL_FILE!r}, not "
        f"{described.get('model_file')!r}",
    )
    path = os.path.join(model_dir, FAILURE_MODE_MODEL_FILE)
    _require(
        os.path.isfile(path),
        f"{path} is missing, but {spec_path} describes a failure-mode model (failure_modes)",
    )
    with open(path, "rb") as file:
        model_bytes = file.read()
    try:
        verify_sha256(model_bytes, described["model_sha256"], path)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    booster = _load_booster(model_bytes, path)
    # A booster over other classes would name the wrong mode for every row: refuse it here.
    config = json.loads(booster.save_config())
    classes = int(config["learner"]["learner_model_param"].get("num_class", "0"))
    _require(
        classes == len(MODE_CLASSES),
        f"{path}: {classes} output classes, expected {len(MODE_CLASSES)} ({list(MODE_CLASSES)})",
    )
    return booster


def _load_calibration(
    spec: dict[str, Any], spec_path: str, model_sha256: str
) -> CalibrationMap | None:
    """The spec's ``calibration`` map, checked (absent: ``None``)."""
    document = spec.get("calibration")
    if document is None:
        return None
    # The training pipeline seals every map: one without its seal or its model's digest was
    # edited (or made elsewhere), and could not be checked.
    for field in ("sha256", "model_sha256"):
        _require(
            isinstance(document, dict) and isinstance(document.get(field), str),
            f"{spec_path}: field 'calibration.{field}' is missing: the map cannot be checked",
        )
    try:
        calibration = CalibrationMap.from_document(document)
    except ValueError as error:
        raise ModelLoadError(f"{spec_path}: field 'calibration': {error}") from error
    # A map is fitted to one booster's scores: another booster's would be silently wrong.
    fitted_to = document["model_sha256"]
    _require(
        fitted_to == model_sha256,
        f"{spec_path}: field 'calibration.model_sha256' is {fitted_to!r}, but the model's sha256 "
        f"is {model_sha256}: the map was fitted to another model",
    )
    return calibration


def _load_model_card(model_dir: str, spec: dict[str, Any], spec_path: str) -> dict[str, Any] | None:
    """``model_card.json``, checked against the spec's ``model_card_sha256`` (absent: ``None``)."""
    path = os.path.join(model_dir, MODEL_CARD_FILE)
    expected = spec.get("model_card_sha256")
    if expected is None:
        _require(
            not os.path.exists(path),
            f"{path} is present but {spec_path} has no model_card_sha256: cannot vouch for it",
        )
        return None
    _require(isinstance(expected, str), f"{spec_path}: model_card_sha256 must be a string")
    _require(
        os.path.isfile(path),
        f"{path} is missing, but {spec_path} records its sha256 (model_card_sha256)",
    )
    with open(path, "rb") as file:
        content = file.read()
    try:
        verify_sha256(content, expected, path)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    try:
        card = json.loads(content)
    except ValueError as error:
        raise ModelLoadError(f"{path} is not valid JSON: {error}") from error
    _require(isinstance(card, dict), f"{path} must hold a JSON object")
    return card


# ---- Requests ----------------------------------------------------------------------------------
def _concatenated(readings: Readings | list[Readings]) -> tuple[list[str], list[list[float]]]:
    """The product types and numeric columns of one request, or of several one after the other."""
    parts = [readings] if isinstance(readings, Readings) else readings
    if len(parts) == 1:
        return parts[0].types, list(parts[0].columns)
    types = [product_type for part in parts for product_type in part.types]
    columns = [
        [value for part in parts for value in part.columns[index]]
        for index in range(len(READING_COLUMNS) - 1)
    ]
    return types, columns


def readings_frame(readings: Readings | list[Readings]) -> pd.DataFrame:
    """The readings of one request (or of several, one after the other) as one frame.

    ``type`` is an object column, the readings float64, the index a RangeIndex.
    """
    types, columns = _concatenated(readings)
    arrays = [np.array(types, dtype=object)]
    arrays += [np.array(values, dtype=np.float64) for values in columns]
    if _FRAME_FROM_ARRAYS is not None:
        # A quarter of the public constructor's cost: no column-name inference, no checks (the
        # arrays are 1-D and equally long by construction). Same frame, see the tests.
        return _FRAME_FROM_ARRAYS(
            arrays, columns=_READING_INDEX, index=pd.RangeIndex(len(types)), verify_integrity=False
        )
    frame = pd.DataFrame(
        {
            name: pd.Series(array, dtype=array.dtype, copy=False)
            for name, array in zip(READING_COLUMNS, arrays, strict=True)
        }
    )
    frame.columns = _READING_INDEX
    return frame


def input_fn(
    request_body: bytes | bytearray | memoryview | str, request_content_type: str | None
) -> pd.DataFrame:
    """Parses a request into a frame of readings (:data:`READING_COLUMNS`), validated.

    ``text/csv``: headerless rows ``Type,Air temperature [K],Process temperature [K],Rotational
    speed [rpm],Torque [Nm],Tool wear [min]``, LF or CRLF. ``application/json``:
    ``{"instances": [{"type": "L", "air_temperature_k": 298.4, ...}, ...]}``. Every row must hold
    exactly the six readings, with a known product type and numbers within
    :data:`~predictive_maintenance.schema.READING_RANGES`.

    Raises:
        UnsupportedMediaType: for any other content type (415).
        PayloadTooLarge: above :data:`MAX_PAYLOAD_BYTES` (413).
        InvalidInput: naming the first bad line (CSV, first line = 1) or ``instances[i]`` (JSON,
            0-based) and the field (400).
    """
    return readings_frame(parse_readings(request_body, request_content_type))


def predict_fn(input_data: pd.DataFrame, model: LoadedModel) -> Scores:
    """Failure scores for the readings: :func:`build_features`, then the booster (float32)."""
    try:
        features = build_features(input_data)
    except FeatureError as error:
        raise InvalidInput(str(error)) from None
    return _booster_scores(features.to_numpy(), model)


def predict_readings(readings: Readings | list[Readings], model: LoadedModel) -> Scores:
    """:func:`predict_fn` of :func:`readings_frame` without the frame: the same features
    (:func:`~predictive_maintenance.features.feature_matrix`) and scores, bit for bit, for
    readings :func:`~.requests.parse_readings` has validated. What the local endpoint calls."""
    return _booster_scores(_readings_features(readings), model)


def _readings_features(readings: Readings | list[Readings]) -> np.ndarray:
    types, columns = _concatenated(readings)
    type_code = np.array([TYPE_CODES[product_type] for product_type in types], dtype=np.float64)
    numbers = [np.array(values, dtype=np.float64) for values in columns]
    return feature_matrix(type_code, numbers)


def score_columns(
    type_code: np.ndarray, numbers: list[np.ndarray], model: LoadedModel
) -> tuple[Scores, dict[str, np.ndarray]]:
    """:func:`predict_readings` for readings already validated and held column by column (batch
    scoring): ``type_code`` holds :data:`~predictive_maintenance.features.TYPE_CODES` values,
    ``numbers`` the numeric readings in ``READING_COLUMNS[1:]`` order, as float64. The same
    features and scores as the endpoint gives for the same readings, and
    :func:`insight_columns` of them."""
    features = feature_matrix(type_code, numbers)
    scores = _booster_scores(features, model)
    return scores, insight_columns(features, scores, model)


def insight_columns(
    features: np.ndarray, scores: Scores, model: LoadedModel
) -> dict[str, np.ndarray]:
    """How sure and which failure, per row, as columns, for a model that has them (else left
    out): ``probability`` (the calibrated score), and for the rows the model flags
    (``predicted_label`` 1; else empty) ``failure_mode`` (the most likely mode's label column,
    ``hdf``...) and ``failure_mode_probability`` (given a failure). The values an explained
    answer gives (:func:`explain_features`), unrounded."""
    columns: dict[str, np.ndarray] = {}
    if model.calibration is not None:
        # The float32 score the answers show, mapped: the very number a client can map again.
        columns[PROBABILITY_KEY] = model.calibration.apply(np.asarray(scores, dtype=np.float32))
    if model.mode_booster is not None:
        best, given_failure = most_likely_failure(mode_probabilities(model.mode_booster, features))
        # A mode only for the machines the failure model flags: a table of "random failure"
        # beside every healthy machine would read as a prediction.
        flagged = predicted_labels(scores).astype(bool)
        modes = np.asarray(MODE_CLASSES, dtype=object)[best]
        columns[FAILURE_MODE_KEY] = np.where(flagged, modes, None)
        columns[f"{FAILURE_MODE_KEY}_probability"] = np.where(flagged, given_failure, np.nan)
    return columns


def predicted_labels(scores: Scores) -> np.ndarray:
    """1 where the score reaches the model's decision threshold, else 0 (int8): the
    ``predicted_label`` of :func:`output_fn`'s JSON answer, compared the same way."""
    if scores.decision_threshold is None:
        raise ValueError("these scores do not carry the model's decision threshold")
    return (np.asarray(scores, dtype=np.float32) >= scores.decision_threshold).astype(np.int8)


def _booster_scores(features: np.ndarray, model: LoadedModel) -> Scores:
    matrix = np.ascontiguousarray(features, dtype=np.float32)
    # The column order is FEATURE_COLUMNS (the feature function guarantees it; model_fn checked
    # that the booster was trained on the same names), so the names need no check per request.
    scores = model.booster.inplace_predict(matrix, validate_features=False).view(Scores)
    scores.decision_threshold = model.decision_threshold
    scores.model_version = model.model_version
    return scores


def _score_text(score: np.float32) -> str:
    # The shortest text that reads back as the same float32 (as the XGBoost container prints it).
    return str(score)


def output_fn(
    prediction: np.ndarray,
    accept: str | None,
    *,
    explanations: list[dict[str, Any]] | None = None,
    model_card: dict[str, Any] | None = None,
) -> tuple[bytes, str]:
    """Serialises scores: ``text/csv`` one per line, or ``application/json``.

    JSON: ``{"predictions": [{"score": 0.93, "predicted_label": 1}], "model_version": 3,
    "decision_threshold": 0.537}``, the label being ``score >= decision_threshold`` (label and
    threshold left out when ``prediction`` does not carry the threshold) and the version ``null``
    when unknown. ``*/*`` or no ``Accept`` gives JSON here;
    the local server answers CSV requests in CSV. ``explanations`` (:func:`explain_features`,
    JSON only) are added after them, then ``model_card`` (only with explanations); without them
    the answer is the plain contract's, byte for byte.
    """
    response_type = negotiate_accept(accept)
    scores = np.asarray(prediction, dtype=np.float32).reshape(-1)
    if response_type == CSV_CONTENT_TYPE:
        return ("".join(_score_text(score) + "\n" for score in scores)).encode(), response_type
    threshold = getattr(prediction, "decision_threshold", None)
    version = getattr(prediction, "model_version", None)
    if threshold is None:
        items = [f'{{"score": {_score_text(score)}}}' for score in scores]
    else:
        # Compared as training's evaluation compares (a float32 array against a Python float).
        labels = scores >= threshold
        items = [
            f'{{"score": {_score_text(score)}, "predicted_label": {int(label)}}}'
            for score, label in zip(scores, labels, strict=True)
        ]
    decision = (
        "" if threshold is None else f', "decision_threshold": {json.dumps(float(threshold))}'
    )
    explained = (
        "" if explanations is None else f', "{EXPLANATIONS_KEY}": {json.dumps(explanations)}'
    )
    if explanations is not None and model_card is not None:
        explained += f', "{MODEL_CARD_KEY}": {json.dumps(model_card)}'
    body = (
        f'{{"predictions": [{", ".join(items)}], '
        f'"model_version": {"null" if version is None else int(version)}{decision}{explained}}}'
    )
    return body.encode(), response_type


# ---- Explanations ------------------------------------------------------------------------------
def explain_features(
    features: np.ndarray, model: LoadedModel, scores: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Why each row got its score: XGBoost's own SHAP values (``pred_contribs``), in log-odds;
    how sure (the calibrated probability) and which failure (the likely mode), when the model has
    a calibration map and a failure-mode model.

    One entry per row: ``bias`` (the model's log-odds before any feature), ``margin`` (``bias``
    plus every contribution: the score's log-odds, ``score = 1 / (1 + exp(-margin))``) and
    ``contributions``, one per feature in :data:`~predictive_maintenance.features.FEATURE_COLUMNS`,
    largest absolute contribution first: ``feature`` (the model's name), ``label`` and ``unit``
    (:data:`~predictive_maintenance.features.FEATURE_LABELS`), ``value`` (the feature as the
    model saw it, in that unit), ``contribution`` and ``direction`` (``raises`` or ``lowers``
    the risk; ``none`` for a feature the trees did not use for this row). With a calibration
    map, ``probability``: the score calibrated (six decimals); with a failure-mode model,
    ``failure_mode``: :func:`~predictive_maintenance.failure_modes.likely_modes` of the row.

    ``features``: the rows as :func:`~predictive_maintenance.features.feature_matrix` builds
    them; ``scores``: their scores (:func:`predict_readings`), computed here when not given.
    Every surface (endpoint, container, API through the endpoint) explains with this.
    """
    matrix = np.ascontiguousarray(features, dtype=np.float32)
    # pred_contribs needs a DMatrix (inplace_predict has no contributions); the same float32
    # rows and trees as the scores, so bias + contributions is the score's margin.
    data = xgb.DMatrix(matrix, feature_names=list(FEATURE_COLUMNS), nthread=1)
    contributions = model.booster.predict(data, pred_contribs=True, validate_features=False)
    order = np.argsort(-np.abs(contributions[:, :-1]), axis=1, kind="stable").tolist()
    directions = np.sign(contributions[:, :-1]).astype(np.int8).tolist()
    # Six decimals, rounded in one numpy call: readable JSON (0.518271, not 0.5182713270187378),
    # and 11 roundings move a sum by at most 6e-6, well inside the 1e-4 additivity.
    margins = contributions.sum(axis=1, dtype=np.float64).round(_DECIMALS).tolist()
    rounded = contributions.astype(np.float64).round(_DECIMALS).tolist()
    values = np.round(features, _DECIMALS).tolist()
    explanations = []
    for row, contribution_row in enumerate(rounded):
        value_row, direction_row = values[row], directions[row]
        explanations.append(
            {
                "bias": contribution_row[-1],
                "margin": margins[row],
                "contributions": [
                    {
                        **_FEATURE_TEXTS[column],
                        "value": value_row[column],
                        "contribution": contribution_row[column],
                        "direction": _DIRECTIONS[direction_row[column]],
                    }
                    for column in order[row]
                ],
            }
        )
    if model.calibration is not None:
        if scores is None:
            scores = _booster_scores(features, model)
        # The float32 score the answer shows, mapped: the very number a client can map again.
        calibrated = model.calibration.apply(np.asarray(scores, dtype=np.float32))
        for explanation, probability in zip(
            explanations, calibrated.round(_DECIMALS).tolist(), strict=True
        ):
            explanation[PROBABILITY_KEY] = probability
    if model.mode_booster is not None:
        # The same feature matrix as the score and its reasons: one reading, one set of features.
        modes = likely_modes(mode_probabilities(model.mode_booster, features))
        for explanation, mode in zip(explanations, modes, strict=True):
            explanation[FAILURE_MODE_KEY] = mode
    return explanations


_DECIMALS: Final = 6
#: Name, label and unit of each feature column, as an explanation shows them.
_FEATURE_TEXTS: Final = tuple(
    {"feature": name, "label": FEATURE_LABELS[name][0], "unit": FEATURE_LABELS[name][1]}
    for name in FEATURE_COLUMNS
)
_DIRECTIONS: Final = {1: "raises", -1: "lowers", 0: "none"}


def explain_response_type(accept: str | None) -> str:
    """The answer type of a request that asks for explanations: JSON (what ``*/*`` or no
    ``Accept`` then means, whatever the request's type); a client accepting only CSV gets a 400
    naming ``explain``, as CSV has no room for them."""
    if negotiate_accept(accept, JSON_CONTENT_TYPE) != JSON_CONTENT_TYPE:
        raise InvalidInput(
            f"{EXPLAIN_KEY!r}: explanations are answered in JSON only; accept "
            f"{JSON_CONTENT_TYPE} (or */*), not {accept!r}",
            field=EXPLAIN_KEY,
        )
    return JSON_CONTENT_TYPE


def answer_readings(
    readings: Readings | list[Readings],
    model: LoadedModel,
    response_type: str,
    *,
    explain: bool = False,
) -> tuple[bytes, str]:
    """Scores (:func:`predict_readings`) and, with ``explain``, :func:`explain_features` of
    the same feature matrix and the model card (if any), serialised by :func:`output_fn`. More than
    :data:`~.contract.MAX_EXPLAINED_ROWS` readings to explain is a 413 naming ``explain``."""
    rows = len(readings) if isinstance(readings, Readings) else sum(map(len, readings))
    if explain:
        check_explained_rows(rows)
    features = _readings_features(readings)
    scores = _booster_scores(features, model)
    if not explain:
        return output_fn(scores, response_type)
    return output_fn(
        scores,
        response_type,
        explanations=explain_features(features, model, scores),
        model_card=model.model_card,
    )


def invoke(
    model: LoadedModel, body: bytes | str, content_type: str | None, accept: str | None
) -> tuple[bytes, str]:
    """One request end to end, as the local endpoint serves it.

    Checks the content type (415) and the ``Accept`` header (406, where ``*/*`` means the request
    type's own) before parsing, then runs :func:`input_fn`, :func:`predict_fn` and
    :func:`output_fn`; a JSON request with ``"explain": true`` gets :func:`answer_readings`
    with the explanations (JSON only).
    """
    request_type = check_content_type(content_type)
    response_type = negotiate_accept(accept, request_type)
    readings = parse_readings(body, request_type)
    if readings.explain:
        return answer_readings(readings, model, explain_response_type(accept), explain=True)
    prediction = predict_fn(readings_frame(readings), model)
    return output_fn(prediction, response_type)


# ---- The stock container's request handler -----------------------------------------------------
#: The answer to a request that failed for a reason other than its input (as the local endpoint's).
_INTERNAL_ERROR: Final = {
    "error": "internal_error",
    "message": "the endpoint failed to answer; see its log",
    "row": None,
    "field": None,
}


def respond(
    model: LoadedModel,
    body: bytes | bytearray | memoryview | str,
    content_type: str | None,
    accept: str | None,
) -> tuple[int, bytes, str]:
    """One request as the HTTP answer ``(status, body, content type)`` the local endpoint gives.

    :func:`invoke` for a good request (200); a bad one gets its error's status (400, 406, 413,
    415) and the JSON body ``{"error", "message", "row", "field"}``; any other failure is logged
    and gets a 500 with the same JSON shape. Never raises for bad input.
    """
    try:
        answer, answer_type = invoke(model, body, content_type, accept)
    except ServingError as error:
        return error.status_code, json.dumps(error.detail).encode(), JSON_CONTENT_TYPE
    except Exception:
        logger.exception("unexpected failure answering a request")
        return 500, json.dumps(_INTERNAL_ERROR).encode(), JSON_CONTENT_TYPE
    return 200, answer, answer_type


def transform_fn(
    model: LoadedModel,
    request_body: bytes | str,
    request_content_type: str | None,
    accept: str | None,
) -> Any:
    """``POST /invocations`` in the stock SageMaker XGBoost container: :func:`respond`, as the
    container toolkit's response object (``sagemaker_containers``' ``worker.Response``).

    The toolkit hands this function the request already interpreted: a missing ``Content-Type``
    replaced by ``application/json``, a missing or ``*/*`` ``Accept`` by its default (JSON), and a
    ``text/csv`` or ``application/json`` body decoded to text. So the headers are read from the
    request being served (``ContentType`` keeps the precedence the toolkit gives it over
    ``Content-Type``), and a text body is encoded back to the UTF-8 bytes the client sent: the
    container then answers as the local endpoint does (CSV for a CSV request without ``Accept``,
    415 without ``Content-Type``, a byte-order mark dropped, 413 counted in bytes). One
    difference is left: the toolkit has already replaced bytes that are not UTF-8 by U+FFFD,
    so such a body gets a 400 naming the field the replacement landed in, not the local
    endpoint's "not UTF-8 text". Every answer carries ``X-Model-Version`` when the version is
    known.

    Only for the container: it needs ``sagemaker_containers`` and Flask (imported here, not at
    module level, so that this module imports without them). Elsewhere, use :func:`respond` or
    :func:`invoke`.
    """
    # The container's toolkit and its web framework: imported here, never at module level.
    import flask  # noqa: PLC0415
    from sagemaker_containers.beta.framework import worker  # noqa: PLC0415

    if flask.has_request_context():
        headers = flask.request.headers
        request_content_type = headers.get("ContentType") or headers.get("Content-Type")
        accept = headers.get("Accept")
    if isinstance(request_body, str):
        request_body = request_body.encode("utf-8")
    status, body, content_type = respond(model, request_body, request_content_type, accept)
    response_headers = {"Content-Type": content_type}  # as is: no "; charset=utf-8" added
    if model.model_version is not None:
        response_headers[MODEL_VERSION_HEADER] = str(model.model_version)
    return worker.Response(response=body, status=status, headers=response_headers)
