"""Benchmark: where the time of ``kedro run`` goes, and how long ``kedro --help`` takes.

Runs ``kedro run`` in the project a few times and prints, per run and as medians:

* start-up: from starting the process until the pipeline starts (imports, session, configuration,
  catalog, pipelines), i.e. until ``before_pipeline_run``, which ``NodeTimingHooks`` records in
  ``data/09_tracking/run_timings.json`` as ``pipeline_started_at``;
* the pipeline's wall time, and within it the nodes' summed own time (the rest is catalog I/O and
  framework overhead);
* the rest of the process (hooks after the run, exit).

Then ``kedro --help`` (what every command pays before doing anything) as many times.

    .venv/bin/python benchmarks/kedro_run_timing.py [--runs 5] [--pipelines NAME[,NAME]]
                                                   [--project DIR]

``--project`` runs it in a copy of the project (e.g. one made by tests/conftest.py's
``copy_project``) instead of this checkout, whose ``data/`` it would otherwise write to.
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
TIMINGS = Path("data") / "09_tracking" / "run_timings.json"
KEDRO = Path(sys.executable).with_name("kedro")
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"}


def run_once(project: Path, pipelines: str | None) -> dict[str, float | dict[str, float]]:
    command = [str(KEDRO), "run", *(["--pipelines", pipelines] if pipelines else [])]
    timings = project / TIMINGS
    timings.unlink(missing_ok=True)
    started_at = time.time()
    started = time.perf_counter()
    subprocess.run(command, cwd=project, env=ENV, check=True, capture_output=True)
    process = time.perf_counter() - started
    report = json.loads(timings.read_text())
    startup = report["pipeline_started_at"] - started_at
    return {
        "process": process,
        "startup": startup,
        "pipeline": report["pipeline_wall_seconds"],
        "nodes": report["nodes_total_seconds"],
        "after": process - startup - report["pipeline_wall_seconds"],
        "per_node": report["nodes"],
    }


def help_once(project: Path) -> float:
    started = time.perf_counter()
    subprocess.run([str(KEDRO), "--help"], cwd=project, env=ENV, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pipelines", default=None, help="registered pipelines (default: all)")
    parser.add_argument("--project", type=Path, default=PROJECT, help="project directory")
    args = parser.parse_args()

    runs = [run_once(args.project, args.pipelines) for _ in range(args.runs)]
    print(f"kedro run {'--pipelines ' + args.pipelines if args.pipelines else ''} x{args.runs}")
    print(f"{'run':>4} {'process s':>10} {'start-up s':>11} {'pipeline s':>11} {'nodes s':>8}")
    for number, run in enumerate(runs, start=1):
        print(
            f"{number:>4} {run['process']:>10.2f} {run['startup']:>11.2f} "
            f"{run['pipeline']:>11.2f} {run['nodes']:>8.2f}"
        )
    keys = ("process", "startup", "pipeline", "nodes", "after")
    median = {key: statistics.median(run[key] for run in runs) for key in keys}
    overhead = median["pipeline"] - median["nodes"]
    print(
        f"\nmedian: process {median['process']:.2f} s = start-up {median['startup']:.2f} s"
        f" + pipeline {median['pipeline']:.2f} s + after the run {median['after']:.2f} s"
        f"\n        pipeline {median['pipeline']:.2f} s"
        f" = nodes {median['nodes']:.2f} s + catalog I/O and framework {overhead:.2f} s"
        f"\n        nodes are {100 * median['nodes'] / median['process']:.0f}% of what the user"
        " waits for"
    )
    per_node = {
        name: statistics.median(run["per_node"][name] for run in runs)
        for name in runs[0]["per_node"]
    }
    print("\nslowest nodes (median s):")
    for name, seconds in sorted(per_node.items(), key=lambda item: -item[1])[:6]:
        print(f"  {name:<36} {seconds:6.3f}")

    helps = [help_once(args.project) for _ in range(args.runs)]
    print(
        f"\nkedro --help x{args.runs}: median {statistics.median(helps):.2f} s "
        f"(min {min(helps):.2f}, max {max(helps):.2f})"
    )


if __name__ == "__main__":
    main()
