"""Benchmark: what the HTTP API adds in front of the model endpoint.

Serves the trained model (data/06_models, from `make run`) with `kedro endpoint serve` and puts
`kedro api serve` in front of it, as `make serve` does; then drives both with `wrk` when it is on
PATH (else the Python load generator of endpoint_throughput.py, in its own process; keep-alive
connections, loopback only) with the workshop's reading:

- the endpoint's SageMaker Runtime route (what the Lambda calls), CSV;
- the API's POST /predict, the same CSV line, which the handler validates, forwards through
  boto3's sagemaker-runtime client and reshapes.

    .venv/bin/python benchmarks/api_overhead.py [--duration 5] [--concurrency 1 64]

Prints requests per second and p50/p99 latency for both, the API's overhead per request, and
issue 13's targets for the API (PASS / MISS): at most 1 ms added at p50 (concurrency 1); at
concurrency 64, zero errors and p99 at most 50 ms. On AWS, API Gateway and Lambda add their own
network hops; this measures only the code.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from endpoint_throughput import (
    PROJECT_ROOT,
    SINGLE_ROW,
    Result,
    Server,
    Target,
    _free_port,
    add_generator_arguments,
    load_generator,
    prepare_model_dir,
    print_targets,
    run_scenario,
    verdict,
)

KEDRO = str(Path(sys.executable).with_name("kedro"))
ENDPOINT_NAME = "predictive-maintenance"
#: Issue 13's targets for the API in front of the endpoint: added p50 at concurrency 1 (ms); at
#: concurrency 64, p99 (ms) and no errors.
TARGET_ADDED_P50_MS = 1.0
TARGET_P99_MS_AT_64 = 50.0


def api_targets(direct: dict[int, Result], through: dict[int, Result]) -> list[dict]:
    """Issue 13's API targets from the results by concurrency (n/a where not measured)."""
    added = (
        through[1].p50_ms - direct[1].p50_ms
        if 1 in direct and 1 in through and through[1].p50_ms and direct[1].p50_ms
        else None
    )
    at_64 = through.get(64)
    return [
        verdict("API conc 1: p50 added to the endpoint's", added, TARGET_ADDED_P50_MS, " ms"),
        verdict("API conc 64: errors", at_64 and at_64.errors, 0, ""),
        verdict("API conc 64: p99", at_64 and at_64.p99_ms, TARGET_P99_MS_AT_64, " ms"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per scenario")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    add_generator_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    arguments = parser.parse_args()
    generator = load_generator(arguments.load_generator)
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "OMP_WAIT_POLICY": "PASSIVE",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
    }
    env.pop("API_KEY", None)  # /predict without a key, as `make serve` runs it
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
            print(f"load generator: {generator}", flush=True)
            print(f"{'target':<32} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} errors")
            results: dict[tuple[str, int], Result] = {}
            for concurrency in arguments.concurrency:
                for target in targets:
                    result = run_scenario(
                        target,
                        [SINGLE_ROW],
                        concurrency,
                        arguments.duration,
                        200_000,
                        generator=generator,
                        wrk_threads=arguments.wrk_threads,
                    )
                    results[(target.name, concurrency)] = result
                    print(
                        f"{target.name:<32} {concurrency:>4} {result.requests_per_second:>8} "
                        f"{result.p50_ms!s:>8} {result.p99_ms!s:>8} {result.errors}"
                        + (f" ({result.first_error})" if result.first_error else ""),
                        flush=True,
                    )
        finally:
            api.stop()
            endpoint.stop()
    direct = {c: results[(targets[0].name, c)] for c in arguments.concurrency}
    through = {c: results[(targets[1].name, c)] for c in arguments.concurrency}
    for concurrency in arguments.concurrency:
        ours, theirs = through[concurrency], direct[concurrency]
        if ours.p50_ms and theirs.p50_ms and ours.p99_ms and theirs.p99_ms:
            print(
                f"concurrency {concurrency}: the API adds {ours.p50_ms - theirs.p50_ms:.2f} ms "
                f"at p50, {ours.p99_ms - theirs.p99_ms:.2f} ms at p99; "
                f"{ours.requests_per_second / theirs.requests_per_second:.0%} of the endpoint's "
                "throughput"
            )
    checked = api_targets(direct, through)
    print_targets(checked, "issue 13's targets for the API")
    if arguments.json:
        arguments.json.write_text(
            json.dumps(
                {
                    "load_generator": generator,
                    "results": [asdict(result) for result in results.values()],
                    "targets": checked,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
