"""Nodes of the ``deployment`` pipeline.

The registry and the endpoint are catalog datasets (``model_registry``, ``endpoint``): locally a
directory and a state file the endpoint server watches, with the ``sagemaker`` environment the
SageMaker Model Registry and a SageMaker endpoint. The nodes only decide; the datasets act.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from predictive_maintenance import model_card as cards
from predictive_maintenance.lazy_types import Booster
from predictive_maintenance.registry import APPROVAL_STATUSES, PENDING
from predictive_maintenance.registry.runs import MLFLOW_LINEAGE_KEY, mlflow_lineage
from predictive_maintenance.serving.contract import FAILURE_MODE_MODEL_FILE, MODEL_CARD_FILE
from predictive_maintenance.serving.package import build_model_archive

logger = logging.getLogger(__name__)


class QualityGateError(RuntimeError):
    """The model misses at least one minimum of the quality gate; it is not registered."""


def _metric(metrics: dict[str, Any], path: str) -> float:
    value: Any = metrics
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"quality gate metric {path!r} is not in the evaluation metrics")
        value = value[key]
    if not isinstance(value, int | float):
        raise TypeError(f"quality gate metric {path!r} is {value!r}, not a number")
    return float(value)


def check_quality_gate(metrics: dict[str, Any], quality_gate: dict[str, Any]) -> dict[str, Any]:
    """Compares test metrics with the gate's minimums; fails the run if any is missed.

    Args:
        metrics: The evaluation metrics (``evaluate_model``'s output).
        quality_gate: ``minimums``: metric path (dots into ``metrics``) -> minimum value.

    Returns:
        The gate report: every check with its value, minimum and outcome.

    Raises:
        QualityGateError: naming each missed metric, its value and its minimum.
    """
    checks = [
        {"metric": path, "value": _metric(metrics, path), "minimum": float(minimum)}
        for path, minimum in quality_gate["minimums"].items()
    ]
    for check in checks:
        check["passed"] = check["value"] >= check["minimum"]
    failed = [check for check in checks if not check["passed"]]
    if failed:
        reasons = "; ".join(
            f"{check['metric']} = {check['value']:.4f} is below the minimum {check['minimum']}"
            for check in failed
        )
        raise QualityGateError(f"the model fails the quality gate and is not registered: {reasons}")
    logger.info(
        "Quality gate passed: %s", ", ".join(f"{c['metric']} {c['value']:.4f}" for c in checks)
    )
    return {"passed": True, "checks": checks}


def create_model_card(
    model_spec: dict[str, Any],
    metrics: dict[str, Any],
    calibration_report: dict[str, Any],
    failure_mode_report: dict[str, Any],
    model_card: dict[str, Any],
) -> dict[str, Any]:
    """The version's model card: model, data, test metrics, calibration, failure modes, known
    limits and intended use (:func:`predictive_maintenance.model_card.create_model_card`).

    Raises:
        predictive_maintenance.model_card.ModelCardError: an input lacks a field (named).
    """
    card = cards.create_model_card(
        model_spec, metrics, calibration_report, failure_mode_report, model_card
    )
    summary = cards.card_summary(card)
    # Its figures are the results printed above: the card's own line is detail (kedro.log).
    logger.debug(
        "Model card: test F1 %.4f, ECE %s (calibrated), failure modes macro-F1 %s, %d known "
        "limits, %d bytes",
        card["metrics"]["f1"],
        summary["ECE"],
        summary["MODES F1"],
        len(card["known_limits"]),
        len(cards.card_bytes(card)),
    )
    return card


def package_model(
    model: Booster,
    model_spec: dict[str, Any],
    failure_mode_model: Booster,
    model_card: dict[str, Any],
) -> bytes:
    """The ``model.tar.gz`` a SageMaker XGBoost container serves: the model, its spec, the
    failure-mode model, the model card and the inference code (:func:`build_model_archive`
    checks the mode model against the spec and records the card's sha256 in the archive's spec).
    """
    return build_model_archive(
        bytes(model.save_raw(raw_format="ubj")),
        model_spec,
        extra_files={
            FAILURE_MODE_MODEL_FILE: bytes(failure_mode_model.save_raw(raw_format="ubj")),
            MODEL_CARD_FILE: cards.card_bytes(model_card),
        },
    )


def baseline_files(statistics: dict[str, Any], constraints: dict[str, Any]) -> dict[str, bytes]:
    """The data-quality baseline as the registry stores it: Model Monitor's two JSON files.

    Raises:
        ValueError: A file is not Model Monitor's shape, or the two name different features.
    """
    names = {}
    for part, document in (("statistics", statistics), ("constraints", constraints)):
        features = document.get("features") if isinstance(document, dict) else None
        if not isinstance(features, list) or not all(
            isinstance(feature, dict) and isinstance(feature.get("name"), str)
            for feature in features
        ):
            raise ValueError(
                f"baseline_{part} is not a Model Monitor {part}.json: it needs a 'features' list "
                "of objects with a 'name'"
            )
        names[part] = [feature["name"] for feature in features]
    if names["statistics"] != names["constraints"]:
        raise ValueError(
            f"baseline_statistics has the features {names['statistics']} but "
            f"baseline_constraints {names['constraints']}: they must come from the same data"
        )
    # The files SageMaker's analyzer reads: indented like the ones it writes, newline-terminated.
    return {
        "statistics": (json.dumps(statistics, indent=2) + "\n").encode(),
        "constraints": (json.dumps(constraints, indent=2) + "\n").encode(),
    }


def register_model(
    model_archive: bytes,
    model_spec: dict[str, Any],
    metrics: dict[str, Any],
    quality_gate_report: dict[str, Any],
    registration: dict[str, Any],
    *,
    baseline_statistics: dict[str, Any],
    baseline_constraints: dict[str, Any],
    tracking_run: Mapping[str, Any] | None = None,
    model_card: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The registration request for the model registry (only reached when the gate passed).

    Args:
        model_archive: ``model.tar.gz`` bytes.
        model_spec: The model spec, for the lineage.
        metrics: Test metrics, stored with the version.
        quality_gate_report: The passed gate, stored in the lineage.
        registration: ``approval_status`` (``PendingManualApproval`` by default; ``Approved``
            auto-approves a new version, for local development), ``description`` and
            ``register_duplicates`` (default false: an archive byte-identical to the newest
            version's, with the same baseline, is not registered again; the registry logs
            "model unchanged, version N").
        baseline_statistics: Model Monitor's statistics.json of the training data.
        baseline_constraints: Model Monitor's constraints.json of the training data.
        tracking_run: This run's MLflow run (the ``tracking_run`` dataset: ``run_id``,
            ``experiment_id``, ``experiment``, ``tracking_uri``), or None when tracking is off.
            The version's lineage records it as ``mlflow``; the registry tags the run with the
            version it registered (or found unchanged).
        model_card: The version's model card (``create_model_card``), stored with the version
            (``kedro model list``/``show`` read it there); None registers a version without one.
    """
    status = registration["approval_status"]
    if status not in APPROVAL_STATUSES:
        raise ValueError(
            f"registration.approval_status must be one of {APPROVAL_STATUSES}, not {status!r}"
        )
    duplicates = registration.get("register_duplicates", False)
    if not isinstance(duplicates, bool):
        raise ValueError(
            f"registration.register_duplicates must be true or false, not {duplicates!r}"
        )
    lineage = {
        "raw_data_sha256": model_spec["training_data"]["raw_sha256"],
        "model_sha256": model_spec["model_sha256"],
        "decision_threshold": model_spec["decision_threshold"],
        "parameters": model_spec["parameters"],
        "library_versions": model_spec["library_versions"],
        "quality_gate": quality_gate_report["checks"],
    }
    run = mlflow_lineage(tracking_run)
    if run is not None:
        lineage[MLFLOW_LINEAGE_KEY] = run
    return {
        "archive": model_archive,
        "metrics": metrics,
        "lineage": lineage,
        "approval_status": status,
        "description": registration.get("description", ""),
        "register_duplicates": duplicates,
        "baseline": baseline_files(baseline_statistics, baseline_constraints),
        "tracking_run": dict(tracking_run) if run is not None else None,
        "model_card": cards.check_card(model_card) if model_card is not None else None,
    }


def select_deployment(
    model_registry: dict[str, Any], deploy_model: bool, endpoint: dict[str, Any]
) -> dict[str, Any]:
    """Which model version the endpoint should serve: the newest Approved one.

    Args:
        model_registry: The registry's state for the group (versions with approval status).
        deploy_model: The workshop's switch; when false nothing is deployed.
        endpoint: ``name`` of the endpoint.

    Returns:
        The deployment request for the ``endpoint`` dataset; ``model_version`` is ``None`` (and
        ``reason`` says why) when the endpoint is to be left as it is.
    """
    request: dict[str, Any] = {
        "endpoint_name": endpoint["name"],
        "model_group": model_registry["group"],
    }
    if not deploy_model:
        return {**request, "model_version": None, "reason": "deploy_model is false"}
    approved = [v for v in model_registry["versions"] if v["approval_status"] == "Approved"]
    if not approved:
        pending = [
            v["version"] for v in model_registry["versions"] if v["approval_status"] == PENDING
        ]
        version = str(max(pending)) if pending else "VERSION"
        return {
            **request,
            "model_version": None,
            "reason": f"no Approved version in the registry: approve "
            f"{'one' if version == 'VERSION' else 'version ' + version} with "
            f"`kedro model approve {version}`, then `kedro run --nodes deploy.select_deployment`",
        }
    newest = max(approved, key=lambda version: version["version"])
    return {
        **request,
        "model_version": newest["version"],
        "model_archive": newest["archive_uri"],
        "model_archive_sha256": newest["archive_sha256"],
        # Part -> {"uri", "sha256"}: what a monitoring schedule checks the endpoint against.
        "model_baseline": newest.get("baseline") or None,
        "reason": f"newest Approved version of {model_registry['group']}",
    }
