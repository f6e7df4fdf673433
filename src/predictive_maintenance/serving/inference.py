"""The SageMaker inference contract: script-mode handlers for the stock XGBoost container.

``model.tar.gz`` carries this module (see :mod:`.package`); the container imports
``code/inference.py`` (``SAGEMAKER_PROGRAM``), which re-exports the four handlers defined here, and
calls them as::

    model = model_fn("/opt/ml/model")
    data = input_fn(request_body, request_content_type)
    prediction = predict_fn(data, model)
    body, content_type = output_fn(prediction, accept)

The local endpoint (:mod:`.server`) calls the very same functions, so both serve identical answers.
Features are computed by :func:`predictive_maintenance.features.build_features`, the function
training uses.

Imports are limited to the standard library, numpy, pandas, xgboost and this project's ``schema``,
``features`` and ``integrity`` modules and :mod:`.contract`: the container has nothing else (no
Kedro, pandera, sklearn).
The module must also keep running on the container's Python (3.10 and up).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import os
import re
from typing import Any, Final

import numpy as np
import pandas as pd
import xgboost as xgb

from predictive_maintenance.features import FEATURE_COLUMNS, FeatureError, build_features
from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.schema import PRODUCT_TYPES, READING_COLUMNS, READING_RANGES
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    CSV_FIELDS,
    DEFAULT_ACCEPT,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MAX_PAYLOAD_BYTES,
    MODEL_FILE,
    MODEL_VERSION_ENV,
    SPEC_FILE,
    SUPPORTED_CHARSETS,
    SUPPORTED_CONTENT_TYPES,
)

try:  # Inside the SageMaker container: errors with a status become that HTTP status, not a 500.
    from sagemaker_inference.errors import (  # type: ignore[import-not-found]
        BaseInferenceToolkitError as _ToolkitError,
    )
except ImportError:  # pragma: no cover - depends on the environment
    _ToolkitError = Exception

logger = logging.getLogger(__name__)

_NUMERIC_COLUMNS: Final = READING_COLUMNS[1:]
_RANGES: Final = tuple(READING_RANGES[column] for column in _NUMERIC_COLUMNS)
_PRODUCT_TYPES: Final = frozenset(PRODUCT_TYPES)
_READING_KEYS: Final = frozenset(READING_COLUMNS)
_FIELD_COUNT: Final = len(READING_COLUMNS)
#: A plain decimal number as sensors and spreadsheets write it (optional sign, exponent, spaces).
_DECIMAL: Final = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
#: Column labels of a readings frame, built once (an object Index: no per-request inference).
_READING_INDEX: Final = pd.Index(list(READING_COLUMNS), dtype=object)
#: pandas' internal constructor from column arrays, when this pandas has it (all since 0.23).
_FRAME_FROM_ARRAYS: Final = getattr(pd.DataFrame, "_from_arrays", None)


# ---- Errors ------------------------------------------------------------------------------------
class ServingError(_ToolkitError):
    """A request the model cannot answer, with its HTTP status and a JSON-able detail.

    In the SageMaker container these derive from the inference toolkit's error base, so the
    container answers with :attr:`status_code` instead of a 500.
    """

    status_code: int = 400
    phrase: str = "Bad Request"
    error: str = "invalid_input"

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        Exception.__init__(self, message)
        self.message = message
        self.row = row
        self.field = field

    @property
    def detail(self) -> dict[str, Any]:
        """The JSON error body: ``error``, ``message``, ``row`` (0-based) and ``field``."""
        return {"error": self.error, "message": self.message, "row": self.row, "field": self.field}


class InvalidInput(ServingError):
    """The body cannot be parsed, or a row holds a missing, extra or implausible value."""


class UnsupportedMediaType(ServingError):
    """The request's content type is not one of :data:`SUPPORTED_CONTENT_TYPES`."""

    status_code = 415
    phrase = "Unsupported Media Type"
    error = "unsupported_media_type"


class NotAcceptable(ServingError):
    """No media type the client accepts is one of :data:`SUPPORTED_CONTENT_TYPES`."""

    status_code = 406
    phrase = "Not Acceptable"
    error = "not_acceptable"


class PayloadTooLarge(ServingError):
    """The request body exceeds :data:`MAX_PAYLOAD_BYTES`."""

    status_code = 413
    phrase = "Payload Too Large"
    error = "payload_too_large"


class ModelLoadError(ValueError):
    """A model directory is incomplete, tampered with or inconsistent with this code."""


def _row_error(row: int, field: str, problem: str) -> InvalidInput:
    return InvalidInput(f"row {row}, field {field}: {problem}", row=row, field=field)


# ---- The loaded model --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """Everything a request needs: the booster, its spec and the decision threshold."""

    booster: xgb.Booster
    spec: dict[str, Any]
    decision_threshold: float
    model_sha256: str
    model_dir: str
    #: Registry version, if known (``spec["model_version"]``, or the endpoint's deployment state).
    model_version: int | None = None

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
    return LoadedModel(
        booster=booster,
        spec=spec,
        decision_threshold=float(threshold),
        model_sha256=model_sha256,
        model_dir=model_dir,
        model_version=model_version,
    )


# ---- Requests ----------------------------------------------------------------------------------
def media_type(header: str | None) -> str:
    """``text/csv; charset=utf-8`` -> ``text/csv`` (lower case, parameters dropped)."""
    if not header:
        return ""
    return header.partition(";")[0].strip().lower()


def check_content_type(header: str | None) -> str:
    """The supported media type a ``Content-Type`` header names, or :class:`UnsupportedMediaType`.

    Parameters are accepted as long as a ``charset`` is UTF-8 (or ASCII).
    """
    if header in SUPPORTED_CONTENT_TYPES:  # the common case, without parsing
        return header  # type: ignore[return-value]
    media, _, parameters = (header or "").partition(";")
    media = media.strip().lower()
    if media not in SUPPORTED_CONTENT_TYPES:
        raise UnsupportedMediaType(
            f"content type {header!r} is not supported; send one of {list(SUPPORTED_CONTENT_TYPES)}"
        )
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            if charset not in SUPPORTED_CHARSETS:
                raise UnsupportedMediaType(
                    f"charset {charset!r} is not supported; send UTF-8 ({header!r})"
                )
    return media


def negotiate_accept(accept: str | None, content_type: str | None = None) -> str:
    """The response media type for an ``Accept`` header, or :class:`NotAcceptable`.

    ``*/*`` or no header gives the request type's natural answer (CSV for CSV, JSON for JSON;
    :data:`DEFAULT_ACCEPT` when ``content_type`` is not a supported type). Lists and ``q`` values
    (``application/json;q=0.9, text/csv``) are honoured; ``text/*`` means CSV, ``application/*``
    JSON.
    """
    natural = media_type(content_type)
    if natural not in SUPPORTED_CONTENT_TYPES:
        natural = DEFAULT_ACCEPT
    if not accept or accept == "*/*":
        return natural
    if accept in SUPPORTED_CONTENT_TYPES:
        return accept
    candidates = []
    for position, item in enumerate(accept.split(",")):
        media, _, parameters = item.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 1.0
        if quality > 0:
            candidates.append((-quality, position, media.strip().lower()))
    wildcards = {"*/*": natural, "text/*": CSV_CONTENT_TYPE, "application/*": JSON_CONTENT_TYPE}
    for _, _, media in sorted(candidates):
        if media in SUPPORTED_CONTENT_TYPES:
            return media
        if media in wildcards:
            return wildcards[media]
    raise NotAcceptable(
        f"cannot answer in any of {accept!r}; accepted: {list(SUPPORTED_CONTENT_TYPES)} or */*"
    )


def _decode(body: bytes | bytearray | memoryview | str) -> str:
    if isinstance(body, str):
        return body
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the body is not UTF-8 text: {error}") from None
    return text[1:] if text.startswith("\ufeff") else text


def _number(row: int, column: str, value: Any, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if not low <= value <= high:  # also false for NaN
        raise _row_error(row, column, f"{value!r} is outside the plausible range [{low}, {high}]")
    return value


def _product_type(row: int, value: Any) -> str:
    if not isinstance(value, str) or value not in _PRODUCT_TYPES:
        raise _row_error(row, "type", f"{value!r} is not a product type {list(PRODUCT_TYPES)}")
    return value


@dataclasses.dataclass(frozen=True)
class Readings:
    """Validated readings of one request, column by column (what :func:`input_fn` frames)."""

    types: list[str]
    #: One list per numeric reading, in ``READING_COLUMNS[1:]`` order.
    columns: tuple[list[float], ...]

    def __len__(self) -> int:
        return len(self.types)


def readings_frame(readings: Readings | list[Readings]) -> pd.DataFrame:
    """The readings of one request (or of several, one after the other) as one frame.

    ``type`` is an object column, the readings float64, the index a RangeIndex.
    """
    parts = [readings] if isinstance(readings, Readings) else readings
    types = parts[0].types if len(parts) == 1 else [t for part in parts for t in part.types]
    arrays = [np.array(types, dtype=object)]
    for index in range(len(_NUMERIC_COLUMNS)):
        values = (
            parts[0].columns[index]
            if len(parts) == 1
            else [value for part in parts for value in part.columns[index]]
        )
        arrays.append(np.array(values, dtype=np.float64))
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


def _parse_csv(text: str) -> Readings:
    lines = text.split("\n")
    while lines and not lines[-1].strip():  # the final line break (and trailing blank lines)
        lines.pop()
    if not lines:
        raise InvalidInput(
            "the body holds no rows; send one CSV row per line: " + ",".join(CSV_FIELDS)
        )
    types: list[str] = []
    columns: list[list[float]] = [[] for _ in _NUMERIC_COLUMNS]
    for row, raw_line in enumerate(lines):
        line = raw_line[:-1] if raw_line.endswith("\r") else raw_line
        fields = next(csv.reader([line], skipinitialspace=True)) if '"' in line else line.split(",")
        if len(fields) != _FIELD_COUNT:
            if len(fields) < _FIELD_COUNT:
                problem = "missing" if line.strip() else "missing (the row is empty)"
                raise _row_error(
                    row,
                    READING_COLUMNS[len(fields)] if line.strip() else READING_COLUMNS[0],
                    f"{problem}: the row has {len(fields) if line.strip() else 0} fields, "
                    f"expected {_FIELD_COUNT}: " + ",".join(CSV_FIELDS),
                )
            raise InvalidInput(
                f"row {row}: {len(fields)} fields, expected {_FIELD_COUNT}: "
                + ",".join(CSV_FIELDS),
                row=row,
            )
        types.append(_product_type(row, fields[0].strip()))
        for index, (column, bounds) in enumerate(zip(_NUMERIC_COLUMNS, _RANGES, strict=True)):
            raw = fields[index + 1]
            # float() alone would also take "29_8.4", "nan" or non-ASCII digits.
            if not _DECIMAL.fullmatch(raw):
                raise _row_error(row, column, f"{raw!r} is not a number")
            value = float(raw)
            columns[index].append(_number(row, column, value, bounds))
    return Readings(types, tuple(columns))


def _parse_json(text: str) -> Readings:
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise InvalidInput(f"the body is not valid JSON: {error}") from None
    if not isinstance(payload, dict) or JSON_INSTANCES_KEY not in payload:
        raise InvalidInput(
            f'the body must be a JSON object {{"{JSON_INSTANCES_KEY}": [...]}}',
            field=JSON_INSTANCES_KEY,
        )
    extra = sorted(set(payload) - {JSON_INSTANCES_KEY})
    if extra:
        raise InvalidInput(
            f"unexpected key {extra[0]!r}: the body holds only {JSON_INSTANCES_KEY!r}",
            field=extra[0],
        )
    instances = payload[JSON_INSTANCES_KEY]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput(
            f"{JSON_INSTANCES_KEY!r} must be a non-empty list of readings",
            field=JSON_INSTANCES_KEY,
        )
    types: list[str] = []
    columns: list[list[float]] = [[] for _ in _NUMERIC_COLUMNS]
    for row, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise InvalidInput(
                f"row {row}: an instance must be an object with {list(READING_COLUMNS)}", row=row
            )
        if instance.keys() != _READING_KEYS:
            missing = [column for column in READING_COLUMNS if column not in instance]
            if missing:
                raise _row_error(row, missing[0], "missing")
            unexpected = sorted(str(key) for key in instance if key not in _READING_KEYS)
            raise _row_error(
                row, unexpected[0], f"unexpected field; expected only {list(READING_COLUMNS)}"
            )
        types.append(_product_type(row, instance["type"]))
        for index, (column, bounds) in enumerate(zip(_NUMERIC_COLUMNS, _RANGES, strict=True)):
            value = instance[column]
            if type(value) not in (int, float):  # bool is an int; "298.4" is not a number
                raise _row_error(row, column, f"{value!r} is not a number")
            try:
                number = float(value)
            except OverflowError:
                number = float("inf")
            columns[index].append(_number(row, column, number, bounds))
    return Readings(types, tuple(columns))


def parse_readings(
    request_body: bytes | bytearray | memoryview | str, request_content_type: str | None
) -> Readings:
    """Parses and validates a request body; :func:`input_fn` without the frame."""
    content_type = check_content_type(request_content_type)
    if len(request_body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(
            f"the body has {len(request_body):,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}"
        )
    text = _decode(request_body)
    return _parse_csv(text) if content_type == CSV_CONTENT_TYPE else _parse_json(text)


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
        InvalidInput: naming the first bad row (0-based) and field (400).
    """
    return readings_frame(parse_readings(request_body, request_content_type))


def predict_fn(input_data: pd.DataFrame, model: LoadedModel) -> Scores:
    """Failure scores for the readings: :func:`build_features`, then the booster (float32)."""
    try:
        features = build_features(input_data)
    except FeatureError as error:
        raise InvalidInput(str(error)) from None
    matrix = np.ascontiguousarray(features.to_numpy(dtype=np.float32))
    # The column order is FEATURE_COLUMNS (build_features guarantees it; model_fn checked that the
    # booster was trained on the same names), so the names need no check per request.
    scores = model.booster.inplace_predict(matrix, validate_features=False).view(Scores)
    scores.decision_threshold = model.decision_threshold
    scores.model_version = model.model_version
    return scores


def _score_text(score: np.float32) -> str:
    # The shortest text that reads back as the same float32 (as the XGBoost container prints it).
    return str(score)


def output_fn(prediction: np.ndarray, accept: str | None) -> tuple[bytes, str]:
    """Serialises scores: ``text/csv`` one per line, or ``application/json``.

    JSON: ``{"predictions": [{"score": 0.93, "predicted_label": 1}], "model_version": 3}``, the
    label being ``score >= decision_threshold`` (left out when ``prediction`` does not carry the
    threshold) and the version ``null`` when unknown. ``*/*`` or no ``Accept`` gives JSON here;
    the local server answers CSV requests in CSV.
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
    body = (
        f'{{"predictions": [{", ".join(items)}], '
        f'"model_version": {"null" if version is None else int(version)}}}'
    )
    return body.encode(), response_type


def invoke(
    model: LoadedModel, body: bytes | str, content_type: str | None, accept: str | None
) -> tuple[bytes, str]:
    """One request end to end, as the local endpoint serves it.

    Checks the content type (415) and the ``Accept`` header (406, where ``*/*`` means the request
    type's own) before parsing, then runs :func:`input_fn`, :func:`predict_fn` and
    :func:`output_fn`.
    """
    request_type = check_content_type(content_type)
    response_type = negotiate_accept(accept, request_type)
    prediction = predict_fn(input_fn(body, request_type), model)
    return output_fn(prediction, response_type)
