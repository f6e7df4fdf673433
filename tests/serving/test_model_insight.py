"""Model insight on the endpoint (issue 16): the archive's extra files (the failure-mode model and
the model card), their checks at load, and the explained answer's "how sure" (the calibrated
probability), "which failure" (the likely mode) and the model card.

Real artefacts throughout: the session's booster, its calibration map fitted by
``fit_calibration`` on the validation split, the failure-mode booster trained by
``train_failure_mode_model`` and the card made by ``create_model_card`` from the real test reports
(``insight_model``, tests/serving/conftest.py); the endpoint over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictive_maintenance.calibration import CalibrationMap
from predictive_maintenance.failure_modes import MODE_CLASSES, likely_modes, mode_probabilities
from predictive_maintenance.features import build_features
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.model_card import card_bytes
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE, MODEL_CARD_FILE
from predictive_maintenance.serving.inference import ModelLoadError, invoke, model_fn
from predictive_maintenance.serving.openapi import endpoint_openapi_document
from predictive_maintenance.serving.package import (
    ModelArchiveError,
    build_model_archive,
)
from predictive_maintenance.serving.server import EndpointServer
from tests.conftest import LOW_POWER_READING, WORKSHOP_READING
from tests.serving.conftest import CSV_ROW, readings_as_csv


def explain(model, instances: list[dict]) -> dict:
    body = json.dumps({"instances": instances, "explain": True})
    answer, content_type = invoke(model, body, "application/json", None)
    assert content_type == "application/json"
    return json.loads(answer)


def post(server, body: str, content_type: str, path: str = "/invocations"):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", path, body=body, headers={"Content-Type": content_type})
    response = connection.getresponse()
    answer = (response.status, response.getheader("content-type"), response.read())
    connection.close()
    return answer


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


@pytest.fixture
def model_dir_copy(insight_model_dir: Path, tmp_path: Path) -> Path:
    """A copy of the insight model directory this test may spoil."""
    return Path(shutil.copytree(insight_model_dir, tmp_path / "model"))


# ---- the archive ---------------------------------------------------------------------------------
def test_the_archive_carries_the_mode_model_the_card_and_their_code(insight_model):
    files = members(insight_model.archive)

    assert files[FAILURE_MODE_MODEL_FILE] == insight_model.mode_model_bytes
    assert json.loads(files[MODEL_CARD_FILE]) == insight_model.card
    spec = json.loads(files["model_spec.json"])
    assert spec["model_card_sha256"] == sha256_hex(files[MODEL_CARD_FILE])
    assert spec["failure_modes"]["model_sha256"] == sha256_hex(insight_model.mode_model_bytes)
    assert spec["calibration"] == insight_model.spec["calibration"]
    for name in ("calibration.py", "failure_modes.py"):
        assert f"code/predictive_maintenance/{name}" in files
    assert "model_card_sha256" not in insight_model.spec  # the caller's spec is left alone
    # Deterministic: the same inputs, the same bytes.
    again = build_model_archive(
        insight_model.trained.model_bytes,
        insight_model.spec,
        {
            MODEL_CARD_FILE: card_bytes(insight_model.card),
            FAILURE_MODE_MODEL_FILE: insight_model.mode_model_bytes,
        },
    )
    assert again == insight_model.archive


def test_an_archive_without_extras_is_as_before(training_run):
    files = members(training_run.full.archive)

    assert FAILURE_MODE_MODEL_FILE not in files
    assert MODEL_CARD_FILE not in files
    assert "model_card_sha256" not in json.loads(files["model_spec.json"])


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (
            lambda spec, extras: extras.update({"notes.txt": b"hello"}),
            ModelArchiveError,
            "'notes.txt'",
        ),
        (
            lambda spec, extras: extras.update({FAILURE_MODE_MODEL_FILE: b"not the model"}),
            ChecksumMismatchError,
            FAILURE_MODE_MODEL_FILE,
        ),
        (
            lambda spec, extras: extras.pop(FAILURE_MODE_MODEL_FILE),
            ModelArchiveError,
            FAILURE_MODE_MODEL_FILE,
        ),
        (lambda spec, extras: spec.pop("failure_modes"), ModelArchiveError, "failure_modes"),
        (
            lambda spec, extras: extras.update({MODEL_CARD_FILE: b"{not json"}),
            ModelArchiveError,
            MODEL_CARD_FILE,
        ),
        (
            lambda spec, extras: spec.update({"model_card_sha256": "0" * 64}),
            ModelArchiveError,
            "model_card_sha256",
        ),
    ],
    ids=[
        "unknown-file",
        "mode-model-not-the-specs",
        "mode-model-missing",
        "spec-without-failure-modes",
        "card-not-json",
        "card-sha-differs",
    ],
)
def test_extra_files_the_spec_does_not_vouch_for_are_refused(insight_model, change, error, words):
    spec = dict(insight_model.spec)
    extras = {
        FAILURE_MODE_MODEL_FILE: insight_model.mode_model_bytes,
        MODEL_CARD_FILE: card_bytes(insight_model.card),
    }
    change(spec, extras)

    with pytest.raises(error, match=words.replace("(", r"\(")):
        build_model_archive(insight_model.trained.model_bytes, spec, extras)


# ---- loading -------------------------------------------------------------------------------------
def test_the_model_loads_with_its_mode_model_calibration_and_card(
    insight_loaded_model, insight_model
):
    model = insight_loaded_model

    assert model.mode_booster is not None
    assert model.calibration is not None
    assert model.model_card == insight_model.card
    assert model.mode_booster.feature_names == model.booster.feature_names
    assert (
        model.mode_booster.num_boosted_rounds() == insight_model.mode_booster.num_boosted_rounds()
    )


def test_an_older_model_dir_loads_without_them(loaded_model):
    assert (loaded_model.mode_booster, loaded_model.calibration, loaded_model.model_card) == (
        None,
        None,
        None,
    )


def test_a_tampered_mode_model_is_refused_naming_the_file(model_dir_copy):
    path = model_dir_copy / FAILURE_MODE_MODEL_FILE
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0x01
    path.write_bytes(bytes(content))

    with pytest.raises(ModelLoadError, match=FAILURE_MODE_MODEL_FILE) as raised:
        model_fn(model_dir_copy)
    assert "sha256" in str(raised.value)


def test_a_missing_mode_model_is_refused_naming_the_file(model_dir_copy):
    (model_dir_copy / FAILURE_MODE_MODEL_FILE).unlink()

    with pytest.raises(ModelLoadError, match=f"{FAILURE_MODE_MODEL_FILE} is missing"):
        model_fn(model_dir_copy)


def rewrite_spec(model_dir: Path, change) -> None:
    path = model_dir / "model_spec.json"
    spec = json.loads(path.read_text())
    change(spec)
    path.write_text(json.dumps(spec))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda document: document.update(method="magic"), "method"),
        (lambda document: document.update(rows=document["rows"] + 1), "sha256"),  # not resealed
        (lambda document: document.clear(), r"\.sha256' is missing"),
        (lambda document: document.pop("sha256"), r"\.sha256' is missing"),  # unsealed
        (lambda document: document.pop("model_sha256"), r"\.model_sha256' is missing"),
    ],
    ids=["unknown-method", "edited-after-fitting", "empty", "unsealed", "no-model-digest"],
)
def test_a_bad_calibration_map_is_refused_naming_the_field(model_dir_copy, change, field):
    rewrite_spec(model_dir_copy, lambda spec: change(spec["calibration"]))

    with pytest.raises(ModelLoadError, match=rf"field 'calibration.*{field}"):
        model_fn(model_dir_copy)


def test_a_calibration_map_of_another_model_is_refused(model_dir_copy):
    from predictive_maintenance.calibration import sealed  # noqa: PLC0415

    def other_model(spec):
        spec["calibration"] = sealed({**spec["calibration"], "model_sha256": "0" * 64})

    rewrite_spec(model_dir_copy, other_model)

    with pytest.raises(ModelLoadError, match=r"calibration\.model_sha256"):
        model_fn(model_dir_copy)


def test_a_mode_model_of_other_classes_is_refused(model_dir_copy):
    rewrite_spec(model_dir_copy, lambda spec: spec["failure_modes"].update(classes=["none", "twf"]))

    with pytest.raises(ModelLoadError, match=r"failure_modes\.classes"):
        model_fn(model_dir_copy)


def test_a_mode_model_that_is_not_a_six_class_booster_is_refused(model_dir_copy):
    # The failure model itself, vouched for by the spec: one output, not one per mode class.
    content = (model_dir_copy / "xgboost-model").read_bytes()
    (model_dir_copy / FAILURE_MODE_MODEL_FILE).write_bytes(content)
    rewrite_spec(
        model_dir_copy,
        lambda spec: spec["failure_modes"].update(model_sha256=sha256_hex(content)),
    )

    with pytest.raises(ModelLoadError, match=rf"{FAILURE_MODE_MODEL_FILE}: 0 output classes"):
        model_fn(model_dir_copy)


def test_a_tampered_or_unvouched_card_is_refused_naming_the_file(model_dir_copy):
    card = model_dir_copy / MODEL_CARD_FILE
    card.write_bytes(card.read_bytes().replace(b'"card_format":1', b'"card_format":2'))
    with pytest.raises(ModelLoadError, match=MODEL_CARD_FILE):
        model_fn(model_dir_copy)

    rewrite_spec(model_dir_copy, lambda spec: spec.pop("model_card_sha256"))
    with pytest.raises(ModelLoadError, match=f"{MODEL_CARD_FILE} is present"):
        model_fn(model_dir_copy)

    card.unlink()
    assert model_fn(model_dir_copy).model_card is None


# ---- the explained answer ------------------------------------------------------------------------
def test_a_row_breaking_the_power_rule_is_a_power_failure_for_power_reasons(insight_loaded_model):
    answer = explain(insight_loaded_model, [LOW_POWER_READING])

    (explanation,) = answer["explanations"]
    mode = explanation["failure_mode"]
    assert (mode["mode"], mode["name"]) == ("pwf", "power")
    # Its probability given a failure: P(pwf) / (1 - P(none)), the largest of the five.
    given_failure = {
        m: p / (1 - mode["probabilities"]["none"]) for m, p in mode["probabilities"].items()
    }
    assert mode["probability"] == pytest.approx(
        max(given_failure[m] for m in MODE_CLASSES[1:]), abs=2e-6
    )
    assert mode["probability"] == pytest.approx(given_failure["pwf"], abs=2e-6)
    assert mode["probability"] > 0.5
    raising = [
        item["feature"] for item in explanation["contributions"] if item["direction"] == "raises"
    ]
    assert "power_w" in raising[:3], explanation["contributions"][:3]
    assert explanation["probability"] > 0.5  # the calibrated risk of a failure the rule makes


def test_real_heat_dissipation_failures_get_hdf(insight_loaded_model, training_run):
    # Held-out rows (the test split) whose only mode is HDF.
    readings = training_run.readings.loc[training_run.test.index]
    heat = readings[
        (readings["hdf"] == 1) & (readings[["twf", "pwf", "osf", "rnf"]].sum(axis=1) == 0)
    ]
    assert len(heat) >= 5

    answer = explain(insight_loaded_model, readings_records(heat))

    modes = [item["failure_mode"]["mode"] for item in answer["explanations"]]
    assert modes == ["hdf"] * len(heat)


def test_the_probability_is_the_calibration_map_of_the_score(insight_loaded_model, training_run):
    readings = training_run.readings.loc[training_run.test.index[:300]]
    plain, _ = invoke(insight_loaded_model, readings_as_csv(readings), "text/csv", None)
    scores = np.array(plain.decode().split(), dtype=np.float32)

    answer = explain(insight_loaded_model, readings_records(readings))

    expected = CalibrationMap.from_document(insight_loaded_model.spec["calibration"]).apply(scores)
    got = np.array([item["probability"] for item in answer["explanations"]])
    np.testing.assert_allclose(got, expected.round(6), atol=1e-12, rtol=0)
    assert len(set(got)) > 3  # not one constant: the map does something


def readings_records(readings: pd.DataFrame) -> list[dict]:
    from predictive_maintenance.schema import READING_COLUMNS  # noqa: PLC0415

    return [
        {
            column: (value if column == "type" else float(value))
            for column, value in zip(READING_COLUMNS, row, strict=True)
        }
        for row in readings[list(READING_COLUMNS)].itertuples(index=False)
    ]


def test_the_modes_are_the_mode_models_of_the_same_features(insight_loaded_model, training_run):
    readings = training_run.readings.loc[training_run.test.index[:200]]
    features = build_features(readings).to_numpy()

    answer = explain(insight_loaded_model, readings_records(readings))

    expected = likely_modes(mode_probabilities(insight_loaded_model.mode_booster, features))
    assert [item["failure_mode"] for item in answer["explanations"]] == expected


def test_the_explained_answer_carries_the_model_card(insight_loaded_model, insight_model):
    answer = explain(insight_loaded_model, [WORKSHOP_READING, LOW_POWER_READING])

    assert answer["model_card"] == insight_model.card
    assert list(answer) == [
        "predictions",
        "model_version",
        "decision_threshold",
        "explanations",
        "model_card",
    ]


def test_an_older_model_explains_without_the_new_keys(loaded_model, insight_loaded_model):
    old = explain(loaded_model, [LOW_POWER_READING])
    new = explain(insight_loaded_model, [LOW_POWER_READING])

    assert "model_card" not in old
    assert set(old["explanations"][0]) == {"bias", "margin", "contributions"}
    assert {key: new["explanations"][0][key] for key in ("bias", "margin", "contributions")} == (
        old["explanations"][0]
    )
    assert old["predictions"] == new["predictions"]


@pytest.fixture(scope="module")
def insight_server(insight_loaded_model):
    with EndpointServer(
        ("127.0.0.1", 0), model=insight_loaded_model.with_version(7), endpoint_name="pm"
    ) as running:
        yield running.start()


@pytest.fixture(scope="module")
def old_server(loaded_model):
    with EndpointServer(
        ("127.0.0.1", 0), model=loaded_model.with_version(7), endpoint_name="pm"
    ) as running:
        yield running.start()


def test_the_plain_answers_are_unchanged_byte_for_byte(insight_server, old_server, training_run):
    rows = readings_as_csv(training_run.readings.iloc[:500])
    plain_json = json.dumps({"instances": [WORKSHOP_READING, LOW_POWER_READING]})
    for body, content_type in (
        (CSV_ROW, "text/csv"),
        (rows, "text/csv"),
        (plain_json, "application/json"),
    ):
        new = post(insight_server, body, content_type)
        assert new == post(old_server, body, content_type)
        assert new[0] == 200
        assert b"model_card" not in new[2]
        assert b"failure_mode" not in new[2]


def test_the_endpoint_explains_with_the_insight_over_http(insight_server, insight_model):
    status, content_type, body = post(
        insight_server, "L,298.9,309.1,2861,4.6,143", "text/csv", "/invocations?explain=true"
    )

    answer = json.loads(body)
    assert (status, content_type) == (200, "application/json")
    assert answer["explanations"][0]["failure_mode"]["mode"] == "pwf"
    assert 0 <= answer["explanations"][0]["probability"] <= 1
    assert answer["model_card"] == insight_model.card


def test_the_openapi_document_describes_the_insight():
    document = endpoint_openapi_document()
    schemas = document["components"]["schemas"]

    explanation = schemas["Explanation"]["properties"]
    assert explanation["probability"]["type"] == "number"
    assert explanation["failure_mode"]["$ref"] == "#/components/schemas/FailureMode"
    assert schemas["FailureMode"]["properties"]["mode"]["enum"] == list(MODE_CLASSES[1:])
    assert "model_card" in schemas["Predictions"]["properties"]


# ---- batch scoring: the same insight, per row ------------------------------------------------
def test_batch_scoring_adds_the_explained_answers_probability_and_mode(
    insight_model, insight_loaded_model, tmp_path
):
    from predictive_maintenance.datasets.table_chunks import TableChunksDataset  # noqa: PLC0415
    from predictive_maintenance.pipelines.batch_scoring.nodes import (  # noqa: PLC0415
        score_batch,
        select_model,
    )
    from predictive_maintenance.registry.datasets import (  # noqa: PLC0415
        LocalModelRegistryDataset,
    )
    from predictive_maintenance.registry.local import LocalModelRegistry  # noqa: PLC0415

    LocalModelRegistry(tmp_path / "registry").register(
        "insight", insight_model.archive, metrics={}, lineage={}, approval_status="Approved"
    )
    state = LocalModelRegistryDataset(root=str(tmp_path / "registry"), group="insight").load()
    readings = [WORKSHOP_READING, LOW_POWER_READING, {**WORKSHOP_READING, "torque_nm": 40.0}]
    path = tmp_path / "fleet.csv"
    path.write_text(readings_as_csv(pd.DataFrame(readings)) + "\n")
    parameters = {"model_version": None, "progress_bar": False}

    chunks = list(
        score_batch(
            TableChunksDataset(filepath=str(path)).load(),
            select_model(state, parameters),
            parameters,
        )
    )
    scored = pd.concat([chunk[0].take() for chunk in chunks], ignore_index=True)

    body = json.dumps({"instances": readings, "explain": True})
    answer, _ = invoke(insight_loaded_model, body, "application/json", None)
    explanations = json.loads(answer)["explanations"]
    assert list(scored.columns) == [
        "line",
        "score",
        "predicted_label",
        "probability",
        "failure_mode",
        "failure_mode_probability",
    ]
    assert scored["probability"].round(6).tolist() == [e["probability"] for e in explanations]
    # A mode for the machines the model flags (the first two), none for the healthy third.
    assert scored["predicted_label"].tolist() == [1, 1, 0]
    flagged = scored.iloc[:2]
    assert flagged["failure_mode"].tolist() == [e["failure_mode"]["mode"] for e in explanations[:2]]
    assert flagged["failure_mode"].tolist()[1] == "pwf"
    assert flagged["failure_mode_probability"].round(6).tolist() == [
        e["failure_mode"]["probability"] for e in explanations[:2]
    ]
    assert scored["failure_mode"].isna().tolist() == [False, False, True]
    assert scored["failure_mode_probability"].isna().tolist() == [False, False, True]
