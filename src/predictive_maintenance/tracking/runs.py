"""The ``kedro run`` being tracked, for the catalog's ``tracking_run`` and the registry.

The hooks publish the parent run here (:func:`publish`) while they make it in the background;
:func:`current_run` waits a bounded time for it. :func:`record_registration` tags a run with what
the registry made of the model, through the hooks' worker when the run is the one in progress.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

#: The keys of a tracking run value (``tracking_run`` in the catalog).
RUN_KEYS = ("run_id", "experiment_id", "experiment", "tracking_uri")


class ActiveRun:
    """The parent run of the ``kedro run`` in progress, filled in when the worker has made it."""

    def __init__(self, submit: Callable[[Callable[[], None]], None]) -> None:
        self._ready = threading.Event()
        self._value: dict[str, str] | None = None
        self._submit = submit

    def resolve(self, value: Mapping[str, str] | None) -> None:
        """The run is made (``value``) or will not be (``None``)."""
        self._value = dict(value) if value is not None else None
        self._ready.set()

    def value(self, timeout: float) -> dict[str, str] | None:
        if not self._ready.wait(timeout):
            logger.warning(
                "MLflow: the run was not ready after %.0f s; this step goes without it", timeout
            )
            return None
        return dict(self._value) if self._value is not None else None

    def peek(self) -> dict[str, str] | None:
        """The run if it is made already (no waiting)."""
        return dict(self._value) if self._ready.is_set() and self._value is not None else None

    def submit(self, work: Callable[[], None]) -> None:
        self._submit(work)


_lock = threading.Lock()
_active: ActiveRun | None = None


def publish(run: ActiveRun | None) -> None:
    """Makes ``run`` the run in progress (``None``: no run in progress)."""
    global _active  # noqa: PLW0603 -- one kedro run per process at a time
    with _lock:
        _active = run


def active() -> ActiveRun | None:
    with _lock:
        return _active


def current_run(timeout: float = 60.0) -> dict[str, str] | None:
    """The parent run of the ``kedro run`` in progress (``run_id``, ``experiment_id``,
    ``experiment``, ``tracking_uri``), or ``None`` when tracking is off or failed."""
    run = active()
    return run.value(timeout) if run is not None else None


_warned = threading.Event()


def record_registration(run: Mapping[str, Any] | None, tags: Mapping[str, str]) -> None:
    """Sets ``tags`` on ``run`` (a ``tracking_run`` value); nothing for ``None``. Never raises:
    a failure is warned once."""
    if not run or not tags:
        return
    try:
        run_id = str(run["run_id"])
        uri = str(run["tracking_uri"])
        text_tags = {str(key): str(value) for key, value in tags.items()}
    except (KeyError, TypeError) as error:
        _warn(f"not a tracking run value ({error})")
        return
    in_progress = active()
    if in_progress is not None:
        value = in_progress.peek()
        if value is not None and value.get("run_id") == run_id:
            in_progress.submit(lambda: _set_tags(uri, run_id, text_tags))
            return
    _set_tags(uri, run_id, text_tags)


def _set_tags(uri: str, run_id: str, tags: Mapping[str, str]) -> None:
    try:
        from predictive_maintenance.tracking.recorder import Recorder, open_client  # noqa: PLC0415
        from predictive_maintenance.tracking.settings import TrackingSettings  # noqa: PLC0415

        settings = TrackingSettings(tracking_uri=uri)
        Recorder(settings, open_client(settings)).set_tags(run_id, tags)
    except Exception as error:  # never fails the registration
        _warn(f"{type(error).__name__}: {error}")


def _warn(reason: str) -> None:
    if not _warned.is_set():
        _warned.set()
        logger.warning("MLflow: could not record the registration on the run: %s", reason)
