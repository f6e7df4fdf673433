"""The local endpoint: the SageMaker inference container contract over HTTP, and hot swaps.

Routes (as a SageMaker container serves them, plus the SageMaker Runtime path so that an
unmodified boto3 ``sagemaker-runtime`` client with ``endpoint_url`` pointed here works):

- ``GET /ping``: 200 when a model is loaded, 503 otherwise;
- ``POST /invocations`` and ``POST /endpoints/{name}/invocations``: the handlers of
  :mod:`.inference`;
- ``GET /capture-stats``, answered to loopback clients only (not a SageMaker route): the data
  capture counters (:mod:`.capture`), ``{"enabled": false}`` when capture is off.

With data capture on (:class:`~.capture.DataCapture`), each answered (200) invocation is offered
to it after scoring: the exact request and response bodies, queued for its writer thread; a
captured answer carries ``x-capture-event-id``. Capture never changes an answer or its status.

An ASGI application on uvicorn (:mod:`.http`: limits, JSON errors, security headers). Bad input
never gets a 500: 400 (unparsable or invalid, the JSON body naming row and field; malformed
HTTP), 404 (unknown path or endpoint name), 405 (wrong method), 406 (unsupported ``Accept``), 408
(too slow), 411 (a POST with neither ``Content-Length`` nor chunked body), 413 (body or rows above
the limit), 414, 415 (unsupported content type), 431, and 503 with ``Retry-After`` when the
concurrency cap is reached. Every answer carries ``X-Model-Version``
when the version is known; answers on the SageMaker Runtime route carry its headers and error
shape (``x-amzn-ErrorType``), so boto3 raises the exception it would raise against AWS.

The server holds one reference to the current :class:`~.inference.LoadedModel`; each request
reads it once, so a swap is a single assignment and in-flight requests finish on the model they
started with. :class:`StateWatcher` loads the model the endpoint state file names in the
background (archive sha256 checked, extracted to a fresh directory, warmed up) and only then
swaps it in.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, unquote_to_bytes

from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.serving.capture import (
    CaptureConfig,
    DataCapture,
)
from predictive_maintenance.serving.contract import (
    CAPTURE_STATS_PATH,
    EVENT_ID_HEADER,
    EXPLAIN_KEY,
    INFERENCE_ID_HEADER,
    INFERENCE_ID_MAX_LENGTH,
    INVOCATIONS_PATH,
    JSON_CONTENT_TYPE,
    MODEL_VERSION_HEADER,
    PING_PATH,
    RUNTIME_PREFIX,
    RUNTIME_SUFFIX,
)
from predictive_maintenance.serving.endpoint import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    read_endpoint_state,
)
from predictive_maintenance.serving.http import (
    Gate,
    HttpError,
    HttpServer,
    Limits,
    Receive,
    Scope,
    Send,
    ServedApp,
    header,
    read_body,
    require_length,
    send_error,
    send_response,
)
from predictive_maintenance.serving.inference import (
    LoadedModel,
    Scores,
    answer_readings,
    explain_response_type,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
    predict_readings,
)
from predictive_maintenance.serving.package import extract_model_archive
from predictive_maintenance.serving.ports import listen
from predictive_maintenance.serving.requests import (
    Readings,
    ServingError,
    check_content_type,
    explain_flag,
    negotiate_accept,
    parse_readings,
)

logger = logging.getLogger(__name__)

#: Methods each route answers; any other method gets 405 with an ``Allow`` header.
ROUTE_METHODS: Final = {
    PING_PATH: "GET",
    INVOCATIONS_PATH: "POST",
    "runtime": "POST",
    CAPTURE_STATS_PATH: "GET",
}
#: Clients that may read ``GET /capture-stats`` (it names local paths).
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "::ffff:127.0.0.1"})
#: The row a new model scores once before it is swapped in, so its first request is not slower.
_WARM_UP_ROW: Final = b"L,298.1,308.6,1551,42.8,0"
#: A batch takes waiting requests up to this many rows (a larger request is a batch of its own).
MAX_BATCH_ROWS: Final = 8192
#: Bodies up to this size are parsed and scored on the event loop, batched with their neighbours
#: (a few hundred rows: well under a millisecond each); larger ones in a worker thread, so that a
#: 50,000-row request does not hold up /ping and the small requests behind it.
INLINE_BODY_BYTES: Final = 16 * 1024
#: SageMaker Runtime's production-variant header; boto3 returns it as InvokedProductionVariant.
_VARIANT: Final = "AllTraffic"
_RUNTIME_ERROR_TYPES: Final = {
    400: "ValidationError",
    404: "ValidationError",
    408: "ValidationError",
    411: "ValidationError",
    413: "ValidationError",
    503: "ServiceUnavailable",
}


class EndpointServer(ServedApp):
    """The endpoint as an ASGI application around one model, served on 127.0.0.1 or ``address``.

    ``EndpointServer(address, model=...)`` binds at once (or takes ``listener``, a socket already
    listening, see :func:`~.ports.listen`); :meth:`start` serves in a thread (tests, embedding),
    :meth:`serve_forever` in the foreground; :meth:`close` stops, and removes what the watcher
    extracted, and closes ``capture`` (its queue written, a summary logged).
    """

    def __init__(
        self,
        address: tuple[str, int] = ("127.0.0.1", 8080),
        *,
        model: LoadedModel | None = None,
        endpoint_name: str | None = None,
        listener: socket.socket | None = None,
        limits: Limits | None = None,
        capture: DataCapture | None = None,
    ) -> None:
        self.limits = limits or Limits()
        if listener is None:
            listener = listen(*address, backlog=self.limits.backlog)
        #: The model every request uses; replaced as a whole by :meth:`swap`.
        self.model: LoadedModel | None = model
        #: The name ``/endpoints/{name}/invocations`` must use (any name if None); without one,
        #: the endpoint state file names it.
        self.endpoint_name = endpoint_name
        self.endpoint_name_fixed = endpoint_name is not None
        self.batcher = MicroBatcher()
        self.gate = Gate(self.limits.max_concurrency, self._busy)
        self.watcher: StateWatcher | None = None
        #: Data capture of answered invocations, or None (off).
        self.capture = capture
        self.http = HttpServer(self, listener, self.limits)

    def swap(self, model: LoadedModel) -> None:
        """Serves ``model`` from the next request on (one reference assignment)."""
        self.model = model

    def watch_state(
        self,
        state_file: str | os.PathLike[str],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
    ) -> StateWatcher:
        """Deploys what ``state_file`` names now, and again whenever the file changes."""
        self.watcher = StateWatcher(
            self, state_file, base_dir=base_dir, poll_interval=poll_interval
        )
        self.watcher.check()
        self.watcher.start()
        return self.watcher

    def close(self) -> None:
        """Stops serving and watching, and removes the model directory the watcher extracted."""
        if self.watcher is not None:
            self.watcher.stop()
        super().close()
        self.batcher.close()
        if self.capture is not None:
            self.capture.close()
        if self.watcher is not None:
            self.watcher.cleanup()

    # ---- the application -----------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route, name = _route(scope)
        runtime = route == "runtime"
        model = self.model  # read once: a swap during this request does not affect it
        try:
            if route is None:
                raise HttpError(
                    404,
                    "not_found",
                    f"no route {scope['method']} {scope['path']}; serving GET {PING_PATH}, "
                    f"POST {INVOCATIONS_PATH} and POST {RUNTIME_PREFIX}{{name}}{RUNTIME_SUFFIX}",
                )
            allowed = ROUTE_METHODS[route]
            if scope["method"] != allowed:
                raise HttpError(
                    405,
                    "method_not_allowed",
                    f"{scope['method']} is not allowed here; use {allowed}",
                    headers=(("allow", allowed),),
                )
            if route == PING_PATH:
                await self._ping(send, model)
                return
            if route == CAPTURE_STATS_PATH:
                await self._capture_stats(send, model)
                return
            if runtime and self.endpoint_name is not None and name != self.endpoint_name:
                raise HttpError(
                    404,
                    "endpoint_not_found",
                    f"Endpoint {name} not found: this server is endpoint {self.endpoint_name}.",
                )
            if model is None:
                raise HttpError(503, "no_model", "no model is loaded yet")
            inference_id = _inference_id(scope)
            with self.gate.admit():
                body, answer, content_type = await self._invoke(scope, receive, model)
        except HttpError as error:
            error.detail.setdefault("row", None)  # the endpoint's errors all have the same keys
            error.detail.setdefault("field", None)
            await send_error(send, error, self._headers(model, runtime, error))
            return
        except ServingError as error:
            problem = HttpError(
                error.status_code, error.error, error.message, row=error.row, field=error.field
            )
            await send_error(
                send, problem, self._headers(model, runtime, problem, model_error=True)
            )
            return
        except Exception:
            logger.exception("unexpected failure answering %s", scope["path"])
            problem = HttpError(500, "internal_error", "the endpoint failed to answer; see its log")
            await send_error(
                send, problem, self._headers(model, runtime, problem, model_error=True)
            )
            return
        headers = self._headers(model, runtime)
        if self.capture is not None:
            event_id = self.capture.capture(
                self.endpoint_name,
                body,
                header(scope, b"content-type"),
                answer,
                content_type,
                inference_id=inference_id,
            )
            if event_id is not None:
                headers.append((EVENT_ID_HEADER, event_id))
        await send_response(send, 200, answer, content_type, headers)

    async def _capture_stats(self, send: Send, model: LoadedModel | None) -> None:
        stats = {"enabled": False} if self.capture is None else self.capture.stats()
        body = json.dumps(stats).encode()
        await send_response(send, 200, body, JSON_CONTENT_TYPE, self._headers(model, False))

    async def _ping(self, send: Send, model: LoadedModel | None) -> None:
        if model is None:
            raise HttpError(503, "no_model", "no model is loaded yet")
        version = "null" if model.model_version is None else model.model_version
        body = f'{{"status": "ready", "model_version": {version}}}'.encode()
        await send_response(send, 200, body, JSON_CONTENT_TYPE, self._headers(model, False))

    async def _invoke(
        self, scope: Scope, receive: Receive, model: LoadedModel
    ) -> tuple[bytes, bytes, str]:
        """(request body, answer, answer's content type)."""
        require_length(scope)
        body = await read_body(scope, receive, self.limits)
        request_type = check_content_type(header(scope, b"content-type"))
        accept = header(scope, b"accept")
        response_type = negotiate_accept(accept, request_type)
        explain = _explain_query(scope)
        if explain:  # checked before parsing, as the Accept header is: a 400 costs no scoring
            response_type = explain_response_type(accept)
        if len(body) <= INLINE_BODY_BYTES:
            readings = self._parse(body, request_type)
            if not (explain or readings.explain):
                answer = output_fn(await self.batcher.score(model, readings), response_type)
            else:
                # Explained requests skip the micro-batcher (their answer needs the feature
                # matrix too) but not the worker threads: TreeSHAP costs ~0.1 ms a row, 60 ms
                # for the ~600 rows 16 KB hold, which must not stall the event loop (and /ping).
                answer = await self.batcher.in_thread(
                    functools.partial(answer_readings, explain=True),
                    readings,
                    model,
                    explain_response_type(accept),
                )
        else:
            answer = await self.batcher.in_thread(
                functools.partial(self._answer, accept=accept, explain=explain),
                model,
                body,
                request_type,
                response_type,
            )
        return body, *answer

    def _parse(self, body: bytes, request_type: str) -> Readings:
        readings = parse_readings(body, request_type)
        if len(readings) > self.limits.max_rows:
            raise HttpError(
                413,
                "too_many_rows",
                f"the request has {len(readings):,} readings; the limit is "
                f"{self.limits.max_rows:,} per request",
            )
        return readings

    def _answer(
        self,
        model: LoadedModel,
        body: bytes,
        request_type: str,
        response_type: str,
        *,
        accept: str | None = None,
        explain: bool = False,
    ) -> tuple[bytes, str]:
        """A large request end to end, in the worker thread."""
        readings = self._parse(body, request_type)
        if explain or readings.explain:
            return answer_readings(readings, model, explain_response_type(accept), explain=True)
        return output_fn(predict_readings(readings, model), response_type)

    def _busy(self) -> HttpError:
        return HttpError(
            503,
            "too_many_requests",
            f"the endpoint is answering {self.limits.max_concurrency} requests, its limit; "
            f"retry in {self.limits.retry_after} s",
            headers=(("retry-after", str(self.limits.retry_after)),),
        )

    def _headers(
        self,
        model: LoadedModel | None,
        runtime: bool,
        error: HttpError | None = None,
        *,
        model_error: bool = False,
    ) -> list[tuple[str, str]]:
        headers = []
        if model is not None and model.model_version is not None:
            headers.append((MODEL_VERSION_HEADER, str(model.model_version)))
        if runtime:
            headers.append(("x-amzn-RequestId", str(uuid.uuid4())))
            if error is None:
                headers.append(("x-Amzn-Invoked-Production-Variant", _VARIANT))
            else:
                # SageMaker Runtime's error shape: boto3 raises e.g. client.exceptions.ModelError.
                status = error.status.value
                kind = "ModelError" if model_error else _RUNTIME_ERROR_TYPES.get(status)
                if kind == "ModelError":
                    error.detail.update(OriginalStatusCode=status, OriginalMessage=error.message)
                if status == 500 and not model_error:
                    kind = "InternalFailure"
                if kind is not None:
                    headers.append(("x-amzn-ErrorType", kind))
        return headers


def _explain_query(scope: Scope) -> bool:
    """The local endpoint's ``?explain=true`` (SageMaker Runtime's InvokeEndpoint cannot carry
    a query string: there, a JSON body's ``"explain": true`` is the way). Any other parameter is
    ignored, as before; a bad value is a 400 naming ``explain``."""
    query = scope.get("query_string") or b""
    if not query:  # the common case: no parsing at all
        return False
    values = [
        value
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True)
        if name == EXPLAIN_KEY
    ]
    if len(values) > 1:
        raise HttpError(
            400,
            "invalid_input",
            f"the query parameter {EXPLAIN_KEY!r} is given {len(values)} times; give it once",
            field=EXPLAIN_KEY,
        )
    return bool(values) and explain_flag(values[0])


def _inference_id(scope: Scope) -> str | None:
    """The client's InferenceId header, checked as SageMaker Runtime checks it."""
    value = header(scope, INFERENCE_ID_HEADER.lower().encode("latin-1"))
    if value is None:
        return None
    if (
        not 0 < len(value) <= INFERENCE_ID_MAX_LENGTH
        or value[0].isspace()
        or not value.isprintable()
    ):
        raise HttpError(
            400,
            "invalid_inference_id",
            f"{INFERENCE_ID_HEADER} must be 1-{INFERENCE_ID_MAX_LENGTH} printable characters "
            "not starting with a space",
            field=INFERENCE_ID_HEADER,
        )
    return value


def _route(scope: Scope) -> tuple[str | None, str | None]:
    """(route, endpoint name) of the request path; route None for an unknown path."""
    path = scope["path"]
    if path in (PING_PATH, INVOCATIONS_PATH):
        return path, None
    if path == CAPTURE_STATS_PATH:
        client = scope.get("client")
        return (path, None) if client and client[0] in _LOOPBACK else (None, None)
    raw = scope.get("raw_path") or path.encode()
    prefix, suffix = RUNTIME_PREFIX.encode(), RUNTIME_SUFFIX.encode()
    if raw.startswith(prefix) and raw.endswith(suffix) and len(raw) > len(prefix) + len(suffix):
        name = unquote_to_bytes(raw[len(prefix) : -len(suffix)]).decode("utf-8", "replace")
        if "/" not in name:
            return "runtime", name
    return None, None


class MicroBatcher:
    """Scores concurrent requests together: one feature matrix, one XGBoost call per batch.

    The per-call cost of the features and of XGBoost's prediction (about 0.3 ms for 52 trees,
    whatever the rows) dwarfs the per-row cost, so requests that arrive together are scored
    together. On the event loop: a
    request's readings join the waiting list and the first one schedules a flush with
    ``call_soon``; every request parsed in the same turn of the loop joins before the flush
    runs, which scores them as one batch (up to :data:`MAX_BATCH_ROWS` rows) and hands each
    request its slice. A lone request waits for nothing: its flush runs in the next turn.

    Rows are scored independently (features row by row, trees summed per row), so a request's
    scores do not depend on its batch. Requests that read different models (a hot swap between
    their arrivals) are scored by their own model.
    """

    def __init__(self, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.max_rows = max_rows
        self.batches = 0
        self.requests = 0
        self._waiting: list[tuple[LoadedModel, Readings, asyncio.Future[Scores]]] = []
        self._scheduled = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="endpoint-bulk")

    async def score(self, model: LoadedModel, readings: Readings) -> Scores:
        """The scores of ``readings`` by ``model``, as :func:`~.inference.predict_fn` gives them."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Scores] = loop.create_future()
        self._waiting.append((model, readings, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    async def in_thread(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` in the worker thread (large requests, one at a time)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _flush(self) -> None:
        self._scheduled = False
        waiting, self._waiting = self._waiting, []
        batch: list[tuple[LoadedModel, Readings, asyncio.Future[Scores]]] = []
        rows = 0
        for job in waiting:
            if batch and rows + len(job[1]) > self.max_rows:
                self._run(batch)
                batch, rows = [], 0
            batch.append(job)
            rows += len(job[1])
        if batch:
            self._run(batch)

    def _run(self, batch: list[tuple[LoadedModel, Readings, asyncio.Future[Scores]]]) -> None:
        self.batches += 1
        self.requests += len(batch)
        by_model: dict[int, list[tuple[LoadedModel, Readings, asyncio.Future[Scores]]]] = {}
        for job in batch:
            by_model.setdefault(id(job[0]), []).append(job)
        for jobs in by_model.values():
            try:
                scores = predict_readings([job[1] for job in jobs], jobs[0][0])
            except Exception:
                for model, readings, future in jobs:  # one by one: each error to its request
                    try:
                        _settle(future, predict_readings(readings, model))
                    except Exception as error:
                        _settle(future, error=error)
                continue
            offset = 0
            for _, readings, future in jobs:
                _settle(future, scores[offset : offset + len(readings)])
                offset += len(readings)


def _settle(
    future: asyncio.Future[Scores], result: Scores | None = None, error: Exception | None = None
) -> None:
    if future.done():  # the client went away and its request was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]


class StateWatcher(threading.Thread):
    """Polls the endpoint state file and hot-swaps the server to the model it names.

    A change of the file (mtime, size or inode: ``os.replace`` gives a new inode) triggers a
    deployment: read the state, read the archive and check its sha256, extract it to a fresh
    temporary directory, :func:`~.inference.model_fn` it, score one row, then swap. Any failure is
    logged and the old model keeps serving. The archive the state names is watched too: a
    deployment refused because its archive was missing or did not match is tried again when the
    archive changes (restored), without anyone touching the state file.

    The signature an attempt records is each file's as it was *before* the attempt read it, never
    one taken afterwards: a state written while a model loads (or just after it is swapped in)
    differs from it, so the next poll deploys that state instead of taking it as already seen.
    """

    def __init__(
        self,
        server: EndpointServer,
        state_file: str | os.PathLike[str],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(name="endpoint-state-watcher", daemon=True)
        self.server = server
        self.state_file = Path(state_file)
        self.base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        self.poll_interval = poll_interval
        self.deployed: dict[str, Any] | None = None
        self.last_error: str | None = None
        self._signature: tuple[Any, ...] | None = None
        self._archive: Path | None = None
        #: The archive's signature as the current attempt found it before reading it.
        self._archive_seen: tuple[int, int, int] | None = None
        self._model_dir: Path | None = None
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        while not self._stop_event.wait(self.poll_interval):
            try:
                self.check()
            except Exception:  # never let the watcher die: the server must keep serving
                logger.exception("endpoint state watcher failed; it keeps watching")

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join()

    def cleanup(self) -> None:
        """Removes the model directory the watcher extracted (after the server stopped)."""
        with self._lock:
            if self._model_dir is not None:
                shutil.rmtree(self._model_dir, ignore_errors=True)
                self._model_dir = None

    def _signature_now(self) -> tuple[Any, ...] | None:
        """What identifies the state file's and its archive's contents without reading them."""
        try:
            stat = os.stat(self.state_file)
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino, self._archive_signature())

    def _archive_signature(self) -> tuple[int, int, int] | None:
        if self._archive is None:
            return None
        try:
            stat = os.stat(self._archive)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def check(self) -> bool:
        """Deploys the state file's model if the file or its archive changed; True if a new model
        is serving."""
        with self._lock:
            signature = self._signature_now()
            if signature is None:
                if self._signature is not None:
                    logger.warning(
                        "endpoint state %s disappeared; still serving the current model",
                        self.state_file,
                    )
                self._signature = None
                return False
            if signature == self._signature:
                return False
            self._archive_seen = signature[-1]
            try:
                return self._deploy()
            except Exception as error:
                self.last_error = f"{type(error).__name__}: {error}"
                logger.error(
                    "refusing endpoint state %s: %s; %s",
                    self.state_file,
                    self.last_error,
                    f"still serving version {self.server.model.model_version}"
                    if self.server.model is not None
                    else "no model is loaded",
                )
                return False
            finally:
                # What the attempt read: the state file as stat'ed before reading it, the archive
                # (whose path the attempt may have learnt) as stat'ed before reading it. A stat
                # taken now could be of a newer state, written during the attempt, and would
                # hide it for good; with these, any later change is a new attempt and an
                # unchanged pair is not retried.
                self._signature = (*signature[:-1], self._archive_seen)

    def _deploy(self) -> bool:
        state = read_endpoint_state(self.state_file)
        version = state["model_version"]
        archive_path = Path(state["model_archive"])
        if not archive_path.is_absolute():
            archive_path = self.base_dir / archive_path
        self._archive = archive_path
        self._archive_seen = self._archive_signature()  # before anything reads the archive
        if self.server.endpoint_name_fixed and state["endpoint_name"] != self.server.endpoint_name:
            raise ValueError(
                f"the state deploys to endpoint {state['endpoint_name']!r}, but this server is "
                f"endpoint {self.server.endpoint_name!r}"
            )
        current = self.server.model
        if (
            self.deployed is not None
            and current is not None
            and self.deployed["model_archive_sha256"] == state["model_archive_sha256"]
            and current.model_version == version
        ):
            self.deployed = state
            return False
        archive = archive_path.read_bytes()
        verify_sha256(archive, state["model_archive_sha256"], str(archive_path))
        model_dir = Path(tempfile.mkdtemp(prefix=f"pm-endpoint-v{version}-"))
        try:
            extract_model_archive(archive, model_dir)
            model = model_fn(model_dir)
            if model.model_version is not None and model.model_version != version:
                raise ValueError(
                    f"the archive's model_spec.json says version {model.model_version}, "
                    f"the endpoint state says {version}"
                )
            model = model.with_version(version)
            predict_fn(input_fn(_WARM_UP_ROW, "text/csv"), model)
        except BaseException:
            shutil.rmtree(model_dir, ignore_errors=True)
            raise
        previous_dir = self._model_dir
        self.server.endpoint_name = state["endpoint_name"]
        self.server.swap(model)
        self._model_dir = model_dir
        self.deployed = state
        self.last_error = None
        logger.info(
            "endpoint %s now serves version %d of %s (archive sha256 %s)",
            state["endpoint_name"],
            version,
            state["model_group"],
            state["model_archive_sha256"],
        )
        if previous_dir is not None:  # requests still on the old model need no files
            shutil.rmtree(previous_dir, ignore_errors=True)
        return True


def load_model_dir(model_dir: str | os.PathLike[str]) -> LoadedModel:
    """A model directory (an extracted ``model.tar.gz``) loaded and warmed up, as the container."""
    model = model_fn(model_dir)
    predict_fn(input_fn(_WARM_UP_ROW, "text/csv"), model)
    return model


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    *,
    model_dir: str | os.PathLike[str] | None = None,
    state_file: str | os.PathLike[str] | None = None,
    endpoint_name: str | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    poll_interval: float = DEFAULT_POLL_INTERVAL_SECONDS,
    listener: socket.socket | None = None,
    limits: Limits | None = None,
    capture: CaptureConfig | None = None,
    capture_endpoint_name: str | None = None,
) -> None:
    """Serves until SIGINT or SIGTERM: a fixed model directory, or whatever the state file names.

    The port is bound first (or ``listener``, already listening, is used), so a taken port fails
    at once, with :class:`~.ports.ListenError`, before any model is loaded. On the way out the
    extracted model directory is removed. With ``capture`` enabled, answered requests are
    captured (:mod:`.capture`), under ``capture_endpoint_name`` while the server has no endpoint
    name of its own; the capture summary is logged on the way out.
    """
    if (model_dir is None) == (state_file is None):
        if listener is not None:
            listener.close()
        raise ValueError("serve needs exactly one of model_dir and state_file")
    data_capture = (
        DataCapture(capture, endpoint_name=capture_endpoint_name or endpoint_name)
        if capture is not None and capture.enabled
        else None
    )
    try:
        server = EndpointServer(
            (host, port),
            endpoint_name=endpoint_name,
            listener=listener,
            limits=limits,
            capture=data_capture,
        )
    except BaseException:
        if data_capture is not None:
            data_capture.close()
        raise
    try:
        if model_dir is not None:
            server.swap(load_model_dir(model_dir))
        if state_file is not None:
            server.watch_state(state_file, base_dir=base_dir, poll_interval=poll_interval)
            if server.model is None:
                logger.warning(
                    "no model yet: /ping answers 503 until %s names a valid model", state_file
                )
        logger.info(
            "endpoint %s listening on %s (POST %s, POST %s%s%s, GET %s)",
            server.endpoint_name or "(any name)",
            server.url,
            INVOCATIONS_PATH,
            RUNTIME_PREFIX,
            server.endpoint_name or "{name}",
            RUNTIME_SUFFIX,
            PING_PATH,
        )
        if data_capture is not None:
            logger.info(
                "data capture on: %d%% of answered requests to %s (counters: GET %s)",
                data_capture.config.sampling_percentage,
                data_capture.directory,
                CAPTURE_STATS_PATH,
            )
        server.serve_forever()
    finally:
        server.close()
