"""Serving benchmark: throughput and latency of the local endpoint under load.

Prints figures, asserts nothing. What it does:

1. builds ``model.tar.gz`` from the trained model in ``data/06_models`` (``make run`` makes it),
   extracts it and starts ``python -m predictive_maintenance.serving.cli serve --model-dir ...``
   in a subprocess on a free port (the endpoint as ``kedro endpoint serve`` runs it);
2. runs a load generator in a separate process (stdlib threads, one keep-alive
   ``http.client`` connection each): single-row and 100-row requests at concurrency 1, 16 and
   64, each for ``--duration`` seconds or ``--max-requests`` requests, after a short warm-up;
3. prints requests/s, p50, p99 and errors per scenario, and the in-process limits: the rate of
   ``predict_fn`` on one row, and of the whole handler chain (``input_fn`` -> ``predict_fn`` ->
   ``output_fn``) on one row.

Other servers can be measured in the same run with ``--target NAME=URL[,format=F][,path=P]``
(format ``csv``, ``json`` or ``mlflow``: ``{"dataframe_split": {"columns": [readings...],
"data": [...]}}``), e.g. an ``mlflow models serve`` of the same model.

Run: ``.venv/bin/python benchmarks/endpoint_throughput.py [--duration 5] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
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
    target: Target, rows: list[list[Any]], concurrency: int, duration: float, max_requests: int
) -> Result:
    body, content_type = _body(rows, target.format)
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_ready(url: str, process: subprocess.Popen, timeout: float = 60.0) -> None:
    target = urlsplit(url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the endpoint exited with code {process.returncode}")
        try:
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=1)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the endpoint at {url} did not answer /ping within {timeout} s")


def prepare_model_dir(destination: Path) -> Path:
    """Builds the model archive from data/06_models and extracts it, as SageMaker would."""
    from predictive_maintenance.serving.package import (  # noqa: PLC0415
        build_model_archive,
        extract_model_archive,
    )

    model_path, spec_path = MODELS_DIR / "model.ubj", MODELS_DIR / "model_spec.json"
    if not (model_path.is_file() and spec_path.is_file()):
        raise SystemExit(f"{model_path} or {spec_path} is missing: run `make run` first")
    spec = json.loads(spec_path.read_text())
    archive = build_model_archive(model_path.read_bytes(), spec)
    return extract_model_archive(archive, destination)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap per scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    parser.add_argument(
        "--format", choices=("csv", "json"), default="csv", help="payload for this endpoint"
    )
    parser.add_argument(
        "--target",
        type=_parse_target,
        action="append",
        default=[],
        help="another server to measure in the same run: NAME=URL[,format=F][,path=P]",
    )
    parser.add_argument("--no-endpoint", action="store_true", help="measure only --target URLs")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

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
    with tempfile.TemporaryDirectory(prefix="endpoint-benchmark-") as scratch:
        model_dir = prepare_model_dir(Path(scratch) / "model")
        limits = in_process_rates(model_dir)
        targets = list(args.target)
        server = None
        if not args.no_endpoint:
            port = _free_port()
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "predictive_maintenance.serving.cli",
                    "serve",
                    "--model-dir",
                    str(model_dir),
                    "--port",
                    str(port),
                ],
                env=environment,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            url = f"http://127.0.0.1:{port}"
            targets.insert(0, Target(name="endpoint", url=url, format=args.format))
        try:
            if server is not None:
                _wait_until_ready(targets[0].url, server)
            for target in targets:
                for rows in args.rows:
                    for concurrency in args.concurrency:
                        result = run_scenario(
                            target,
                            row_sets.get(rows, [SINGLE_ROW] * rows),
                            concurrency,
                            args.duration,
                            args.max_requests,
                        )
                        results.append(result)
                        print(
                            f"{target.name}: {rows} row(s), concurrency {concurrency}: "
                            f"{result.requests_per_second} req/s, p50 {result.p50_ms} ms, "
                            f"p99 {result.p99_ms} ms, errors {result.errors}",
                            flush=True,
                        )
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)

    print(
        f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load generator in a separate process"
    )
    print(
        f"in-process limit (one row): predict_fn {limits['predict_fn_per_second']:,.0f}/s, "
        f"input_fn + predict_fn + output_fn {limits['handler_chain_per_second']:,.0f}/s\n"
    )
    _print_table(results)
    if args.json:
        args.json.write_text(
            json.dumps({"in_process": limits, "results": [asdict(r) for r in results]}, indent=2)
        )


if __name__ == "__main__":
    main()
