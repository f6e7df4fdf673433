"""``LocalModelRegistryDataset``: registers model versions and reads a group through the catalog.

Example catalog entry::

    model_registry:
      type: predictive_maintenance.registry.LocalModelRegistryDataset
      root: data/10_model_registry
      group: predictive-maintenance
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from predictive_maintenance.registry.local import (
    APPROVED,
    PENDING,
    LocalModelRegistry,
    ModelNotFoundError,
    validate_group_name,
)
from predictive_maintenance.registry.runs import REGISTERED, UNCHANGED, record_in_run

logger = logging.getLogger(__name__)

#: Keys of the dictionary that :meth:`LocalModelRegistryDataset.save` takes.
REGISTRATION_KEYS = frozenset(
    {
        "archive",
        "metrics",
        "lineage",
        "approval_status",
        "description",
        "register_duplicates",
        "baseline",
        "tracking_run",
        "model_card",
    }
)
#: How many hex digits of a sha256 the log messages show.
SHORT_SHA256 = 12


def log_registered(group: str, version: int, status: str) -> None:
    """The line a registration logs (the local and the SageMaker registry alike)."""
    logger.info("registered model version %d of %s (%s)", version, group, status)


def log_unchanged(group: str, version: int, status: str, sha256: str, requested: str) -> None:
    """The line a registration logs when the newest version already holds the same archive."""
    hint = ""
    if requested == APPROVED and status != APPROVED:
        hint = f"; approve it with `kedro model approve {version}`"
    logger.info(
        "model unchanged, version %d of %s (%s): same archive sha256 %s, not registered again%s",
        version,
        group,
        status,
        sha256[:SHORT_SHA256],
        hint,
    )


class LocalModelRegistryDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """One model package group of a :class:`~predictive_maintenance.registry.LocalModelRegistry`.

    ``save`` registers a new version from
    ``{"archive": bytes, "metrics": dict, "lineage": dict, "approval_status": str,
    "description": str, "register_duplicates": bool, "baseline": {"statistics": bytes,
    "constraints": bytes}, "tracking_run": dict | None, "model_card": dict | None}`` (only
    ``archive`` is required), and logs its number. The model card is kept in the version's
    version.json (``kedro model list``/``show`` read it). An archive byte-identical to the
    newest version's (same sha256), with the same baseline, is not registered again ("model
    unchanged, version N") unless ``register_duplicates`` is true. Then the MLflow run
    ``tracking_run`` (if any) is tagged with the version
    (:mod:`~predictive_maintenance.registry.runs`); the run the version records is in its
    ``lineage.mlflow``.
    ``load`` returns the group as
    ``{"group": name, "versions": [ModelVersion.to_dict(), ...]}``, oldest version first, with an
    empty list while the group has no version; each baseline part also has its file's ``uri``.
    """

    def __init__(
        self,
        *,
        root: str,
        group: str,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            root: Registry directory on the local filesystem. A relative path is resolved against
                the current working directory (the project directory under ``kedro run``).
            group: Model package group name (SageMaker's naming rule).
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        if "://" in str(root) and not str(root).startswith("file://"):
            raise DatasetError(f"the local model registry needs a local directory, not {root!r}")
        try:
            self._group = validate_group_name(group)
        except ValueError as error:
            raise DatasetError(str(error)) from error
        self._registry = LocalModelRegistry(os.fspath(root).removeprefix("file://"))
        self.metadata = metadata

    @property
    def registry(self) -> LocalModelRegistry:
        """The registry behind the dataset."""
        return self._registry

    def _describe(self) -> dict[str, Any]:
        return {"root": str(self._registry.root), "group": self._group}

    def load(self) -> dict[str, Any]:
        try:
            versions = self._registry.list_versions(self._group)
        except ModelNotFoundError:
            versions = []
        return {
            "group": self._group,
            "versions": [
                {
                    **version.to_dict(),
                    # Where the endpoint finds the archive (SageMaker's registry: an s3:// URI).
                    "archive_uri": str(self._registry.archive_path(self._group, version.version)),
                    "baseline": {
                        part: {
                            **item,
                            "uri": str(
                                self._registry.baseline_path(self._group, version.version, part)
                            ),
                        }
                        for part, item in version.baseline.items()
                    },
                }
                for version in versions
            ],
        }

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(
                f"a registration is a dict with keys {sorted(REGISTRATION_KEYS)}, "
                f"not {type(data).__name__}"
            )
        unknown = set(data) - REGISTRATION_KEYS
        if unknown:
            raise DatasetError(
                f"unknown registration keys {sorted(unknown)}; expected {sorted(REGISTRATION_KEYS)}"
            )
        if "archive" not in data:
            raise DatasetError("a registration needs 'archive': the model.tar.gz bytes")
        duplicates = data.get("register_duplicates", False)
        if not isinstance(duplicates, bool):
            raise DatasetError(f"register_duplicates must be true or false, not {duplicates!r}")
        status = data.get("approval_status") or PENDING
        arguments = {
            "metrics": data.get("metrics") or {},
            "lineage": data.get("lineage") or {},
            "approval_status": status,
            "description": data.get("description") or "",
            "baseline": data.get("baseline"),
            "model_card": data.get("model_card"),
        }
        try:
            if duplicates:
                version = self._registry.register(self._group, data["archive"], **arguments)
                registered = True
            else:
                version, registered = self._registry.register_if_changed(
                    self._group, data["archive"], **arguments
                )
        except (TypeError, ValueError) as error:
            raise DatasetError(f"cannot register into {self._group!r}: {error}") from error
        if registered:
            log_registered(self._group, version.version, version.approval_status)
        else:
            log_unchanged(
                self._group,
                version.version,
                version.approval_status,
                version.archive_sha256,
                status,
            )
        record_in_run(
            data.get("tracking_run"),
            group=self._group,
            version=version.version,
            status=version.approval_status,
            outcome=REGISTERED if registered else UNCHANGED,
        )

    def _exists(self) -> bool:
        try:
            return self._registry.latest(self._group) is not None
        except ModelNotFoundError:
            return False
