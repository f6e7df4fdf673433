"""Where the model registry and MLflow meet: the run that made a version, the version a run made.

A registration carries this ``kedro run``'s MLflow run (the ``tracking_run`` dataset's value:
``run_id``, ``experiment_id``, ``experiment``, ``tracking_uri``; None when tracking is off or
failed). The version records ``run_id``, ``experiment_id`` and ``experiment`` (not the store's
URI, which is a path on one machine): the local registry as ``lineage.mlflow`` in its immutable
``version.json`` (covered by the ledger), the SageMaker Model Registry as the customer metadata
``mlflow_run_id``, ``mlflow_experiment_id`` and ``mlflow_experiment``. After the registry saved
(or found the model unchanged), the run gets the tags ``model_registry.group``,
``model_registry.version``, ``model_registry.status`` and ``model_registry.outcome``
(``registered`` or ``unchanged``: then the version records the run that first registered it).

Recording into the run never fails a registration: the tracking package warns once and gives up.
Nothing here imports MLflow.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: The lineage key (local registry) holding the run.
MLFLOW_LINEAGE_KEY = "mlflow"
#: What a version records about its run.
RUN_KEYS = ("run_id", "experiment_id", "experiment")
#: SageMaker customer metadata key of each of :data:`RUN_KEYS` (metadata values are strings).
METADATA_KEYS = {key: f"mlflow_{key}" for key in RUN_KEYS}
#: Tags the run gets once the registry has the version.
TAG_GROUP = "model_registry.group"
TAG_VERSION = "model_registry.version"
TAG_STATUS = "model_registry.status"
TAG_OUTCOME = "model_registry.outcome"
TAG_MODEL_PACKAGE_ARN = "model_registry.model_package_arn"
REGISTERED = "registered"
UNCHANGED = "unchanged"


def mlflow_lineage(tracking_run: Mapping[str, Any] | None) -> dict[str, str] | None:
    """What a version records about ``tracking_run`` (``run_id``, ``experiment_id``,
    ``experiment``), or None when there is no run.

    A value without a ``run_id`` is logged as a warning and treated as no run: tracking never
    fails the pipeline.
    """
    if tracking_run is None:
        return None
    if not isinstance(tracking_run, Mapping) or not tracking_run.get("run_id"):
        logger.warning(
            "tracking_run is %r, not an MLflow run with a run_id: the model version records no "
            "MLflow run",
            tracking_run,
        )
        return None
    return {
        key: str(tracking_run[key]) for key in RUN_KEYS if tracking_run.get(key) not in (None, "")
    }


def recorded_run(lineage: Mapping[str, Any] | None) -> dict[str, str] | None:
    """The MLflow run a version's lineage records (``run_id``, and ``experiment_id`` and
    ``experiment`` when recorded), from the local registry's ``lineage.mlflow`` or SageMaker's
    ``mlflow_*`` customer metadata; None when it records none."""
    if not isinstance(lineage, Mapping):
        return None
    nested = lineage.get(MLFLOW_LINEAGE_KEY)
    if isinstance(nested, Mapping) and nested.get("run_id"):
        return {key: str(nested[key]) for key in RUN_KEYS if nested.get(key)}
    if lineage.get(METADATA_KEYS["run_id"]):
        return {key: str(lineage[name]) for key, name in METADATA_KEYS.items() if lineage.get(name)}
    return None


def metadata_properties(run: Mapping[str, str] | None) -> dict[str, str]:
    """The SageMaker customer metadata recording ``run`` (a :func:`mlflow_lineage` value)."""
    return {METADATA_KEYS[key]: str(value)[:256] for key, value in (run or {}).items()}


def record_in_run(
    tracking_run: Mapping[str, Any] | None,
    *,
    group: str,
    version: int,
    status: str,
    outcome: str,
    extra: Mapping[str, str] | None = None,
) -> None:
    """Tags ``tracking_run`` with the version the registry holds for it; no-op without a run.

    Never raises: a failure is logged as a warning and the registration stands.
    """
    if mlflow_lineage(tracking_run) is None:
        return
    tags = {
        TAG_GROUP: group,
        TAG_VERSION: str(version),
        TAG_STATUS: status,
        TAG_OUTCOME: outcome,
        **(extra or {}),
    }
    try:
        from predictive_maintenance.tracking import record_registration  # noqa: PLC0415

        record_registration(tracking_run, tags)
    except Exception as error:  # the registration stands, whatever tracking does
        logger.warning(
            "cannot record model version %s of %s in MLflow run %s: %s",
            version,
            group,
            tracking_run.get("run_id") if isinstance(tracking_run, Mapping) else tracking_run,
            error,
        )
