"""The local endpoint's deployment state: which model version an endpoint serves.

The deployment pipeline saves the state through :class:`LocalEndpointDataset`; a running
``kedro endpoint serve`` watches the file and switches to the model it names (see
:mod:`.server`). The state is a small JSON object::

    {"endpoint_name": "predictive-maintenance", "model_group": "predictive-maintenance",
     "model_version": 3, "model_archive": "data/.../model.tar.gz",
     "model_archive_sha256": "<64 hex>", "deployed_at": "2026-01-01T12:00:00+00:00"}

A relative ``model_archive`` is relative to the project root (the directory ``kedro run`` and
``kedro endpoint serve`` run in).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from kedro.io import AbstractDataset, DatasetError

from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.sagemaker.names import RESOURCE_NAME_PATTERN

logger = logging.getLogger(__name__)

#: How often a serving endpoint looks at its state file (one ``stat`` call).
DEFAULT_POLL_INTERVAL_SECONDS: Final = 0.5
#: Keys of an endpoint state, each with the type its value must have.
STATE_KEYS: Final = {
    "endpoint_name": str,
    "model_group": str,
    "model_version": int,
    "model_archive": str,
    "model_archive_sha256": str,
    "deployed_at": str,
}
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
#: SageMaker's endpoint-name rule.
ENDPOINT_NAME_PATTERN: Final = RESOURCE_NAME_PATTERN


class EndpointStateError(ValueError):
    """An endpoint state lacks a key or holds a value of the wrong kind."""


def validate_endpoint_state(state: Any) -> dict[str, Any]:
    """Returns ``state`` if it is a complete endpoint state; raises :class:`EndpointStateError`.

    Extra keys are allowed (and kept); the required ones are :data:`STATE_KEYS`.
    """
    if not isinstance(state, dict):
        raise EndpointStateError(f"an endpoint state is a JSON object, not {type(state).__name__}")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise EndpointStateError(f"endpoint state lacks {missing}; required: {list(STATE_KEYS)}")
    for key, kind in STATE_KEYS.items():
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise EndpointStateError(
                f"endpoint state {key!r} must be a non-empty {kind.__name__}, not {value!r}"
            )
    if not ENDPOINT_NAME_PATTERN.fullmatch(state["endpoint_name"]):
        raise EndpointStateError(
            f"endpoint_name {state['endpoint_name']!r} is not a valid SageMaker endpoint name "
            "(letters, digits and hyphens, at most 63)"
        )
    if state["model_version"] < 1:
        raise EndpointStateError(f"model_version must be >= 1, not {state['model_version']}")
    if not _SHA256.fullmatch(state["model_archive_sha256"]):
        raise EndpointStateError(
            f"model_archive_sha256 must be 64 lower-case hex digits, not "
            f"{state['model_archive_sha256']!r}"
        )
    try:
        datetime.fromisoformat(state["deployed_at"])
    except ValueError:
        raise EndpointStateError(
            f"deployed_at must be an ISO 8601 time, not {state['deployed_at']!r}"
        ) from None
    return state


def read_endpoint_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and validates the state file (``FileNotFoundError`` if there is none)."""
    with open(path, encoding="utf-8") as file:
        try:
            state = json.load(file)
        except ValueError as error:
            raise EndpointStateError(f"{os.fspath(path)} is not valid JSON: {error}") from None
    return validate_endpoint_state(state)


def write_endpoint_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Writes the state atomically: a temporary file in the same directory, then ``os.replace``.

    A watching server therefore reads the old state or the new one, never a torn file.
    """
    validate_endpoint_state(state)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()
    descriptor, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class LocalEndpointDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """The deployment state of a local endpoint, as a JSON file a running server watches.

    Example catalog entry::

        endpoint_state:
          type: predictive_maintenance.serving.endpoint.LocalEndpointDataset
          filepath: data/11_endpoints/predictive-maintenance.json
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        """Creates the dataset.

        Args:
            filepath: Local path of the state file (relative to the working directory).
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        self._filepath = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}

    def load(self) -> dict[str, Any]:
        try:
            return read_endpoint_state(self._filepath)
        except FileNotFoundError:
            raise DatasetError(
                f"{self._filepath} does not exist: nothing has been deployed to this endpoint"
            ) from None
        except (OSError, EndpointStateError) as error:
            raise DatasetError(f"cannot read endpoint state {self._filepath}: {error}") from error

    def save(self, data: dict[str, Any]) -> None:
        """Deploys: writes the state a running endpoint switches to.

        ``data`` is a deployment request: the state's keys, where ``deployed_at`` may be left out
        (now is used) and extra keys (e.g. ``reason``) are kept. A request whose ``model_version``
        is None leaves the endpoint as it is (its ``reason`` is logged). The archive must exist
        and have the given sha256, so a broken deployment fails here and not in the server. A
        request for what the state already says is not written again (``deployed_at`` stays).
        """
        if data.get("model_version") is None:
            logger.info(
                "endpoint %s left as it is: %s",
                data.get("endpoint_name"),
                data.get("reason", "no model version to deploy"),
            )
            return
        state = {**data}
        state.setdefault("deployed_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        try:
            validate_endpoint_state(state)
            archive = Path(state["model_archive"])
            verify_sha256(archive.read_bytes(), state["model_archive_sha256"], str(archive))
            current = self._current()
            if current is not None and all(
                current[key] == state[key]
                for key in (
                    "endpoint_name",
                    "model_group",
                    "model_version",
                    "model_archive",
                    "model_archive_sha256",
                )
            ):
                logger.info(
                    "endpoint %s already serves version %d",
                    state["endpoint_name"],
                    state["model_version"],
                )
                return
            write_endpoint_state(self._filepath, state)
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"cannot deploy to endpoint state {self._filepath}: {error}"
            ) from error
        logger.info(
            "endpoint %s: version %d of %s deployed (%s)",
            state["endpoint_name"],
            state["model_version"],
            state["model_group"],
            self._filepath,
        )

    def _current(self) -> dict[str, Any] | None:
        try:
            return read_endpoint_state(self._filepath)
        except (OSError, ValueError):  # none yet, or unreadable: the new state replaces it
            return None

    def _exists(self) -> bool:
        return self._filepath.is_file()
