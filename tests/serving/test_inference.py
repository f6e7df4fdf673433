"""The model package and the SageMaker script-mode handlers, called as the container calls them."""

from __future__ import annotations

import gzip
import inspect
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import predictive_maintenance
from predictive_maintenance.features import build_features
from predictive_maintenance.integrity import ChecksumMismatchError
from predictive_maintenance.modeling import predict_scores
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving import inference
from predictive_maintenance.serving.contract import MAX_PAYLOAD_BYTES
from predictive_maintenance.serving.inference import (
    ModelLoadError,
    input_fn,
    invoke,
    model_fn,
    output_fn,
    predict_fn,
)
from predictive_maintenance.serving.package import (
    PACKAGE_FILES,
    ModelArchiveError,
    build_model_archive,
    extract_model_archive,
)
from predictive_maintenance.serving.requests import (
    InvalidInput,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    negotiate_accept,
)
from tests.conftest import WORKSHOP_READING
from tests.serving.conftest import CSV_ROW, readings_as_csv

JSON_ROW = WORKSHOP_READING
#: Modules the stock SageMaker XGBoost container does not have.
NOT_IN_CONTAINER = ("kedro", "kedro_datasets", "pandera", "sklearn", "plotly", "boto3", "sagemaker")

CONTAINER_SCRIPT = """
import importlib.abc, inspect, json, sys

code_dir, model_dir, cases_path = sys.argv[1:4]
blocked = set(sys.argv[4].split(","))

class NotInContainer(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ImportError(f"{name} is not installed in the SageMaker XGBoost container")
        return None

sys.meta_path.insert(0, NotInContainer())
sys.path.insert(0, code_dir)  # SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code is on the path
import inference  # SAGEMAKER_PROGRAM=inference.py, imported as the user module
import predictive_maintenance
from predictive_maintenance.serving import inference as handlers  # what transform_fn runs

model = inference.model_fn(model_dir)
results = []
for case in json.load(open(cases_path)):
    body = case["body"].encode() if case["as_bytes"] else case["body"]
    try:
        data = handlers.input_fn(body, case["content_type"])
        prediction = handlers.predict_fn(data, model)
        answer, content_type = handlers.output_fn(prediction, case["accept"])
        results.append({"body": answer.decode(), "content_type": content_type})
    except Exception as error:
        results.append({"error": type(error).__name__, "status": error.status_code,
                        "detail": error.detail})
json.dump({
    "results": results,
    "package": predictive_maintenance.__file__,
    "inference": inference.__file__,
    "program": sorted(name for name in vars(inference) if not name.startswith("_")),
    "parameters": {name: len(inspect.signature(getattr(inference, name)).parameters)
                   for name in ("model_fn", "transform_fn")},
    "loaded": sorted(name for name in sys.modules if name.partition(".")[0] in blocked),
}, sys.stdout)
"""


def _members(archive: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return tar.getmembers()


def _scores(body: bytes) -> np.ndarray:
    return np.array(body.decode().splitlines(), dtype=np.float32)


# ---- the archive -------------------------------------------------------------------------------
def test_archive_has_the_layout_the_xgboost_container_expects(training_run):
    archive = training_run.full.archive
    members = {member.name: member for member in _members(archive)}

    expected_files = {
        "xgboost-model",
        "model_spec.json",
        "code/inference.py",
        *(f"code/predictive_maintenance/{name}" for name in PACKAGE_FILES),
    }
    assert {name for name, member in members.items() if member.isfile()} == expected_files
    assert "code/requirements.txt" not in members  # numpy, pandas, xgboost are in the container
    assert all(member.isfile() or member.isdir() for member in members.values())
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert tar.extractfile("xgboost-model").read() == training_run.full.model_bytes
        assert json.loads(tar.extractfile("model_spec.json").read()) == training_run.full.spec
        package_dir = Path(predictive_maintenance.__file__).parent
        for name in PACKAGE_FILES:  # copies of the installed sources, not rewrites
            copied = tar.extractfile(f"code/predictive_maintenance/{name}").read()
            assert copied == (package_dir / name).read_bytes()
        shim = tar.extractfile("code/inference.py").read().decode()
    assert "from predictive_maintenance.serving.inference import" in shim


def test_archive_bytes_are_deterministic(training_run):
    full = training_run.full

    again = build_model_archive(full.model_bytes, dict(reversed(full.spec.items())))

    assert again == full.archive
    assert gzip.decompress(again)  # a plain gzip stream...
    assert again[4:8] == b"\0\0\0\0"  # ...with no timestamp in its header
    for member in _members(again):
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (
            315_532_800,
            0,
            0,
            "",
            "",
        )
        assert member.mode == (0o755 if member.isdir() else 0o644)


def test_archive_refuses_a_spec_of_other_model_bytes(training_run):
    with pytest.raises(ChecksumMismatchError, match="sha256"):
        build_model_archive(training_run.small.model_bytes, training_run.full.spec)
    spec = {key: value for key, value in training_run.full.spec.items() if key != "model_sha256"}
    with pytest.raises(ModelArchiveError, match="model_sha256"):
        build_model_archive(training_run.full.model_bytes, spec)


def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


@pytest.mark.parametrize(
    "member",
    [
        (tarfile.TarInfo("../escaped"), b"x"),
        (tarfile.TarInfo("/tmp/absolute"), b"x"),
        (tarfile.TarInfo("code/../../escaped"), b"x"),
        _link("xgboost-model", "/etc/passwd", tarfile.SYMTYPE),
        _link("model_spec.json", "/etc/hostname", tarfile.LNKTYPE),
    ],
    ids=["parent", "absolute", "nested-parent", "symlink", "hardlink"],
)
def test_extraction_refuses_unsafe_members(tmp_path, member):
    destination = tmp_path / "model"

    with pytest.raises(ModelArchiveError):
        extract_model_archive(_tar(member), destination)

    assert not (tmp_path / "escaped").exists()
    assert not any(destination.iterdir())


def test_extraction_needs_a_model_and_a_spec(tmp_path):
    with pytest.raises(ModelArchiveError, match="xgboost-model"):
        extract_model_archive(_tar((tarfile.TarInfo("model_spec.json"), b"{}")), tmp_path)
    with pytest.raises(ModelArchiveError, match="cannot extract"):
        extract_model_archive(b"not a tar.gz", tmp_path / "other")


# ---- the handlers as the stock container calls them --------------------------------------------
def test_handlers_run_as_the_sagemaker_container_runs_them(training_run, tmp_path):
    model_dir = extract_model_archive(training_run.full.archive, tmp_path / "opt-ml-model")
    test_readings = training_run.readings.loc[training_run.test.index]
    many = readings_as_csv(test_readings).replace("\n", "\r\n") + "\r\n"
    cases = [
        {"body": CSV_ROW, "content_type": "text/csv", "accept": "text/csv", "as_bytes": True},
        {"body": many, "content_type": "text/csv", "accept": "text/csv", "as_bytes": False},
        {
            "body": json.dumps({"instances": [JSON_ROW, JSON_ROW]}),
            "content_type": "application/json",
            "accept": "application/json",
            "as_bytes": True,
        },
        {"body": "L,298.4,308.2,1582,70.7", "content_type": "text/csv", "accept": "text/csv"},
        {"body": CSV_ROW, "content_type": "text/plain", "accept": "text/csv", "as_bytes": True},
    ]
    cases[3]["as_bytes"] = cases[4]["as_bytes"] = True
    (tmp_path / "cases.json").write_text(json.dumps(cases))

    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            CONTAINER_SCRIPT,
            str(model_dir / "code"),
            str(model_dir),
            str(tmp_path / "cases.json"),
            ",".join(NOT_IN_CONTAINER),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["loaded"] == []
    assert Path(report["inference"]) == model_dir / "code" / "inference.py"
    assert Path(report["package"]).is_relative_to(model_dir / "code")
    # The XGBoost container refuses transform_fn beside input_fn, predict_fn or output_fn.
    assert report["program"] == ["model_fn", "transform_fn"]
    assert report["parameters"] == {"model_fn": 1, "transform_fn": 4}
    one, many_rows, json_rows, short_row, plain = report["results"]
    expected = predict_scores(training_run.full.booster, training_run.test)
    assert one["content_type"] == "text/csv"
    assert many_rows["content_type"] == "text/csv"
    np.testing.assert_array_equal(_scores(many_rows["body"].encode()), expected)
    assert len(json.loads(json_rows["body"])["predictions"]) == 2
    assert json.loads(json_rows["body"])["predictions"][0]["score"] == float(one["body"])
    assert short_row["status"] == 400
    assert short_row["detail"]["row"] == 1  # the line in the body
    assert short_row["detail"]["field"] == "tool_wear_min"
    assert plain["status"] == 415


# ---- model_fn ----------------------------------------------------------------------------------
def test_model_fn_loads_the_model_and_its_spec(loaded_model, training_run):
    assert loaded_model.booster.feature_names == training_run.full.spec["features"]
    assert loaded_model.decision_threshold == training_run.full.spec["decision_threshold"]
    assert loaded_model.model_sha256 == training_run.full.spec["model_sha256"]
    assert loaded_model.model_version is None  # a training spec knows no registry version


def test_model_fn_refuses_a_tampered_model(training_run, tmp_path):
    model_dir = extract_model_archive(training_run.full.archive, tmp_path / "model")
    (model_dir / "xgboost-model").write_bytes(training_run.small.model_bytes)

    with pytest.raises(ModelLoadError, match="sha256"):
        model_fn(model_dir)


def test_model_fn_refuses_a_spec_with_other_features(training_run, tmp_path):
    model_dir = extract_model_archive(training_run.full.archive, tmp_path / "model")
    spec = {**training_run.full.spec, "features": training_run.full.spec["features"][::-1]}
    (model_dir / "model_spec.json").write_text(json.dumps(spec))

    with pytest.raises(ModelLoadError, match="features"):
        model_fn(model_dir)


def test_model_fn_reports_the_version_a_spec_carries(training_run, tmp_path):
    full = training_run.full
    archive = build_model_archive(full.model_bytes, {**full.spec, "model_version": 3})
    model = model_fn(extract_model_archive(archive, tmp_path / "model"))

    body, _ = output_fn(predict_fn(input_fn(CSV_ROW, "text/csv"), model), "application/json")

    assert model.model_version == 3
    assert json.loads(body)["model_version"] == 3


def test_model_version_comes_from_the_deployment_environment(training_run, tmp_path, monkeypatch):
    """In SageMaker the Model's Environment carries the registry version the endpoint serves."""
    full = training_run.full
    model_dir = extract_model_archive(build_model_archive(full.model_bytes, full.spec), tmp_path)
    monkeypatch.setenv("MODEL_VERSION", "7")

    model = model_fn(model_dir)
    body, _ = output_fn(predict_fn(input_fn(CSV_ROW, "text/csv"), model), "application/json")

    assert json.loads(body)["model_version"] == 7


# ---- input_fn ----------------------------------------------------------------------------------
def test_csv_one_row_becomes_the_readings_frame():
    frame = input_fn(CSV_ROW.encode(), "text/csv")

    assert list(frame.columns) == list(READING_COLUMNS)
    assert frame.iloc[0].tolist() == ["L", 298.4, 308.2, 1582.0, 70.7, 216.0]


@pytest.mark.parametrize(
    "body",
    [
        f"{CSV_ROW}\nM,300,310,1400,40,10\nH,301.5,311.1,1500,45.5,100",
        f"{CSV_ROW}\r\nM,300,310,1400,40,10\r\nH,301.5,311.1,1500,45.5,100\r\n",
        f"{CSV_ROW}\nM,300,310,1400,40,10\nH,301.5,311.1,1500,45.5,100\n".encode(),
        ' "L" , 298.4,308.2,1582,70.7,216\nM,300,310,1400,40,10\nH,"301.5",311.1,1500,45.5,100',
    ],
    ids=["lf", "crlf", "bytes", "quoted-and-spaced"],
)
def test_csv_many_rows_in_any_line_ending(body):
    frame = input_fn(body, "text/csv; charset=utf-8")

    assert frame["type"].tolist() == ["L", "M", "H"]
    assert frame["torque_nm"].tolist() == [70.7, 40.0, 45.5]


def test_the_fast_frame_is_the_public_constructors_frame(monkeypatch):
    body = f"{CSV_ROW}\nH,300,310,1400,40,10"
    fast = input_fn(body, "text/csv")
    monkeypatch.setattr(inference, "_FRAME_FROM_ARRAYS", None)

    public = input_fn(body, "text/csv")

    pd.testing.assert_frame_equal(fast, public, check_exact=True)
    assert fast["type"].dtype == object
    pd.testing.assert_frame_equal(build_features(fast), build_features(public), check_exact=True)


def test_json_instances_become_the_readings_frame():
    second = {**JSON_ROW, "type": "H", "torque_nm": 12}
    body = json.dumps({"instances": [JSON_ROW, second]})

    frame = input_fn(body.encode(), "application/json; charset=UTF-8")

    assert list(frame.columns) == list(READING_COLUMNS)
    assert frame["type"].tolist() == ["L", "H"]
    assert frame["torque_nm"].tolist() == [70.7, 12.0]


def _row(**changes):
    return {**JSON_ROW, **changes}


def _without(key):
    return {name: value for name, value in JSON_ROW.items() if name != key}


def _json(*instances):
    return json.dumps({"instances": list(instances)})


#: The endpoint's CSV (the container contract): errors name the line in the body, first = 1.
BAD_CSV = [
    ("L,298.4,308.2,1582,70.7", 1, "tool_wear_min", "missing"),
    (f"{CSV_ROW}\n{CSV_ROW}\nL,298.4,308.2", 3, "rotational_speed_rpm", "missing"),
    (f"{CSV_ROW},5", 1, None, "7 fields"),
    (f"{CSV_ROW}\n\n{CSV_ROW}", 2, "type", "empty"),
    (f"\n{CSV_ROW}", 1, "type", "empty"),
    ("L,298.4,308.2,1582,abc,216", 1, "torque_nm", "not a number"),
    ("L,298.4,308.2,1582,,216", 1, "torque_nm", "not a number"),
    (f"{CSV_ROW}\nL,298.4,308.2,1582,600,216", 2, "torque_nm", "range"),
    (f"{CSV_ROW}\r\nL,298.4,308.2,1582,600,216", 2, "torque_nm", "range"),
    (f"{CSV_ROW}\rL,298.4,308.2,1582,600,216", 2, "torque_nm", "range"),
    ("L,25.4,308.2,1582,70.7,216", 1, "air_temperature_k", "range"),
    ("L,298.4,nan,1582,70.7,216", 1, "process_temperature_k", "not a number"),
    ("L,298.4,308.2,inf,70.7,216", 1, "rotational_speed_rpm", "not a number"),
    ("L,29_8.4,308.2,1582,70.7,216", 1, "air_temperature_k", "not a number"),
    ("L,298.4,308.2,1582,70.7,-1", 1, "tool_wear_min", "range"),
    ("X,298.4,308.2,1582,70.7,216", 1, "type", "product type"),
    ("l,298.4,308.2,1582,70.7,216", 1, "type", "product type"),
    ('L,"298.4\x00",308.2,1582,70.7,216', 1, "air_temperature_k", "not a number"),
    # What the HTTP API also takes is refused here, naming why.
    (
        "Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],Torque [Nm],"
        f"Tool wear [min]\n{CSV_ROW}",
        1,
        None,
        "header line; the endpoint takes rows without one",
    ),
    ("1,M14860,M,298.1,308.6,1551,42.8,0,0,0,0,0,0,0", 1, None, "14 fields, expected 6"),
    ("L;298,4;308,2;1582;70,7;216", 1, None, "separates its values with semicolons"),
]
BAD_JSON = [
    (_json(_row(), _row(), _without("torque_nm")), 2, "torque_nm", "missing"),
    (_json({**JSON_ROW, "udi": 1}), 0, "udi", "unexpected"),
    (_json(_row(torque_nm="70.7")), 0, "torque_nm", "not a number"),
    (_json(_row(tool_wear_min=True)), 0, "tool_wear_min", "not a number"),
    (_json(_row(air_temperature_k=None)), 0, "air_temperature_k", "not a number"),
    (_json(_row(), _row(torque_nm=-3)), 1, "torque_nm", "range"),
    (_json(_row(rotational_speed_rpm=10**400)), 0, "rotational_speed_rpm", "range"),
    (
        '{"instances": [{"type": "L", "air_temperature_k": NaN, "process_temperature_k": 308.2, '
        '"rotational_speed_rpm": 1582, "torque_nm": 70.7, "tool_wear_min": 216}]}',
        0,
        "air_temperature_k",
        "range",
    ),
    (_json(_row(type="Q")), 0, "type", "product type"),
    (_json(_row(type=0)), 0, "type", "product type"),
    (_json(_row(type=["L"])), 0, "type", "product type"),
    (_json(_row(type={})), 0, "type", "product type"),
    ('{"instances": ' + "[" * 100_000 + "]" * 100_000 + "}", None, None, "not valid JSON"),
    (_json(_row(), 5), 1, None, "object"),
    (json.dumps({"instances": []}), None, "instances", "non-empty"),
    (json.dumps({"instances": {"type": "L"}}), None, "instances", "non-empty"),
    (json.dumps([JSON_ROW]), None, "instances", "JSON object"),
    (json.dumps({"instances": [JSON_ROW], "extra": 1}), None, "extra", "unexpected"),
    ("{not json", None, None, "not valid JSON"),
]


@pytest.mark.parametrize(("body", "row", "field", "words"), BAD_CSV)
def test_bad_csv_is_rejected_naming_row_and_field(body, row, field, words):
    with pytest.raises(InvalidInput, match=words) as raised:
        input_fn(body, "text/csv")

    assert raised.value.status_code == 400
    assert raised.value.detail == {
        "error": "invalid_input",
        "message": raised.value.message,
        "row": row,
        "field": field,
    }
    if row is not None:
        assert raised.value.message.startswith(
            f"line {row}, field {field}: " if field else f"line {row}"
        )
    json.dumps(raised.value.detail)


@pytest.mark.parametrize(("body", "row", "field", "words"), BAD_JSON)
def test_bad_json_is_rejected_naming_row_and_field(body, row, field, words):
    with pytest.raises(InvalidInput, match=words) as raised:
        input_fn(body, "application/json")

    assert (raised.value.status_code, raised.value.row, raised.value.field) == (400, row, field)
    if row is not None:  # as JSON tools show the reading: instances[i], 0-based
        assert raised.value.message.startswith(f"instances[{row}]")


@pytest.mark.parametrize(
    "body",
    [b"", b"\n\n", b"\xff\xfe,1,2", "\ufeff" + "L,298.4"],
    ids=["empty", "blank-lines", "not-utf8", "bom-short"],
)
def test_csv_bodies_without_rows_are_invalid(body):
    with pytest.raises(InvalidInput):
        input_fn(body, "text/csv")


def test_a_utf8_bom_is_ignored():
    assert len(input_fn(b"\xef\xbb\xbf" + CSV_ROW.encode(), "text/csv")) == 1


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-npy", "text/libsvm", None, "", "text/csv; charset=latin-1"],
)
def test_unsupported_content_types_are_415(content_type):
    with pytest.raises(UnsupportedMediaType) as raised:
        input_fn(CSV_ROW, content_type)

    assert raised.value.status_code == 415


def test_payloads_above_6_mb_are_413():
    body = (CSV_ROW + "\n") * (MAX_PAYLOAD_BYTES // len(CSV_ROW) + 1)

    with pytest.raises(PayloadTooLarge) as raised:
        input_fn(body, "text/csv")

    assert raised.value.status_code == 413


# ---- Accept and output_fn ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("accept", "content_type", "expected"),
    [
        (None, "text/csv", "text/csv"),
        ("*/*", "text/csv", "text/csv"),
        ("*/*", "application/json", "application/json"),
        ("", "application/json; charset=utf-8", "application/json"),
        (None, None, "application/json"),
        ("application/json", "text/csv", "application/json"),
        ("text/csv", "application/json", "text/csv"),
        ("text/html, application/json;q=0.5, text/csv;q=0.9", "text/csv", "text/csv"),
        ("text/html, application/*", "text/csv", "application/json"),
        ("image/png, text/*;q=0.1", "application/json", "text/csv"),
        ("text/csv;q=0, */*", "application/json", "application/json"),
    ],
)
def test_accept_negotiation(accept, content_type, expected):
    assert negotiate_accept(accept, content_type) == expected


@pytest.mark.parametrize("accept", ["image/png", "text/html, application/xml", "text/csv;q=0"])
def test_unsupported_accept_is_406(accept):
    with pytest.raises(NotAcceptable) as raised:
        negotiate_accept(accept, "text/csv")

    assert raised.value.status_code == 406
    with pytest.raises(NotAcceptable):
        output_fn(np.array([0.5], dtype=np.float32), accept)


def test_output_csv_is_one_score_per_line(loaded_model):
    prediction = predict_fn(input_fn(f"{CSV_ROW}\n{CSV_ROW}", "text/csv"), loaded_model)

    body, content_type = output_fn(prediction, "text/csv")

    assert content_type == "text/csv"
    assert body.decode().splitlines() == [str(prediction[0])] * 2
    assert body.endswith(b"\n")


def test_output_json_labels_by_the_decision_threshold(loaded_model):
    threshold = loaded_model.decision_threshold
    low = np.nextafter(np.float32(threshold), np.float32(0))
    high = np.nextafter(np.float32(threshold), np.float32(1))
    prediction = predict_fn(input_fn(CSV_ROW, "text/csv"), loaded_model.with_version(4))
    prediction = np.array([low, high], dtype=np.float32).view(type(prediction))
    prediction.decision_threshold, prediction.model_version = threshold, 4

    body, content_type = output_fn(prediction, "application/json")

    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["model_version"] == 4
    assert [item["predicted_label"] for item in answer["predictions"]] == [0, 1]
    assert np.float32(answer["predictions"][0]["score"]) == low


def test_output_json_of_plain_scores_has_no_labels_and_no_version():
    body, _ = output_fn(np.array([0.25], dtype=np.float32), None)

    assert json.loads(body) == {"predictions": [{"score": 0.25}], "model_version": None}


# ---- scores ------------------------------------------------------------------------------------
def test_scores_equal_the_training_pipelines_on_the_same_rows(training_run, loaded_model):
    test_readings = training_run.readings.loc[training_run.test.index]
    expected = predict_scores(training_run.full.booster, training_run.test)

    csv_body, _ = invoke(loaded_model, readings_as_csv(test_readings), "text/csv", None)
    instances = [
        dict(zip(READING_COLUMNS, row, strict=True))
        for row in test_readings[list(READING_COLUMNS)].itertuples(index=False)
    ]
    json_body, _ = invoke(
        loaded_model, json.dumps({"instances": instances}, default=float), "application/json", None
    )

    np.testing.assert_array_equal(_scores(csv_body), expected)
    answer = json.loads(json_body)["predictions"]
    np.testing.assert_array_equal(np.array([p["score"] for p in answer], np.float32), expected)
    labels = [p["predicted_label"] for p in answer]
    assert labels == (expected >= loaded_model.decision_threshold).astype(int).tolist()


def test_predict_fn_scores_build_features_output(loaded_model):
    frame = input_fn(f"{CSV_ROW}\nH,300,310,1400,40,10", "text/csv")

    expected = predict_scores(loaded_model.booster, build_features(frame))

    np.testing.assert_array_equal(predict_fn(frame, loaded_model), expected)
    assert predict_fn(frame, loaded_model).dtype == np.float32


def test_inference_imports_nothing_the_container_lacks():
    source = inspect.getsource(inference)
    imported = {
        line.split()[1].split(".")[0]
        for line in source.splitlines()
        if line.startswith(("import ", "from "))
    }

    assert imported <= {
        "__future__",
        "csv",
        "dataclasses",
        "json",
        "logging",
        "os",
        "re",
        "typing",
        "numpy",
        "pandas",
        "xgboost",
        "predictive_maintenance",
    }
    assert isinstance(input_fn(CSV_ROW, "text/csv"), pd.DataFrame)
