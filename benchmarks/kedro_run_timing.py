"""Benchmark: ``kedro run`` wall time versus the sum of its nodes' own time.

Runs ``kedro run`` in the project a few times and prints, per run and as medians:
process wall time (what the user waits for), the runner's wall time and the nodes' summed time
(both recorded by ``NodeTimingHooks`` in ``data/09_tracking/run_timings.json``), and where the
difference goes: start-up (imports, session, config) and catalog I/O + framework overhead.

    .venv/bin/python benchmarks/kedro_run_timing.py [--runs 3] [--pipeline NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TIMINGS = PROJECT / "data" / "09_tracking" / "run_timings.json"


def run_once(pipeline: str | None) -> dict[str, float | dict[str, float]]:
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro), "run", *(["--pipeline", pipeline] if pipeline else [])]
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}
    TIMINGS.unlink(missing_ok=True)
    started = time.perf_counter()
    subprocess.run(command, cwd=PROJECT, env=env, check=True, capture_output=True)
    process = time.perf_counter() - started
    report = json.loads(TIMINGS.read_text())
    return {
        "process": process,
        "pipeline": report["pipeline_wall_seconds"],
        "nodes": report["nodes_total_seconds"],
        "per_node": report["nodes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pipeline", default=None, help="a registered pipeline (default: all)")
    args = parser.parse_args()

    runs = [run_once(args.pipeline) for _ in range(args.runs)]
    print(f"kedro run {'--pipeline ' + args.pipeline if args.pipeline else ''}x{args.runs}")
    print(f"{'run':>4} {'process s':>10} {'pipeline s':>11} {'nodes s':>8}")
    for number, run in enumerate(runs, start=1):
        print(f"{number:>4} {run['process']:>10.2f} {run['pipeline']:>11.2f} {run['nodes']:>8.2f}")

    median = {
        key: statistics.median(run[key] for run in runs) for key in ("process", "pipeline", "nodes")
    }
    startup = median["process"] - median["pipeline"]
    overhead = median["pipeline"] - median["nodes"]
    share = 100 * median["nodes"] / median["process"]
    print(
        f"\nmedian: process {median['process']:.2f} s"
        f" = start-up {startup:.2f} s + pipeline {median['pipeline']:.2f} s"
        f"\n        pipeline {median['pipeline']:.2f} s"
        f" = nodes {median['nodes']:.2f} s + catalog I/O and framework {overhead:.2f} s"
        f"\n        nodes are {share:.0f}% of what the user waits for"
    )
    per_node = {
        name: statistics.median(run["per_node"][name] for run in runs)
        for name in runs[0]["per_node"]
    }
    print("\nslowest nodes (median s):")
    for name, seconds in sorted(per_node.items(), key=lambda item: -item[1])[:6]:
        print(f"  {name:<30} {seconds:6.3f}")


if __name__ == "__main__":
    main()
