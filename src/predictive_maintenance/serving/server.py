"""The local endpoint: the SageMaker inference container contract over HTTP/1.1, and hot swaps.

Routes (as a SageMaker container serves them, plus the SageMaker Runtime path so that an
unmodified boto3 ``sagemaker-runtime`` client with ``endpoint_url`` pointed here works):

- ``GET /ping``: 200 when a model is loaded, 503 otherwise;
- ``POST /invocations`` and ``POST /endpoints/{name}/invocations``: the handlers of
  :mod:`.inference` (:func:`~.inference.invoke`).

Bad input never gets a 500: 400 (unparsable or invalid, the JSON body naming row and field), 404
(unknown path or endpoint name), 405 (wrong method), 406 (unsupported ``Accept``), 413 (above
6 MB, judged by ``Content-Length`` before reading; a chunked body is counted as it arrives), 415
(unsupported content type). Every answer carries ``X-Model-Version`` when the version is known.

The server holds one reference to the current :class:`~.inference.LoadedModel`; each request
reads it once, so a swap is a single assignment and in-flight requests finish on the model they
started with. :class:`StateWatcher` loads the model the endpoint state file names in the
background (archive sha256 checked, extracted to a fresh directory, warmed up) and only then
swaps it in.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import uuid
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.serving.contract import (
    INVOCATIONS_PATH,
    JSON_CONTENT_TYPE,
    MAX_PAYLOAD_BYTES,
    MODEL_VERSION_HEADER,
    PING_PATH,
    RUNTIME_PREFIX,
    RUNTIME_SUFFIX,
)
from predictive_maintenance.serving.endpoint import (
    DEFAULT_POLL_INTERVAL_SECONDS,
    read_endpoint_state,
)
from predictive_maintenance.serving.inference import (
    LoadedModel,
    Scores,
    input_fn,
    model_fn,
    output_fn,
    predict_fn,
    readings_frame,
)
from predictive_maintenance.serving.package import extract_model_archive
from predictive_maintenance.serving.ports import listen
from predictive_maintenance.serving.requests import (
    Readings,
    ServingError,
    check_content_type,
    negotiate_accept,
    parse_readings,
)

logger = logging.getLogger(__name__)

#: Methods each route answers; any other method gets 405 with an ``Allow`` header.
ROUTE_METHODS: Final = {PING_PATH: "GET", INVOCATIONS_PATH: "POST", "runtime": "POST"}
#: Idle keep-alive connections are closed after this long.
KEEP_ALIVE_TIMEOUT_SECONDS: Final = 120.0
#: A body above the limit is read and discarded (so the client sees the 413) up to this size;
#: beyond it the connection is closed instead.
_MAX_DRAIN_BYTES: Final = 16 * MAX_PAYLOAD_BYTES
_CHUNK_SIZE: Final = re.compile(rb"[0-9a-fA-F]{1,8}")
#: The row a new model scores once before it is swapped in, so its first request is not slower.
_WARM_UP_ROW: Final = b"L,298.1,308.6,1551,42.8,0"
#: A batch takes waiting requests up to this many rows (a larger request is a batch of its own).
MAX_BATCH_ROWS: Final = 8192
#: SageMaker Runtime's production-variant header; boto3 returns it as InvokedProductionVariant.
_VARIANT: Final = "AllTraffic"


class EndpointServer(ThreadingHTTPServer):
    """A threaded HTTP/1.1 server (keep-alive, one thread per connection) around one model."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # the listen backlog: bursts of new connections are not dropped

    def __init__(
        self,
        address: tuple[str, int],
        *,
        model: LoadedModel | None = None,
        endpoint_name: str | None = None,
        listener: socket.socket | None = None,
    ) -> None:
        """Binds ``address`` now, or serves on ``listener``, a socket already listening (see
        :func:`~.ports.listen`; the server owns and closes it)."""
        if listener is None:
            super().__init__(address, _Handler)
        else:
            super().__init__(address, _Handler, bind_and_activate=False)
            self.socket.close()
            self.socket = listener
            self.server_address = listener.getsockname()
            self.server_name, self.server_port = str(self.server_address[0]), self.port
        #: The model every request uses; replaced as a whole by :meth:`swap`.
        self.model: LoadedModel | None = model
        #: The name ``/endpoints/{name}/invocations`` must use (any name if None); without one,
        #: the endpoint state file names it.
        self.endpoint_name = endpoint_name
        self.endpoint_name_fixed = endpoint_name is not None
        self.batcher = MicroBatcher()
        self.watcher: StateWatcher | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away is routine; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            logger.debug("connection from %s ended abruptly", client_address)
            return
        logger.exception("unexpected failure serving %s", client_address)

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

    def start(self) -> EndpointServer:
        """Serves in a daemon thread (for tests and embedding); :meth:`close` stops it."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stops serving and watching, and removes the model directory the watcher extracted."""
        if self.watcher is not None:
            self.watcher.stop()
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
        if self.watcher is not None:
            self.watcher.cleanup()

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "predictive-maintenance-endpoint"
    timeout = KEEP_ALIVE_TIMEOUT_SECONDS
    server: EndpointServer

    def setup(self) -> None:
        super().setup()
        # One write per response, and no Nagle delay between a response and the next request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    # ---- routing -------------------------------------------------------------------------------
    def _route(self) -> tuple[str | None, str | None]:
        """(route, endpoint name) of the request path; route None for an unknown path."""
        path = self.path.partition("?")[0]
        if path in (PING_PATH, INVOCATIONS_PATH):
            return path, None
        if path.startswith(RUNTIME_PREFIX) and path.endswith(RUNTIME_SUFFIX):
            name = unquote(path[len(RUNTIME_PREFIX) : -len(RUNTIME_SUFFIX)])
            if name and "/" not in name:
                return "runtime", name
        return None, None

    def do_GET(self) -> None:
        route, _ = self._route()
        if route != PING_PATH:
            self._reject_route(route)
            return
        model = self.server.model
        if model is None:
            self._send_error(HTTPStatus.SERVICE_UNAVAILABLE, "no_model", "no model is loaded yet")
            return
        version = "null" if model.model_version is None else model.model_version
        body = f'{{"status": "ready", "model_version": {version}}}'.encode()
        self._send(HTTPStatus.OK, body, JSON_CONTENT_TYPE, model)

    def do_POST(self) -> None:
        route, name = self._route()
        if route not in (INVOCATIONS_PATH, "runtime"):
            self._reject_route(route)
            return
        runtime = route == "runtime"
        expected_name = self.server.endpoint_name
        if runtime and expected_name is not None and name != expected_name:
            self._skip_body()
            self._send_error(
                HTTPStatus.NOT_FOUND,
                "endpoint_not_found",
                f"Endpoint {name} not found: this server is endpoint {expected_name}.",
                runtime=runtime,
                error_type="ValidationError",
            )
            return
        model = self.server.model  # read once: a swap during this request does not affect it
        if model is None:
            self._skip_body()
            self._send_error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "no_model",
                "no model is loaded yet",
                runtime=runtime,
                error_type="ServiceUnavailable",
            )
            return
        body = self._read_body(runtime)
        if body is None:
            return
        try:
            request_type = check_content_type(self.headers.get("Content-Type"))
            response_type = negotiate_accept(self.headers.get("Accept"), request_type)
            scores = self.server.batcher.score(model, parse_readings(body, request_type))
            answer, content_type = output_fn(scores, response_type)
        except ServingError as error:
            self._send_error(
                HTTPStatus(error.status_code),
                error.error,
                error.message,
                model=model,
                row=error.row,
                field=error.field,
                runtime=runtime,
                error_type="ModelError",
            )
            return
        except Exception:
            logger.exception("unexpected failure answering %s", self.path)
            self._send_error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal_error",
                "the endpoint failed to answer; see its log",
                model=model,
                runtime=runtime,
                error_type="InternalFailure",
            )
            return
        self._send(HTTPStatus.OK, answer, content_type, model, runtime=runtime)

    def _other_method(self) -> None:
        route, _ = self._route()
        self._reject_route(route)

    do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _other_method

    def _reject_route(self, route: str | None) -> None:
        self._skip_body()
        if route is None:
            self._send_error(
                HTTPStatus.NOT_FOUND,
                "not_found",
                f"no route {self.command} {self.path.partition('?')[0]}; "
                f"serving GET {PING_PATH}, POST {INVOCATIONS_PATH} and "
                f"POST {RUNTIME_PREFIX}{{name}}{RUNTIME_SUFFIX}",
            )
            return
        allowed = ROUTE_METHODS[route]
        self._send_error(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "method_not_allowed",
            f"{self.command} is not allowed here; use {allowed}",
            headers=(("Allow", allowed),),
        )

    # ---- bodies --------------------------------------------------------------------------------
    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return 0
        try:
            length = int(value)
        except ValueError:
            return None
        return length if length >= 0 else None

    def _chunked(self) -> bool:
        return "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()

    def _read_body(self, runtime: bool) -> bytes | None:
        """The request body, or None after answering 400/413 (judged before reading)."""
        if self._chunked():
            body, size = self._read_chunks()
            too_large = size > MAX_PAYLOAD_BYTES  # read no further than needed to know that
            problem = None if body is not None or too_large else "a malformed chunked body"
            if too_large and body is None:
                self.close_connection = True
        else:
            length = self._content_length()
            if length is not None and length > MAX_PAYLOAD_BYTES:
                self._discard(length)
            size, body = length or 0, None
            problem = None if length is not None else "an invalid Content-Length"
        if problem is not None:
            self.close_connection = True
            self._send_error(
                HTTPStatus.BAD_REQUEST,
                "invalid_input",
                f"the request has {problem}",
                runtime=runtime,
                error_type="ValidationError",
            )
            return None
        if size > MAX_PAYLOAD_BYTES:
            self._send_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                "payload_too_large",
                f"the body has {size:,} bytes; the limit is {MAX_PAYLOAD_BYTES:,}",
                runtime=runtime,
                error_type="ValidationError",
            )
            return None
        if body is not None:
            return body
        body = self.rfile.read(size) if size else b""
        if len(body) != size:  # the client went away mid-body
            self.close_connection = True
            return None
        return body

    def _read_chunks(self) -> tuple[bytes | None, int]:
        """A chunked body and its size (None if malformed); past the limit, chunks are dropped."""
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            size_field = line.split(b";", 1)[0].strip()
            if not _CHUNK_SIZE.fullmatch(size_field):  # int(, 16) would take "-5", "0x10", "1_0"
                return None, size
            chunk_size = int(size_field, 16)
            if chunk_size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts), size
            size += chunk_size
            if size > _MAX_DRAIN_BYTES:
                return None, size
            chunk = self.rfile.read(chunk_size)
            if len(chunk) != chunk_size or self.rfile.readline(3).strip():
                return None, size
            if size <= MAX_PAYLOAD_BYTES:
                parts.append(chunk)

    def _discard(self, length: int) -> None:
        """Reads and drops a body we will not use, so the client can read our answer."""
        if length > _MAX_DRAIN_BYTES:
            self.close_connection = True
            return
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            remaining -= len(chunk)

    def _skip_body(self) -> None:
        if self._chunked():
            body, _ = self._read_chunks()
            if body is None:
                self.close_connection = True
            return
        length = self._content_length()
        if length is None:
            self.close_connection = True
        elif length:
            self._discard(length)

    # ---- responses -----------------------------------------------------------------------------
    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        model: LoadedModel | None = None,
        *,
        runtime: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        lines = [
            f"HTTP/1.1 {status.value} {status.phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        if model is not None and model.model_version is not None:
            lines.append(f"{MODEL_VERSION_HEADER}: {model.model_version}")
        if runtime:
            lines.append(f"x-amzn-RequestId: {uuid.uuid4()}")
            if status == HTTPStatus.OK:
                lines.append(f"x-Amzn-Invoked-Production-Variant: {_VARIANT}")
        lines.extend(f"{name}: {value}" for name, value in headers)
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head if self.command == "HEAD" else head + body)

    def _send_error(
        self,
        status: HTTPStatus,
        error: str,
        message: str,
        *,
        model: LoadedModel | None = None,
        row: int | None = None,
        field: str | None = None,
        runtime: bool = False,
        error_type: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        detail: dict[str, Any] = {"error": error, "message": message, "row": row, "field": field}
        if runtime and error_type:
            # SageMaker Runtime's error shape, so boto3 raises e.g. client.exceptions.ModelError.
            headers = (*headers, ("x-amzn-ErrorType", error_type))
            if error_type == "ModelError":
                detail["OriginalStatusCode"] = status.value
                detail["OriginalMessage"] = message
        body = json.dumps(detail).encode()
        self._send(status, body, JSON_CONTENT_TYPE, model, runtime=runtime, headers=headers)


class _Job:
    """One request's readings on their way through a batch, and what came out."""

    __slots__ = ("batch", "error", "model", "readings", "scores", "signal")

    def __init__(self, model: LoadedModel, readings: Readings) -> None:
        self.model = model
        self.readings = readings
        self.scores: Scores | None = None
        self.error: BaseException | None = None
        self.batch: list[_Job] | None = None
        self.signal: threading.Lock | None = None

    def result(self) -> Scores:
        if self.error is not None:
            raise self.error
        assert self.scores is not None
        return self.scores


class MicroBatcher:
    """Scores concurrent requests together: one frame, one ``predict_fn`` per batch.

    Python runs one thread at a time, and the per-call cost of building a frame and its features
    with pandas dwarfs the per-row cost, so requests that arrive while a batch is being scored
    wait and are then scored together in the next batch. A lone request is scored at once, in
    its own thread (no hand-off, no added latency). Leader/follower: the thread that finds the
    batcher idle scores its request; meanwhile arrivals queue up; when the leader is done it hands
    the whole queue to one waiting thread, which scores it as the next batch, and so on.

    Rows are scored independently (features row by row, trees summed per row), so a request's
    scores do not depend on its batch. Requests that read different models (a hot swap between
    their arrivals) are scored by their own model.
    """

    def __init__(self, max_rows: int = MAX_BATCH_ROWS) -> None:
        self.max_rows = max_rows
        self.batches = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._waiting: deque[_Job] = deque()
        self._busy = False

    def score(self, model: LoadedModel, readings: Readings) -> Scores:
        """The scores of ``readings`` by ``model``, as :func:`~.inference.predict_fn` gives them."""
        job = _Job(model, readings)
        with self._lock:
            if self._busy:
                job.signal = threading.Lock()
                job.signal.acquire()
                self._waiting.append(job)
            else:
                self._busy = True
                job.batch = [job]
        if job.signal is not None:
            job.signal.acquire()  # released with our scores, or to lead the next batch
            if job.batch is None:
                return job.result()
        self._lead(job, job.batch)
        return job.result()

    def _lead(self, leader: _Job, batch: list[_Job]) -> None:
        next_leader = None
        try:
            self._run(batch)
        finally:
            with self._lock:
                self.batches += 1
                self.requests += len(batch)
                if self._waiting:
                    next_batch, rows = [], 0
                    while self._waiting and (not next_batch or rows < self.max_rows):
                        waiting = self._waiting.popleft()
                        rows += len(waiting.readings)
                        next_batch.append(waiting)
                    next_leader = next_batch[0]
                    next_leader.batch = next_batch
                else:
                    self._busy = False
            for job in batch:
                if job is not leader and job.signal is not None:
                    job.signal.release()
            if next_leader is not None:
                next_leader.signal.release()  # type: ignore[union-attr]

    @staticmethod
    def _run(batch: list[_Job]) -> None:
        by_model: dict[int, list[_Job]] = {}
        for job in batch:
            by_model.setdefault(id(job.model), []).append(job)
        for jobs in by_model.values():
            try:
                scores = predict_fn(readings_frame([job.readings for job in jobs]), jobs[0].model)
            except Exception as error:
                if len(jobs) == 1:
                    jobs[0].error = error
                    continue
                for job in jobs:  # score them one by one, so an error reaches its own request
                    try:
                        job.scores = predict_fn(readings_frame(job.readings), job.model)
                    except Exception as job_error:
                        job.error = job_error
                continue
            offset = 0
            for job in jobs:
                job.scores = scores[offset : offset + len(job.readings)]
                offset += len(job.readings)


class StateWatcher(threading.Thread):
    """Polls the endpoint state file and hot-swaps the server to the model it names.

    A change of the file (mtime, size or inode: ``os.replace`` gives a new inode) triggers a
    deployment: read the state, read the archive and check its sha256, extract it to a fresh
    temporary directory, :func:`~.inference.model_fn` it, score one row, then swap. Any failure is
    logged and the old model keeps serving; the same file is not retried until it changes again.
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
        self._signature: tuple[int, int, int] | None = None
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

    def check(self) -> bool:
        """Deploys the state file's model if the file changed; True if a new model is serving."""
        with self._lock:
            try:
                stat = os.stat(self.state_file)
            except FileNotFoundError:
                if self._signature is not None:
                    logger.warning(
                        "endpoint state %s disappeared; still serving the current model",
                        self.state_file,
                    )
                self._signature = None
                return False
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature == self._signature:
                return False
            self._signature = signature
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

    def _deploy(self) -> bool:
        state = read_endpoint_state(self.state_file)
        version = state["model_version"]
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
        archive_path = Path(state["model_archive"])
        if not archive_path.is_absolute():
            archive_path = self.base_dir / archive_path
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
    ready: threading.Event | None = None,
    listener: socket.socket | None = None,
) -> None:
    """Serves until interrupted: a fixed model directory, or whatever the state file names.

    The port is bound first (or ``listener``, already listening, is used), so a taken port fails
    at once, with :class:`~.ports.ListenError`, before any model is loaded.
    """
    if (model_dir is None) == (state_file is None):
        if listener is not None:
            listener.close()
        raise ValueError("serve needs exactly one of model_dir and state_file")
    if listener is None:
        listener = listen(host, port)
    with EndpointServer((host, port), endpoint_name=endpoint_name, listener=listener) as server:
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
        if ready is not None:
            ready.set()
        _stop_on_sigterm()
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever(poll_interval=0.5)


def _stop_on_sigterm() -> None:
    """SIGTERM stops the server like Ctrl-C, so the extracted model directory is removed."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
