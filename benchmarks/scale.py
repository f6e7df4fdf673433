"""Benchmark: data at scale. Wall time and peak memory per stage at 10k, 100k and 1M rows.

For each size, in a fresh copy of the project (this checkout's data/ is never touched):

1. ``generate``: ``kedro data generate --rows N --seed S --output data/01_raw/generated.csv``;
2. ``data_engineering``: ``kedro run --env scale --pipelines data_engineering``;
3. ``training``: ``kedro run --env scale --pipelines training``;
4. ``batch_scoring`` (when the project has that pipeline): ``kedro run --env scale --pipelines
   batch_scoring --params batch_input=data/01_raw/generated.csv,batch_scoring.model_version=1``,
   i.e. the same N-row file scored with the model step 3 trained, once step 3's model is
   registered by ``kedro run --env scale --pipelines deployment`` (timed, no target).

The copy's Kedro environment ``scale`` (conf/scale, written here) points the catalog entry
``ai4i2020_raw`` at the generated file and sets ``raw_data.sha256: null``: the file is not the
official one, and the pandera schema still checks every row. Use the same two files to run the
project on your own generated data (see the README).

Every stage is its own process, started with ``subprocess.Popen`` and reaped with ``os.wait4``,
whose resource usage is that process's alone: ``ru_maxrss`` is its peak resident set size
(Linux: KiB). The wall time is the whole command (start-up included); the "pipeline" column is
Kedro's own pipeline time from data/09_tracking/run_timings.json (start-up excluded), which is
what the cost-per-row comparison between sizes uses.

Targets (issue 14, on 2 cores): 1M rows through data_engineering + training in at most 60 s
(the two processes' wall times added) and 4 GB peak memory; batch scoring of 1M rows in at most
20 s.

    .venv/bin/python benchmarks/scale.py [--rows 10000,100000,1000000] [--seed 42]
                                        [--workdir DIR] [--keep] [--json PATH]
                                        [--wait-for-load LOAD]

On a shared machine, other processes' load lengthens every wall time: each stage prints the
1-minute load average it ended with and its CPU seconds, and ``--wait-for-load 1.5`` starts each
stage only once the machine has quietened (or after 5 minutes regardless).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
ENV = {
    **os.environ,
    "KEDRO_DISABLE_TELEMETRY": "true",
    # XGBoost/OpenMP threads spin while waiting; on a busy 2-core machine that costs 100x.
    "OMP_WAIT_POLICY": "PASSIVE",
}
GENERATED = "data/01_raw/generated.csv"
TIMINGS = Path("data") / "09_tracking" / "run_timings.json"
KEDRO_ENV = "scale"

#: Seconds and MiB.
TARGET_ROWS = 1_000_000
TARGET_TRAINING_SECONDS = 60.0
TARGET_TRAINING_MIB = 4096.0
TARGET_BATCH_SECONDS = 20.0

SCALE_CATALOG = f"""\
# Written by benchmarks/scale.py: the raw data is the generated file.
ai4i2020_raw:
  type: text.TextDataset
  filepath: {GENERATED}
  fs_args:
    open_args_load: {{mode: rb}}
    open_args_save: {{mode: wb}}
"""
SCALE_PARAMETERS = """\
# Written by benchmarks/scale.py: not the official file, so no checksum to hold it to.
raw_data:
  sha256: null
  source_urls: []
"""


@dataclass
class Stage:
    """One command's measurements."""

    name: str
    command: list[str]
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_mib: float = 0.0
    #: The 1-minute load average when the stage ended: above the core count, other processes
    #: competed for the cores and the wall time says more about them than about this stage.
    load_average: float = 0.0
    returncode: int = 0
    pipeline_seconds: float | None = None
    slowest_nodes: dict[str, float] = field(default_factory=dict)
    log: str = ""


def copy_project(destination: Path) -> Path:
    """A runnable copy of the project (metadata, source, configuration) without any data."""
    destination.mkdir(parents=True)
    shutil.copy2(PROJECT / "pyproject.toml", destination / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(PROJECT / "src", destination / "src", ignore=ignore)
    shutil.copytree(PROJECT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local"))
    (destination / "conf" / "local").mkdir()
    for layer in (PROJECT / "data").iterdir():
        if layer.is_dir():
            (destination / "data" / layer.name).mkdir(parents=True)
    scale = destination / "conf" / KEDRO_ENV
    scale.mkdir()
    (scale / "catalog.yml").write_text(SCALE_CATALOG)
    (scale / "parameters.yml").write_text(SCALE_PARAMETERS)
    return destination


def wait_for_load(limit: float | None, patience: float = 300.0) -> None:
    """Waits (at most ``patience`` seconds) until the 1-minute load average is below ``limit``:
    on a shared machine, so that a stage's wall time is its own and not its neighbours'."""
    deadline = time.monotonic() + patience
    while limit is not None and os.getloadavg()[0] >= limit and time.monotonic() < deadline:
        time.sleep(5)


def run_stage(project: Path, name: str, command: list[str]) -> Stage:
    """Runs ``command`` in ``project`` and measures its wall time and peak RSS (its own)."""
    stage = Stage(name, command)
    timings = project / TIMINGS
    timings.unlink(missing_ok=True)
    log_path = project / f"{name}.log"
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=project, env=ENV, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        stage.seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stage.returncode = process.returncode
    stage.peak_mib = usage.ru_maxrss / 1024  # Linux reports KiB
    stage.cpu_seconds = usage.ru_utime + usage.ru_stime
    stage.load_average = os.getloadavg()[0]
    stage.log = str(log_path)
    if timings.exists():
        report = json.loads(timings.read_text())
        stage.pipeline_seconds = report["pipeline_wall_seconds"]
        nodes = sorted(report["nodes"].items(), key=lambda item: item[1], reverse=True)
        stage.slowest_nodes = {node: round(seconds, 2) for node, seconds in nodes[:3]}
    return stage


def kedro_run(*pipelines: str, params: str | None = None) -> list[str]:
    command = [KEDRO, "run", "--env", KEDRO_ENV, "--pipelines", ",".join(pipelines)]
    return command + (["--params", params] if params else [])


def has_batch_scoring() -> bool:
    return (PROJECT / "src" / "predictive_maintenance" / "pipelines" / "batch_scoring").is_dir()


def measure(rows: int, seed: int, workdir: Path, load_limit: float | None = None) -> list[Stage]:
    """Every stage at ``rows`` rows, stopping at the first that fails."""
    project = copy_project(workdir / f"rows-{rows}")
    plan = [
        ("generate", [KEDRO, "data", "generate", "--rows", str(rows), "--seed", str(seed),
                      "--output", GENERATED]),
        ("data_engineering", kedro_run("data_engineering")),
        ("training", kedro_run("training")),
    ]  # fmt: skip
    if has_batch_scoring():
        plan += [
            ("deployment", kedro_run("deployment")),
            (
                "batch_scoring",
                kedro_run(
                    "batch_scoring",
                    params=f"batch_input={GENERATED},batch_scoring.model_version=1",
                ),
            ),
        ]
    stages = []
    for name, command in plan:
        wait_for_load(load_limit)
        print(f"  {rows:>9,} rows: {name} ...", end="", flush=True)
        stage = run_stage(project, name, command)
        stages.append(stage)
        print(
            f" {stage.seconds:6.1f} s, {stage.cpu_seconds:6.1f} s CPU, {stage.peak_mib:7.0f} MiB "
            f"peak (load average {stage.load_average:.1f})",
            flush=True,
        )
        if stage.returncode != 0:
            tail = Path(stage.log).read_text(errors="replace").splitlines()[-15:]
            print(f"  {name} failed (exit {stage.returncode}); the end of {stage.log}:")
            print("\n".join(f"    {line}" for line in tail))
            break
    return stages


def _verdict(value: float, limit: float) -> str:
    return "met" if value <= limit else "MISSED"


def report(results: dict[int, list[Stage]]) -> dict:
    """Prints the tables and the targets; returns them as a dict."""
    print()
    print(
        f"{'rows':>10}  {'stage':<17} {'wall s':>7} {'CPU s':>6} {'pipeline s':>10} "
        f"{'peak MiB':>9} {'load':>5}  {'us/row':>7}  slowest nodes (s)"
    )
    for rows, stages in results.items():
        for stage in stages:
            per_row = (stage.pipeline_seconds or stage.seconds) / rows * 1e6
            pipeline = "" if stage.pipeline_seconds is None else f"{stage.pipeline_seconds:.1f}"
            nodes = ", ".join(
                f"{node} {seconds:.1f}" for node, seconds in stage.slowest_nodes.items()
            )
            failed = "" if stage.returncode == 0 else f"  FAILED (exit {stage.returncode})"
            print(
                f"{rows:>10,}  {stage.name:<17} {stage.seconds:>7.1f} {stage.cpu_seconds:>6.1f} "
                f"{pipeline:>10} {stage.peak_mib:>9.0f} {stage.load_average:>5.1f}  {per_row:>7.1f}"
                f"  {nodes}{failed}"
            )
    targets = []
    big = {stage.name: stage for stage in results.get(TARGET_ROWS, []) if stage.returncode == 0}
    if "data_engineering" in big and "training" in big:
        seconds = big["data_engineering"].seconds + big["training"].seconds
        peak = max(big["data_engineering"].peak_mib, big["training"].peak_mib)
        targets += [
            ("1M rows data_engineering + training, wall s", seconds, TARGET_TRAINING_SECONDS),
            ("1M rows data_engineering + training, peak MiB", peak, TARGET_TRAINING_MIB),
        ]
    if "batch_scoring" in big:
        seconds = big["batch_scoring"].seconds
        targets.append(("1M rows batch_scoring, wall s", seconds, TARGET_BATCH_SECONDS))
    if targets:
        print("\nTargets (2 cores)")
        for what, value, limit in targets:
            print(f"  {what:<48} {value:8.1f}  target <= {limit:g}: {_verdict(value, limit)}")
    sizes = sorted(results)
    linearity = {}
    for small, large in itertools.pairwise(sizes):
        before = {stage.name: stage for stage in results[small] if stage.returncode == 0}
        for stage in results[large]:
            if stage.returncode or stage.name not in before:
                continue
            # CPU seconds: the wall times carry the other processes' load; fixed costs (start-up,
            # imports) cancel out in the difference.
            added = stage.cpu_seconds - before[stage.name].cpu_seconds
            linearity.setdefault(stage.name, {})[f"{small}->{large}"] = round(
                added / (large - small) * 1e6, 2
            )
    if linearity:
        print("\nMarginal CPU cost per added row (us; about equal from size to size = linear)")
        for name, steps in linearity.items():
            print(f"  {name:<17} " + "  ".join(f"{step}: {cost}" for step, cost in steps.items()))
    return {
        "stages": {rows: [asdict(stage) for stage in stages] for rows, stages in results.items()},
        "targets": [
            {"what": what, "value": value, "limit": limit, "met": value <= limit}
            for what, value, limit in targets
        ],
        "marginal_cpu_us_per_row": linearity,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="10000,100000,1000000", help="comma-separated sizes")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workdir", type=Path, help="where the project copies go (default: temp)")
    parser.add_argument("--keep", action="store_true", help="keep the project copies")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--wait-for-load",
        type=float,
        metavar="LOAD",
        help="before each stage, wait (up to 5 min) until the 1-minute load average is below LOAD",
    )
    args = parser.parse_args()
    sizes = sorted(int(size) for size in args.rows.split(","))

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pm-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"Project copies in {workdir} ({os.cpu_count()} cores)")
    try:
        results = {rows: measure(rows, args.seed, workdir, args.wait_for_load) for rows in sizes}
        figures = report(results)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    failed = any(stage.returncode for stages in results.values() for stage in stages)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
