"""SageMaker Batch Transform, run on this machine: ``kedro sagemaker run-local``'s Transform step.

A transform job serves its model as SageMaker does, with the image's own serving stack (the stock
XGBoost image's ``sagemaker_xgboost_container.serving:main`` under gunicorn with gevent workers,
as the image's ``serve`` starts it, without nginx), in the interpreter given (the image's
stand-in, ``make image-env``): the model archive is extracted to ``<base>/model`` as SageMaker
extracts it to ``/opt/ml/model``, the Model's environment is set (``/opt/ml/...`` paths mapped
into ``<base>``), ``SAGEMAKER_BATCH=true`` is added, and the toolkit finds the inference code in
``SAGEMAKER_SUBMIT_DIRECTORY`` on the path instead of installing it with pip.

Every object under the input prefix is then split and posted to ``/invocations`` as Batch
Transform does it:

- ``SplitType: Line``: a record is a line (``\\n``; a ``\\r`` before it is dropped; empty lines
  are skipped); ``None``: the whole object is one record. RecordIO/TFRecord and manifest inputs
  are refused.
- ``BatchStrategy: MultiRecord``: as many records as fit in ``MaxPayloadInMB`` (MiB; 0: no
  limit) per request, joined by ``\\n``; ``SingleRecord`` (also when unset): one per request. A
  record larger than the limit fails the job.
- ``DataProcessing.InputFilter`` is applied to each record before it is sent; with
  ``JoinSource: Input`` each answer record (a line of the answer) is joined to its original input
  record (CSV: the answer's fields appended to the input's; JSON: the answer under
  ``SageMakerOutput`` of the input object, or ``SageMakerInput``/``SageMakerOutput``), then
  ``OutputFilter`` is applied. Filters are the JSONPath subset SageMaker documents: ``$``,
  ``.name``, ``['a','b']``, ``[*]``, ``[i,j,...]`` with negative indexes and ``start:end`` slices
  (end excluded) mixed, e.g. ``$[0,5:]``; a CSV record is the array of its fields.
- ``AssembleWith: Line``: each answer (or joined record) ends with a newline; ``None``: the
  answers' bytes back to back. The output of ``<prefix>/<key>`` is ``<S3OutputPath>/<key>.out``.
- ``MaxConcurrentTransforms`` requests at a time (default 1), answers written in input order;
  ``ModelClientConfig`` gives the request timeout and the retries of a failed connection or 5xx.

A non-2xx answer fails the job, with the object, the lines of the mini-batch, the status and
the start of the answer in the reason (SageMaker's own reason only points to the logs). What
differs from SageMaker: one server whatever ``InstanceCount``; no Docker (the image's Python
and libraries, not its OS); no ``/execution-parameters`` defaults beyond what the request sets.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import http.client
import io
import json
import logging
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.integrity import sha256_hex, verify_sha256
from predictive_maintenance.sagemaker.archives import extract_tar_gz
from predictive_maintenance.sagemaker.storage import ObjectStore

logger = logging.getLogger(__name__)

#: The stock XGBoost image's serving app (its ``SAGEMAKER_SERVING_MODULE``).
SERVING_MODULE: Final = "sagemaker_xgboost_container.serving:main"
#: What the interpreter must have to run the image's serving stack.
SERVING_PACKAGES: Final = ("gunicorn", "gevent", "sagemaker_xgboost_container")
#: CreateTransformJob's defaults (API reference): MaxPayloadInMB, the invocation timeout, retries.
DEFAULT_MAX_PAYLOAD_MB: Final = 6
DEFAULT_INVOCATION_TIMEOUT: Final = 600
DEFAULT_INVOCATION_RETRIES: Final = 3
#: How long the container may take to answer ``GET /ping`` 200 after it starts.
STARTUP_SECONDS: Final = 120
#: Variables of this machine a container gets (it has only the image's and the model's).
_HOST_VARIABLES: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ")
_CONTAINER_ROOT: Final = "/opt/ml"
_ANSWER_EXCERPT: Final = 500


class TransformJobError(RuntimeError):
    """The transform job failed; the message is its failure reason."""


@dataclass(frozen=True)
class LocalModel:
    """A model as CreateModel made it: the container that serves it."""

    name: str
    image: str
    model_data_url: str
    environment: Mapping[str, str] = field(default_factory=dict)
    #: Checked against the archive's bytes before it is served (None: not known).
    model_data_sha256: str | None = None


# ---- SageMaker's JSONPath subset ---------------------------------------------------------------
_SEGMENT: Final = re.compile(r"\.\*|\.([A-Za-z_][A-Za-z0-9_\-]*)|\[([^\]]*)\]")


class FilterError(ValueError):
    """A JSONPath filter that cannot be read or applied (names the expression)."""


@functools.cache
def _selectors(expression: str) -> tuple[tuple[str, Any], ...]:
    if not expression.startswith("$"):
        raise FilterError(f"{expression!r} is not a JSONPath expression (it must start with $)")
    position, selectors = 1, []
    while position < len(expression):
        match = _SEGMENT.match(expression, position)
        if match is None:
            raise FilterError(f"{expression!r}: cannot read it from {expression[position:]!r}")
        if match.group(0) == ".*":
            selectors.append(("all", None))
        elif match.group(1) is not None:
            selectors.append(("name", match.group(1)))
        else:
            selectors.append(_bracket(match.group(2).strip(), expression))
        position = match.end()
    return tuple(selectors)


def _bracket(content: str, expression: str) -> tuple[str, Any]:
    if content == "*":
        return ("all", None)
    parts = [part.strip() for part in content.split(",")]
    if all(len(part) >= 2 and part[0] == part[-1] and part[0] in "'\"" for part in parts):
        return ("names", [part[1:-1] for part in parts])
    items: list[int | slice] = []
    for part in parts:
        try:
            if ":" in part:
                start, _, end = part.partition(":")
                items.append(slice(int(start) if start else None, int(end) if end else None))
            else:
                items.append(int(part))
        except ValueError:
            raise FilterError(f"{expression!r}: [{content}] is neither indexes nor names") from None
    return ("indexes", items)


def apply_filter(expression: str | None, value: Any) -> Any:
    """``value`` (a CSV record's fields, or a JSON value) filtered by ``expression``."""
    if expression in (None, "", "$"):
        return value
    for kind, argument in _selectors(expression):
        if kind == "all":
            value = list(value.values()) if isinstance(value, dict) else list(value)
        elif kind == "name":
            if not isinstance(value, dict) or argument not in value:
                raise FilterError(f"{expression}: the record has no {argument!r}")
            value = value[argument]
        elif kind == "names":
            if not isinstance(value, dict):
                raise FilterError(f"{expression}: the record is not an object")
            value = {name: value[name] for name in argument if name in value}
        else:
            value = _indexed(value, argument, expression)
    return value


def _indexed(value: Any, items: list[int | slice], expression: str) -> list[Any]:
    if not isinstance(value, list):
        raise FilterError(f"{expression}: the record is not an array")
    selected = []
    for item in items:
        if isinstance(item, slice):
            selected.extend(value[item])
        elif -len(value) <= item < len(value):
            selected.append(value[item])
        else:
            raise FilterError(
                f"{expression}: index {item} is outside the record's {len(value)} fields"
            )
    return selected


# ---- records ---------------------------------------------------------------------------------
_NEEDS_QUOTES: Final = re.compile(r'["\r\n]')
_JSON_TYPES: Final = frozenset(
    {"application/json", "application/jsonlines", "application/x-jsonlines"}
)


class _Format:
    """How records of a content type are read for the filters and written back."""

    def __init__(self, content_type: str | None) -> None:
        media = (content_type or "").split(";")[0].strip().lower()
        self.json = media in {
            "application/json",
            "application/jsonlines",
            "application/x-jsonlines",
        }

    def parse(self, record: bytes) -> Any:
        text = record.decode("utf-8")
        if self.json:
            return json.loads(text)
        return next(csv.reader([text]), [])

    def dump(self, value: Any) -> bytes:
        if self.json:
            return json.dumps(value, separators=(",", ":")).encode()
        fields = value if isinstance(value, list) else [value]
        if all(isinstance(item, str) for item in fields):
            text = ",".join(fields)
            # No separator inside a field, nothing to quote: csv would write the same.
            if text and text.count(",") == len(fields) - 1 and not _NEEDS_QUOTES.search(text):
                return text.encode("utf-8")
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="").writerow(fields)
        return buffer.getvalue().encode("utf-8")


def join_record(input_value: Any, output_value: Any, *, as_json: bool) -> Any:
    """JoinSource Input: CSV fields appended; JSON under ``SageMakerOutput``."""
    if not as_json:
        return [*input_value, *output_value]
    if isinstance(input_value, dict):
        return {**input_value, "SageMakerOutput": output_value}
    return {"SageMakerInput": input_value, "SageMakerOutput": output_value}


def read_records(path: Path, split_type: str | None) -> Iterator[tuple[int, bytes]]:
    """(line number, record) of a file; numbers count every line, from 1."""
    if split_type in (None, "None"):
        yield 1, path.read_bytes()
        return
    if split_type != "Line":
        raise TransformJobError(f"SplitType {split_type} is not supported locally (Line, None)")
    with path.open("rb") as lines:
        for number, line in enumerate(lines, start=1):
            record = line.rstrip(b"\n").removesuffix(b"\r")
            if record:
                yield number, record


@dataclass
class MiniBatch:
    lines: list[int] = field(default_factory=list)
    originals: list[bytes] = field(default_factory=list)
    parts: list[bytes] = field(default_factory=list)
    size: int = 0

    @property
    def body(self) -> bytes:
        """The records sent, one per line."""
        return b"\n".join(self.parts)

    def where(self) -> str:
        first, last = self.lines[0], self.lines[-1]
        return f"line {first}" if first == last else f"lines {first}-{last}"


def mini_batches(
    records: Iterator[tuple[int, bytes]],
    *,
    strategy: str,
    max_payload_bytes: int,
    transform_record: Callable[[bytes], bytes],
) -> Iterator[MiniBatch]:
    """Records (filtered by ``transform_record``) packed into request bodies."""
    batch = MiniBatch()
    for number, record in records:
        sent = transform_record(record)
        if max_payload_bytes and len(sent) > max_payload_bytes:
            raise TransformJobError(
                f"line {number}: the record is {len(sent):,} bytes, more than MaxPayloadInMB "
                f"({max_payload_bytes:,} bytes)"
            )
        size = batch.size + 1 + len(sent) if batch.lines else len(sent)
        if batch.lines and (
            strategy != "MultiRecord" or (max_payload_bytes and size > max_payload_bytes)
        ):
            yield batch
            batch, size = MiniBatch(), len(sent)
        batch.lines.append(number)
        batch.originals.append(record)
        batch.parts.append(sent)
        batch.size = size
    if batch.lines:
        yield batch


# ---- the serving container ---------------------------------------------------------------------
def has_serving_stack(python: str) -> bool:
    """True if ``python`` can run the image's serving stack."""
    probe = subprocess.run(
        [
            python,
            "-c",
            "import importlib.util as u, sys; "
            f"sys.exit(any(u.find_spec(m) is None for m in {SERVING_PACKAGES!r}))",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _container_value(value: str, base: Path) -> str:
    """A path under /opt/ml, as the local tree has it; anything else unchanged."""
    if value == _CONTAINER_ROOT or value.startswith(f"{_CONTAINER_ROOT}/"):
        return str(base / value[len(_CONTAINER_ROOT) :].lstrip("/"))
    return value


class ServingContainer:
    """The model's container answering ``/ping`` and ``/invocations`` on 127.0.0.1."""

    def __init__(
        self, python: str, base: Path, environment: Mapping[str, str], workers: int = 1
    ) -> None:
        self.base = base
        # The listening socket is made here and inherited (gunicorn's fd:// bind): no other
        # program can take the port between choosing it and binding it.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        variables = {key: os.environ[key] for key in _HOST_VARIABLES if key in os.environ}
        variables.update({key: _container_value(str(v), base) for key, v in environment.items()})
        variables["SAGEMAKER_BASE_DIR"] = str(base)
        submit = variables.get("SAGEMAKER_SUBMIT_DIRECTORY", str(base / "model" / "code"))
        variables["PYTHONPATH"] = submit
        variables.setdefault("OMP_NUM_THREADS", "1")  # the image's serving default
        # The toolkit starts one worker per CPU; here the machine is shared, and a transform
        # never has more requests in flight than MaxConcurrentTransforms.
        workers_count = variables.get("SAGEMAKER_MODEL_SERVER_WORKERS") or str(workers)
        timeout = variables.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "60")
        module = variables.get("SAGEMAKER_SERVING_MODULE", SERVING_MODULE)
        self.log_path = base / "container.log"
        command = [
            python,
            "-m",
            "gunicorn",
            "--no-control-socket",
            "-k",
            "gevent",
            "-w",
            workers_count,
            "--timeout",
            timeout,
            "-b",
            f"fd://{listener.fileno()}",
            module,
        ]
        with listener, self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=base,
                env=variables,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(listener.fileno(),),
                start_new_session=True,  # its own group: gunicorn and its workers stop together
            )
        logger.info("Transform: serving the model with %s (%s workers)", module, workers_count)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TransformJobError(
                    f"the model's container exited with code {self.process.returncode} before "
                    f"it answered /ping:\n{self.log_tail()}"
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/ping", b"", {}, 5)[0] == 200:
                    return
            time.sleep(0.1)
        raise TransformJobError(
            f"the model's container did not answer /ping within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def request(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body, dict(headers))
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stop(self) -> None:
        """gunicorn's quick shutdown (SIGINT): no request is in flight any more."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# ---- the job ------------------------------------------------------------------------------------
@dataclass
class TransformSummary:
    objects: int = 0
    records: int = 0
    requests: int = 0
    outputs: list[str] = field(default_factory=list)


class LocalTransformJob:
    """One CreateTransformJob request, run to its end (:meth:`run`)."""

    def __init__(
        self, request: Mapping[str, Any], model: LocalModel, store: ObjectStore, python: str
    ) -> None:
        self.request = request
        self.model = model
        self.store = store
        self.python = python
        processing = request.get("DataProcessing") or {}
        self.input_filter = processing.get("InputFilter")
        self.output_filter = processing.get("OutputFilter")
        self.join = processing.get("JoinSource") == "Input"
        transform_input = request["TransformInput"]
        self.content_type = transform_input.get("ContentType")
        self.split_type = transform_input.get("SplitType", "None")
        output = request["TransformOutput"]
        self.accept = output.get("Accept")
        self.assemble_line = output.get("AssembleWith") == "Line"
        self.output_path = output["S3OutputPath"].rstrip("/")
        self.strategy = request.get("BatchStrategy") or "SingleRecord"
        megabytes = request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)
        self.max_payload_bytes = megabytes * 1024 * 1024
        self.concurrency = max(1, request.get("MaxConcurrentTransforms") or 1)
        client = request.get("ModelClientConfig") or {}
        self.timeout = client.get("InvocationsTimeoutInSeconds", DEFAULT_INVOCATION_TIMEOUT)
        self.retries = client.get("InvocationsMaxRetries", DEFAULT_INVOCATION_RETRIES)
        self.input_format = _Format(self.content_type)
        self.output_format = _Format(self.accept)

    def inputs(self) -> list[tuple[str, str]]:
        """(object URI, key relative to the input prefix) of every object to transform."""
        source = self.request["TransformInput"]["DataSource"]["S3DataSource"]
        if source["S3DataType"] != "S3Prefix":
            raise TransformJobError(
                f"S3DataType {source['S3DataType']} is not supported locally (S3Prefix)"
            )
        prefix = source["S3Uri"]
        objects = self.store.list_keys(prefix)
        if not objects:
            raise TransformJobError(f"no object under the input {prefix}")
        parent = prefix if prefix.endswith("/") else prefix.rsplit("/", 1)[0] + "/"
        return [(uri, uri[len(parent) :]) for uri in objects]

    def run(self, workdir: Path) -> TransformSummary:
        inputs = self.inputs()
        base = workdir / "opt-ml"
        archive = self._model_archive(workdir)
        extract_tar_gz(archive, base / "model", what=f"model data {self.model.model_data_url}")
        environment = {
            **self.model.environment,
            **(self.request.get("Environment") or {}),
            "SAGEMAKER_BATCH": "true",
        }
        if not has_serving_stack(self.python):
            raise TransformJobError(
                f"{self.python} cannot run the model's serving stack (it lacks one of "
                f"{', '.join(SERVING_PACKAGES)}): run with --python and the stock image's "
                "stand-in (make image-env: .venv-image/bin/python)"
            )
        container = ServingContainer(self.python, base, environment, self.concurrency)
        summary = TransformSummary()
        try:
            container.wait_ready()
            for uri, relative in inputs:
                summary.outputs.append(self.transform_object(container, uri, relative, summary))
                summary.objects += 1
        finally:
            container.stop()
            logger.debug("Transform container log:\n%s", container.log_tail(200))
        return summary

    def _model_archive(self, workdir: Path) -> bytes:
        url = self.model.model_data_url
        path = workdir / "model.tar.gz"
        self.store.download_file(url, path)
        archive = path.read_bytes()
        path.unlink()
        if self.model.model_data_sha256:
            verify_sha256(archive, self.model.model_data_sha256, url)
        logger.info("Transform: model data %s (sha256 %s)", url, sha256_hex(archive)[:12])
        return archive

    def _sent(self, record: bytes) -> bytes:
        if self.input_filter in (None, "", "$"):
            return record
        return self.input_format.dump(
            apply_filter(self.input_filter, self.input_format.parse(record))
        )

    def transform_object(
        self, container: ServingContainer, uri: str, relative: str, summary: TransformSummary
    ) -> str:
        output_uri = f"{self.output_path}/{relative}.out"
        with tempfile.TemporaryDirectory() as directory:
            source, target = Path(directory) / "input", Path(directory) / "output"
            self.store.download_file(uri, source)
            batches = mini_batches(
                read_records(source, self.split_type),
                strategy=self.strategy,
                max_payload_bytes=self.max_payload_bytes,
                transform_record=self._sent,
            )
            with (
                target.open("wb") as output,
                ThreadPoolExecutor(max_workers=self.concurrency) as pool,
            ):
                # At most `concurrency` requests in flight; answers written in input order.
                pending: deque[tuple[MiniBatch, Future[bytes]]] = deque()
                try:
                    for batch in batches:
                        pending.append((batch, pool.submit(self._invoke, container, batch)))
                        if len(pending) >= self.concurrency:
                            self._write(output, *pending.popleft(), uri, summary)
                    while pending:
                        self._write(output, *pending.popleft(), uri, summary)
                except (TransformJobError, FilterError, UnicodeDecodeError) as error:
                    for _, future in pending:
                        future.cancel()
                    raise TransformJobError(f"{uri}: {error}") from None
            self.store.upload_file(target, output_uri)
        logger.info("Transform: %s -> %s", uri, self.store.location(output_uri))
        return output_uri

    def _invoke(self, container: ServingContainer, batch: MiniBatch) -> bytes:
        headers = {}
        if self.content_type:
            headers["Content-Type"] = self.content_type
        if self.accept:
            headers["Accept"] = self.accept
        attempt = 0
        while True:
            try:
                status, answer = container.request(
                    "POST", "/invocations", batch.body, headers, self.timeout
                )
            except (OSError, http.client.HTTPException) as error:
                status, answer = 0, str(error).encode()
            if 200 <= status < 300:
                return answer
            if (status == 0 or status >= 500) and attempt < self.retries:
                attempt += 1
                continue
            said = answer[:_ANSWER_EXCERPT].decode("utf-8", errors="replace")
            raise TransformJobError(
                f"{batch.where()}: the model answered {status or 'no connection'} ({said.strip()})"
            )

    def _write(
        self,
        output: Any,
        batch: MiniBatch,
        answer: Future[bytes],
        uri: str,
        summary: TransformSummary,
    ) -> None:
        body = answer.result()
        summary.requests += 1
        summary.records += len(batch.lines)
        if not self.join and self.output_filter in (None, "", "$"):
            output.write(body)
            if self.assemble_line and not body.endswith(b"\n"):
                output.write(b"\n")
            return
        answers = [line.removesuffix(b"\r") for line in body.split(b"\n")]
        if answers and answers[-1] == b"":
            answers.pop()
        if len(answers) != len(batch.lines):
            raise TransformJobError(
                f"{batch.where()}: the model answered {len(answers)} records for "
                f"{len(batch.lines)}; joining the input needs one per record"
            )
        for original, record in zip(batch.originals, answers, strict=True):
            value = self.output_format.parse(record)
            if self.join:
                value = join_record(
                    self.input_format.parse(original), value, as_json=self.input_format.json
                )
            output.write(self.output_format.dump(apply_filter(self.output_filter, value)))
            if self.assemble_line:
                output.write(b"\n")
