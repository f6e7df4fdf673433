"""Benchmark: what explanations (issue 16) cost on the local endpoint, and what they cost when
nobody asks for them.

Serves the trained model (data/06_models, from `make run`) with the endpoint's server in its own
process on 127.0.0.1 and sends it, one request at a time over a keep-alive connection, real
readings of the data set: single-row and 1,000-row requests as CSV (the SageMaker contract),
as plain JSON, and as JSON with ``"explain": true``. Every answer is checked (status, one score
per reading, explanations only when asked). Also times :func:`explain_features` in-process.

    .venv/bin/python benchmarks/explain_overhead.py [--requests 2000] [--batch-requests 200]
        [--baseline-src DIR]

``--baseline-src``: a ``src`` directory of another version of the project (e.g. ``git archive
HEAD src | tar -x -C /tmp/before``, then ``--baseline-src /tmp/before/src``); its server is
measured on the same plain requests first, so the "nothing asked, nothing paid" claim is a
measured difference rather than a promise. Prints median and p99 latency per case (ms).
"""

from __future__ import annotations

import argparse
import csv
import http.client
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from endpoint_throughput import PROJECT_ROOT, Server, _free_port, prepare_model_dir

RAW_CSV = PROJECT_ROOT / "data" / "01_raw" / "ai4i2020.csv"
COLUMNS = (
    "type",
    "air_temperature_k",
    "process_temperature_k",
    "rotational_speed_rpm",
    "torque_nm",
    "tool_wear_min",
)
SERVE = """
import sys
from predictive_maintenance.serving.inference import model_fn
from predictive_maintenance.serving.server import EndpointServer
EndpointServer(("127.0.0.1", int(sys.argv[2])), model=model_fn(sys.argv[1])).serve_forever()
"""


def real_rows(count: int) -> list[list]:
    """The first ``count`` readings of the data set, in the workshop's order."""
    with RAW_CSV.open(encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        next(reader)
        rows = [
            [row[2], *(float(value) for value in row[3:8])]
            for row in itertools.islice(reader, count)
        ]
    return rows


def bodies(rows: list[list]) -> dict[str, tuple[bytes, str]]:
    instances = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    return {
        "csv": ("".join(",".join(map(str, row)) + "\n" for row in rows).encode(), "text/csv"),
        "json": (json.dumps({"instances": instances}).encode(), "application/json"),
        "json+explain": (
            json.dumps({"instances": instances, "explain": True}).encode(),
            "application/json",
        ),
    }


def measure(
    port: int, body: bytes, content_type: str, *, requests: int, rows: int, explained: bool
) -> tuple[float, float]:
    """Latencies (ms) of ``requests`` sequential requests, each answer checked."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    for index in range(requests + max(requests // 10, 5)):  # the first tenth warms up
        started = time.perf_counter()
        connection.request("POST", "/invocations", body, {"Content-Type": content_type})
        response = connection.getresponse()
        payload = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise SystemExit(f"HTTP {response.status}: {payload[:300]!r}")
        if index == 0:  # checked once per case: the answers do not change
            if content_type == "text/csv":
                assert len(payload.splitlines()) == rows
            else:
                answer = json.loads(payload)
                assert len(answer["predictions"]) == rows
                assert ("explanations" in answer) == explained
                if explained:
                    assert len(answer["explanations"]) == rows
        if index >= max(requests // 10, 5):
            latencies.append(elapsed)
    connection.close()
    latencies.sort()
    return statistics.median(latencies), latencies[int(len(latencies) * 0.99) - 1]


def serve(src: Path | None, model_dir: Path, log: Path) -> tuple[Server, int]:
    port = _free_port()
    env = {**os.environ}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    server = Server(
        "endpoint",
        [sys.executable, "-c", SERVE, str(model_dir), str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        log=log,
    )
    server.wait_until_ready(f"http://127.0.0.1:{port}", timeout=60)
    return server, port


def run_cases(port: int, cases: list[str], arguments: argparse.Namespace) -> dict:
    figures = {}
    for rows, requests in ((1, arguments.requests), (1000, arguments.batch_requests)):
        for name, (body, content_type) in bodies(real_rows(rows)).items():
            if name not in cases:
                continue
            p50, p99 = measure(
                port,
                body,
                content_type,
                requests=requests,
                rows=rows,
                explained=name.endswith("explain"),
            )
            figures[(rows, name)] = (p50, p99)
            print(f"  {rows:>5} row(s) {name:<13} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")
    return figures


def in_process(model_dir: Path) -> None:
    import numpy as np  # noqa: PLC0415

    from predictive_maintenance.features import TYPE_CODES, feature_matrix  # noqa: PLC0415
    from predictive_maintenance.serving.inference import explain_features, model_fn  # noqa: PLC0415

    model = model_fn(model_dir)
    for rows in (1, 1000):
        data = real_rows(rows)
        type_code = np.array([TYPE_CODES[row[0]] for row in data], dtype=np.float64)
        numbers = [np.array([row[i] for row in data]) for i in range(1, 6)]
        features = feature_matrix(type_code, numbers)
        runs = 2000 if rows == 1 else 50
        explain_features(features, model)
        started = time.perf_counter()
        for _ in range(runs):
            explain_features(features, model)
        each = (time.perf_counter() - started) / runs * 1000
        print(f"  explain_features, {rows:>5} row(s): {each:8.3f} ms per call")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="single-row requests per case")
    parser.add_argument("--batch-requests", type=int, default=200, help="1,000-row requests")
    parser.add_argument("--baseline-src", type=Path, help="another version's src directory")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="explain-bench-") as directory:
        model_dir = prepare_model_dir(Path(directory) / "model")
        print("in-process:")
        in_process(model_dir)
        baseline = None
        if arguments.baseline_src is not None:
            print(f"baseline server ({arguments.baseline_src}), plain requests only:")
            server, port = serve(arguments.baseline_src, model_dir, Path(directory) / "base.log")
            try:
                baseline = run_cases(port, ["csv", "json"], arguments)
            finally:
                server.stop()
        print("this server:")
        server, port = serve(None, model_dir, Path(directory) / "endpoint.log")
        try:
            figures = run_cases(port, ["csv", "json", "json+explain"], arguments)
        finally:
            server.stop()
    print("explanations' cost (p50, JSON with explain vs plain JSON):")
    for rows in (1, 1000):
        plain, explained = figures[(rows, "json")][0], figures[(rows, "json+explain")][0]
        print(f"  {rows:>5} row(s): +{explained - plain:.3f} ms ({explained / plain:.2f}x)")
    if baseline is not None:
        print("not asking (p50, this server vs the baseline, same request):")
        for key, (p50, _) in baseline.items():
            print(f"  {key[0]:>5} row(s) {key[1]:<5}: {figures[key][0] - p50:+.3f} ms")


if __name__ == "__main__":
    main()
