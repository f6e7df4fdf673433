"""Nodes and the pipeline of ``deployment``: quality gate, package, registry, endpoint."""

from __future__ import annotations

import io
import json
import tarfile

import pytest
from kedro.runner import SequentialRunner

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.model_card import card_bytes
from predictive_maintenance.pipelines.deployment import create_pipeline
from predictive_maintenance.pipelines.deployment.nodes import (
    QualityGateError,
    check_quality_gate,
    create_model_card,
    package_model,
    register_model,
    select_deployment,
)
from predictive_maintenance.registry import LocalModelRegistry, LocalModelRegistryDataset
from predictive_maintenance.serving.endpoint import LocalEndpointDataset
from tests.catalogs import ValueDataset, memory_catalog
from tests.support.model_card import trained_reports
from tests.test_registry_baseline import CONSTRAINTS, STATISTICS

RUN = {
    "run_id": "0123456789abcdef0123456789abcdef",
    "experiment_id": "1",
    "experiment": "predictive-maintenance",
    "tracking_uri": "sqlite:////nowhere/mlflow.db",
}
METRICS = {"roc_auc": 0.98, "pr_auc": 0.91, "at_chosen_threshold": {"f1": 0.9, "recall": 0.85}}
BASELINE = {"baseline_statistics": STATISTICS, "baseline_constraints": CONSTRAINTS}


#: The training pipeline's outputs the deployment pipeline reads.
TRAINED_INPUTS = (
    "model",
    "model_spec",
    "metrics",
    "failure_mode_model",
    "calibration_report",
    "failure_mode_report",
)


@pytest.fixture(scope="module")
def trained(parameters) -> dict:
    """The real models and reports (trained once per process), and the model card of them."""
    reports = trained_reports()
    trained = {name: reports[name] for name in TRAINED_INPUTS}
    trained["model_card"] = create_model_card(
        reports["model_spec"],
        reports["metrics"],
        reports["calibration_report"],
        reports["failure_mode_report"],
        parameters["model_card"],
    )
    return trained


def test_quality_gate_passes_and_reports_every_check(parameters):
    report = check_quality_gate(METRICS, parameters["quality_gate"])

    assert report["passed"] is True
    assert {check["metric"] for check in report["checks"]} == set(
        parameters["quality_gate"]["minimums"]
    )
    assert all(check["passed"] for check in report["checks"])


def test_quality_gate_failure_names_metric_value_and_minimum():
    gate = {"minimums": {"roc_auc": 0.95, "at_chosen_threshold.f1": 0.95}}

    with pytest.raises(QualityGateError) as error:
        check_quality_gate(METRICS, gate)

    message = str(error.value)
    assert "at_chosen_threshold.f1 = 0.9000 is below the minimum 0.95" in message
    assert "roc_auc" not in message


def test_quality_gate_with_an_unknown_metric_says_so():
    with pytest.raises(
        KeyError, match=r"'at_chosen_threshold\.auc' is not in the evaluation metrics"
    ):
        check_quality_gate(METRICS, {"minimums": {"at_chosen_threshold.auc": 0.5}})


def _package(trained: dict) -> bytes:
    return package_model(
        trained["model"],
        trained["model_spec"],
        trained["failure_mode_model"],
        trained["model_card"],
    )


def test_package_holds_the_model_spec_and_inference_code(trained):
    archive = _package(trained)

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = set(tar.getnames())
        model_bytes = tar.extractfile("xgboost-model").read()
        spec = json.loads(tar.extractfile("model_spec.json").read())
        mode_bytes = tar.extractfile("failure-mode-model").read()
        card = tar.extractfile("model_card.json").read()
    assert {"xgboost-model", "model_spec.json", "code/inference.py"} <= names
    assert "code/predictive_maintenance/features.py" in names
    assert model_bytes == bytes(trained["model"].save_raw("ubj"))
    assert mode_bytes == bytes(trained["failure_mode_model"].save_raw("ubj"))
    assert card == card_bytes(trained["model_card"])
    # The archive's spec vouches for the card it carries.
    assert spec == {**trained["model_spec"], "model_card_sha256": sha256_hex(card)}
    assert archive == _package(trained)  # deterministic


def test_registration_carries_lineage_and_status(trained):
    gate = {
        "passed": True,
        "checks": [{"metric": "roc_auc", "value": 0.98, "minimum": 0.95, "passed": True}],
    }

    request = register_model(
        b"archive",
        trained["model_spec"],
        METRICS,
        gate,
        {"approval_status": "Approved"},
        **BASELINE,
    )

    assert request["approval_status"] == "Approved"
    assert request["metrics"] == METRICS
    assert (
        request["lineage"]["raw_data_sha256"]
        == trained["model_spec"]["training_data"]["raw_sha256"]
    )
    assert request["lineage"]["model_sha256"] == trained["model_spec"]["model_sha256"]
    assert request["lineage"]["quality_gate"] == gate["checks"]
    assert "mlflow" not in request["lineage"]  # tracking off: no run
    assert request["tracking_run"] is None


def test_registration_records_the_mlflow_run_without_its_store(trained):
    request = register_model(
        b"archive",
        trained["model_spec"],
        METRICS,
        {"checks": []},
        {"approval_status": "Approved"},
        **BASELINE,
        tracking_run=RUN,
    )

    # The store's URI is a path on one machine: the version records the run, not where it is.
    assert request["lineage"]["mlflow"] == {
        "run_id": RUN["run_id"],
        "experiment_id": "1",
        "experiment": "predictive-maintenance",
    }
    assert request["tracking_run"] == RUN  # for the registry to tag the run with the version


def test_a_malformed_tracking_run_is_a_warning_not_a_failure(trained, caplog):
    request = register_model(
        b"archive",
        trained["model_spec"],
        METRICS,
        {"checks": []},
        {"approval_status": "Approved"},
        **BASELINE,
        tracking_run={"experiment": "x"},
    )

    assert "mlflow" not in request["lineage"]
    assert request["tracking_run"] is None
    assert "not an MLflow run with a run_id" in caplog.text


def test_registration_rejects_an_unknown_status(trained):
    with pytest.raises(ValueError, match="approval_status"):
        register_model(
            b"a",
            trained["model_spec"],
            METRICS,
            {"checks": []},
            {"approval_status": "OK"},
            **BASELINE,
        )


def test_registration_passes_on_whether_duplicates_are_registered(trained, parameters):
    default = register_model(
        b"a", trained["model_spec"], METRICS, {"checks": []}, parameters["registration"], **BASELINE
    )
    forced = register_model(
        b"a",
        trained["model_spec"],
        METRICS,
        {"checks": []},
        {**parameters["registration"], "register_duplicates": True},
        **BASELINE,
    )

    assert (default["register_duplicates"], forced["register_duplicates"]) == (False, True)
    with pytest.raises(ValueError, match="register_duplicates must be true or false, not 'no'"):
        register_model(
            b"a",
            trained["model_spec"],
            METRICS,
            {"checks": []},
            {"approval_status": "Approved", "register_duplicates": "no"},
            **BASELINE,
        )


def _state(*statuses: str) -> dict:
    return {
        "group": "g",
        "versions": [
            {
                "version": n,
                "approval_status": s,
                "archive_uri": f"/r/{n}.tar.gz",
                "archive_sha256": f"{n}" * 64,
            }
            for n, s in enumerate(statuses, start=1)
        ],
    }


def test_deployment_picks_the_newest_approved_version():
    request = select_deployment(
        _state("Approved", "Approved", "Rejected", "PendingManualApproval"), True, {"name": "e"}
    )

    assert request["model_version"] == 2
    assert request["model_archive"] == "/r/2.tar.gz"
    assert request["endpoint_name"] == "e"


@pytest.mark.parametrize(
    ("state", "deploy", "reason"),
    [
        (_state("Approved"), False, "deploy_model is false"),
        (
            _state("PendingManualApproval", "PendingManualApproval", "Rejected"),
            True,
            "no Approved version in the registry: approve version 2 with `kedro model approve 2`",
        ),
        (_state("Rejected"), True, "approve one with `kedro model approve VERSION`"),
        (_state(), True, "no Approved version"),
    ],
)
def test_nothing_is_deployed_without_switch_or_approval(state, deploy, reason):
    request = select_deployment(state, deploy, {"name": "e"})

    assert request["model_version"] is None
    assert reason in request["reason"]


def _catalog(trained, parameters, tmp_path, tracking_run=None, **overrides):
    params = {**parameters, **overrides}
    catalog = memory_catalog(
        {**{name: trained[name] for name in TRAINED_INPUTS}, **BASELINE},
        params,
    )
    catalog["model_registry"] = LocalModelRegistryDataset(
        root=str(tmp_path / "registry"), group="pm"
    )
    catalog["endpoint"] = LocalEndpointDataset(filepath=str(tmp_path / "endpoint.json"))
    catalog["tracking_run"] = ValueDataset(tracking_run)
    return catalog


def test_pipeline_registers_pending_and_deploys_nothing_by_default(trained, parameters, tmp_path):
    SequentialRunner().run(create_pipeline(), _catalog(trained, parameters, tmp_path))

    versions = LocalModelRegistry(tmp_path / "registry").list_versions("pm")
    assert [(v.version, v.approval_status) for v in versions] == [(1, "PendingManualApproval")]
    assert "mlflow" not in versions[0].lineage  # tracking_run None: no run recorded
    assert versions[0].model_card == trained["model_card"]
    assert not (tmp_path / "endpoint.json").exists()


def test_pipeline_auto_approves_and_deploys_each_new_version(trained, parameters, tmp_path, caplog):
    approved = {**parameters["registration"], "approval_status": "Approved"}
    caplog.set_level("INFO", logger="predictive_maintenance")

    # The same model twice (unchanged: no second version), then once more on request.
    for registration in (approved, approved, {**approved, "register_duplicates": True}):
        SequentialRunner().run(
            create_pipeline(),
            _catalog(trained, parameters, tmp_path, registration=registration),
        )

    state = json.loads((tmp_path / "endpoint.json").read_text())
    registry = LocalModelRegistry(tmp_path / "registry")
    assert [v.version for v in registry.list_versions("pm")] == [1, 2]
    assert state["model_version"] == 2
    assert state["model_archive_sha256"] == registry.get("pm", 2).archive_sha256
    assert (
        registry.read_baseline("pm", 2)["statistics"]
        == json.dumps(STATISTICS, indent=2).encode() + b"\n"
    )
    assert state["model_baseline"]["statistics"]["uri"] == str(
        registry.baseline_path("pm", 2, "statistics")
    )
    assert (
        registry.read_archive("pm", 2)
        == (tmp_path / "registry").joinpath(state["model_archive"]).read_bytes()
    )
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if m.startswith(("registered model", "model unchanged"))] == [
        "registered model version 1 of pm (Approved)",
        "model unchanged, version 1 of pm (Approved): same archive sha256 "
        f"{registry.get('pm', 1).archive_sha256[:12]}, not registered again",
        "registered model version 2 of pm (Approved)",
    ]
    assert "endpoint predictive-maintenance already serves version 1" in messages


def test_pipeline_failing_the_gate_registers_nothing(trained, parameters, tmp_path):
    strict = {"quality_gate": {"minimums": {"roc_auc": 0.9999}}}

    with pytest.raises(QualityGateError, match="roc_auc"):
        SequentialRunner().run(create_pipeline(), _catalog(trained, parameters, tmp_path, **strict))

    assert not (tmp_path / "registry").exists() or not any((tmp_path / "registry").iterdir())
