"""Benchmark: what explanations (issue 16) cost on the local endpoint, and what they cost when
nobody asks for them.

Serves the trained model (data/06_models, from `make run`) with the endpoint's server in its own
process on 127.0.0.1 and sends it, one request at a time over a keep-alive connection, real
readings of the data set: single-row and 1,000-row requests as CSV (the SageMaker contract),
as plain JSON, and as JSON with ``"explain": true``. Every answer is checked (status, one score
per reading, explanations only when asked, and with the insight when the model has it). Also
times :func:`explain_features` in-process.

Two model directories from the same booster: ``insight`` is the archive the deployment pipeline
builds (the spec's calibration map, the failure-mode model and the model card:
data/08_reporting/model_card.json, or one made from the run's reports), so its explained answers
carry the calibrated probability, the likely failure mode and the card; ``plain`` is the same
booster without them (a model directory from before). Their difference is what the insight
adds to an explained answer, and, for plain requests, what it costs nobody (nothing).

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

from endpoint_throughput import PROJECT_ROOT, Server, _free_port, model_archive_inputs

from predictive_maintenance.schema import READING_COLUMNS

RAW_CSV = PROJECT_ROOT / "data" / "01_raw" / "ai4i2020.csv"
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


def prepare_model_dirs(destination: Path) -> dict[str, Path]:
    """The ``insight`` and ``plain`` model directories (see the module's docstring), each built
    as the deployment pipeline builds it (``build_model_archive``) and extracted."""
    from predictive_maintenance.serving.package import (  # noqa: PLC0415
        build_model_archive,
        extract_model_archive,
    )

    model, spec, extras = model_archive_inputs()
    if "calibration" not in spec or "failure_modes" not in spec:
        raise SystemExit("the model spec has no calibration or failure_modes: run `make run` again")
    plain_spec = {k: v for k, v in spec.items() if k not in ("calibration", "failure_modes")}
    return {
        "insight": extract_model_archive(
            build_model_archive(model, spec, extras), destination / "insight"
        ),
        "plain": extract_model_archive(
            build_model_archive(model, plain_spec), destination / "plain"
        ),
    }


def bodies(rows: list[list]) -> dict[str, tuple[bytes, str]]:
    instances = [dict(zip(READING_COLUMNS, row, strict=True)) for row in rows]
    return {
        "csv": ("".join(",".join(map(str, row)) + "\n" for row in rows).encode(), "text/csv"),
        "json": (json.dumps({"instances": instances}).encode(), "application/json"),
        "json+explain": (
            json.dumps({"instances": instances, "explain": True}).encode(),
            "application/json",
        ),
    }


def measure(
    port: int,
    body: bytes,
    content_type: str,
    *,
    requests: int,
    rows: int,
    explained: bool,
    insight: bool,
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
                    first = answer["explanations"][0]
                    assert ("probability" in first) == ("failure_mode" in first) == insight
                else:
                    assert "model_card" not in answer
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


def run_cases(
    port: int, cases: list[str], arguments: argparse.Namespace, *, insight: bool = False
) -> dict:
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
                insight=insight,
            )
            figures[(rows, name)] = (p50, p99)
            print(f"  {rows:>5} row(s) {name:<13} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms")
    return figures


def in_process(model_dirs: dict[str, Path]) -> None:
    import numpy as np  # noqa: PLC0415

    from predictive_maintenance.failure_modes import (  # noqa: PLC0415
        likely_modes,
        mode_probabilities,
    )
    from predictive_maintenance.features import TYPE_CODES, feature_matrix  # noqa: PLC0415
    from predictive_maintenance.serving.inference import explain_features, model_fn  # noqa: PLC0415

    def per_call(function, runs: int) -> float:
        function()
        started = time.perf_counter()
        for _ in range(runs):
            function()
        return (time.perf_counter() - started) / runs * 1000

    models = {}
    for name, model_dir in model_dirs.items():
        started = time.perf_counter()
        models[name] = model_fn(model_dir)
        print(f"  model_fn ({name}): {(time.perf_counter() - started) * 1000:8.1f} ms")
    insight = models["insight"]
    for rows in (1, 1000):
        data = real_rows(rows)
        type_code = np.array([TYPE_CODES[row[0]] for row in data], dtype=np.float64)
        numbers = [np.array([row[i] for row in data]) for i in range(1, 6)]
        features = feature_matrix(type_code, numbers)
        runs = 2000 if rows == 1 else 50
        for name, model in models.items():
            each = per_call(lambda m=model, f=features: explain_features(f, m), runs)
            print(f"  explain_features ({name:<7}), {rows:>5} row(s): {each:8.3f} ms per call")
        modes = per_call(
            lambda f=features: likely_modes(mode_probabilities(insight.mode_booster, f)), runs
        )
        scores = insight.booster.inplace_predict(np.asarray(features, dtype=np.float32))
        calibrated = per_call(lambda s=scores: insight.calibration.apply(s), runs)
        print(f"    of which the failure mode {modes:.3f} ms, the calibration {calibrated:.4f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="single-row requests per case")
    parser.add_argument("--batch-requests", type=int, default=200, help="1,000-row requests")
    parser.add_argument("--baseline-src", type=Path, help="another version's src directory")
    arguments = parser.parse_args()
    cases = ["csv", "json", "json+explain"]
    figures = {}
    with tempfile.TemporaryDirectory(prefix="explain-bench-") as directory:
        model_dirs = prepare_model_dirs(Path(directory))
        print("in-process:")
        in_process(model_dirs)
        baseline = None
        if arguments.baseline_src is not None:
            print(f"baseline server ({arguments.baseline_src}, plain model), plain requests only:")
            server, port = serve(
                arguments.baseline_src, model_dirs["plain"], Path(directory) / "base.log"
            )
            try:
                baseline = run_cases(port, ["csv", "json"], arguments)
            finally:
                server.stop()
        for name, model_dir in model_dirs.items():
            print(f"this server, {name} model:")
            server, port = serve(None, model_dir, Path(directory) / f"{name}.log")
            try:
                figures[name] = run_cases(port, cases, arguments, insight=name == "insight")
            finally:
                server.stop()
    print("explained vs plain JSON (p50):")
    for name in model_dirs:
        for rows in (1, 1000):
            plain = figures[name][(rows, "json")][0]
            explained = figures[name][(rows, "json+explain")][0]
            print(
                f"  {name:<7} {rows:>5} row(s): +{explained - plain:.3f} ms "
                f"({explained / plain:.2f}x; {(explained - plain) / rows * 1000:.1f} us a row)"
            )
    print("what the insight adds to an explained answer (p50, insight vs plain model):")
    for rows in (1, 1000):
        added = figures["insight"][(rows, "json+explain")][0]
        added -= figures["plain"][(rows, "json+explain")][0]
        print(f"  {rows:>5} row(s): {added:+.3f} ms ({added / rows * 1000:+.1f} us a row)")
    print("not asking (p50, plain requests, insight model vs plain model):")
    for rows in (1, 1000):
        for case in ("csv", "json"):
            difference = figures["insight"][(rows, case)][0] - figures["plain"][(rows, case)][0]
            print(f"  {rows:>5} row(s) {case:<5}: {difference:+.3f} ms")
    if baseline is not None:
        print("not asking (p50, this server vs the baseline, same request, plain model):")
        for key, (p50, _) in baseline.items():
            print(f"  {key[0]:>5} row(s) {key[1]:<5}: {figures['plain'][key][0] - p50:+.3f} ms")


if __name__ == "__main__":
    main()
