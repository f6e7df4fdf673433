"""What a run logs for a node's outputs: the one implementation the hooks and the jobs share.

Given :class:`~.settings.TrackingSettings`, :class:`Recorder` turns outputs into MLflow calls:
numeric leaves of the ``metrics`` datasets become metrics (dotted keys), the ``artifacts``
datasets JSON/HTML/text artifacts (plotly figures as HTML and JSON), the ``models`` datasets
XGBoost models through ``mlflow.xgboost.log_model(model_format="ubj")`` (XGBoost's own format,
nothing pickled), and the leaves of the ``data`` datasets parameters ``data.<dataset>.<key>``.

Python 3.10, no Kedro: SageMaker jobs import it in the stock image. ``mlflow`` is imported only
by :func:`open_client`.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar

from predictive_maintenance.tracking.settings import TrackingSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: MLflow's limits (mlflow.utils.validation): a parameter's value, a batch's size.
MAX_PARAM_LENGTH: Final = 6000
MAX_PARAMS_PER_BATCH: Final = 100
MAX_METRICS_PER_BATCH: Final = 1000

PARENT_TAG: Final = "mlflow.parentRunId"
RUN_NAME_TAG: Final = "mlflow.runName"
GROUP_TAG: Final = "kedro.group"
USER_TAG: Final = "mlflow.user"


class Guard:
    """Runs MLflow calls until one fails; then warns once and turns every later call into a
    no-op. Tracking never fails the work it records."""

    def __init__(self, store: str) -> None:
        self.store = store
        self.failed = False
        self.reason: str | None = None

    def call(self, action: Callable[[], T], default: T | None = None) -> T | None:
        if self.failed:
            return default
        try:
            return action()
        except Exception as error:  # any tracking error stops tracking, nothing else
            self.fail(error)
            return default

    def fail(self, error: BaseException | str) -> None:
        if self.failed:
            return
        self.failed = True
        self.reason = error if isinstance(error, str) else _reason(error)
        logger.warning(
            "MLflow tracking off for the rest of this run: store %s: %s", self.store, self.reason
        )


def _reason(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if len(text) > 400:
        text = text[:400] + "..."
    return f"{type(error).__name__}: {text}"


# ---- values ------------------------------------------------------------------------------------
def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of nested mappings by dotted key (lists, ``None`` and scalars are leaves)."""
    if isinstance(value, Mapping) and value:
        found: dict[str, Any] = {}
        for key, item in value.items():
            found.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return found
    return {prefix: value} if prefix else {}


def param_values(value: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Parameters as MLflow takes them: dotted keys, strings and numbers as text, everything else
    (lists, ``None``, booleans, empty mappings) as JSON; values cut at MLflow's limit (warned)."""
    params: dict[str, str] = {}
    cut: list[str] = []
    for key, item in leaves(value, prefix).items():
        if isinstance(item, str) or (isinstance(item, int | float) and not isinstance(item, bool)):
            text = str(item)
        else:
            text = json.dumps(item, sort_keys=True, default=str)
        if len(text) > MAX_PARAM_LENGTH:
            cut.append(key)
            text = text[: MAX_PARAM_LENGTH - 3] + "..."
        params[key] = text
    if cut:
        logger.warning(
            "MLflow parameter value(s) longer than %d characters cut: %s",
            MAX_PARAM_LENGTH,
            ", ".join(cut),
        )
    return params


def metric_values(value: Any) -> dict[str, float]:
    """The numeric leaves of a metrics value by dotted key (booleans and ``None`` left out)."""
    return {
        key: float(item)
        for key, item in leaves(value).items()
        if isinstance(item, int | float) and not isinstance(item, bool) and math.isfinite(item)
    }


def _is_plotly_figure(value: Any) -> bool:
    return type(value).__module__.startswith("plotly.") and hasattr(value, "to_json")


def _is_booster(value: Any) -> bool:
    return type(value).__name__ == "Booster" and type(value).__module__.startswith("xgboost")


# ---- the store ---------------------------------------------------------------------------------
def open_client(settings: TrackingSettings) -> Any:
    """An ``mlflow.MlflowClient`` on the settings' store (imports mlflow: seconds).

    Sets the HTTP timeout and retry variables first, and makes the directory of a local sqlite
    database. The store is not contacted yet.
    """
    if not settings.tracking_uri:
        raise ValueError("no tracking URI (MLFLOW_TRACKING_URI unset)")
    os.environ.update(settings.http_environment())
    database = settings.local_store_path()
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    # A new sqlite store announces its schema migrations at INFO on the console: not news.
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import mlflow  # noqa: PLC0415 -- seconds to import: only when tracking runs

    if settings.tracking_uri.startswith("arn:"):
        # sagemaker-mlflow (0.5) names the tracking server in a request header taken from
        # MLflow's *global* tracking URI, whatever the client's: without this a client on an ARN
        # sends no routing header (in a job, MLFLOW_TRACKING_URI is the ARN already).
        mlflow.set_tracking_uri(settings.tracking_uri)
    elif settings.tracking_uri.startswith(("http:", "https:")):
        # ...and for any other HTTP store that header provider fails on every request, which
        # MLflow reports as a warning each time ("unexpected error during resolving request
        # headers"): the header is SageMaker's only, so the noise is dropped.
        logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
    return mlflow.MlflowClient(tracking_uri=settings.tracking_uri)


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI (``mlflow.xgboost.log_model`` knows no other) set to ``uri``
    for a while; the previous one, and ``MLFLOW_TRACKING_URI`` as it was, restored after."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri  # noqa: PLC0415

    variable = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if variable is not None:
            os.environ["MLFLOW_TRACKING_URI"] = variable


class Recorder:
    """Logs runs, parameters and node outputs into one store with ``MlflowClient`` (not
    thread-safe: one thread owns it)."""

    def __init__(self, settings: TrackingSettings, client: Any) -> None:
        self.settings = settings
        self.client = client
        self._logged_params: dict[str, set[str]] = {}
        self._artifacts_warned: set[str] = set()

    # ---- experiments and runs
    def experiment_id(self, name: str | None = None) -> str:
        """The id of the experiment (created if missing, with the settings' artifact location
        for a local store or a location with a scheme)."""
        name = name or self.settings.experiment
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = self.settings.artifact_location
        if location and location.startswith("file:") and not self.settings.store_is_local:
            location = None  # a remote server keeps its own artifacts
        database = self.settings.local_store_path()
        if location is None and database is not None:
            # Beside the database, not MLflow's default ./mlruns under whatever directory.
            location = (database.parent / "mlartifacts").resolve().as_uri()
        try:
            return str(self.client.create_experiment(name, artifact_location=location))
        except Exception:  # another process created it meanwhile
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return str(experiment.experiment_id)

    def create_run(
        self,
        experiment_id: str,
        name: str,
        tags: Mapping[str, str] | None = None,
        parent_id: str | None = None,
        start_time: int | None = None,
    ) -> str:
        """Starts a run (a nested one under ``parent_id``); returns its id. ``start_time``
        (epoch milliseconds; default now): when the work it records began, which may be before
        this call (runs are made in the background)."""
        all_tags = {USER_TAG: _user(), **(tags or {})}
        if parent_id:
            all_tags[PARENT_TAG] = parent_id
        run = self.client.create_run(
            experiment_id, start_time=start_time, tags=all_tags, run_name=name
        )
        return str(run.info.run_id)

    def end_run(
        self,
        run_id: str,
        failed: bool = False,
        announce: bool = False,
        end_time: int | None = None,
    ) -> None:
        """Ends the run (at ``end_time``, epoch milliseconds; default now). An HTTP store's
        client prints the run's UI address: only if ``announce`` (the parent run), not for every
        nested run."""
        variable = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"
        before = os.environ.get(variable)
        if not announce:
            os.environ[variable] = "true"
        try:
            self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED", end_time)
        finally:
            if before is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = before

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag  # noqa: PLC0415

        items = [RunTag(str(key), str(value)) for key, value in tags.items()]
        for chunk in _chunks(items, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, tags=chunk, synchronous=True)

    # ---- parameters
    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Logs the parameters not yet logged to the run by this recorder (MLflow's parameters
        are immutable: the same key twice must carry the same value)."""
        from mlflow.entities import Param  # noqa: PLC0415

        done = self._logged_params.setdefault(run_id, set())
        new = [Param(key, value) for key, value in params.items() if key not in done]
        for chunk in _chunks(new, MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=chunk, synchronous=True)
        done.update(param.key for param in new)

    def log_parameters(self, run_ids: Iterable[str], parameters: Mapping[str, Any]) -> None:
        """Kedro parameters, flattened (``xgboost.booster_params.max_depth``), on every run."""
        params = param_values(parameters)
        for run_id in run_ids:
            self.log_params(run_id, params)

    # ---- outputs
    def log_outputs(
        self,
        run_id: str,
        experiment_id: str,
        outputs: Mapping[str, Any],
        parent_ids: Iterable[str] = (),
    ) -> None:
        """Logs the outputs the settings name into ``run_id``; metrics and data fingerprints also
        into ``parent_ids``."""
        parents = [parent for parent in parent_ids if parent and parent != run_id]
        for dataset, value in outputs.items():
            kinds = self.settings.kind_of(dataset)
            if "metrics" in kinds:
                self.log_metrics([run_id, *parents], metric_values(value))
            if "data" in kinds:
                params = param_values(value if isinstance(value, Mapping) else {"value": value})
                fingerprint = {f"data.{dataset}.{key}": text for key, text in params.items()}
                for target in (run_id, *parents):
                    self.log_params(target, fingerprint)
            if "artifacts" in kinds:
                self.log_artifact(run_id, dataset, value)
            if "models" in kinds:
                self.log_model(run_id, experiment_id, dataset, value)

    def log_metrics(self, run_ids: Iterable[str], metrics: Mapping[str, float]) -> None:
        if not metrics:
            return
        import time  # noqa: PLC0415

        from mlflow.entities import Metric  # noqa: PLC0415

        timestamp = int(time.time() * 1000)
        for run_id in run_ids:
            items = [Metric(key, value, timestamp, 0) for key, value in metrics.items()]
            for chunk in _chunks(items, MAX_METRICS_PER_BATCH):
                self.client.log_batch(run_id, metrics=chunk, synchronous=True)

    def log_artifact(self, run_id: str, dataset: str, value: Any) -> None:
        """A JSON-able value as ``<dataset>.json``, a plotly figure as ``plots/<dataset>.html``
        and ``.json``, text as ``.txt``, bytes as ``.bin``."""
        if _is_plotly_figure(value):
            self.client.log_figure(run_id, value, f"plots/{dataset}.html")
            self.client.log_text(run_id, value.to_json(), f"plots/{dataset}.json")
        elif isinstance(value, Mapping | list | tuple):
            self.client.log_text(
                run_id, json.dumps(value, indent=2, default=str), f"{dataset}.json"
            )
        elif isinstance(value, str):
            self.client.log_text(run_id, value, f"{dataset}.txt")
        elif isinstance(value, bytes):
            import tempfile  # noqa: PLC0415

            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / f"{dataset}.bin"
                path.write_bytes(value)
                self.client.log_artifact(run_id, str(path))
        elif dataset not in self._artifacts_warned:
            self._artifacts_warned.add(dataset)
            logger.warning(
                "MLflow: %s (%s) is not logged as an artifact: only JSON-able values, plotly "
                "figures, text and bytes are",
                dataset,
                type(value).__name__,
            )

    def log_model(self, run_id: str, experiment_id: str, dataset: str, booster: Any) -> None:
        """An XGBoost Booster as an MLflow model named ``dataset`` in XGBoost's UBJ format."""
        if not _is_booster(booster):
            logger.warning(
                "MLflow: %s is a %s, not an XGBoost Booster: not logged as a model",
                dataset,
                type(booster).__name__,
            )
            return
        import mlflow.xgboost  # noqa: PLC0415
        import xgboost  # noqa: PLC0415

        # Made here so that it lands in the run's experiment whatever MLflow's active experiment.
        model = self.client.create_logged_model(
            experiment_id=experiment_id, name=dataset, source_run_id=run_id, model_type="xgboost"
        )
        with _global_tracking_uri(self.client.tracking_uri):
            mlflow.xgboost.log_model(
                booster,
                name=dataset,
                model_format="ubj",
                model_id=model.model_id,
                run_id=run_id,
                # Given, not inferred: inference loads the model in a subprocess (seconds).
                pip_requirements=[f"xgboost=={xgboost.__version__}"],
            )


def _user() -> str:
    import getpass  # noqa: PLC0415

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _chunks(items: list[T], size: int) -> Iterable[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
