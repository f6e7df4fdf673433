"""The model card in the SageMaker Model Registry (moto in server mode): stored beside the archive
under its sha256, recorded in the package's customer metadata, read back by ``kedro model``."""

from __future__ import annotations

import logging

import boto3
import pytest

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.model_card import card_bytes, card_summary, create_model_card
from predictive_maintenance.registry.sagemaker import SageMakerRegistry
from predictive_maintenance.registry.sagemaker_datasets import (
    MODEL_CARD_SHA256_KEY,
    SageMakerModelRegistryDataset,
    model_card_uri,
)
from tests.sagemaker.conftest import BUCKET
from tests.support.cli import invoke
from tests.support.model_card import trained_reports
from tests.support.project import copy_project

GROUP = "predictive-maintenance"
METRICS = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.91}}


@pytest.fixture(scope="module")
def card() -> dict:
    reports = trained_reports()
    return create_model_card(
        reports["model_spec"],
        reports["metrics"],
        reports["calibration_report"],
        reports["failure_mode_report"],
        reports["parameters"]["model_card"],
    )


@pytest.fixture
def registry(aws) -> SageMakerModelRegistryDataset:
    return SageMakerModelRegistryDataset(
        group=GROUP,
        artifact_uri=f"s3://{BUCKET}/predictive-maintenance/model-registry",
        region="eu-west-1",
    )


def _register(registry: SageMakerModelRegistryDataset, archive: bytes, card: dict | None) -> None:
    registry.save(
        {
            "archive": archive,
            "metrics": METRICS,
            "lineage": {"raw_data_sha256": "ab" * 32},
            "approval_status": "PendingManualApproval",
            "description": "model",
            "model_card": card,
        }
    )


def _s3_get(uri: str) -> bytes:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_a_version_keeps_its_card_and_older_ones_have_none(registry, card):
    _register(registry, b"before cards", None)
    _register(registry, b"with a card", card)

    older, carded = registry.load()["versions"]
    assert older["model_card"] is None
    digest = sha256_hex(card_bytes(card))
    assert carded["model_card"] == {
        "uri": model_card_uri(carded["archive_uri"], digest),
        "sha256": digest,
    }
    assert _s3_get(carded["model_card"]["uri"]) == card_bytes(card)
    package = boto3.client("sagemaker").describe_model_package(
        ModelPackageName=carded["model_package_arn"]
    )
    properties = package["CustomerMetadataProperties"]
    assert properties[MODEL_CARD_SHA256_KEY] == digest
    summary = card_summary(card)
    assert properties["model_card_ece"] == summary["ECE"]
    assert properties["model_card_modes_macro_f1"] == summary["MODES F1"]
    assert properties["model_card_f1"] == f"{card['metrics']['f1']:.4f}"
    versions = SageMakerRegistry(registry).list_versions(GROUP)
    assert [version.model_card for version in versions] == [{}, card]


def test_a_changed_card_is_not_shown(registry, card, caplog):
    _register(registry, b"with a card", card)
    (version,) = registry.load()["versions"]
    bucket, key = version["model_card"]["uri"].removeprefix("s3://").split("/", 1)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b'{"card_format": 1}')
    caplog.set_level(logging.WARNING, logger="predictive_maintenance")

    assert SageMakerRegistry(registry).get(GROUP, 1).model_card == {}
    assert "version 1: its model card is not shown" in caplog.text
    assert version["model_card"]["sha256"] in caplog.text


def test_kedro_model_list_and_show_read_the_card_from_sagemaker(
    registry, card, tmp_path, monkeypatch
):
    _register(registry, b"before cards", None)
    _register(registry, b"with a card", card)
    project = copy_project(tmp_path / "project")
    monkeypatch.chdir(project)

    listed = invoke(project, monkeypatch, "model", "list", "--env", "sagemaker")
    shown = invoke(project, monkeypatch, "model", "show", "2", "--env", "sagemaker")

    assert listed.exit_code == 0, listed.output
    rows = {
        row[0]: row
        for row in map(str.split, listed.output.splitlines())
        if row and row[0].isdigit()
    }
    summary = card_summary(card)
    assert rows["1"][4:8] == ["0.9100", "0.9800", "-", "-"]
    assert rows["2"][4:8] == ["0.9100", "0.9800", summary["ECE"], summary["MODES F1"]]
    assert shown.exit_code == 0, shown.output
    assert "Model card:\n  Model:        binary:logistic" in shown.output
