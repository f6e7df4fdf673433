"""Nodes of the ``data_engineering`` pipeline.

scikit-learn (over a second to import) and pandera (with its schema, a third of a second) are
imported by the nodes that use them: every ``kedro run`` imports every pipeline's nodes before
running any.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from predictive_maintenance.features import build_features
from predictive_maintenance.integrity import sha256_hex, verify_sha256
from predictive_maintenance.schema import ID_COLUMNS, LABEL_COLUMNS, TARGET_COLUMN


def ingest_raw_data(raw_csv: bytes, expected_sha256: str | None) -> tuple[pd.DataFrame, dict]:
    """Checks the raw file against its expected sha256 and parses it.

    Args:
        raw_csv: The raw CSV's bytes, exactly as stored.
        expected_sha256: The digest the file must have; ``None`` accepts any file (validation
            still applies), e.g. when you swap in your own data.

    Returns:
        The parsed (still untyped) readings and the raw file's digest and size.
    """
    from predictive_maintenance.validation import parse_raw_csv  # noqa: PLC0415 -- pandera

    if expected_sha256:
        digest = verify_sha256(raw_csv, expected_sha256, "raw data file (catalog: ai4i2020_raw)")
    else:
        digest = sha256_hex(raw_csv)
    return parse_raw_csv(raw_csv), {"sha256": digest, "size_bytes": len(raw_csv)}


def validate_raw_readings(
    raw_readings: pd.DataFrame, raw_file: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Types the readings and enforces the schema; nothing downstream runs if this fails.

    Returns:
        The validated readings and the provenance of the validated data (raw file digest, size,
        rows), written only once the data is known to be good.
    """
    from predictive_maintenance.validation import validate_readings  # noqa: PLC0415 -- pandera

    readings = validate_readings(raw_readings)
    return readings, {**raw_file, "rows": len(readings)}


def create_model_input_table(readings: pd.DataFrame) -> pd.DataFrame:
    """Model features next to the identifiers and labels kept for evaluation (never features)."""
    return pd.concat(
        [readings[list(ID_COLUMNS)], build_features(readings), readings[list(LABEL_COLUMNS)]],
        axis="columns",
    )


def _holdout_positions(
    labels: np.ndarray, holdout_rows: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the kept and the held-out rows (scikit-learn's stratified split of
    ``labels``), each in ascending order."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    kept, held_out = train_test_split(
        np.arange(len(labels)), test_size=holdout_rows, stratify=labels, random_state=seed
    )
    return np.sort(kept), np.sort(held_out)


def _in_index_order(frame: pd.DataFrame, positions: np.ndarray) -> np.ndarray:
    """``positions`` reordered so that the rows they take are in ``frame``'s index order."""
    return positions[np.argsort(frame.index.to_numpy()[positions], kind="stable")]


def stratified_holdout(
    frame: pd.DataFrame, holdout_rows: int, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Takes ``holdout_rows`` rows out of ``frame``, keeping the failure rate in both parts.

    Returns:
        The remaining rows and the held-out rows, each sorted by ``frame``'s index.
    """
    kept, held_out = _holdout_positions(frame[TARGET_COLUMN].to_numpy(), holdout_rows, seed)
    return (
        frame.iloc[_in_index_order(frame, kept)],
        frame.iloc[_in_index_order(frame, held_out)],
    )


def split_data(
    model_input_table: pd.DataFrame, split: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Stratified train/validation/test split on the failure label.

    Args:
        model_input_table: Features and labels.
        split: ``validation_fraction``, ``test_fraction`` (of all rows) and ``seed``.

    Returns:
        Train, validation and test frames, each keeping the failure rate of the whole.
    """
    test_fraction = split["test_fraction"]
    validation_fraction = split["validation_fraction"]
    if not (0 < test_fraction < 1 and 0 < validation_fraction < 1):
        raise ValueError("split fractions must be in (0, 1)")
    if test_fraction + validation_fraction >= 1:
        raise ValueError("split: test_fraction + validation_fraction must leave rows to train on")
    rows = len(model_input_table)
    labels = model_input_table[TARGET_COLUMN].to_numpy()
    # The test rows first, then validation from the rest; positions until the end, so the wide
    # frame is copied once per split (a million rows: 1 s rather than 6).
    rest, test = _holdout_positions(labels, round(rows * test_fraction), split["seed"])
    rest = _in_index_order(model_input_table, rest)
    train, validation = _holdout_positions(
        labels[rest], round(rows * validation_fraction), split["seed"]
    )
    return tuple(
        model_input_table.iloc[_in_index_order(model_input_table, positions)]
        for positions in (rest[train], rest[validation], test)
    )


def _describe_split(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": len(frame),
        "failures": int(frame[TARGET_COLUMN].sum()),
        "failure_rate": round(float(frame[TARGET_COLUMN].mean()), 6),
    }


def create_dataset_manifest(
    raw_data_provenance: dict,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
    split: dict[str, Any],
) -> dict[str, Any]:
    """Records where the splits came from and what they hold, for the model's lineage."""
    return {
        "raw_data": raw_data_provenance,
        "split": dict(split),
        "splits": {
            name: _describe_split(frame)
            for name, frame in (("train", train), ("validation", validation), ("test", test))
        },
    }
