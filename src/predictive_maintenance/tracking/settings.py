"""The tracking settings: ``conf/<env>/mlflow.yml`` checked, with paths made absolute.

Runs on Python 3.10 with the standard library only (SageMaker jobs read the settings from their
job spec, :meth:`TrackingSettings.job_spec`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

CONFIG_FILE: Final = "conf/<env>/mlflow.yml"

#: The MLflow variables that bound an HTTP store's requests (MLflow's defaults, 7 retries with
#: backoff and 120 s per request, make an unreachable server cost minutes).
ENV_HTTP_TIMEOUT: Final = "MLFLOW_HTTP_REQUEST_TIMEOUT"
ENV_HTTP_RETRIES: Final = "MLFLOW_HTTP_REQUEST_MAX_RETRIES"

#: Stores on this machine: a job running on AWS cannot reach them.
LOCAL_SCHEMES: Final = ("sqlite", "file")

_LOG_KINDS: Final = ("metrics", "artifacts", "models", "data")
_KEYS: Final = frozenset(
    {
        "enabled",
        "tracking_uri",
        "artifact_location",
        "experiment",
        "request_timeout_seconds",
        "request_max_retries",
        "flush_timeout_seconds",
        "log",
    }
)


class TrackingConfigError(ValueError):
    """``mlflow.yml`` is not what the tracking hooks understand (the message names the key)."""


@dataclass(frozen=True)
class TrackingSettings:
    """What to log, and where.

    Attributes:
        enabled: ``False`` switches tracking off (no store is made).
        tracking_uri: MLflow's tracking URI; a relative ``sqlite:///`` path is made absolute from
            the project root. ``None`` in a job, which takes it from ``MLFLOW_TRACKING_URI``.
        artifact_location: Where an experiment these hooks create keeps its artifacts (an
            absolute ``file://`` URI for a local path); ``None``: MLflow's default.
        experiment: The MLflow experiment's name.
        request_timeout_seconds: ``MLFLOW_HTTP_REQUEST_TIMEOUT`` for HTTP stores.
        request_max_retries: ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` for HTTP stores.
        flush_timeout_seconds: How long the end of a ``kedro run`` waits for the background
            logging to finish.
        metrics, artifacts, models, data: Dataset name patterns (``fnmatch``) of the outputs
            logged as metrics, artifacts, XGBoost models and data fingerprint parameters.
    """

    enabled: bool = True
    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "Default"
    request_timeout_seconds: float = 5.0
    request_max_retries: int = 0
    flush_timeout_seconds: float = 120.0
    metrics: tuple[str, ...] = ()
    artifacts: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    data: tuple[str, ...] = ()

    @property
    def store_is_local(self) -> bool:
        """Whether the store is a file on this machine (sqlite or file store)."""
        return urlsplit(self.tracking_uri or "").scheme in LOCAL_SCHEMES

    def store_label(self) -> str:
        """The store for messages: the URI without any user name or password."""
        uri = self.tracking_uri or "(MLFLOW_TRACKING_URI unset)"
        parts = urlsplit(uri)
        if parts.scheme in ("http", "https") and "@" in parts.netloc:
            netloc = parts.netloc.rsplit("@", 1)[1]
            return urlunsplit(parts._replace(netloc=netloc))
        return uri

    def local_store_path(self) -> Path | None:
        """The sqlite database file of a ``sqlite:///`` store, else ``None``."""
        if self.tracking_uri and self.tracking_uri.startswith("sqlite:///"):
            path = self.tracking_uri[len("sqlite:///") :].split("?", 1)[0]
            return Path(path) if path and path != ":memory:" else None
        return None

    def http_environment(self) -> dict[str, str]:
        """The MLflow variables bounding HTTP requests to the store."""
        return {
            ENV_HTTP_TIMEOUT: _number_text(self.request_timeout_seconds),
            ENV_HTTP_RETRIES: str(self.request_max_retries),
        }

    def kind_of(self, dataset: str) -> tuple[str, ...]:
        """The kinds (``metrics``, ``artifacts``, ``models``, ``data``) ``dataset`` is logged as."""
        return tuple(
            kind
            for kind in _LOG_KINDS
            if any(fnmatch.fnmatchcase(dataset, pattern) for pattern in getattr(self, kind))
        )

    def job_spec(self) -> dict[str, Any]:
        """What a job must log, JSON-able and without any URI (the job gets the store from its
        environment)."""
        return {
            "experiment": self.experiment,
            "request_timeout_seconds": self.request_timeout_seconds,
            "request_max_retries": self.request_max_retries,
            "log": {kind: list(getattr(self, kind)) for kind in _LOG_KINDS},
        }

    @classmethod
    def from_job_spec(
        cls, spec: Mapping[str, Any], tracking_uri: str | None = None
    ) -> TrackingSettings:
        """The settings a job spec's ``tracking`` block describes (see :meth:`job_spec`)."""
        settings = _parse(
            {key: value for key, value in spec.items() if key in _KEYS},
            where="the job spec's tracking block",
        )
        return replace(settings, tracking_uri=tracking_uri, artifact_location=None)


def settings_from_config(config: Mapping[str, Any], project_path: Path) -> TrackingSettings:
    """Checks ``mlflow.yml`` (as the config loader returns it) and resolves its paths.

    Raises:
        TrackingConfigError: an unknown key, or a value of the wrong type (named in the message).
    """
    settings = _parse(config, where=CONFIG_FILE)
    uri = settings.tracking_uri
    if uri is None:
        if not settings.enabled:
            return settings
        raise TrackingConfigError(f"{CONFIG_FILE}: tracking_uri is required")
    return replace(
        settings,
        tracking_uri=_absolute_uri(uri, project_path),
        artifact_location=_absolute_location(settings.artifact_location, project_path),
    )


def _parse(config: Mapping[str, Any], where: str) -> TrackingSettings:
    if not isinstance(config, Mapping):
        raise TrackingConfigError(f"{where}: expected a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise TrackingConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})"
        )
    enabled = config.get("enabled", True)
    if not isinstance(enabled, bool):
        raise TrackingConfigError(f"{where}: enabled must be true or false, got {enabled!r}")
    uri = config.get("tracking_uri")
    if uri is not None and (not isinstance(uri, str) or not uri.strip()):
        raise TrackingConfigError(f"{where}: tracking_uri must be a non-empty string")
    if isinstance(uri, str) and ":" not in uri:
        raise TrackingConfigError(
            f"{where}: tracking_uri {uri!r} has no scheme (sqlite:///path/mlflow.db, "
            "http(s)://host, or a SageMaker MLflow tracking server ARN)"
        )
    location = config.get("artifact_location")
    if location is not None and (not isinstance(location, str) or not location.strip()):
        raise TrackingConfigError(f"{where}: artifact_location must be a non-empty string")
    experiment = config.get("experiment", "Default")
    if not isinstance(experiment, str) or not experiment.strip():
        raise TrackingConfigError(f"{where}: experiment must be a non-empty string")
    log = config.get("log") or {}
    if not isinstance(log, Mapping):
        raise TrackingConfigError(f"{where}: log must be a mapping of {', '.join(_LOG_KINDS)}")
    unknown_kinds = sorted(set(log) - set(_LOG_KINDS))
    if unknown_kinds:
        raise TrackingConfigError(
            f"{where}: unknown key(s) log.{', log.'.join(unknown_kinds)} "
            f"(known: {', '.join(_LOG_KINDS)})"
        )
    patterns = {kind: _patterns(log.get(kind), f"{where}: log.{kind}") for kind in _LOG_KINDS}
    return TrackingSettings(
        enabled=enabled,
        tracking_uri=uri.strip() if isinstance(uri, str) else None,
        artifact_location=location.strip() if isinstance(location, str) else None,
        experiment=experiment.strip(),
        request_timeout_seconds=_number(
            config.get("request_timeout_seconds", 5), f"{where}: request_timeout_seconds"
        ),
        request_max_retries=int(
            _number(config.get("request_max_retries", 0), f"{where}: request_max_retries")
        ),
        flush_timeout_seconds=_number(
            config.get("flush_timeout_seconds", 120), f"{where}: flush_timeout_seconds"
        ),
        **patterns,
    )


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise TrackingConfigError(f"{where} must be a list of dataset names or patterns")
    if not all(isinstance(item, str) and item for item in value):
        raise TrackingConfigError(f"{where} must hold non-empty strings only")
    return tuple(value)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TrackingConfigError(f"{where} must be a number >= 0, got {value!r}")
    return float(value)


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _absolute_uri(uri: str, project_path: Path) -> str:
    """``sqlite:///relative/path`` resolved from the project root; other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        rest = uri[len(prefix) :]
        path, _, query = rest.partition("?")
        if path and path != ":memory:" and not path.startswith("/"):
            absolute = (project_path / path).resolve()
            return f"sqlite:///{absolute}" + (f"?{query}" if query else "")
    return uri


def _absolute_location(location: str | None, project_path: Path) -> str | None:
    """A local path as an absolute ``file://`` URI; URIs (``s3://...``) unchanged."""
    if location is None or urlsplit(location).scheme:
        return location
    path = Path(location)
    return (path if path.is_absolute() else project_path / path).resolve().as_uri()
