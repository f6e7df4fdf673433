"""Nodes of the ``batch_scoring`` pipeline: a file of readings scored by a registered model.

The model is a version of the model registry (the newest Approved one unless the parameters name
a version), its archive checked against the sha256 the registry recorded, extracted and loaded by
the endpoint's own ``model_fn``; rows are validated by the endpoint's rules (:mod:`.chunks`) and
scored by the endpoint's feature and prediction code (``inference.score_columns``), so a row
gets the score the endpoint would answer, and, from a model that has them, the calibrated
probability and the likely failure mode an explained answer gives. The file is read,
validated, scored and written a chunk at a time (``score_batch`` is a generator: Kedro saves
every chunk it yields), so memory does not grow with the file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from predictive_maintenance.datasets.table_chunks import Chunk, TableChunks
from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.pipelines.batch_scoring.chunks import (
    REJECT_COLUMNS,
    BatchInputError,
    Columns,
    ValidChunk,
    blank_lines,
    csv_chunk,
    csv_columns,
    parquet_chunk,
    parquet_columns,
)
from predictive_maintenance.schema import ID_COLUMNS

if TYPE_CHECKING:
    import pyarrow as pa

    from predictive_maintenance.serving.inference import LoadedModel

logger = logging.getLogger(__name__)

APPROVED = "Approved"
REJECTED = "Rejected"


class ModelChoiceError(LookupError):
    """No registered model version can score the batch (none Approved, an unknown version...)."""


def choose_model_version(
    model_registry: dict[str, Any], version: int | None, model_package_arn: str = ""
) -> dict[str, Any]:
    """The registry version to score with: the one named, or the newest Approved one.

    Args:
        model_registry: The registry dataset's state: ``group`` and ``versions`` (each with
            ``version``, ``approval_status``, ``archive_sha256``, ``archive_uri``, and on
            SageMaker ``model_package_arn``).
        version: A version number, or None.
        model_package_arn: A SageMaker model package ARN of the group (what the exported
            pipeline's ``ModelPackageArn`` parameter sets), or empty.

    A named version may be pending approval (to try a candidate), never Rejected; with neither
    named, the newest Approved version.
    """
    group = model_registry["group"]
    versions = model_registry["versions"]
    if model_package_arn:
        entry = next((e for e in versions if e.get("model_package_arn") == model_package_arn), None)
        if entry is None:
            raise ModelChoiceError(
                f"model package {model_package_arn} is not a version of group {group!r}"
            )
        return _usable(entry, group)
    if version is None:
        approved = [entry for entry in versions if entry["approval_status"] == APPROVED]
        if not approved:
            raise ModelChoiceError(
                f"model package group {group!r} has no Approved version to score with"
                + (
                    f" (its versions: {', '.join(_status(entry) for entry in versions)}); "
                    "approve one with `kedro model approve N`"
                    if versions
                    else "; it has no version at all: run `kedro run` first"
                )
                + ", or name one with --params batch_scoring.model_version=N"
            )
        return max(approved, key=lambda entry: entry["version"])
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelChoiceError(
            f"batch_scoring.model_version must be a version number or null, not {version!r}"
        )
    for entry in versions:
        if entry["version"] == version:
            return _usable(entry, group)
    known = ", ".join(str(entry["version"]) for entry in versions) or "none"
    raise ModelChoiceError(f"model package group {group!r} has no version {version} ({known})")


def _usable(entry: dict[str, Any], group: str) -> dict[str, Any]:
    if entry["approval_status"] == REJECTED:
        raise ModelChoiceError(
            f"version {entry['version']} of {group!r} is Rejected; score with another version"
        )
    return entry


def select_model(model_registry: dict[str, Any], batch_scoring: dict[str, Any]) -> dict[str, Any]:
    """The model version the batch is scored with, its archive checked against the registry.

    Args:
        model_registry: The model registry's state (the ``model_registry`` dataset).
        batch_scoring: ``model_version`` (null: the newest Approved version) and
            ``model_package_arn`` (SageMaker: a package of the group; empty: not set).

    Returns:
        ``group``, ``version``, ``approval_status``, ``archive_uri``, ``archive_sha256`` and
        ``model_package_arn`` (empty for the local registry): what the scoring step and, in the
        exported pipeline, the Batch Transform's model are made from.
    """
    entry = choose_model_version(
        model_registry,
        batch_scoring.get("model_version"),
        batch_scoring.get("model_package_arn") or "",
    )
    _read_archive(entry)
    logger.info(
        "batch scoring with version %d of %s (%s, archive sha256 %s)",
        entry["version"],
        model_registry["group"],
        entry["approval_status"],
        entry["archive_sha256"][:12],
    )
    return {
        "group": model_registry["group"],
        "version": entry["version"],
        "approval_status": entry["approval_status"],
        "archive_uri": str(entry["archive_uri"]),
        "archive_sha256": entry["archive_sha256"],
        "model_package_arn": entry.get("model_package_arn") or "",
    }


def _status(entry: dict[str, Any]) -> str:
    return f"{entry['version']} {entry['approval_status']}"


def _read_archive(entry: dict[str, Any]) -> bytes:
    """The version's ``model.tar.gz`` from its ``archive_uri`` (a local path, or ``s3://`` read
    with boto3, which the SageMaker image has), checked against the registry's sha256."""
    expected = entry.get("archive_sha256")
    uri = str(entry["archive_uri"])
    if not expected:
        raise ModelChoiceError(
            f"version {entry['version']}'s archive {uri} has no recorded sha256 to check it "
            "against; `kedro model show` says why"
        )
    if uri.startswith("s3://"):
        from predictive_maintenance.sagemaker.aws import client, split_s3_uri  # noqa: PLC0415

        bucket, key = split_s3_uri(uri)
        archive = client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    else:
        archive = Path(uri.removeprefix("file://")).read_bytes()
    verify_sha256(archive, expected, uri)
    return archive


def load_registered_model(entry: dict[str, Any]) -> LoadedModel:
    """The version's archive, checked, extracted and loaded as the endpoint does (``model_fn``,
    which also checks the booster against the spec's sha256)."""
    from predictive_maintenance.serving.inference import model_fn  # noqa: PLC0415
    from predictive_maintenance.serving.package import extract_model_archive  # noqa: PLC0415

    archive = _read_archive(entry)
    with tempfile.TemporaryDirectory(prefix="pm-batch-model-") as directory:
        model = model_fn(extract_model_archive(archive, Path(directory)))
    return model.with_version(entry["version"])


def score_batch(
    batch_readings: TableChunks,
    batch_model: dict[str, Any],
    batch_scoring: dict[str, Any],
) -> Iterator[tuple[Chunk, Chunk, dict[str, Any]]]:
    """Scores a file of readings chunk by chunk with a registered model.

    Args:
        batch_readings: The file (CSV or Parquet), to be read in chunks.
        batch_model: The registry version to score with (:func:`select_model`).
        batch_scoring: ``nthread`` (XGBoost threads; null: every core) and ``progress_bar``
            (true: tqdm on a terminal).

    Yields:
        Per chunk: the scored rows (the input's ids, ``line``, ``score``, ``predicted_label``;
        ``probability``, ``failure_mode`` and ``failure_mode_probability`` when the model has a
        calibration map and a failure-mode model)
        and the rejected rows (``line``, ``field``, ``reason``), each in a :class:`Chunk` that
        the dataset empties when it saves it (so that nothing keeps them in memory), and the
        summary so far.
    """
    started = time.perf_counter()
    model = load_registered_model(batch_model)
    nthread = batch_scoring.get("nthread") or os.cpu_count() or 1
    model.booster.set_param({"nthread": int(nthread)})  # our copy; the endpoint keeps 1
    summary: dict[str, Any] = {
        "input": str(batch_readings),
        "model": {**batch_model, "decision_threshold": model.decision_threshold},
        "rows_scored": 0,
        "rows_rejected": 0,
        "blank_lines": 0,
        "predicted_failures": 0,
        "chunks": 0,
        "seconds": 0.0,
    }
    progress = _progress(batch_readings, batch_scoring.get("progress_bar", True))
    try:
        for valid in _validated_chunks(batch_readings):
            scored = _scored(valid, model)
            rejects = _rejects(valid)
            summary["rows_scored"] += len(valid)
            summary["rows_rejected"] += len(valid.rejects)
            summary["blank_lines"] += valid.blank
            summary["predicted_failures"] += int(scored["predicted_label"].sum())
            summary["chunks"] += 1
            summary["seconds"] = round(time.perf_counter() - started, 3)
            if progress is not None:
                progress.update(len(valid) + len(valid.rejects) + valid.blank)
            yield Chunk(scored), Chunk(rejects), dict(summary)
    finally:
        if progress is not None:
            progress.close()
    logger.info(
        "scored %s rows (%s predicted failures), rejected %s (see batch_rejects) in %.1f s",
        f"{summary['rows_scored']:,}",
        f"{summary['predicted_failures']:,}",
        f"{summary['rows_rejected']:,}",
        summary["seconds"],
    )


def _validated_chunks(readings: TableChunks) -> Iterator[ValidChunk]:
    """The file's chunks, validated; at least one (empty for a file without readings), so that
    every output is written."""
    columns: Columns | None = None
    count = 0
    for table in readings:
        if columns is None:
            columns = _columns(readings, table)
            if columns is None:
                continue
        count += 1
        if readings.file_format == "csv":
            yield csv_chunk(table, columns)
        else:
            yield parquet_chunk(table, columns, str(readings))
    if not count:
        yield _empty_chunk(columns)


def _columns(readings: TableChunks, first: pa.Table) -> Columns | None:
    """The file's layout, from its first chunk."""
    import pyarrow.compute as pc  # noqa: PLC0415

    if readings.file_format == "parquet":
        names = [name for name in first.column_names if name != "line"]
        return parquet_columns(names, str(readings))
    text = first.column("text").combine_chunks()
    head = first.filter(pc.invert(blank_lines(text))).slice(0, 2)
    pairs = list(zip(head.column("line").to_pylist(), head.column("text").to_pylist(), strict=True))
    try:
        return csv_columns(pairs)
    except BatchInputError as error:
        raise BatchInputError(f"{readings}: {error}") from None


def _empty_chunk(columns: Columns | None) -> ValidChunk:
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415

    ids = {} if columns is None else dict(columns.ids)
    return ValidChunk(
        lines=np.zeros(0, dtype=np.int64),
        ids={column: pa.array([], pa.large_string()) for column in ids},
        type_code=np.zeros(0),
        numbers=[np.zeros(0) for _ in range(5)],
        rejects=[],
    )


def _scored(valid: ValidChunk, model: LoadedModel) -> pd.DataFrame:
    from predictive_maintenance.serving.inference import (  # noqa: PLC0415
        predicted_labels,
        score_columns,
    )

    scores, insight = score_columns(valid.type_code, valid.numbers, model)
    columns: dict[str, Any] = {
        column: valid.ids[column].to_pandas() for column in ID_COLUMNS if column in valid.ids
    }
    columns["line"] = valid.lines
    columns["score"] = scores.view(type(scores).__base__)
    columns["predicted_label"] = predicted_labels(scores)
    # How sure and which failure, for a model packaged with its calibration and mode model.
    columns.update(insight)
    frame = pd.DataFrame(columns)
    if "failure_mode" in frame:
        frame["failure_mode"] = frame["failure_mode"].astype("string")
    return frame


def _rejects(valid: ValidChunk) -> pd.DataFrame:
    rows = sorted(valid.rejects, key=lambda reject: reject[0])
    frame = pd.DataFrame(rows, columns=list(REJECT_COLUMNS))
    return frame.astype({"line": "int64", "field": "string", "reason": "string"})


def _progress(readings: TableChunks, enabled: bool) -> Any:
    """A tqdm bar over the file's rows, on a terminal only (``disable=None``)."""
    if not enabled:
        return None
    from tqdm import tqdm  # noqa: PLC0415

    return tqdm(total=readings.total_rows(), unit="rows", unit_scale=True, disable=None)
