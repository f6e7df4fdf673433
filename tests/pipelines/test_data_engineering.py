"""Nodes and the pipeline of ``data_engineering``."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from predictive_maintenance import validation
from predictive_maintenance.features import FEATURE_COLUMNS
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.pipelines.data_engineering import create_pipeline
from predictive_maintenance.pipelines.data_engineering.nodes import (
    create_dataset_manifest,
    create_model_input_table,
    ingest_raw_data,
    split_data,
    validate_raw_readings,
)
from predictive_maintenance.schema import ID_COLUMNS, LABEL_COLUMNS
from predictive_maintenance.validation import RawDataError
from tests.catalogs import RecordingDataset, memory_catalog

OFFICIAL_SHA256 = "dc6630cd9b1f0f853922fad78a1b6436570d3f1ec863f1dd5c4340ac56bc8a8e"


@pytest.fixture(scope="module")
def model_input_table(raw_csv_bytes) -> pd.DataFrame:
    readings, _ = validate_raw_readings(*ingest_raw_data(raw_csv_bytes, OFFICIAL_SHA256))
    return create_model_input_table(readings)


def test_parameters_hold_the_official_checksum(parameters):
    assert parameters["raw_data"]["sha256"] == OFFICIAL_SHA256


def test_ingest_checks_sha256_and_records_provenance(raw_csv_bytes):
    raw_readings, provenance = ingest_raw_data(raw_csv_bytes, OFFICIAL_SHA256.upper())

    assert len(raw_readings) == 10_000
    assert provenance == {"sha256": OFFICIAL_SHA256, "size_bytes": 522_048}


def test_validation_records_the_provenance_of_good_data(raw_csv_bytes):
    readings, provenance = validate_raw_readings(*ingest_raw_data(raw_csv_bytes, OFFICIAL_SHA256))

    assert provenance == {"sha256": OFFICIAL_SHA256, "size_bytes": 522_048, "rows": len(readings)}


def test_ingest_rejects_another_file_naming_both_digests(raw_csv_bytes):
    altered = raw_csv_bytes.replace(b"298.1", b"298.2", 1)

    with pytest.raises(ChecksumMismatchError) as error:
        ingest_raw_data(altered, OFFICIAL_SHA256)

    assert sha256_hex(altered) in str(error.value)
    assert OFFICIAL_SHA256 in str(error.value)
    assert "ai4i2020_raw" in str(error.value)


def test_ingest_without_expected_checksum_accepts_other_data(raw_csv_bytes):
    altered = raw_csv_bytes.replace(b"298.1", b"298.2", 1)

    _, provenance = ingest_raw_data(altered, None)

    assert provenance["sha256"] == sha256_hex(altered)


def test_model_input_table_keeps_ids_and_labels_beside_features(model_input_table):
    assert list(model_input_table.columns) == [*ID_COLUMNS, *FEATURE_COLUMNS, *LABEL_COLUMNS]
    assert not model_input_table.isna().any().any()


def test_split_is_80_10_10_stratified_and_disjoint(model_input_table, parameters):
    train, validation, test = split_data(model_input_table, parameters["split"])

    assert (len(train), len(validation), len(test)) == (8000, 1000, 1000)
    assert set(train.udi).isdisjoint(validation.udi)
    assert set(train.udi).isdisjoint(test.udi)
    assert set(validation.udi).isdisjoint(test.udi)
    assert {len(train) + len(validation) + len(test)} == {len(model_input_table)}
    for part in (train, validation, test):
        assert part.machine_failure.mean() == pytest.approx(0.0339, abs=0.001)


def test_split_is_reproducible_and_seeded(model_input_table, parameters):
    first = split_data(model_input_table, parameters["split"])
    again = split_data(model_input_table, parameters["split"])
    reseeded = split_data(model_input_table, {**parameters["split"], "seed": 7})

    for a, b in zip(first, again, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert set(first[2].udi) != set(reseeded[2].udi)


@pytest.mark.parametrize(
    "split",
    [
        {"validation_fraction": 0.5, "test_fraction": 0.5, "seed": 1},
        {"validation_fraction": 0.0, "test_fraction": 0.1, "seed": 1},
        {"validation_fraction": 0.1, "test_fraction": 1.2, "seed": 1},
    ],
)
def test_split_rejects_impossible_fractions(model_input_table, split):
    with pytest.raises(ValueError, match="fraction"):
        split_data(model_input_table, split)


def test_manifest_describes_the_splits(model_input_table, parameters):
    splits = split_data(model_input_table, parameters["split"])
    provenance = {"sha256": OFFICIAL_SHA256, "size_bytes": 522_048}

    manifest = create_dataset_manifest(provenance, *splits, parameters["split"])

    assert manifest["raw_data"] == provenance
    assert manifest["split"] == parameters["split"]
    assert sum(part["failures"] for part in manifest["splits"].values()) == 339
    assert manifest["splits"]["test"] == {"rows": 1000, "failures": 34, "failure_rate": 0.034}


def test_pipeline_runs_from_raw_bytes_to_splits(raw_csv_bytes, parameters):
    catalog = memory_catalog({"ai4i2020_raw": raw_csv_bytes}, parameters)
    catalog["train"] = train = RecordingDataset()

    outputs = SequentialRunner().run(create_pipeline(), catalog)

    assert len(train.saved) == 8000
    manifest = outputs["dataset_manifest"].load()
    assert manifest["raw_data"]["sha256"] == OFFICIAL_SHA256
    assert {name: split["rows"] for name, split in manifest["splits"].items()} == {
        "train": 8000,
        "validation": 1000,
        "test": 1000,
    }


def test_pipeline_stops_at_validation_before_any_feature_is_built(raw_csv_bytes, parameters):
    broken = raw_csv_bytes.replace(b"\r\n2,L47181,L,298.2", b"\r\n2,L47181,L,29.82", 1)
    params = {**parameters, "raw_data": {**parameters["raw_data"], "sha256": None}}
    catalog = memory_catalog({"ai4i2020_raw": broken}, params)
    downstream = {
        name: RecordingDataset()
        for name in ("readings", "raw_data_provenance", "model_input_table", "train")
    }
    for name, dataset in downstream.items():
        catalog[name] = dataset

    with pytest.raises(RawDataError, match=r"'Air temperature \[K\]'.*line 3: 29.82"):
        SequentialRunner().run(create_pipeline(), catalog)

    assert all(dataset.saved is None for dataset in downstream.values())


# ---- at scale: positions split once, pyarrow parses and types ---------------------------------
def test_split_is_scikit_learns_split_of_the_frame_sorted(model_input_table, parameters):
    """What split_data always returned (train_test_split of the frame, twice, each part sorted
    by index), now from positions and one copy per part."""
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    def holdout(frame, rows, seed):
        kept, held_out = train_test_split(
            frame, test_size=rows, stratify=frame["machine_failure"], random_state=seed
        )
        return kept.sort_index(), held_out.sort_index()

    split = parameters["split"]
    for frame in (model_input_table, model_input_table.sample(frac=1, random_state=1)):
        rows = len(frame)
        rest, test = holdout(frame, round(rows * split["test_fraction"]), split["seed"])
        train, validation = holdout(rest, round(rows * split["validation_fraction"]), split["seed"])

        for got, expected in zip(split_data(frame, split), (train, validation, test), strict=True):
            pd.testing.assert_frame_equal(got, expected)


def test_pyarrow_parsing_and_typing_give_what_the_strict_path_gives(raw_csv_bytes, monkeypatch):
    fast = validation.validate_readings(validation.parse_raw_csv(raw_csv_bytes))

    monkeypatch.setattr(validation, "_parse_with_arrow", lambda raw_csv: None)
    monkeypatch.setattr(validation, "_typed_with_arrow", lambda readings: None)
    strict = validation.validate_readings(validation.parse_raw_csv(raw_csv_bytes))

    pd.testing.assert_frame_equal(fast, strict)


@pytest.mark.parametrize("value", [b"nan", b"NA", b""])
def test_a_reading_pyarrow_cannot_type_is_still_named_by_line(raw_csv_bytes, value):
    broken = raw_csv_bytes.replace(b"\r\n2,L47181,L,298.2,", b"\r\n2,L47181,L," + value + b",", 1)

    with pytest.raises(RawDataError, match=r"'Air temperature \[K\]'.* row\(s\) \(line 3: "):
        validation.validate_readings(validation.parse_raw_csv(broken))
