"""The deployment pipeline's model card: made from the real reports, packaged into model.tar.gz
beside the failure-mode model, registered with the version."""

from __future__ import annotations

import copy
import io
import json
import tarfile

import pytest
from kedro.runner import SequentialRunner

from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex
from predictive_maintenance.model_card import ModelCardError, card_bytes
from predictive_maintenance.pipelines.deployment import create_pipeline
from predictive_maintenance.pipelines.deployment.nodes import (
    create_model_card,
    package_model,
    register_model,
)
from predictive_maintenance.registry import LocalModelRegistry, LocalModelRegistryDataset
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE, MODEL_CARD_FILE
from predictive_maintenance.serving.endpoint import LocalEndpointDataset
from predictive_maintenance.serving.package import extract_model_archive
from tests.catalogs import RecordingDataset, ValueDataset, memory_catalog
from tests.pipelines.test_deployment import BASELINE, METRICS, TRAINED_INPUTS
from tests.support.model_card import trained_reports


@pytest.fixture(scope="module")
def reports() -> dict:
    return trained_reports()


@pytest.fixture(scope="module")
def card(reports, parameters) -> dict:
    """The card the deployment pipeline makes of the real reports."""
    return create_model_card(
        reports["model_spec"],
        reports["metrics"],
        reports["calibration_report"],
        reports["failure_mode_report"],
        parameters["model_card"],
    )


def _catalog(reports, parameters, tmp_path, **overrides):
    catalog = memory_catalog(
        {**{name: reports[name] for name in TRAINED_INPUTS}, **BASELINE},
        {**parameters, **overrides},
    )
    catalog["model_registry"] = LocalModelRegistryDataset(
        root=str(tmp_path / "registry"), group="pm"
    )
    catalog["endpoint"] = LocalEndpointDataset(filepath=str(tmp_path / "endpoint.json"))
    catalog["tracking_run"] = ValueDataset(None)
    catalog["model_card"] = RecordingDataset()
    return catalog


def test_the_pipeline_cards_packages_and_registers_the_version(reports, parameters, card, tmp_path):
    catalog = _catalog(reports, parameters, tmp_path)

    SequentialRunner().run(create_pipeline(), catalog)

    assert catalog["model_card"].saved == card
    registry = LocalModelRegistry(tmp_path / "registry")
    (version,) = registry.list_versions("pm")
    assert version.model_card == card
    model_dir = extract_model_archive(registry.read_archive("pm", 1), tmp_path / "model")
    spec = json.loads((model_dir / "model_spec.json").read_text())
    assert (model_dir / MODEL_CARD_FILE).read_bytes() == card_bytes(card)
    assert spec["model_card_sha256"] == sha256_hex((model_dir / MODEL_CARD_FILE).read_bytes())
    assert (
        sha256_hex((model_dir / FAILURE_MODE_MODEL_FILE).read_bytes())
        == (spec["failure_modes"]["model_sha256"])
    )
    # The card the registry shows is the one the endpoint serves.
    assert json.loads((model_dir / MODEL_CARD_FILE).read_bytes()) == version.model_card


def test_the_node_names_its_inputs_and_output():
    (node,) = [n for n in create_pipeline().nodes if n.name == "evaluate.create_model_card"]

    assert node.inputs == [
        "model_spec",
        "metrics",
        "calibration_report",
        "failure_mode_report",
        "params:model_card",
    ]
    assert node.outputs == ["model_card"]
    (package,) = [n for n in create_pipeline().nodes if n.name == "evaluate.package_model"]
    assert package.inputs == ["model", "model_spec", "failure_mode_model", "model_card"]


def test_a_report_without_a_field_stops_the_run_naming_it(reports, parameters, tmp_path):
    catalog = _catalog(reports, parameters, tmp_path)
    report = copy.deepcopy(reports["failure_mode_report"])
    del report["rule_modes_macro_f1"]
    catalog["failure_mode_report"] = RecordingDataset()
    catalog["failure_mode_report"].save(report)

    with pytest.raises(ModelCardError, match="failure_mode_report has no 'rule_modes_macro_f1'"):
        SequentialRunner().run(create_pipeline(), catalog)

    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())


def test_a_mode_model_the_spec_does_not_vouch_for_is_not_packaged(reports, card):
    other = reports["model"]  # a booster, but not the mode model the spec names

    with pytest.raises(ChecksumMismatchError, match=FAILURE_MODE_MODEL_FILE):
        package_model(reports["model"], reports["model_spec"], other, card)


def test_registration_carries_the_card_or_none(reports, card):
    arguments = (
        b"a",
        reports["model_spec"],
        METRICS,
        {"checks": []},
        {"approval_status": "Approved"},
    )

    with_card = register_model(*arguments, **BASELINE, model_card=card)
    without = register_model(*arguments, **BASELINE)

    assert with_card["model_card"] == card
    assert without["model_card"] is None
    with pytest.raises(ModelCardError, match="needs 'card_format'"):
        register_model(*arguments, **BASELINE, model_card={"metrics": {}})


def test_the_archive_is_the_same_bytes_for_the_same_inputs(reports, card):
    first = package_model(
        reports["model"], reports["model_spec"], reports["failure_mode_model"], card
    )
    again = package_model(
        reports["model"], reports["model_spec"], reports["failure_mode_model"], copy.deepcopy(card)
    )

    assert first == again
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as tar:
        assert tar.getmember(MODEL_CARD_FILE).size == len(card_bytes(card))
