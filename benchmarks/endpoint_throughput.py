"""Serving benchmark: throughput and latency of the local endpoint under load.

Prints figures and a table of issue 13's targets (PASS / MISS); asserts nothing. What it does:

1. builds ``model.tar.gz`` from the trained model in ``data/06_models`` (``make run`` makes it),
   extracts it and starts ``python -m predictive_maintenance.serving.cli serve --model-dir ...``
   in a subprocess on a free port (the endpoint as ``kedro endpoint serve`` runs it);
2. measures single-row and 100-row requests at concurrency 1, 16 and 64, each for ``--duration``
   seconds after a short warm-up, with ``wrk`` when it is on PATH (``--latency``, a Lua script
   that POSTs the body, ``--wrk-threads`` threads; ``--load-generator python`` forces the
   fallback): otherwise with a load generator in a separate process (stdlib threads, one
   keep-alive ``http.client`` connection each, ``--max-requests`` per scenario);
3. prints requests/s, p50, p99, max and errors (socket errors and non-2xx answers) per scenario,
   and the in-process limits: the rate of ``predict_fn`` on one row, and of the whole handler chain
   (``input_fn`` -> ``predict_fn`` -> ``output_fn``) on one row;
4. checks issue 13's targets for the endpoint: single-row requests at concurrency 16 at least
   10x MLflow's throughput (with ``--mlflow``) and p99 at most 10 ms; at concurrency 1, p50 at
   most 1 ms; no errors in any scenario. (``benchmarks/api_overhead.py`` checks the API's.)

With ``--mlflow [VENV]`` (``make benchmark-endpoint``) the same run also serves the same model with
MLflow 3's ``mlflow models serve`` and compares the two. MLflow lives in its own environment
(default ``.venv-mlflow``, from ``benchmarks/mlflow/requirements.txt``), never in the product's
``uv.lock`` or ``.venv``: ``benchmarks/mlflow/serve_mlflow.py`` (run by that environment's Python)
saves a pyfunc whose artifact is the very model directory the endpoint serves and whose code is the
project's package (``code_paths``), so both servers run ``model_fn`` and ``predict_fn`` (hence
``build_features``); it also measures the pyfunc's in-process predict rate. Then
``VENV/bin/mlflow models serve -m PYFUNC --env-manager local -h 127.0.0.1`` starts (one worker,
MLflow's default; ``--mlflow-workers``), both servers must give the same scores for the same 100
rows, and the scenarios run interleaved (each scenario on the endpoint, then on MLflow, so that
background load hits both alike).

With ``--data-capture on`` the endpoint runs with data capture on (``--data-capture
--capture-dir`` in a scratch directory, ``--capture-sampling``, default 100 %); with
``--data-capture both`` (``make benchmark-capture``) a second endpoint with capture on
(``endpoint+capture``) is measured interleaved with the one without, the capture overhead printed
per scenario (req/s and p50/p99 on vs off) with the capture counters (``GET /capture-stats``:
records captured, written, dropped, write errors) and the bytes written.

Other servers can be measured in the same run with ``--target NAME=URL[,format=F][,path=P]``
(format ``csv``, ``json`` or ``mlflow``: ``{"dataframe_split": {"columns": [readings...],
"data": [...]}}``).

Run: ``.venv/bin/python benchmarks/endpoint_throughput.py [--mlflow] [--duration 5] [--json PATH]``
(wrk takes whole seconds: ``--duration`` is rounded, at least 1).
Everything listens on 127.0.0.1 only; every server started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_ROOT / "data" / "06_models"
REPORTS_DIR = PROJECT_ROOT / "data" / "08_reporting"
MLFLOW_VENV = PROJECT_ROOT / ".venv-mlflow"
MLFLOW_SCRIPT = PROJECT_ROOT / "benchmarks" / "mlflow" / "serve_mlflow.py"
#: Issue 13's targets for the endpoint, single-row requests: throughput at concurrency 16 at least
#: this many times MLflow's, p99 at concurrency 16 and p50 at concurrency 1 at most these (ms).
TARGET_MLFLOW_RATIO = 10.0
TARGET_P99_MS_AT_16 = 10.0
TARGET_P50_MS_AT_1 = 1.0
#: ``wrk`` if it is on PATH: the load generator by default.
WRK = shutil.which("wrk")
READINGS = PROJECT_ROOT / "data" / "02_intermediate" / "readings.parquet"

#: A real row of the data set, and 100 distinct rows for the batch requests (filled in main).
SINGLE_ROW = ["L", 298.4, 308.2, 1582.0, 70.7, 216.0]
FORMATS = ("csv", "json", "mlflow")


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    path: str = "/invocations"
    format: str = "csv"


@dataclass
class Result:
    target: str
    rows: int
    concurrency: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    first_error: str | None
    generator: str = "python"
    #: CPU time (user + system) the server process spent per answered request in the measured
    #: run (wrk only, servers started here only): insensitive to other load on the machine.
    server_cpu_us_per_request: float | None = None


def _body(rows: list[list[Any]], body_format: str) -> tuple[bytes, str]:
    from predictive_maintenance.schema import READING_COLUMNS  # noqa: PLC0415

    if body_format == "csv":
        text = "\n".join(",".join(str(value) for value in row) for row in rows)
        return text.encode(), "text/csv"
    if body_format == "json":
        instances = [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows]
        return json.dumps({"instances": instances}).encode(), "application/json"
    payload = {"dataframe_split": {"columns": list(READING_COLUMNS), "data": rows}}
    return json.dumps(payload).encode(), "application/json"


def _worker(
    *,
    connection: http.client.HTTPConnection,
    path: str,
    body: bytes,
    content_type: str,
    phases: list[tuple[float, float, bool]],
    budget: list[int],
    budget_lock: threading.Lock,
    latencies: list[float],
    errors: list[str],
    start: threading.Barrier,
) -> None:
    headers = {"Content-Type": content_type}
    clock = time.perf_counter
    start.wait()
    for starts_at, stops_at, measured in phases:
        while clock() < starts_at:
            time.sleep(0.001)
        while clock() < stops_at:
            if measured:
                with budget_lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
            started = clock()
            try:
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as error:
                if measured:
                    errors.append(f"{type(error).__name__}: {error}")
                connection.close()  # http.client reconnects on the next request
                continue
            if not measured:
                continue
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {payload[:200]!r}")
                continue
            latencies.append(clock() - started)


def _load_process(arguments: dict[str, Any], results: Any) -> None:
    """The load generator, in its own process so that it never shares the server's GIL.

    Each thread opens its keep-alive connection first; then all warm up together (not counted)
    and run the measured phase until its end or until the request budget is spent.
    """
    sys.setswitchinterval(0.0005)  # hand the GIL over quickly between the client threads
    target = urlsplit(arguments["url"])
    concurrency = arguments["concurrency"]
    connections = []
    for _ in range(concurrency):
        connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=30)
        connection.connect()
        connections.append(connection)
    latencies: list[float] = []
    errors: list[str] = []
    budget, lock = [arguments["max_requests"]], threading.Lock()
    start = threading.Barrier(concurrency + 1)
    now = time.perf_counter() + 0.05
    measured_from = now + arguments["warm_up"]
    measured_to = measured_from + arguments["duration"]
    phases = [(now, measured_from, False), (measured_from, measured_to, True)]
    shared = {
        "path": arguments["path"],
        "body": arguments["body"],
        "content_type": arguments["content_type"],
        "phases": phases,
        "budget": budget,
        "budget_lock": lock,
        "latencies": latencies,
        "errors": errors,
        "start": start,
    }
    threads = [
        threading.Thread(target=_worker, kwargs={"connection": connection, **shared})
        for connection in connections
    ]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join()
    seconds = min(time.perf_counter(), measured_to) - measured_from
    for connection in connections:
        connection.close()
    results.put((latencies, errors[:1], len(errors), seconds))


def run_scenario(
    target: Target,
    rows: list[list[Any]],
    concurrency: int,
    duration: float,
    max_requests: int,
    *,
    generator: str = "python",
    wrk_threads: int = 1,
    server_pid: int | None = None,
) -> Result:
    """One scenario: ``concurrency`` keep-alive connections POSTing ``rows`` for ``duration``
    seconds after a warm-up, with ``wrk`` (``generator="wrk"``) or the Python load generator.
    With wrk and ``server_pid``, the server's CPU time per request is measured too."""
    body, content_type = _body(rows, target.format)
    if generator == "wrk":
        return _run_wrk(
            target,
            (body, content_type),
            rows=len(rows),
            concurrency=concurrency,
            duration=duration,
            threads=wrk_threads,
            server_pid=server_pid,
        )
    arguments = {
        "url": target.url,
        "path": target.path,
        "body": body,
        "content_type": content_type,
        "concurrency": concurrency,
        "duration": duration,
        "max_requests": max_requests,
        "warm_up": min(1.0, duration / 5),
    }
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_load_process, args=(arguments, results))
    process.start()
    latencies, first_errors, error_count, seconds = results.get(timeout=duration + 120)
    process.join()
    latencies.sort()

    def percentile(fraction: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1e3, 3)

    return Result(
        target=target.name,
        rows=len(rows),
        concurrency=concurrency,
        requests=len(latencies),
        errors=error_count,
        seconds=round(seconds, 3),
        requests_per_second=round(len(latencies) / seconds, 1),
        p50_ms=percentile(0.50),
        p99_ms=percentile(0.99),
        max_ms=round(latencies[-1] * 1e3, 3) if latencies else None,
        first_error=first_errors[0] if first_errors else None,
    )


# ---- wrk ---------------------------------------------------------------------------------------
#: The Lua script wrk runs: POST the body read from a file, with its content type.
_WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = {content_type}
local file = assert(io.open({body_file}, "rb"))
wrk.body = file:read("*a")
file:close()
"""
_WRK_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_ms(text: str) -> float:
    """A wrk duration (``812.00us``, ``1.20ms``, ``2.01s``, ``1.00m``) in milliseconds."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match[1]) * _WRK_TIME_UNITS[match[2]]


def parse_wrk(output: str) -> dict[str, Any]:
    """The figures of ``wrk --latency`` output: requests, seconds, req/s, p50/p99/max (ms),
    socket errors by kind, non-2xx answers."""
    figures: dict[str, Any] = {"socket_errors": {}, "non_2xx": 0}
    if match := re.search(r"^\s*(\d+) requests in ([\d.]+\w+),", output, re.MULTILINE):
        figures["requests"] = int(match[1])
        figures["seconds"] = _wrk_ms(match[2]) / 1e3
    if match := re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE):
        figures["requests_per_second"] = float(match[1])
    if match := re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", output, re.MULTILINE):
        figures["max_ms"] = _wrk_ms(match[3])
    for percent in ("50", "99"):
        if match := re.search(rf"^\s*{percent}%\s+(\S+)", output, re.MULTILINE):
            figures[f"p{percent}_ms"] = _wrk_ms(match[1])
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        kinds = ("connect", "read", "write", "timeout")
        figures["socket_errors"] = {
            kind: int(count)
            for kind, count in zip(kinds, match.groups(), strict=True)
            if int(count)
        }
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        figures["non_2xx"] = int(match[1])
    if "requests" not in figures or "p99_ms" not in figures:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    return figures


def _wrk(url: str, script: Path, concurrency: int, seconds: int, threads: int) -> str:
    command = [
        WRK or "wrk",
        f"-t{max(1, min(threads, concurrency))}",
        f"-c{concurrency}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    if completed.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr or completed.stdout}")
    return completed.stdout


def _run_wrk(
    target: Target,
    payload: tuple[bytes, str],
    *,
    rows: int,
    concurrency: int,
    duration: float,
    threads: int,
    server_pid: int | None = None,
) -> Result:
    """The scenario with wrk: a warm-up run (not counted), then the measured run."""
    body, content_type = payload
    with tempfile.TemporaryDirectory(prefix="wrk-") as scratch_name:
        scratch = Path(scratch_name)
        body_file, script = scratch / "body", scratch / "post.lua"
        body_file.write_bytes(body)
        script.write_text(
            _WRK_SCRIPT.format(
                content_type=json.dumps(content_type), body_file=json.dumps(str(body_file))
            )
        )
        url = f"{target.url}{target.path}"
        _wrk(url, script, concurrency, 1, threads)  # warm-up
        cpu_before = process_cpu_seconds(server_pid)
        figures = parse_wrk(_wrk(url, script, concurrency, max(1, round(duration)), threads))
        cpu_after = process_cpu_seconds(server_pid)
    errors = sum(figures["socket_errors"].values()) + figures["non_2xx"]
    described = [f"{kind} {count}" for kind, count in figures["socket_errors"].items()]
    if figures["non_2xx"]:
        described.append(f"non-2xx {figures['non_2xx']}")
    answered = figures["requests"] - figures["non_2xx"]
    cpu = (
        round((cpu_after - cpu_before) * 1e6 / answered, 1)
        if cpu_before is not None and cpu_after is not None and answered
        else None
    )
    return Result(
        target=target.name,
        rows=rows,
        concurrency=concurrency,
        requests=answered,
        errors=errors,
        seconds=round(figures["seconds"], 3),
        requests_per_second=round(answered / figures["seconds"], 1),
        p50_ms=round(figures["p50_ms"], 3),
        p99_ms=round(figures["p99_ms"], 3),
        max_ms=round(figures["max_ms"], 3) if "max_ms" in figures else None,
        first_error="wrk: " + ", ".join(described) if described else None,
        generator="wrk",
        server_cpu_us_per_request=cpu,
    )


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds process ``pid`` used so far (Linux /proc), or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # utime and stime are the 14th and 15th fields of the whole line: 12th and 13th after ")".
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def add_generator_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="wrk (if on PATH: auto) or the Python load generator",
    )
    parser.add_argument(
        "--wrk-threads", type=int, default=1, help="wrk threads (at most the concurrency)"
    )


def load_generator(choice: str) -> str:
    """``wrk`` or ``python`` for ``--load-generator`` ``auto`` (wrk if on PATH), ``wrk`` or
    ``python``."""
    if choice == "auto":
        return "wrk" if WRK else "python"
    if choice == "wrk" and not WRK:
        raise SystemExit("--load-generator wrk: wrk is not on PATH (apt-get install wrk)")
    return choice


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server subprocess in its own session (so that its children stop with it), logging to a
    file (a pipe nobody reads would block it once full)."""

    def __init__(
        self, name: str, command: list[str], *, env: dict[str, str], cwd: Path, log: Path
    ) -> None:
        self.name, self.log = name, log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log_tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace") if self.log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until_ready(self, url: str, timeout: float, path: str = "/ping") -> None:
        """Polls ``GET path`` until it answers 200, for at most ``timeout`` seconds."""
        target = urlsplit(url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=1)
            try:
                connection.request("GET", path)
                if connection.getresponse().status == 200:
                    return
            except (OSError, http.client.HTTPException):
                pass
            finally:
                connection.close()
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} at {url} did not answer {path} within {timeout} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM to the server's process group, SIGKILL if it is still there after 30 s."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        # The group may outlive its leader (uvicorn under `mlflow models serve`): give it 10 s.
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                os.killpg(self.process.pid, 0)
                time.sleep(0.1)
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def model_archive_inputs() -> tuple[bytes, dict[str, Any], dict[str, bytes]]:
    """The last ``kedro run``'s model, spec and extra files (the failure-mode model and the
    model card), as ``evaluate.package_model`` archives them."""
    from predictive_maintenance.model_card import card_bytes  # noqa: PLC0415
    from predictive_maintenance.serving.contract import (  # noqa: PLC0415
        FAILURE_MODE_MODEL_FILE,
        MODEL_CARD_FILE,
    )

    paths = {
        "model": MODELS_DIR / "model.ubj",
        "spec": MODELS_DIR / "model_spec.json",
        "modes": MODELS_DIR / "failure_mode_model.ubj",
        "card": REPORTS_DIR / "model_card.json",
    }
    missing = [str(path) for path in paths.values() if not path.is_file()]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: run `make run` first")
    extras = {
        FAILURE_MODE_MODEL_FILE: paths["modes"].read_bytes(),
        MODEL_CARD_FILE: card_bytes(json.loads(paths["card"].read_text())),
    }
    return paths["model"].read_bytes(), json.loads(paths["spec"].read_text()), extras


def prepare_model_dir(destination: Path) -> Path:
    """Builds the model archive from the last run's outputs and extracts it, as SageMaker would."""
    from predictive_maintenance.serving.package import (  # noqa: PLC0415
        build_model_archive,
        extract_model_archive,
    )

    return extract_model_archive(build_model_archive(*model_archive_inputs()), destination)


def in_process_rates(model_dir: Path, seconds: float = 2.0) -> dict[str, float]:
    """Single-row calls per second of predict_fn, and of input_fn + predict_fn + output_fn."""
    from predictive_maintenance.serving.inference import (  # noqa: PLC0415
        input_fn,
        model_fn,
        output_fn,
        predict_fn,
    )

    model = model_fn(model_dir)
    body, _ = _body([SINGLE_ROW], "csv")
    data = input_fn(body, "text/csv")

    def rate(call: Any) -> float:
        call()
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for _ in range(50):
                call()
            count += 50
        return round(count / elapsed, 1)

    return {
        "predict_fn_per_second": rate(lambda: predict_fn(data, model)),
        "handler_chain_per_second": rate(
            lambda: output_fn(predict_fn(input_fn(body, "text/csv"), model), "text/csv")
        ),
    }


def prepare_mlflow(venv: Path, model_dir: Path, destination: Path) -> dict[str, Any]:
    """Saves the MLflow pyfunc of ``model_dir`` with ``venv``'s MLflow; returns its facts.

    Facts: ``mlflow_version``, ``pyfunc_predict_per_second`` (one row, in-process) and ``model``
    (the pyfunc's directory).
    """
    python = venv / "bin" / "python"
    if not (venv / "bin" / "mlflow").is_file():
        raise SystemExit(
            f"{venv}/bin/mlflow is missing: `make benchmark-endpoint` sets up {venv.name} from "
            "benchmarks/mlflow/requirements.txt"
        )
    environment = _mlflow_environment(venv)
    for command in (
        ["build", "--model-dir", str(model_dir), "--output", str(destination)],
        ["rate", "--model", str(destination)],
    ):
        completed = subprocess.run(
            [str(python), str(MLFLOW_SCRIPT), *command],
            env=environment,
            cwd=destination.parent,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if completed.returncode != 0:
            raise SystemExit(
                f"{MLFLOW_SCRIPT.name} {command[0]} failed:\n{completed.stderr[-3000:]}"
            )
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    return {**facts, "model": str(destination)}


def _mlflow_environment(venv: Path) -> dict[str, str]:
    """The environment of the MLflow processes: ``venv`` first on PATH (``mlflow models serve``
    starts ``uvicorn`` from PATH), no PYTHONPATH (the pyfunc brings the project's code itself)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}
    }
    environment.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        VIRTUAL_ENV=str(venv),
        OMP_WAIT_POLICY="PASSIVE",
        KEDRO_DISABLE_TELEMETRY="true",
    )
    return environment


def _parse_target(text: str) -> Target:
    name, _, rest = text.partition("=")
    url, *options = rest.split(",")
    settings = dict(option.split("=", 1) for option in options)
    target = Target(name=name, url=url.rstrip("/"), **settings)
    if not name or not url.startswith("http://") or target.format not in FORMATS:
        raise argparse.ArgumentTypeError(
            f"--target NAME=http://HOST:PORT[,format={'|'.join(FORMATS)}][,path=/invocations]"
        )
    return target


def _print_table(results: list[Result]) -> None:
    header = ("target", "rows", "conc", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors")
    print("  ".join(f"{column:>10}" for column in header))
    for result in results:
        values = (
            result.target,
            result.rows,
            result.concurrency,
            result.requests,
            result.requests_per_second,
            result.p50_ms,
            result.p99_ms,
            result.max_ms,
            result.errors,
        )
        print("  ".join(f"{value!s:>10}" for value in values))
        if result.first_error:
            print(f"{'':>10}  first error: {result.first_error}")


def in_process_scores(model_dir: Path, rows: list[list[Any]]) -> list[float]:
    """The scores ``predict_fn`` gives ``rows`` in this process: what every server must answer."""
    from predictive_maintenance.serving.inference import (  # noqa: PLC0415
        input_fn,
        model_fn,
        predict_fn,
    )

    body, content_type = _body(rows, "csv")
    return [float(score) for score in predict_fn(input_fn(body, content_type), model_fn(model_dir))]


def _scores(payload: bytes, body_format: str) -> list[float]:
    if body_format == "csv":
        return [float(line) for line in payload.decode().split()]
    predictions = json.loads(payload)["predictions"]
    if body_format == "json":
        return [float(prediction["score"]) for prediction in predictions]
    return [float(prediction) for prediction in predictions]


def check_same_answers(targets: list[Target], rows: list[list[Any]], expected: list[float]) -> None:
    """Every target must score ``rows`` exactly as ``predict_fn`` does here (as float32)."""
    import numpy as np  # noqa: PLC0415

    wanted = np.asarray(expected, dtype=np.float32)
    for target in targets:
        body, content_type = _body(rows, target.format)
        address = urlsplit(target.url)
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
        try:
            connection.request(
                "POST", target.path, body=body, headers={"Content-Type": content_type}
            )
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise SystemExit(f"{target.name} answered HTTP {response.status}: {payload[:300]!r}")
        got = np.asarray(_scores(payload, target.format), dtype=np.float32)
        if got.shape != wanted.shape or not np.array_equal(got, wanted):
            raise SystemExit(
                f"{target.name} scores {len(rows)} rows differently from predict_fn in process: "
                f"{got[:5].tolist()} ... vs {wanted[:5].tolist()} ...; not the same model or code"
            )
    names = ", ".join(target.name for target in targets)
    print(f"same scores for the same {len(rows)} rows from: {names}", flush=True)


def compare(results: list[Result], baseline: str) -> list[dict[str, Any]]:
    """The endpoint against ``baseline`` per scenario: throughput and p99, as ratios."""
    by_key = {(result.target, result.rows, result.concurrency): result for result in results}
    rows = []
    for result in results:
        other = by_key.get((baseline, result.rows, result.concurrency))
        if result.target != "endpoint" or other is None:
            continue
        throughput = (
            result.requests_per_second / other.requests_per_second
            if other.requests_per_second
            else None
        )
        p99 = result.p99_ms / other.p99_ms if result.p99_ms and other.p99_ms else None
        rows.append(
            {
                "baseline": baseline,
                "rows": result.rows,
                "concurrency": result.concurrency,
                "endpoint_rps": result.requests_per_second,
                "baseline_rps": other.requests_per_second,
                "throughput_ratio": None if throughput is None else round(throughput, 2),
                "endpoint_p99_ms": result.p99_ms,
                "baseline_p99_ms": other.p99_ms,
                "p99_ratio": None if p99 is None else round(p99, 3),
                "endpoint_errors": result.errors,
                "baseline_errors": other.errors,
            }
        )
    return rows


CAPTURE_TARGET = "endpoint+capture"


def _medians(results: list[Result], target: str, rows: int, concurrency: int) -> dict[str, Any]:
    import statistics  # noqa: PLC0415

    runs = [
        result
        for result in results
        if (result.target, result.rows, result.concurrency) == (target, rows, concurrency)
    ]

    def median(name: str) -> float | None:
        values = [getattr(run, name) for run in runs if getattr(run, name) is not None]
        return round(statistics.median(values), 3) if values else None

    return {
        "runs": len(runs),
        "rps": median("requests_per_second"),
        "p50_ms": median("p50_ms"),
        "p99_ms": median("p99_ms"),
        "cpu_us": median("server_cpu_us_per_request"),
        "errors": sum(run.errors for run in runs),
    }


def capture_overhead(results: list[Result]) -> list[dict[str, Any]]:
    """Per scenario: the endpoint with capture on against the same endpoint with it off, the
    medians of the repeated runs (``--repeat``)."""
    scenarios = dict.fromkeys(
        (result.rows, result.concurrency) for result in results if result.target == CAPTURE_TARGET
    )
    rows = []
    for rows_per_request, concurrency in scenarios:
        off = _medians(results, "endpoint", rows_per_request, concurrency)
        on = _medians(results, CAPTURE_TARGET, rows_per_request, concurrency)
        if not off["runs"]:
            continue
        rows.append(
            {
                "rows": rows_per_request,
                "concurrency": concurrency,
                "runs": f"{off['runs']}/{on['runs']}",
                "off_rps": off["rps"],
                "on_rps": on["rps"],
                "rps_change_percent": round(100 * (on["rps"] / off["rps"] - 1), 1)
                if off["rps"] and on["rps"]
                else None,
                "off_p50_ms": off["p50_ms"],
                "on_p50_ms": on["p50_ms"],
                "off_p99_ms": off["p99_ms"],
                "on_p99_ms": on["p99_ms"],
                "off_cpu_us": off["cpu_us"],
                "on_cpu_us": on["cpu_us"],
                "errors": f"{off['errors']}/{on['errors']}",
            }
        )
    return rows


def _print_capture_overhead(rows: list[dict[str, Any]], stats: dict[str, Any] | None) -> None:
    if not rows:
        return
    print(
        "\ndata capture: endpoint with capture on vs off (same model, interleaved scenarios; "
        "medians of the runs)"
    )
    header = ("rows", "conc", "runs", "off req/s", "on req/s", "change", "off p50", "on p50")
    header = (*header, "off p99", "on p99", "off cpu/req", "on cpu/req", "errors")
    print("  ".join(f"{column:>11}" for column in header))
    for row in rows:
        change = row["rps_change_percent"]
        values = (
            row["rows"],
            row["concurrency"],
            row["runs"],
            row["off_rps"],
            row["on_rps"],
            "-" if change is None else f"{change:+.1f}%",
            row["off_p50_ms"],
            row["on_p50_ms"],
            row["off_p99_ms"],
            row["on_p99_ms"],
            "-" if row["off_cpu_us"] is None else f"{row['off_cpu_us']:g} us",
            "-" if row["on_cpu_us"] is None else f"{row['on_cpu_us']:g} us",
            row["errors"],
        )
        print("  ".join(f"{value!s:>11}" for value in values))
    if stats is not None:
        print(
            f"capture counters: {stats.get('requests')} answered, {stats.get('captured')} "
            f"captured, {stats.get('written')} written ({stats.get('bytes_written', 0):,} bytes, "
            f"{stats.get('files_created')} file(s)), {stats.get('dropped_queue_full')} dropped "
            f"(queue full), write errors {stats.get('write_errors')}"
        )


def capture_costs(directory: Path, records: int = 50_000) -> dict[str, float]:
    """Capture's own cost in this process, for single-row CSV requests: the request side
    (``DataCapture.capture``, on the event loop), and all of capture's CPU (request side plus
    the writer thread encoding and writing) per request. Steadier than end-to-end figures on a
    shared machine."""
    from predictive_maintenance.serving.capture import CaptureConfig, DataCapture  # noqa: PLC0415

    body = ",".join(str(value) for value in SINGLE_ROW).encode()
    capture = DataCapture(
        CaptureConfig(enabled=True, directory=directory, queue_records=records),
        endpoint_name="benchmark",
    )
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(records):
        capture.capture(None, body, "text/csv", b"0.012345678\n", "text/csv")
    request_side = time.perf_counter() - wall
    capture.close()
    total_cpu = time.process_time() - cpu
    if capture.stats()["written"] != records:
        raise SystemExit(f"capture cost run: {capture.stats()}")
    return {
        "request_side_us": round(request_side / records * 1e6, 2),
        "total_cpu_us": round(total_cpu / records * 1e6, 2),
    }


def capture_stats(url: str) -> dict[str, Any] | None:
    """``GET /capture-stats`` of the endpoint at ``url`` (None if it does not answer)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    try:
        connection.request("GET", "/capture-stats")
        response = connection.getresponse()
        payload = response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()
    return json.loads(payload) if response.status == 200 else None


def _print_comparison(comparison: list[dict[str, Any]]) -> None:
    if not comparison:
        return
    baseline = comparison[0]["baseline"]
    print(f"\nendpoint vs {baseline} (req/s x: ours / theirs; p99 ratio: ours / theirs)")
    header = (
        "rows",
        "conc",
        "ours req/s",
        f"{baseline[:6]} req/s",
        "req/s x",
        "ours p99",
        f"{baseline[:6]} p99",
        "p99 ratio",
        "errors",
    )
    print("  ".join(f"{column:>12}" for column in header))
    for row in comparison:
        values = (
            row["rows"],
            row["concurrency"],
            row["endpoint_rps"],
            row["baseline_rps"],
            "-" if row["throughput_ratio"] is None else f"{row['throughput_ratio']:.2f}x",
            row["endpoint_p99_ms"],
            row["baseline_p99_ms"],
            "-" if row["p99_ratio"] is None else f"{row['p99_ratio']:.3f}",
            f"{row['endpoint_errors']}/{row['baseline_errors']}",
        )
        print("  ".join(f"{value!s:>12}" for value in values))


# ---- issue 13's targets ------------------------------------------------------------------------
def verdict(
    name: str, measured: float | None, limit: float, unit: str, *, at_least: bool = False
) -> dict[str, Any]:
    """One target: ``measured`` against ``limit`` (at most, or ``at_least``); ``n/a`` when the
    run did not measure it."""
    if measured is None:
        outcome = "n/a"
    else:
        outcome = "PASS" if (measured >= limit if at_least else measured <= limit) else "MISS"
    return {
        "target": name,
        "wanted": f"{'>=' if at_least else '<='} {limit:g}{unit}" if limit else "none",
        "measured": None if measured is None else round(measured, 3),
        "unit": unit,
        "verdict": outcome,
    }


def endpoint_targets(results: list[Result], baseline: str | None) -> list[dict[str, Any]]:
    """Issue 13's endpoint targets, from this run's results (single-row requests)."""
    by_key = {(result.target, result.rows, result.concurrency): result for result in results}
    at_16, at_1 = by_key.get(("endpoint", 1, 16)), by_key.get(("endpoint", 1, 1))
    other = by_key.get((baseline, 1, 16)) if baseline else None
    ratio = (
        at_16.requests_per_second / other.requests_per_second
        if at_16 and other and other.requests_per_second
        else None
    )
    endpoint_results = [result for result in results if result.target == "endpoint"]
    return [
        verdict(
            f"endpoint 1 row, conc 16: req/s vs {baseline or 'MLflow (run with --mlflow)'}",
            ratio,
            TARGET_MLFLOW_RATIO,
            "x",
            at_least=True,
        ),
        verdict("endpoint 1 row, conc 16: p99", at_16 and at_16.p99_ms, TARGET_P99_MS_AT_16, " ms"),
        verdict("endpoint 1 row, conc 1: p50", at_1 and at_1.p50_ms, TARGET_P50_MS_AT_1, " ms"),
        verdict(
            "endpoint: errors, all scenarios",
            sum(result.errors for result in endpoint_results) if endpoint_results else None,
            0,
            "",
        ),
    ]


def print_targets(targets: list[dict[str, Any]], title: str = "issue 13's targets") -> None:
    print(f"\n{title}")
    width = max(len(target["target"]) for target in targets)
    print(f"{'target':<{width}}  {'wanted':>10}  {'measured':>10}  verdict")
    for target in targets:
        measured = "-" if target["measured"] is None else f"{target['measured']:g}"
        print(
            f"{target['target']:<{width}}  {target['wanted']:>10}  "
            f"{measured + target['unit'] if target['measured'] is not None else measured:>10}  "
            f"{target['verdict']}"
        )
    passed = sum(target["verdict"] == "PASS" for target in targets)
    print(f"{passed} of {len(targets)} targets PASS")


def _generator_text(generator: str, args: argparse.Namespace) -> str:
    if generator == "wrk":
        return f"wrk --latency ({args.wrk_threads} thread(s))"
    return "Python threads in a separate process"


def _duration_text(generator: str, duration: float) -> str:
    """The measured time per scenario (wrk takes whole seconds)."""
    seconds = max(1, round(duration)) if generator == "wrk" else duration
    return f"{seconds:g} s"


def main() -> None:  # noqa: PLR0912, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="cap per scenario (Python load generator only)",
    )
    add_generator_arguments(parser)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument(
        "--format", choices=("csv", "json"), default="csv", help="payload for this endpoint"
    )
    parser.add_argument(
        "--mlflow",
        type=Path,
        nargs="?",
        const=MLFLOW_VENV,
        metavar="VENV",
        help=f"also serve the model with `mlflow models serve` from VENV (default {MLFLOW_VENV})",
    )
    parser.add_argument(
        "--mlflow-workers", type=int, default=1, help="uvicorn workers of MLflow (its default: 1)"
    )
    parser.add_argument(
        "--target",
        type=_parse_target,
        action="append",
        default=[],
        help="another server to measure in the same run: NAME=URL[,format=F][,path=P]",
    )
    parser.add_argument("--no-endpoint", action="store_true", help="measure only other servers")
    parser.add_argument(
        "--data-capture",
        choices=("off", "on", "both"),
        default="off",
        help="the endpoint's data capture; both: also an endpoint with capture on, compared",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each scenario this many times on each target, interleaved (the capture "
        "comparison takes the medians: robust to load from other processes)",
    )
    parser.add_argument(
        "--capture-sampling",
        type=int,
        default=100,
        metavar="PERCENT",
        help="sampling percentage of the endpoint with capture on (default 100)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    generator = load_generator(args.load_generator)

    import pandas as pd  # noqa: PLC0415

    readings = pd.read_parquet(READINGS) if READINGS.is_file() else None
    batch = (
        readings[["type", *readings.columns[3:8]]].head(100).values.tolist()
        if readings is not None
        else [SINGLE_ROW] * 100
    )
    row_sets = {1: [SINGLE_ROW], 100: batch}

    environment = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "OMP_WAIT_POLICY": "PASSIVE"}
    results: list[Result] = []
    mlflow_facts: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="endpoint-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir = prepare_model_dir(scratch / "model")
        limits = in_process_rates(model_dir)
        costs = capture_costs(scratch / "capture-cost") if args.data_capture != "off" else None
        expected = in_process_scores(model_dir, batch)
        if args.mlflow is not None:
            venv = Path(os.path.abspath(args.mlflow))  # not resolved: venv/bin/python is a link
            print(f"building the MLflow pyfunc with {venv} ...", flush=True)
            mlflow_facts = prepare_mlflow(venv, model_dir, scratch / "mlflow-pyfunc")
        servers: list[tuple[Server, str]] = []
        targets: list[Target] = []
        counters: dict[str, Any] | None = None
        try:
            endpoints: list[tuple[str, bool]] = []
            if not args.no_endpoint:
                endpoints.append(("endpoint", args.data_capture == "on"))
                if args.data_capture == "both":
                    endpoints.append((CAPTURE_TARGET, True))
            for name, capture in endpoints:
                port = _free_port()
                command = [
                    sys.executable,
                    "-m",
                    "predictive_maintenance.serving.cli",
                    "serve",
                    "--model-dir",
                    str(model_dir),
                    "--port",
                    str(port),
                ]
                if capture:
                    command += [
                        "--endpoint-name",
                        "benchmark",
                        "--data-capture",
                        "--capture-sampling",
                        str(args.capture_sampling),
                        "--capture-dir",
                        str(scratch / f"capture-{port}"),
                    ]
                url = f"http://127.0.0.1:{port}"
                log = scratch / f"{name}.log"
                server = Server(name, command, env=environment, cwd=PROJECT_ROOT, log=log)
                servers.append((server, url))
                targets.append(Target(name=name, url=url, format=args.format))
            if mlflow_facts is not None:
                port = _free_port()
                command = [
                    str(venv / "bin" / "mlflow"),
                    "models",
                    "serve",
                    "-m",
                    mlflow_facts["model"],
                    "--env-manager",
                    "local",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-w",
                    str(args.mlflow_workers),
                ]
                url = f"http://127.0.0.1:{port}"
                server = Server(
                    "mlflow models serve",
                    command,
                    env=_mlflow_environment(venv),
                    cwd=scratch,
                    log=scratch / "mlflow.log",
                )
                servers.append((server, url))
                targets.append(Target(name="mlflow", url=url, format="mlflow"))
            targets.extend(args.target)
            pids = {server.name: server.process.pid for server, _ in servers}
            for server, url in servers:
                server.wait_until_ready(url, timeout=120)
            check_same_answers(targets, batch, expected)
            # Interleaved: each scenario runs on every target before the next scenario starts.
            for rows in args.rows:
                for concurrency in args.concurrency:
                    # ABBA order across repeats: neither target always runs right after the
                    # other.
                    rounds = [targets if i % 2 == 0 else targets[::-1] for i in range(args.repeat)]
                    for target in [target for order in rounds for target in order]:
                        result = run_scenario(
                            target,
                            row_sets.get(rows, [SINGLE_ROW] * rows),
                            concurrency,
                            args.duration,
                            args.max_requests,
                            generator=generator,
                            wrk_threads=args.wrk_threads,
                            server_pid=pids.get(target.name),
                        )
                        results.append(result)
                        print(
                            f"{target.name}: {rows} row(s), concurrency {concurrency}: "
                            f"{result.requests_per_second} req/s, p50 {result.p50_ms} ms, "
                            f"p99 {result.p99_ms} ms, errors {result.errors}",
                            flush=True,
                        )
            captured_by = CAPTURE_TARGET if args.data_capture == "both" else "endpoint"
            for server, url in servers:
                if args.data_capture != "off" and server.name == captured_by:
                    counters = capture_stats(url)
        finally:
            for server, _ in reversed(servers):
                server.stop()

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load generator: {_generator_text(generator, args)}; "
        f"{_duration_text(generator, args.duration)} per scenario after a warm-up"
    )
    print(
        f"in-process limit (one row): predict_fn {limits['predict_fn_per_second']:,.0f}/s, "
        f"input_fn + predict_fn + output_fn {limits['handler_chain_per_second']:,.0f}/s"
    )
    if costs is not None:
        print(
            f"in-process data capture cost (one row): {costs['request_side_us']} us per request "
            f"on the request path, {costs['total_cpu_us']} us CPU per request in all (with the "
            "writer thread)"
        )
    if mlflow_facts is not None:
        print(
            f"MLflow {mlflow_facts['mlflow_version']} (`mlflow models serve --env-manager local`, "
            f"{args.mlflow_workers} uvicorn worker(s)); in-process limit (one row): pyfunc "
            f"predict {mlflow_facts['pyfunc_predict_per_second']:,.0f}/s"
        )
    print()
    _print_table(results)
    comparison = compare(results, "mlflow") if mlflow_facts is not None else []
    _print_comparison(comparison)
    overhead = capture_overhead(results)
    _print_capture_overhead(overhead, counters)
    if counters is not None and not overhead:
        print(f"\ncapture counters: {counters}")
    targets = (
        endpoint_targets(results, "mlflow" if mlflow_facts is not None else None)
        if not args.no_endpoint
        else []
    )
    if targets:
        print_targets(targets)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "in_process": limits,
                    "mlflow": mlflow_facts,
                    "results": [asdict(r) for r in results],
                    "comparison": comparison,
                    "targets": targets,
                    "load_generator": generator,
                    "data_capture": {
                        "overhead": overhead,
                        "counters": counters,
                        "in_process_cost": costs,
                    },
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
