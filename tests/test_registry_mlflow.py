"""The registry and MLflow meet: a version records its run, the run records its version.

Against a real MLflow store (sqlite in a temporary directory, one per module: creating it costs
seconds) and, for the SageMaker Model Registry, moto in server mode.
"""

from __future__ import annotations

import logging
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from kedro.io import AbstractDataset
from kedro.runner import SequentialRunner

from predictive_maintenance.pipelines.deployment import create_pipeline
from predictive_maintenance.registry import LocalModelRegistry, LocalModelRegistryDataset
from predictive_maintenance.registry.runs import recorded_run
from predictive_maintenance.registry.sagemaker_datasets import SageMakerModelRegistryDataset
from predictive_maintenance.tracking import runs as tracking_runs
from tests.catalogs import ValueDataset, memory_catalog
from tests.sagemaker.conftest import BUCKET, aws, moto_url  # noqa: F401 - fixtures
from tests.support.project import FinishedRun
from tests.test_registry_baseline import CONSTRAINTS, STATISTICS

GROUP = "pm"
IMAGE = "683313688378.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
EXPERIMENT = "predictive-maintenance"
SPEC = {
    "training_data": {"raw_sha256": "ab" * 32},
    "model_sha256": "cd" * 32,
    "decision_threshold": 0.5,
    "parameters": {"max_depth": 4},
    "library_versions": {},
}


@dataclass(frozen=True)
class Store:
    client: Any  # mlflow.MlflowClient
    uri: str
    experiment_id: str

    def new_run(self) -> dict[str, str]:
        """A run, as the ``tracking_run`` dataset hands it to the register node."""
        run = self.client.create_run(self.experiment_id)
        return {
            "run_id": run.info.run_id,
            "experiment_id": self.experiment_id,
            "experiment": EXPERIMENT,
            "tracking_uri": self.uri,
        }

    def tags(self, run: dict[str, str]) -> dict[str, str]:
        return {
            key: value
            for key, value in self.client.get_run(run["run_id"]).data.tags.items()
            if key.startswith("model_registry.")
        }


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    from mlflow import MlflowClient  # noqa: PLC0415 - seconds to import: only this module's

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.create_experiment(
        EXPERIMENT, artifact_location=str(root / "mlartifacts")
    )
    return Store(client, uri, experiment_id)


def register(registry: AbstractDataset, tracking_run: dict | None, **registration: Any) -> None:
    """Runs the deployment pipeline's register node, as ``kedro run`` does."""
    catalog = memory_catalog(
        {
            "model_archive": registration.pop("archive", b"archive"),
            "model_spec": SPEC,
            "metrics": {"roc_auc": 0.98},
            "quality_gate_report": {"passed": True, "checks": []},
            "baseline_statistics": STATISTICS,
            "baseline_constraints": CONSTRAINTS,
        },
        {"registration": {"approval_status": "PendingManualApproval", **registration}},
    )
    catalog["model_registry"] = registry
    catalog["tracking_run"] = ValueDataset(tracking_run)
    catalog["model_card"] = ValueDataset(None)  # a version without a card
    SequentialRunner().run(create_pipeline().only_nodes("register.register_model"), catalog)


def test_the_version_records_its_run_and_the_run_its_version(store: Store, tmp_path: Path):
    dataset = LocalModelRegistryDataset(root=str(tmp_path / "registry"), group=GROUP)
    first, second, third = store.new_run(), store.new_run(), store.new_run()

    register(dataset, first)
    register(dataset, second)  # the same model: unchanged, still version 1
    register(dataset, third, register_duplicates=True)

    registry = LocalModelRegistry(tmp_path / "registry")
    versions = registry.list_versions(GROUP)
    assert [recorded_run(v.lineage) for v in versions] == [
        {"run_id": run["run_id"], "experiment_id": store.experiment_id, "experiment": EXPERIMENT}
        for run in (first, third)
    ]
    # In the immutable version.json, which the ledger vouches for.
    integrity = registry.integrity(GROUP)
    assert (integrity.problems, integrity.unverified, integrity.metadata) == ([], {}, {})
    assert store.tags(first) == {
        "model_registry.group": GROUP,
        "model_registry.version": "1",
        "model_registry.status": "PendingManualApproval",
        "model_registry.outcome": "registered",
    }
    assert store.tags(second) == {**store.tags(first), "model_registry.outcome": "unchanged"}
    assert store.tags(third)["model_registry.version"] == "2"


def test_without_a_run_nothing_is_recorded(tmp_path: Path):
    dataset = LocalModelRegistryDataset(root=str(tmp_path / "registry"), group=GROUP)

    register(dataset, None)

    (version,) = LocalModelRegistry(tmp_path / "registry").list_versions(GROUP)
    assert "mlflow" not in version.lineage
    assert recorded_run(version.lineage) is None


def test_a_tracking_failure_leaves_the_registration_standing(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch
):
    dataset = LocalModelRegistryDataset(root=str(tmp_path / "registry"), group=GROUP)
    gone = {**store.new_run(), "run_id": "0" * 32}  # no such run in the store
    caplog.set_level(logging.WARNING)
    # The tracking package warns once per process: as if no test before this one had failed.
    monkeypatch.setattr(tracking_runs, "_warned", threading.Event())

    register(dataset, gone)

    (version,) = LocalModelRegistry(tmp_path / "registry").list_versions(GROUP)
    assert recorded_run(version.lineage)["run_id"] == "0" * 32
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "0" * 32 in warnings[0]


def test_the_sagemaker_registry_records_the_run_as_customer_metadata(aws, store: Store):  # noqa: F811
    dataset = SageMakerModelRegistryDataset(
        group=GROUP,
        artifact_uri=f"s3://{BUCKET}/pm/model-registry",
        region="eu-west-1",
        image_uri=IMAGE,  # not looked up: the SDK's import costs seconds
    )
    first, second = store.new_run(), store.new_run()

    register(dataset, first)
    register(dataset, second)  # unchanged

    (version,) = dataset.load()["versions"]
    package = boto3.client("sagemaker").describe_model_package(
        ModelPackageName=version["model_package_arn"]
    )
    metadata = package["CustomerMetadataProperties"]
    assert {k: v for k, v in metadata.items() if k.startswith("mlflow_")} == {
        "mlflow_run_id": first["run_id"],
        "mlflow_experiment_id": store.experiment_id,
        "mlflow_experiment": EXPERIMENT,
    }
    assert recorded_run(version["lineage"])["run_id"] == first["run_id"]
    tags = store.client.get_run(first["run_id"]).data.tags
    assert tags["model_registry.model_package_arn"] == version["model_package_arn"]
    assert (tags["model_registry.version"], tags["model_registry.outcome"]) == ("1", "registered")
    assert store.tags(second)["model_registry.outcome"] == "unchanged"


def test_kedro_run_links_its_version_and_its_parent_run(finished_run: FinishedRun, tmp_path: Path):
    from mlflow import MlflowClient  # noqa: PLC0415

    assert finished_run.returncode == 0, finished_run.stderr
    registry = LocalModelRegistry(finished_run.project / "data" / "10_model_registry")
    (version,) = registry.list_versions("predictive-maintenance")
    run = recorded_run(version.lineage)
    # A copy of the store: the session's finished run is read, never touched.
    database = shutil.copy2(finished_run.project / "data/09_tracking/mlflow.db", tmp_path)
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")

    parent = client.get_run(run["run_id"])
    assert "mlflow.parentRunId" not in parent.data.tags  # the kedro run's own run, not a step's
    assert parent.data.tags["kedro.pipelines"] == "__default__"
    assert client.get_experiment(run["experiment_id"]).name == run["experiment"] == EXPERIMENT
    assert {k: v for k, v in parent.data.tags.items() if k.startswith("model_registry.")} == {
        "model_registry.group": "predictive-maintenance",
        "model_registry.version": "1",
        "model_registry.status": "PendingManualApproval",
        "model_registry.outcome": "registered",
    }
