"""The batch_scoring pipeline: chunked reading and writing, the endpoint's validation and scores,
the registered model it scores with, and a run of the project's own catalog."""

from __future__ import annotations

import functools
import json
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from predictive_maintenance.datasets.table_chunks import TableChunksDataset
from predictive_maintenance.features import FEATURE_COLUMNS, build_features
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.pipelines.batch_scoring import create_pipeline
from predictive_maintenance.pipelines.batch_scoring.chunks import BatchInputError
from predictive_maintenance.pipelines.batch_scoring.nodes import (
    ModelChoiceError,
    choose_model_version,
    load_registered_model,
    score_batch,
    select_model,
)
from predictive_maintenance.registry.datasets import LocalModelRegistryDataset
from predictive_maintenance.registry.local import LocalModelRegistry
from predictive_maintenance.schema import RAW_COLUMNS, READING_COLUMNS
from predictive_maintenance.serving.inference import invoke, model_fn
from predictive_maintenance.serving.package import build_model_archive, extract_model_archive
from predictive_maintenance.serving.requests import InvalidInput, parse_readings
from tests.support.cli import run_session
from tests.support.project import copy_project

GROUP = "predictive-maintenance"
HEADER = ",".join(RAW_COLUMNS)
#: Rows in the workshop's order that the endpoint takes.
GOOD_ROWS = (
    "L,298.4,308.2,1582,70.7,216",
    "M,298.1,308.6,1551,42.8,0",
    "H,302.5,311.0,1300,65.0,230",
    "L, 300.0 ,310.0,1500,40,100",
    "M,2.981e2,308.6,+1551,.5,5.",
    'L,"298.4",308.2,1582,70.7,216',
)
#: Rows the endpoint refuses, one problem each (and one with several: the first is named).
BAD_ROWS = (
    "X,298.4,308.2,1582,70.7,216",
    "l,298.4,308.2,1582,70.7,216",
    "L,nan,308.2,1582,70.7,216",
    "L,298.4,inf,1582,70.7,216",
    "L,298.4,308.2,1_582,70.7,216",
    "L,298.4,308.2,,70.7,216",
    "L,298.4,308.2,1582,600,216",
    "L,25.1,308.2,1582,70.7,216",
    "L,298.4,308.2,1582,70.7",
    "L,298.4,308.2,1582,70.7,216,9",
    'L,"298,4",308.2,1582,70.7,216',
    "L,298.4,308.2,1582,-1,abc",
    "L,298.4,308.2,1582,70.7,1e400",
)


@functools.cache
def small_archive() -> bytes:
    """A small real model package: a 20-tree booster on the project's features, with a spec."""
    rng = np.random.default_rng(0)
    readings = pd.DataFrame(
        {
            "type": rng.choice(["L", "M", "H"], 2000),
            "air_temperature_k": rng.normal(300, 2, 2000),
            "process_temperature_k": rng.normal(310, 1.5, 2000),
            "rotational_speed_rpm": rng.normal(1540, 180, 2000),
            "torque_nm": rng.normal(40, 10, 2000).clip(0),
            "tool_wear_min": rng.uniform(0, 250, 2000),
        }
    )
    features = build_features(readings)
    label = (features["power_w"] > 8000) | (features["strain_limit_ratio"] > 0.8)
    matrix = xgb.DMatrix(features, label=label.astype(int), feature_names=list(FEATURE_COLUMNS))
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 3}, matrix, 20)
    model_bytes = bytes(booster.save_raw(raw_format="ubj"))
    spec = {
        "model_sha256": sha256_hex(model_bytes),
        "objective": "binary:logistic",
        "features": list(FEATURE_COLUMNS),
        "readings": list(READING_COLUMNS),
        "decision_threshold": 0.4,
    }
    return build_model_archive(model_bytes, spec)


@pytest.fixture(scope="module")
def archive() -> bytes:
    return small_archive()


@pytest.fixture(scope="module")
def registry_root(archive: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry: version 1 Approved, 2 Rejected, 3 pending (all the same model)."""
    root = tmp_path_factory.mktemp("registry")
    registry = LocalModelRegistry(root)
    for status in ("Approved", "Rejected", "PendingManualApproval"):
        registry.register(GROUP, archive, metrics={}, lineage={}, approval_status=status)
    return root


@pytest.fixture(scope="module")
def registry_state(registry_root: Path) -> dict[str, Any]:
    return LocalModelRegistryDataset(root=str(registry_root), group=GROUP).load()


@pytest.fixture(scope="module")
def model(archive: bytes, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return model_fn(extract_model_archive(archive, tmp_path_factory.mktemp("model")))


def run_batch(
    path: Path,
    registry_state: dict[str, Any],
    chunk_rows: int = 100_000,
    **parameters: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], int]:
    """``score_batch`` over ``path``: every chunk of scores and rejects, the summary, the count."""
    readings = TableChunksDataset(filepath=str(path), chunk_rows=chunk_rows).load()
    parameters = {"model_version": None, "progress_bar": False, **parameters}
    model = select_model(registry_state, parameters)
    outputs = list(score_batch(readings, model, parameters))
    scores = pd.concat([chunk[0].take() for chunk in outputs], ignore_index=True)
    rejects = pd.concat([chunk[1].take() for chunk in outputs], ignore_index=True)
    return scores, rejects, outputs[-1][2], len(outputs)


# ---- TableChunksDataset ------------------------------------------------------------------------
def test_csv_is_read_as_numbered_lines_in_bounded_chunks(tmp_path: Path) -> None:
    path = tmp_path / "lines.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\r\n1,2\r\n\r\n3,\xff\n" + b"x\n" * 6 + b"last")
    chunks = list(TableChunksDataset(filepath=str(path), chunk_rows=4).load())

    assert [chunk.num_rows for chunk in chunks] == [4, 4, 3]
    lines = [line for chunk in chunks for line in chunk.column("line").to_pylist()]
    text = [line for chunk in chunks for line in chunk.column("text").to_pylist()]
    assert lines == list(range(1, 12))
    assert text[:4] == ["a,b", "1,2", "", "3,\ufffd"]  # BOM and CR gone, bad UTF-8 visible
    assert text[-1] == "last"
    assert TableChunksDataset(filepath=str(path)).load().total_rows() == 11


def test_parquet_is_read_in_chunks_with_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "rows.parquet"
    pd.DataFrame({"a": range(10)}).to_parquet(path)
    chunks = list(TableChunksDataset(filepath=str(path), chunk_rows=4).load())

    assert [chunk.num_rows for chunk in chunks] == [4, 4, 2]
    assert chunks[2].to_pydict() == {"a": [8, 9], "line": [9, 10]}


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_first_save_replaces_then_chunks_append(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    TableChunksDataset(filepath=str(path)).save(pd.DataFrame({"x": [99]}))  # an older run
    dataset = TableChunksDataset(filepath=str(path))
    for chunk in ([1, 2], [], [3]):
        dataset.save(pd.DataFrame({"x": pd.Series(chunk, dtype="int64")}))

    read = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    assert read["x"].tolist() == [1, 2, 3]


def test_kedro_viz_previews_a_table_or_nothing_yet(tmp_path: Path) -> None:
    path = tmp_path / "scores.csv"
    dataset = TableChunksDataset(filepath=str(path))
    assert dataset.preview() == {"index": [], "columns": [], "data": []}
    path.write_text("udi,score\n1,0.5\n2,0.25\n3,0.125\n")
    assert dataset.preview(nrows=2) == {
        "index": [0, 1],
        "columns": ["udi", "score"],
        "data": [["1", "0.5"], ["2", "0.25"]],
    }


def test_a_format_the_suffix_does_not_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"cannot tell the format from the suffix '\.xlsx'"):
        TableChunksDataset(filepath=str(tmp_path / "readings.xlsx"))


# ---- The endpoint's rules ----------------------------------------------------------------------
def endpoint_error(row: str, line: int) -> str | None:
    """The message the endpoint's parser gives ``row`` alone in a file (the HTTP API's rules), as
    if it were on ``line``; None if it takes the row."""
    try:
        parse_readings(row, "text/csv", files=True)
    except InvalidInput as error:
        return error.message.replace("line 1", f"line {line}", 1)
    return None


def test_rows_are_accepted_and_refused_as_the_endpoint_does(
    tmp_path: Path, registry_state: dict[str, Any]
) -> None:
    rows = [*GOOD_ROWS, *BAD_ROWS]
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(rows) + "\n")

    scores, rejects, summary, _ = run_batch(path, registry_state)

    expected = {number: endpoint_error(row, number) for number, row in enumerate(rows, start=1)}
    assert set(scores["line"]) == {number for number, error in expected.items() if error is None}
    assert dict(zip(rejects["line"], rejects["reason"], strict=True)) == {
        number: error for number, error in expected.items() if error is not None
    }
    assert len(rejects) == len(BAD_ROWS)
    several = rows.index("L,298.4,308.2,1582,-1,abc") + 1
    assert rejects.loc[rejects["line"] == several, "field"].item() == "torque_nm"
    assert (summary["rows_scored"], summary["rows_rejected"]) == (len(GOOD_ROWS), len(BAD_ROWS))


def test_scores_and_labels_are_the_endpoints(
    tmp_path: Path, registry_state: dict[str, Any], model: Any
) -> None:
    path = tmp_path / "good.csv"
    path.write_text("\n".join(GOOD_ROWS))
    scores, _, _, _ = run_batch(path, registry_state)

    body = "\n".join(GOOD_ROWS).encode()
    csv_answer, _ = invoke(model, body, "text/csv", "text/csv")
    json_answer, _ = invoke(model, body, "text/csv", "application/json")
    assert scores["score"].dtype == np.float32
    assert [str(score) for score in scores["score"].to_numpy()] == csv_answer.decode().split()
    labels = [item["predicted_label"] for item in json.loads(json_answer)["predictions"]]
    assert scores["predicted_label"].tolist() == labels
    assert 0 < sum(labels) < len(labels)  # the threshold splits these rows


def test_ids_come_from_a_header_or_the_data_sets_layout(
    tmp_path: Path, registry_state: dict[str, Any]
) -> None:
    data_set_rows = [
        "1,M14860,M,298.1,308.6,1551,42.8,0,0,0,0,0,0,0",
        "2,L47181,L,298.2,308.7,1408,46.3,3,0,0,0,0,0,0",
    ]
    (tmp_path / "with_header.csv").write_text("\n".join([HEADER, "", *data_set_rows]) + "\n")
    (tmp_path / "without_header.csv").write_text("\n".join(data_set_rows))
    (tmp_path / "renamed.csv").write_text(
        "note,torque_nm,tool_wear_min,type,air_temperature_k,process_temperature_k,rpm,"
        "rotational_speed_rpm,udi\nx,42.8,0,M,298.1,308.6,1,1551,7\n"
    )

    with_header, _, summary, _ = run_batch(tmp_path / "with_header.csv", registry_state)
    without_header, _, _, _ = run_batch(tmp_path / "without_header.csv", registry_state)
    renamed, _, _, _ = run_batch(tmp_path / "renamed.csv", registry_state)
    workshop, _, _, _ = run_batch(write_rows(tmp_path, GOOD_ROWS[:2]), registry_state)

    assert with_header[["udi", "product_id", "line"]].values.tolist() == [
        ["1", "M14860", 3],
        ["2", "L47181", 4],
    ]
    assert summary["blank_lines"] == 1
    assert without_header["line"].tolist() == [1, 2]
    assert without_header["score"].tolist() == with_header["score"].tolist()
    assert renamed[["udi", "line"]].values.tolist() == [["7", 2]]
    assert renamed["score"].item() == with_header["score"].iloc[0]
    assert list(workshop.columns) == ["line", "score", "predicted_label"]  # no ids: line numbers


def write_rows(directory: Path, rows: tuple[str, ...]) -> Path:
    path = directory / "workshop.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_parquet_input_by_column_names_numbers_or_text(
    tmp_path: Path, registry_state: dict[str, Any]
) -> None:
    frame = pd.DataFrame(
        {
            "Product ID": ["M1", "L2", "H3", "L4"],
            "Type": ["M", "L", "H", "Q"],
            "Air temperature [K]": [298.1, 298.2, None, 298.0],
            "process_temperature_k": ["308.6", "308.7", "309", "309"],
            "rotational_speed_rpm": [1551, 1408, 1500, 1500],
            "torque_nm": [42.8, 46.3, 40.0, 40.0],
            "tool_wear_min": [0, 3, 5, 7],
        }
    )
    frame.to_parquet(tmp_path / "readings.parquet")

    scores, rejects, _, _ = run_batch(tmp_path / "readings.parquet", registry_state)

    assert scores[["product_id", "line"]].values.tolist() == [["M1", 1], ["L2", 2]]
    assert rejects["reason"].tolist() == [
        "row 3, field air_temperature_k: missing",
        "row 4, field type: 'Q' is not a product type ['L', 'M', 'H']",
    ]


def test_a_file_the_model_cannot_read_is_one_clear_error(
    tmp_path: Path, registry_state: dict[str, Any]
) -> None:
    (tmp_path / "bad_header.csv").write_text("Type,Air,Process\nL,298,308\n")
    pd.DataFrame({"type": [1], **{c: [1.0] for c in READING_COLUMNS[1:]}}).to_parquet(
        tmp_path / "numeric_type.parquet"
    )
    with pytest.raises(
        BatchInputError, match=r"bad_header.csv.*line 1 \(the header\) has no column"
    ):
        run_batch(tmp_path / "bad_header.csv", registry_state)
    with pytest.raises(BatchInputError, match=r"column 'type' holds int64"):
        run_batch(tmp_path / "numeric_type.parquet", registry_state)


def test_a_file_without_readings_gives_empty_outputs(
    tmp_path: Path, registry_state: dict[str, Any]
) -> None:
    (tmp_path / "header_only.csv").write_text(HEADER + "\n\n")
    scores, rejects, summary, chunks = run_batch(tmp_path / "header_only.csv", registry_state)
    assert (len(scores), len(rejects), chunks, summary["blank_lines"]) == (0, 0, 1, 1)


# ---- The model ---------------------------------------------------------------------------------
def test_the_newest_approved_version_unless_one_is_named(registry_state: dict[str, Any]) -> None:
    assert choose_model_version(registry_state, None)["version"] == 1
    assert choose_model_version(registry_state, 3)["approval_status"] == "PendingManualApproval"
    with pytest.raises(ModelChoiceError, match="version 2 of 'predictive-maintenance' is Rejected"):
        choose_model_version(registry_state, 2)
    with pytest.raises(ModelChoiceError, match=r"has no version 9 \(1, 2, 3\)"):
        choose_model_version(registry_state, 9)
    pending = {**registry_state, "versions": registry_state["versions"][1:]}
    with pytest.raises(ModelChoiceError, match=r"no Approved version.*kedro model approve N"):
        choose_model_version(pending, None)


def test_a_sagemaker_model_package_is_chosen_by_its_arn(registry_state: dict[str, Any]) -> None:
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/predictive-maintenance/{}"
    on_sagemaker = {
        **registry_state,
        "versions": [
            {**entry, "model_package_arn": arn.format(entry["version"])}
            for entry in registry_state["versions"]
        ],
    }
    parameters = {"model_version": None, "model_package_arn": arn.format(3)}
    chosen = select_model(on_sagemaker, parameters)
    assert (chosen["version"], chosen["model_package_arn"]) == (3, arn.format(3))
    assert select_model(on_sagemaker, {"model_version": None})["model_package_arn"] == arn.format(1)
    with pytest.raises(ModelChoiceError, match="is not a version of group"):
        choose_model_version(on_sagemaker, None, arn.format(7))
    with pytest.raises(ModelChoiceError, match="is Rejected"):
        choose_model_version(on_sagemaker, None, arn.format(2))


def test_a_changed_archive_is_refused(registry_state: dict[str, Any], tmp_path: Path) -> None:
    entry = choose_model_version(registry_state, None)
    changed = tmp_path / "model.tar.gz"
    changed.write_bytes(Path(entry["archive_uri"]).read_bytes() + b"\0")
    with pytest.raises(ChecksumMismatchError, match="sha256 is"):
        load_registered_model({**entry, "archive_uri": str(changed)})
    assert load_registered_model(entry).model_version == 1


# ---- The pipeline ------------------------------------------------------------------------------
class CountingDataset(TableChunksDataset):
    """Records, at every save, how many chunks the input had handed out by then, and whether
    any chunk saved before is still in memory."""

    def __init__(self, reads: list[int], log: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.reads, self.log = reads, log
        self.saved: list[weakref.ref] = []
        self.kept: list[int] = []

    def save(self, data: Any) -> None:
        self.log.append(self.reads[0])
        self.kept.append(sum(ref() is not None for ref in self.saved))
        table = data.take()
        self.saved.append(weakref.ref(table))
        super().save(table)


def test_the_pipeline_reads_scores_and_writes_one_chunk_at_a_time(
    tmp_path: Path, registry_root: Path
) -> None:
    rows = [GOOD_ROWS[number % 5] if number % 7 else BAD_ROWS[0] for number in range(1, 26)]
    source = tmp_path / "readings.csv"
    source.write_text("\n".join(rows) + "\n")
    reads = [0]

    class Readings(TableChunksDataset):
        def load(self) -> Any:
            chunks = super().load()

            class Counted(type(chunks)):  # type: ignore[misc]
                def __iter__(self) -> Any:
                    for chunk in super().__iter__():
                        reads[0] += 1
                        yield chunk

            return Counted(chunks.filesystem, chunks.path, chunks.file_format, chunks.chunk_rows)

    saved_after: list[int] = []
    predictions = CountingDataset(
        reads, saved_after, filepath=str(tmp_path / "out" / "predictions.parquet")
    )
    catalog = DataCatalog(
        {
            "batch_readings": Readings(filepath=str(source), chunk_rows=4),
            "model_registry": LocalModelRegistryDataset(root=str(registry_root), group=GROUP),
            "params:batch_scoring": MemoryDataset({"model_version": None, "progress_bar": False}),
            "batch_predictions": predictions,
            "batch_rejects": TableChunksDataset(filepath=str(tmp_path / "out" / "rejects.csv")),
            "batch_summary": MemoryDataset(),
            "batch_model": MemoryDataset(),
        }
    )
    SequentialRunner().run(create_pipeline(), catalog)

    # Chunk n is saved before chunk n + 1 is read, and no saved chunk stays in memory (Kedro
    # splits a generator's outputs with itertools.tee, which would keep up to 57 of them).
    assert saved_after == [1, 2, 3, 4, 5, 6, 7]
    assert predictions.kept == [0] * 7
    predictions = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert predictions["line"].tolist() == [n for n in range(1, 26) if n % 7]
    assert rejects["line"].tolist() == [7, 14, 21]
    assert catalog.load("batch_summary")["chunks"] == 7


def test_kedro_run_scores_the_file_the_runtime_parameter_names(
    tmp_path: Path, archive: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = copy_project(tmp_path / "project")
    LocalModelRegistry(project / "data" / "10_model_registry").register(
        GROUP, archive, metrics={}, lineage={}, approval_status="Approved"
    )
    readings = tmp_path / "fleet.parquet"
    pd.DataFrame(
        [row.split(",") for row in GOOD_ROWS[:5]], columns=list(READING_COLUMNS)
    ).to_parquet(readings)

    run_session(
        project,
        monkeypatch,
        pipeline_names=["batch_scoring"],
        runtime_params={"batch_input": str(readings)},
    )

    output = project / "data" / "15_batch"
    assert pd.read_csv(output / "predictions.csv")["line"].tolist() == [1, 2, 3, 4, 5]
    assert pd.read_csv(output / "rejects.csv").empty
    summary = json.loads((output / "summary.json").read_text())
    assert summary["model"]["version"] == 1
    assert json.loads((output / "model.json").read_text())["model_package_arn"] == ""
    assert summary["input"] == f"{readings} (parquet)"
