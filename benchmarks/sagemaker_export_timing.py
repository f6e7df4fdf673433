"""Benchmark: how long exporting to SageMaker Pipelines takes, and running the export here.

In a copy of the project (so data/ is not touched): ``kedro sagemaker compile`` a few times (the
first run may also download the shipped wheels once), the export's step count, then one
``kedro sagemaker run-local`` with the project's Python and, if the stock image's stand-in is
built (``make image-env``), one with it (``--python .venv-image/bin/python``): per-step seconds.

    .venv/bin/python benchmarks/sagemaker_export_timing.py [--runs 3] [--no-run-local]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import PROJECT_ROOT, copy_project

KEDRO = str(Path(sys.executable).with_name("kedro"))
IMAGE_PYTHON = PROJECT_ROOT / ".venv-image" / "bin" / "python"
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}


def timed(project: Path, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(
        [KEDRO, *args], cwd=project, env=ENV, capture_output=True, text=True, check=True
    )
    return time.perf_counter() - started, result.stdout


def steps(definition: dict) -> list[str]:
    found = []
    for step in definition["Steps"]:
        found.append(f"{step['Name']} ({step['Type']})")
        if step["Type"] == "Condition":
            arguments = step["Arguments"]
            found += steps({"Steps": arguments["IfSteps"] + arguments["ElseSteps"]})
    return found


def run_local(project: Path, *python: str) -> None:
    seconds, out = timed(project, "sagemaker", "run-local", "pipeline.json", *python)
    label = "the image stand-in" if python else "the project's Python"
    print(f"run-local with {label}: {seconds:.1f} s wall")
    for line in out.splitlines():
        if re.match(r"^  \S+ +\S+ +\S+ +[\d.]+ s", line):
            print(f"  {line.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-run-local", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        project = copy_project(Path(directory) / "project")
        warm_up, _ = timed(project, "sagemaker", "compile", "-o", "pipeline.json")
        runs = [
            timed(project, "sagemaker", "compile", "-o", "pipeline.json")[0]
            for _ in range(args.runs)
        ]
        definition = json.loads((project / "pipeline.json").read_text())
        listed = steps(definition)
        print(
            f"kedro sagemaker compile: warm-up {warm_up:.2f} s; then "
            + ", ".join(f"{s:.2f} s" for s in runs)
            + f" (median {statistics.median(runs):.2f} s)"
        )
        print(f"steps: {len(listed)} in the definition: {', '.join(listed)}")
        if not args.no_run_local:
            run_local(project)
            if IMAGE_PYTHON.exists():
                run_local(project, "--python", str(IMAGE_PYTHON))
            else:
                print("run-local on the image stand-in: skipped (make image-env)")


if __name__ == "__main__":
    main()
