"""The model card: built from the real reports, stored with each local registry version, shown by
``kedro model list`` and ``show``."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from kedro.io import DatasetError

from predictive_maintenance.model_card import (
    MAX_CARD_BYTES,
    SAGEMAKER_CARD_STATUS,
    ModelCardError,
    card_bytes,
    card_summary,
    check_card,
    create_model_card,
    render_card,
    sagemaker_model_card,
)
from predictive_maintenance.registry import LocalModelRegistry, LocalModelRegistryDataset
from tests.support.cli import invoke
from tests.support.model_card import trained_reports
from tests.support.project import copy_project

GROUP = "predictive-maintenance"


@pytest.fixture(scope="module")
def reports() -> dict:
    return trained_reports()


def _card(reports: dict, **changes: dict) -> dict:
    inputs = {
        "model_spec": reports["model_spec"],
        "metrics": reports["metrics"],
        "calibration_report": reports["calibration_report"],
        "failure_mode_report": reports["failure_mode_report"],
        "model_card": reports["parameters"]["model_card"],
        **changes,
    }
    return create_model_card(**inputs)


@pytest.fixture(scope="module")
def card(reports) -> dict:
    return _card(reports)


def test_the_card_carries_the_reports_figures(card, reports):
    spec, metrics = reports["model_spec"], reports["metrics"]
    calibration, modes = reports["calibration_report"], reports["failure_mode_report"]
    settings = reports["parameters"]["model_card"]

    assert card["model"]["model_sha256"] == spec["model_sha256"]
    assert card["model"]["trees"] == spec["trees"]
    assert card["model"]["features"] == spec["features"]
    assert card["model"]["decision_threshold"] == round(spec["decision_threshold"], 4)
    assert card["model"]["threshold_rule"] == spec["threshold_rule"]
    assert card["data"]["raw_sha256"] == spec["training_data"]["raw_sha256"]
    assert card["data"]["splits"]["test"] == {"rows": 1000, "failures": metrics["failures"]}
    chosen = metrics["at_chosen_threshold"]
    assert card["metrics"]["f1"] == round(chosen["f1"], 4)
    assert card["metrics"]["recall"] == round(chosen["recall"], 4)
    assert card["metrics"]["roc_auc"] == round(metrics["roc_auc"], 4)
    assert card["metrics"]["expected_cost_per_1000"] == round(chosen["expected_cost_per_1000"], 1)
    assert card["calibration"]["ece"]["calibrated"] == round(calibration["ece"]["calibrated"], 4)
    assert card["calibration"]["target_met"] is calibration["ece_target_met"]
    assert card["failure_modes"]["rule_modes"] == ["hdf", "pwf", "osf"]
    assert card["failure_modes"]["unpredictable"] == ["twf", "rnf"]
    assert card["failure_modes"]["rule_modes_macro_f1"] == round(modes["rule_modes_macro_f1"], 4)
    assert card["failure_modes"]["target_met"] is modes["target_met"]
    assert card["failure_modes"]["per_mode"]["pwf"]["f1"] == round(
        modes["per_mode"]["pwf"]["f1"], 4
    )
    assert card["intended_use"] == settings["intended_use"]
    assert len(card["known_limits"]) == len(settings["known_limits"]) >= 5
    assert any("TWF" in limit for limit in card["known_limits"])
    # Compact: it is answered with every explained prediction.
    assert len(card_bytes(card)) <= MAX_CARD_BYTES
    assert json.loads(card_bytes(card)) == card


def test_the_card_reads_well(card):
    text = render_card(card)

    lines = text.splitlines()
    assert lines[0].startswith("Model:        binary:logistic, ")
    assert f"F1 {card['metrics']['f1']:.4f}" in text
    assert "per 1,000 machines (false alarm 1,000, missed failure 10,000)" in text
    assert "Calibration:  " in text
    assert "(target <= 0.0100: " in text
    assert "macro-F1 over HDF, PWF, OSF" in text
    assert next(line for line in lines if line.startswith("  TWF")).endswith("unpredictable")
    assert "  PWF  power" in text
    limits = lines[lines.index("Known limits:") + 1 :]
    assert sum(line.startswith("  - ") for line in limits) == len(card["known_limits"])
    assert max(map(len, lines)) <= 100  # a terminal's width
    assert card_summary(card) == {
        "ECE": f"{card['calibration']['ece']['calibrated']:.4f}",
        "MODES F1": f"{card['failure_modes']['rule_modes_macro_f1']:.4f}",
    }
    assert card_summary(None) == card_summary({}) == {"ECE": "-", "MODES F1": "-"}


def test_metrics_without_a_price_make_a_card_without_cost(reports):
    metrics = copy.deepcopy(reports["metrics"])
    del metrics["at_chosen_threshold"]["expected_cost_per_1000"]

    card = _card(reports, metrics=metrics)

    assert "expected_cost_per_1000" not in card["metrics"]
    assert "Cost:" not in render_card(card)


def _without(document: dict, path: str) -> dict:
    changed = copy.deepcopy(document)
    *parents, last = path.split(".")
    target = changed
    for key in parents:
        target = target[key]
    del target[last]
    return changed


@pytest.mark.parametrize(
    ("source", "path", "message"),
    [
        ("model_spec", "training_data.raw_sha256", "model_spec has no 'training_data.raw_sha256'"),
        ("metrics", "roc_auc", "metrics has no 'roc_auc'"),
        ("metrics", "at_chosen_threshold.f1", "metrics has no 'at_chosen_threshold.f1'"),
        ("calibration_report", "ece.calibrated", "calibration_report has no 'ece.calibrated'"),
        ("failure_mode_report", "per_mode.osf", "failure_mode_report has no 'per_mode.osf'"),
        ("failure_mode_report", "target_met", "failure_mode_report has no 'target_met'"),
        ("model_card", "intended_use", "params:model_card has no 'intended_use'"),
    ],
)
def test_a_missing_input_field_is_named(reports, source, path, message):
    inputs = {
        "model_spec": reports["model_spec"],
        "metrics": reports["metrics"],
        "calibration_report": reports["calibration_report"],
        "failure_mode_report": reports["failure_mode_report"],
        "model_card": reports["parameters"]["model_card"],
    }

    with pytest.raises(ModelCardError, match=f"^model card: {message}$".replace(".", r"\.")):
        _card(reports, **{source: _without(inputs[source], path)})


def test_wrong_values_and_an_oversized_card_are_refused(reports):
    metrics = {**reports["metrics"], "roc_auc": "high"}
    limits = {"intended_use": "x", "known_limits": "one text, not a list"}
    verbose = {"intended_use": "x", "known_limits": ["y" * 500] * 6}

    with pytest.raises(ModelCardError, match="metrics 'roc_auc' is 'high', not a number"):
        _card(reports, metrics=metrics)
    with pytest.raises(ModelCardError, match="'known_limits' must be a list of texts"):
        _card(reports, model_card=limits)
    with pytest.raises(ModelCardError, match=r"more than 3,072: shorten params:model_card"):
        _card(reports, model_card=verbose)


def test_the_sagemaker_card_follows_the_model_package_card_schema(card):
    sagemaker = sagemaker_model_card(card)

    assert sagemaker["ModelCardStatus"] == SAGEMAKER_CARD_STATUS == "Draft"
    content = json.loads(sagemaker["ModelCardContent"])
    assert set(content) == {"intended_uses", "evaluation_details", "additional_information"}
    assert content["intended_uses"]["intended_uses"] == card["intended_use"]
    (evaluation,) = content["evaluation_details"]
    metrics = {
        item["name"]: item["value"]
        for group in evaluation["metric_groups"]
        for item in group["metric_data"]
    }
    assert metrics["F1"] == card["metrics"]["f1"]
    assert metrics["ECE calibrated"] == card["calibration"]["ece"]["calibrated"]
    assert metrics["PWF F1"] == card["failure_modes"]["per_mode"]["pwf"]["f1"]
    assert all(
        item["type"] == "number"
        for group in evaluation["metric_groups"]
        for item in group["metric_data"]
    )
    assert "TWF" in content["additional_information"]["caveats_and_recommendations"]


def test_the_local_registry_keeps_each_versions_card(card, tmp_path):
    registry = LocalModelRegistry(tmp_path)
    dataset = LocalModelRegistryDataset(root=str(tmp_path), group=GROUP)

    old = registry.register(GROUP, b"before cards", metrics={}, lineage={})
    dataset.save({"archive": b"with a card", "model_card": card, "register_duplicates": True})

    assert old.model_card == {}
    carded = registry.get(GROUP, 2)
    assert carded.model_card == card
    assert carded.to_dict()["model_card"] == card
    assert dataset.load()["versions"][1]["model_card"] == card
    version_json = json.loads((tmp_path / GROUP / "versions" / "2" / "version.json").read_text())
    assert version_json["model_card"] == card
    assert "model_card" not in json.loads(
        (tmp_path / GROUP / "versions" / "1" / "version.json").read_text()
    )
    assert not registry.integrity(GROUP).metadata  # the ledger covers version.json, card included


def test_an_edited_card_is_caught_by_the_ledger(card, tmp_path):
    registry = LocalModelRegistry(tmp_path)
    registry.register(GROUP, b"a", metrics={}, lineage={}, model_card=card)
    path = tmp_path / GROUP / "versions" / "1" / "version.json"
    record = json.loads(path.read_text())
    record["model_card"]["metrics"]["f1"] = 0.99
    path.chmod(0o644)
    path.write_text(json.dumps(record, indent=2) + "\n")

    assert "were edited after registration" in registry.integrity(GROUP).metadata[1]


def test_a_card_that_is_no_card_is_refused(tmp_path):
    dataset = LocalModelRegistryDataset(root=str(tmp_path), group=GROUP)

    with pytest.raises(DatasetError, match="needs 'card_format'"):
        dataset.save({"archive": b"a", "model_card": {"metrics": {}}})
    with pytest.raises(DatasetError, match="a model card is a JSON object, not list"):
        dataset.save({"archive": b"a", "model_card": []})
    with pytest.raises(ModelCardError, match="more than 3,072"):
        check_card({"card_format": 1, "text": "x" * MAX_CARD_BYTES})
    assert not (tmp_path / GROUP / "versions").exists() or not any(
        (tmp_path / GROUP / "versions").iterdir()
    )


@pytest.fixture
def project_with_cards(card, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project copy whose registry holds version 1 without a card, version 2 with one."""
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)
    registry = LocalModelRegistry(project / "data" / "10_model_registry")
    metrics = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.91}}
    registry.register(GROUP, b"archive 1", metrics=metrics, lineage={})
    registry.register(GROUP, b"archive 2", metrics=metrics, lineage={}, model_card=card)
    return project


def test_kedro_model_list_and_show_the_card(project_with_cards, card, monkeypatch):
    listed = invoke(project_with_cards, monkeypatch, "model", "list")
    shown = invoke(project_with_cards, monkeypatch, "model", "show", "2")
    older = invoke(project_with_cards, monkeypatch, "model", "show", "1")

    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    header = next(line for line in lines if line.startswith("VERSION"))
    assert header.split()[4:10] == ["F1", "ROC", "AUC", "ECE", "MODES", "F1"]
    # VERSION STATUS DATE TIME F1 ROC-AUC ECE MODES-F1 ...
    rows = {row[0]: row for row in map(str.split, lines) if row and row[0].isdigit()}
    summary = card_summary(card)
    assert rows["1"][4:8] == ["0.9100", "0.9800", "-", "-"]
    assert rows["2"][4:8] == ["0.9100", "0.9800", summary["ECE"], summary["MODES F1"]]
    assert shown.exit_code == 0, shown.output
    assert "Model card:\n  Model:        binary:logistic" in shown.stdout
    for line in render_card(card).splitlines():
        assert f"  {line}" in shown.stdout
    assert older.exit_code == 0, older.output
    assert "Model card:          - (none: registered before model cards existed)" in older.stdout
