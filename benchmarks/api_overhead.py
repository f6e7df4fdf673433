"""Benchmark: what the HTTP API adds in front of the model endpoint.

Serves the trained model (data/06_models, from `make run`) with `kedro endpoint serve` and puts
`kedro api serve` in front of it, as `make serve` does; then drives both from a load generator in
its own process (keep-alive connections, loopback only) with the workshop's reading:

- the endpoint's SageMaker Runtime route (what the Lambda calls), CSV;
- the API's POST /predict, the same CSV line, which the handler validates, forwards through
  boto3's sagemaker-runtime client and reshapes.

    .venv/bin/python benchmarks/api_overhead.py [--duration 5] [--concurrency 1 8]

Prints requests per second and p50/p99 latency for both, and the API's overhead per request.
On AWS, API Gateway and Lambda add their own network hops; this measures only the code.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from endpoint_throughput import (
    PROJECT_ROOT,
    SINGLE_ROW,
    Server,
    Target,
    _free_port,
    prepare_model_dir,
    run_scenario,
)

KEDRO = str(Path(sys.executable).with_name("kedro"))
ENDPOINT_NAME = "predictive-maintenance"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    arguments = parser.parse_args()
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "OMP_WAIT_POLICY": "PASSIVE",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        model_dir = prepare_model_dir(work / "model")
        endpoint_port, api_port = _free_port(), _free_port()
        endpoint = Server(
            "kedro endpoint serve",
            [KEDRO, "endpoint", "serve", "--port", str(endpoint_port), "--model-dir",
             str(model_dir), "--endpoint-name", ENDPOINT_NAME],
            env=env, cwd=PROJECT_ROOT, log=work / "endpoint.log",
        )  # fmt: skip
        api = Server(
            "kedro api serve",
            [KEDRO, "api", "serve", "--port", str(api_port), "--endpoint-url",
             f"http://127.0.0.1:{endpoint_port}", "--endpoint-name", ENDPOINT_NAME],
            env=env, cwd=PROJECT_ROOT, log=work / "api.log",
        )  # fmt: skip
        try:
            endpoint.wait_until_ready(f"http://127.0.0.1:{endpoint_port}", 60)
            api.wait_until_ready(f"http://127.0.0.1:{api_port}", 60, path="/health")
            targets = [
                Target(
                    "endpoint (InvokeEndpoint route)",
                    f"http://127.0.0.1:{endpoint_port}",
                    path=f"/endpoints/{ENDPOINT_NAME}/invocations",
                ),
                Target("API POST /predict", f"http://127.0.0.1:{api_port}", path="/predict"),
            ]
            print(f"{'target':<32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} errors")
            results = {}
            for concurrency in arguments.concurrency:
                for target in targets:
                    result = run_scenario(
                        target, [SINGLE_ROW], concurrency, arguments.duration, 200_000
                    )
                    results[(target.name, concurrency)] = result
                    print(
                        f"{target.name:<32} {concurrency:>4} {result.requests_per_second:>8} "
                        f"{result.p50_ms:>8} {result.p99_ms:>8} {result.errors}"
                        + (f" ({result.first_error})" if result.first_error else "")
                    )
            for concurrency in arguments.concurrency:
                direct = results[(targets[0].name, concurrency)]
                through = results[(targets[1].name, concurrency)]
                if direct.p50_ms and through.p50_ms:
                    added_p50 = through.p50_ms - direct.p50_ms
                    print(
                        f"concurrency {concurrency}: the API adds {added_p50:.2f}"
                        f" ms at p50, {through.p99_ms - direct.p99_ms:.2f} ms at p99; "
                        f"{through.requests_per_second / direct.requests_per_second:.0%} of the "
                        "endpoint's throughput"
                    )
        finally:
            api.stop()
            endpoint.stop()


if __name__ == "__main__":
    main()
