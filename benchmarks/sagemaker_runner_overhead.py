"""Benchmark: what running ``train_model`` as a SageMaker training job costs (``local`` backend).

Prints figures, asserts nothing. On the real inputs (``train`` and ``validation`` from
``data/05_model_input`` through the project's catalog, ``params:xgboost`` through Kedro's config
loader) it measures, as medians over ``--runs``:

1. in-process: ``train_model`` called directly, and through Kedro's ``SequentialRunner``;
2. the remote path driven step by step with the bridge's own functions, as ``runner.py`` does,
   with a ``DirectoryStore`` in a temporary directory standing in for S3: code packaging
   (``build_source_archive``) and upload, the image URI lookup (the first call imports the
   SageMaker SDK: reported once, apart), ``prepare_job`` (inputs encoded and uploaded),
   ``create_training_job``, the job's own phases from its ``SecondaryStatusTransitions``
   (Starting, Downloading, Training, Uploading), and ``read_outputs`` (download, sha256 check,
   decode). Training is split with the entry script's two log lines,
   ``kedro node train.train_model: read N inputs and imported <module:function> in A s`` and
   ``kedro node train.train_model: ran in B s; wrote <outputs> in C s``, into interpreter start and
   exit (Training minus A+B+C), inputs + imports (A: decoding the inputs and importing the
   node's module; the imports of pandas, pyarrow, XGBoost and scikit-learn land here), the node
   function alone (B) and writing the outputs (C);
3. end to end: ``SageMakerRunner(backend="local").run`` on a one-node pipeline with
   ``MemoryDataset`` inputs, the configured ``local.poll_seconds`` and a ``SageMakerHooks``
   fed the project's ``sagemaker`` configuration;

then checks that the remote models score the validation rows exactly as the in-process one
does, and prints where the time goes and the headline: the remote node's overhead, remote
end-to-end minus in-process. Exits 1 if a job fails or the models differ, 2 without the model
input files (``kedro run --pipeline data_engineering`` makes them).

    .venv/bin/python benchmarks/sagemaker_runner_overhead.py [--runs 3] [--env local] [--verbose]
"""

from __future__ import annotations

import os

# No telemetry prompt or upload from Kedro; idle OpenMP threads (XGBoost's) sleep instead of
# spinning, here and in the job subprocess (which inherits this environment), so neither steals
# CPU from the other. libgomp reads the variable once, when XGBoost loads it.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import hashlib
import logging
import re
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from kedro.config import MissingConfigException, OmegaConfigLoader
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

from predictive_maintenance import settings
from predictive_maintenance.modeling import predict_scores
from predictive_maintenance.pipelines.training.nodes import train_model
from predictive_maintenance.pipelines.training.pipeline import create_pipeline
from predictive_maintenance.sagemaker import SageMakerHooks, SageMakerRunner
from predictive_maintenance.sagemaker.aws import resolve_image_uri
from predictive_maintenance.sagemaker.backends import create_backend
from predictive_maintenance.sagemaker.config import BridgeSettings, parse_settings
from predictive_maintenance.sagemaker.jobs import prepare_job, read_outputs
from predictive_maintenance.sagemaker.packaging import build_source_archive, top_level_package

PROJECT_ROOT = Path(__file__).resolve().parents[1]
NODE_NAME = "train.train_model"
INPUTS = ("train", "validation")
#: The entry script's two timing lines (``entry_point.run``).
READ_LINE = re.compile(
    r"kedro node \S+: read (?P<count>\d+) inputs and imported (?P<function>\S+)"
    r" in (?P<seconds>[0-9.]+) s$"
)
RAN_LINE = re.compile(
    r"kedro node \S+: ran in (?P<ran>[0-9.]+) s; wrote (?P<outputs>.*) in (?P<wrote>[0-9.]+) s$"
)
JOB_PHASES = ("Starting", "Downloading", "Training", "Uploading")


# ---- the project: configuration, inputs, the node ------------------------------------------------
def load_project(env: str | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The resolved parameters, ``sagemaker`` configuration and catalog configuration."""
    with warnings.catch_warnings():
        # Kedro 1.7 itself calls omegaconf's deprecated register_new_resolver; not our concern.
        warnings.filterwarnings("ignore", message=r"register_new_resolver\(\) is deprecated")
        # The project's own loader settings (envs, config patterns), as `kedro run` uses them.
        loader = OmegaConfigLoader(
            conf_source=str(PROJECT_ROOT / "conf"), env=env, **settings.CONFIG_LOADER_ARGS
        )
        parameters = loader["parameters"]
        sagemaker = dict(loader["sagemaker"])
        catalog = loader["catalog"]
        try:
            credentials = loader["credentials"]
        except MissingConfigException:
            credentials = {}
    return parameters, sagemaker, {"catalog": catalog, "credentials": credentials}


def load_inputs(catalog_config: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """``train`` and ``validation`` through the project's catalog (paths relative to the root)."""
    previous = Path.cwd()
    os.chdir(PROJECT_ROOT)
    try:
        catalog = DataCatalog.from_config(
            {name: catalog_config["catalog"][name] for name in INPUTS},
            credentials=catalog_config["credentials"],
        )
        return {name: catalog.load(name) for name in INPUTS}
    finally:
        os.chdir(previous)


def training_node() -> Any:
    """The training pipeline's own ``train_model`` node (inputs, outputs and tags as registered)."""
    return next(node for node in create_pipeline().nodes if node.name == NODE_NAME)


def memory_catalog(inputs: dict[str, pd.DataFrame], xgboost: dict[str, Any]) -> DataCatalog:
    return DataCatalog(
        {
            **{name: MemoryDataset(frame) for name, frame in inputs.items()},
            "params:xgboost": MemoryDataset(xgboost),
            "model": MemoryDataset(),
        }
    )


def bridge_config(sagemaker: dict[str, Any], store_directory: Path) -> dict[str, Any]:
    """The project's ``sagemaker`` configuration with the local store in ``store_directory``."""
    return {
        **sagemaker,
        "local": {**(sagemaker.get("local") or {}), "store_directory": str(store_directory)},
    }


# ---- measurements --------------------------------------------------------------------------------
def seconds_between(transition: dict[str, Any]) -> float:
    return (transition["EndTime"] - transition["StartTime"]).total_seconds()


def remote_step_by_step(
    node: Any,
    inputs: dict[str, pd.DataFrame],
    xgboost: dict[str, Any],
    settings: BridgeSettings,
) -> dict[str, Any]:
    """One remote run of ``node``, phase by phase, as ``SageMakerRunner._run_remotely`` does it."""
    backend = create_backend("local", settings)
    job_settings = settings.job_settings(node.name, node.tags)
    times: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        times[phase] = now - clock
        clock = now

    archive = build_source_archive(
        (top_level_package(node.func.__module__),), job_settings.requirements
    )
    lap("archive")
    code_uri = f"{settings.s3_root}/code/{hashlib.sha256(archive).hexdigest()}/sourcedir.tar.gz"
    if not backend.store.exists(code_uri):
        with tempfile.TemporaryDirectory() as staging:
            path = Path(staging) / "sourcedir.tar.gz"
            path.write_bytes(archive)
            backend.store.upload_file(path, code_uri)
    lap("code_upload")
    image_uri = resolve_image_uri(
        job_settings.image_uri,
        job_settings.framework,
        job_settings.framework_version,
        settings.region,
    )
    lap("image_uri")
    job = prepare_job(
        node,
        (inputs["train"], inputs["validation"], xgboost),
        {},
        settings=settings,
        job_settings=job_settings,
        image_uri=image_uri,
        code_uri=code_uri,
        store=backend.store,
    )
    lap("prepare_job")
    backend.create_training_job(job.request)
    lap("submit")
    described = backend.wait(job.name)  # no polling: the job's thread is joined
    lap("job")
    log = backend.new_log_lines(job.name)
    if described["TrainingJobStatus"] != "Completed":
        tail = "\n".join(f"  {line}" for line in log[-20:])
        raise SystemExit(
            f"training job {job.name} {described['TrainingJobStatus']}: "
            f"{described.get('FailureReason')}\n{tail}"
        )
    model = read_outputs(job, described["ModelArtifacts"]["S3ModelArtifacts"], backend.store)
    lap("read_outputs")
    total = time.perf_counter() - started

    transitions = {item["Status"]: item for item in described["SecondaryStatusTransitions"]}
    for phase in JOB_PHASES:
        times[f"job_{phase}"] = seconds_between(transitions[phase])
    # From create_training_job's return to wait()'s: the phases above plus the job's bookkeeping.
    times["job_rest"] = times.pop("job") - sum(times[f"job_{phase}"] for phase in JOB_PHASES)
    read, ran = (
        [match for line in log if (match := pattern.search(line))]
        for pattern in (READ_LINE, RAN_LINE)
    )
    if len(read) != 1 or len(ran) != 1:
        raise SystemExit(
            f"job {job.name}: expected one 'read ... imported' and one 'ran in' line, got:\n"
            + "\n".join(log)
        )
    times["inputs_imports"] = float(read[0]["seconds"])
    times["node_function"] = float(ran[0]["ran"])
    times["outputs_write"] = float(ran[0]["wrote"])
    times["process_in_job"] = times["job_Training"] - (
        times["inputs_imports"] + times["node_function"] + times["outputs_write"]
    )
    input_bytes = sum(
        backend.store.path_of(uri).stat().st_size
        for uri in backend.store.list_keys(f"{settings.s3_root}/jobs/{job.name}/input/")
    )
    artifacts = backend.store.path_of(described["ModelArtifacts"]["S3ModelArtifacts"])
    return {
        "times": times,
        "total": total,
        "model": model,
        "lines": {
            "inputs": int(read[0]["count"]),
            "function": read[0]["function"],
            "outputs": ran[0]["outputs"],
        },
        "bytes": {
            "archive": len(archive),
            "inputs": input_bytes,
            "model.tar.gz": artifacts.stat().st_size,
        },
    }


def remote_end_to_end(
    node: Any,
    inputs: dict[str, pd.DataFrame],
    xgboost: dict[str, Any],
    sagemaker: dict[str, Any],
    store_directory: Path,
) -> tuple[float, Any, float]:
    """``SageMakerRunner(backend="local").run`` of the one-node pipeline: seconds, the model, and
    the seconds its job took (Starting to Uploading, from the job's status transitions)."""
    config = bridge_config(sagemaker, store_directory)
    hooks = SageMakerHooks()
    hooks.after_context_created(
        SimpleNamespace(project_path=PROJECT_ROOT, env="local", config_loader={"sagemaker": config})
    )
    manager = _create_hook_manager()
    manager.register(hooks)
    catalog = memory_catalog(inputs, xgboost)
    runner = SageMakerRunner(backend="local")
    started = time.perf_counter()
    runner.run(Pipeline([node]), catalog, manager)
    seconds = time.perf_counter() - started
    settings = parse_settings(config, PROJECT_ROOT)
    backend = runner.backend(settings)  # the one the run created
    (name,) = {
        uri.removeprefix(f"{settings.s3_root}/jobs/").split("/")[0]
        for uri in backend.store.list_keys(f"{settings.s3_root}/jobs/")
    }
    transitions = {
        item["Status"]: item
        for item in backend.describe_training_job(name)["SecondaryStatusTransitions"]
    }
    job = sum(seconds_between(transitions[phase]) for phase in JOB_PHASES)
    return seconds, catalog.load("model"), job


def in_process_runner(node: Any, inputs: dict[str, pd.DataFrame], xgboost: dict[str, Any]) -> float:
    catalog = memory_catalog(inputs, xgboost)
    started = time.perf_counter()
    SequentialRunner().run(Pipeline([node]), catalog, _create_hook_manager())
    return time.perf_counter() - started


def timed(function: Any, *args: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def measure(
    runs: int,
    node: Any,
    inputs: dict[str, pd.DataFrame],
    xgboost: dict[str, Any],
    sagemaker: dict[str, Any],
) -> dict[str, Any]:
    """Every measurement, ``runs`` times each; raw figures and the models."""
    with tempfile.TemporaryDirectory(prefix="sagemaker-benchmark-") as directory:
        settings = parse_settings(bridge_config(sagemaker, Path(directory)), PROJECT_ROOT)
    job_settings = settings.job_settings(node.name, node.tags)
    result: dict[str, Any] = {"poll": settings.local_poll_seconds}

    # 1. In-process.
    result["direct"] = [
        timed(train_model, inputs["train"], inputs["validation"], xgboost) for _ in range(runs)
    ]
    result["sequential"] = [in_process_runner(node, inputs, xgboost) for _ in range(runs)]

    # 2. The image URI's first lookup imports the SageMaker SDK; the runner pays it once a process.
    result["sdk_was_loaded"] = "sagemaker" in sys.modules
    result["first_lookup"], result["image_uri"] = timed(
        resolve_image_uri,
        job_settings.image_uri,
        job_settings.framework,
        job_settings.framework_version,
        settings.region,
    )

    # 3. The remote path, step by step; each run with its own empty store (so the code uploads).
    result["steps"] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="sagemaker-benchmark-") as directory:
            settings = parse_settings(bridge_config(sagemaker, Path(directory)), PROJECT_ROOT)
            result["steps"].append(remote_step_by_step(node, inputs, xgboost, settings))

    # 4. End to end through SageMakerRunner.
    result["end_to_end"] = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory(prefix="sagemaker-benchmark-") as directory:
            result["end_to_end"].append(
                remote_end_to_end(node, inputs, xgboost, sagemaker, Path(directory))
            )
    return result


# ---- report --------------------------------------------------------------------------------------
def median(values: Any) -> float:
    return statistics.median(list(values))


def model_difference(reference: Any, model: Any, validation: pd.DataFrame) -> tuple[float, bool]:
    """Max |score difference| on the validation rows, and whether the UBJ bytes are identical."""
    difference = np.abs(predict_scores(reference, validation) - predict_scores(model, validation))
    same_bytes = bytes(reference.save_raw(raw_format="ubj")) == bytes(
        model.save_raw(raw_format="ubj")
    )
    return float(difference.max()), same_bytes


def phase_rows(result: dict[str, Any]) -> tuple[list[tuple[str, float]], dict[str, float]]:
    """The phases of the remote node (median seconds), ending with the end-to-end remainder."""
    steps = result["steps"]
    phase = {key: median(run["times"][key] for run in steps) for key in steps[0]["times"]}
    phase["remote_total"] = median(seconds for seconds, _, _ in result["end_to_end"])
    phase["job_steps"] = median(
        sum(run["times"][f"job_{name}"] for name in JOB_PHASES) for run in steps
    )
    phase["job_end_to_end"] = median(job for _, _, job in result["end_to_end"])
    phase["variation"] = phase["job_end_to_end"] - phase["job_steps"]
    phase["in_process"] = median(seconds for seconds, _ in result["direct"])
    sizes = {key: f"{value / 1e3:,.0f} kB" for key, value in steps[0]["bytes"].items()}
    rows = [
        (f"code: build_source_archive ({sizes['archive']})", phase["archive"]),
        ("code: upload to the store", phase["code_upload"]),
        ("image URI lookup (cached after the first)", phase["image_uri"]),
        (f"prepare_job: encode + upload inputs ({sizes['inputs']})", phase["prepare_job"]),
        ("create_training_job (botocore validates)", phase["submit"]),
        ("job Starting (worker thread starts)", phase["job_Starting"]),
        ("job Downloading (channels, code to /opt/ml)", phase["job_Downloading"]),
        ("job Training: interpreter start, exit *", phase["process_in_job"]),
        ("job Training: read inputs + imports (A) *", phase["inputs_imports"]),
        ("job Training: train_model alone (B) *", phase["node_function"]),
        ("job Training: write outputs (C) *", phase["outputs_write"]),
        (f"job Uploading (model.tar.gz, {sizes['model.tar.gz']})", phase["job_Uploading"]),
        ("job bookkeeping (to wait() returning)", phase["job_rest"]),
        ("read_outputs: download, sha256, decode", phase["read_outputs"]),
    ]
    phase["phases_sum"] = sum(seconds for _, seconds in rows)
    phase["rest"] = phase["remote_total"] - phase["phases_sum"] - phase["variation"]
    rows.append((f"polling ({result['poll']:g} s), Kedro runner, rest **", phase["rest"]))
    rows.append(("job: end-to-end runs vs step-by-step runs ***", phase["variation"]))
    return rows, phase


def report(
    result: dict[str, Any], node: Any, inputs: dict[str, pd.DataFrame], xgboost: dict[str, Any]
) -> bool:
    """Prints the figures; True if a remote model differs from the in-process one."""
    rows, phase = phase_rows(result)
    remote_total, in_process = phase["remote_total"], phase["in_process"]
    print(
        f"SageMakerRunner overhead: node {node.name} ({len(inputs['train']):,} train +"
        f" {len(inputs['validation']):,} validation rows), backend=local,"
        f" {len(result['direct'])} run(s)\n{os.cpu_count()} CPUs, xgboost nthread="
        f"{xgboost['booster_params'].get('nthread', 'default')},"
        f" OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, local.poll_seconds {result['poll']:g}"
    )
    print(
        f"\n{'':>4} {'in-process':>10} {'Sequential':>10}"
        f" {'remote step by step':>20} {'remote end-to-end':>20}"
        f"\n{'run':>4} {'s':>10} {'Runner s':>10} {'total s':>10} {'job s':>9}"
        f" {'total s':>10} {'job s':>9}"
    )
    for number, (direct, sequential, steps, end_to_end) in enumerate(
        zip(
            result["direct"],
            result["sequential"],
            result["steps"],
            result["end_to_end"],
            strict=True,
        ),
        start=1,
    ):
        step_job = sum(steps["times"][f"job_{name}"] for name in JOB_PHASES)
        print(
            f"{number:>4} {direct[0]:>10.2f} {sequential:>10.2f} {steps['total']:>10.2f}"
            f" {step_job:>9.2f} {end_to_end[0]:>10.2f} {end_to_end[2]:>9.2f}"
        )

    print(f"\n{'phase (median over runs)':<50} {'seconds':>8} {'share':>6}")
    for label, seconds in rows:
        print(f"  {label:<48} {seconds:>8.3f} {100 * seconds / remote_total:>5.1f}%")
    print(f"  {'remote end-to-end: SageMakerRunner.run':<48} {remote_total:>8.3f} {100:>5.1f}%")
    lines = result["steps"][0]["lines"]
    notes = [
        "* from the entry script's log lines 'read N inputs and imported <function> in A s' and"
        " 'ran in B s; wrote <outputs> in C s' (here: read"
        f" {lines['inputs']} inputs and imported {lines['function']}; wrote {lines['outputs']})."
        " A covers decoding the inputs and the imports they and the node need: reading the Parquet"
        f" inputs imports pandas and pyarrow, importing the node's function imports"
        f" {node.func.__module__} (XGBoost, which imports scikit-learn and SciPy). The interpreter"
        " row is the job's Training phase minus A+B+C: Python's start-up and exit, the entry"
        " script's own import and reading the node's description.",
        "** end-to-end minus every other row: what the runner adds around the job beyond the"
        " phases above (the step-by-step runs wait on the job's thread instead of polling).",
        f"*** the job (Starting to Uploading) took {phase['job_end_to_end']:.2f} s in the"
        f" end-to-end runs and {phase['job_steps']:.2f} s in the step-by-step runs (medians):"
        " run-to-run variation of the job process (the job rows above are the step-by-step"
        " runs').",
    ]
    print()
    for note in notes:
        print(
            textwrap.fill(
                note,
                width=100,
                initial_indent="  ",
                subsequent_indent="     ",
                break_on_hyphens=False,
            )
        )
    print(
        textwrap.fill(
            "one-off, not in the figures above: the first image URI lookup"
            f"{'' if result['sdk_was_loaded'] else ' (it imports the SageMaker SDK)'} takes"
            f" {result['first_lookup']:.2f} s ({result['image_uri'].rsplit('/', 1)[-1]});"
            " the runner caches it, so a `kedro run` pays it once.",
            width=100,
            initial_indent="\n",
        )
    )

    print(
        f"\nsame model? (each run's model against the first in-process one, on the"
        f" {len(inputs['validation']):,} validation rows)"
    )
    reference = result["direct"][0][1]
    candidates = {
        "in-process reruns": [model for _, model in result["direct"][1:]],
        "remote step by step": [run["model"] for run in result["steps"]],
        "remote end-to-end": [model for _, model, _ in result["end_to_end"]],
    }
    mismatch = False
    for label, models in candidates.items():
        if not models:
            continue
        checks = [model_difference(reference, model, inputs["validation"]) for model in models]
        difference = max(difference for difference, _ in checks)
        same_bytes = all(same for _, same in checks)
        mismatch |= difference != 0 or not same_bytes
        print(
            f"  {label:<20} ({len(models)}) max |score difference| {difference:.3g};"
            f" model bytes {'identical' if same_bytes else 'DIFFERENT'};"
            f" best_iteration {', '.join(sorted({m.attr('best_iteration') for m in models}))}"
        )
    if mismatch:
        print("  MISMATCH: the remote path does not reproduce the in-process model")

    overhead = remote_total - in_process
    job_process = phase["process_in_job"] + phase["variation"]
    in_job = (
        phase["process_in_job"]
        + phase["inputs_imports"]
        + phase["node_function"]
        + phase["outputs_write"]
    )
    node_delta = phase["node_function"] - in_process
    bridge_io = phase["phases_sum"] - in_job
    in_runner = median(result["sequential"])
    print(
        f"\nin-process: train_model {in_process:.2f} s; through SequentialRunner {in_runner:.2f} s"
        f"\nremote node overhead = remote end-to-end {remote_total:.2f} s"
        f" - in-process {in_process:.2f} s = {overhead:.2f} s"
        f" ({remote_total / in_process:.1f}x the in-process time)"
        f"\n  = job interpreter start, exit {job_process:.2f} s"
        f" ({100 * job_process / overhead:.0f}%; incl. the *** variation)"
        f"\n  + job inputs read + imports (A) {phase['inputs_imports']:.2f} s"
        f" ({100 * phase['inputs_imports'] / overhead:.0f}%)"
        f"\n  + job outputs write (C) {phase['outputs_write']:.2f} s"
        f"\n  + polling, Kedro runner, rest {phase['rest']:.2f} s"
        f"\n  + bridge I/O outside the job process (code, inputs, request, /opt/ml, outputs)"
        f" {bridge_io:.2f} s"
        f"\n  + train_model in the job (B) vs in-process {node_delta:+.2f} s"
    )
    return mismatch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement (default 3)")
    parser.add_argument(
        "--env",
        default=os.environ.get("KEDRO_ENV"),
        help="Kedro config environment, as `kedro run --env` (default: $KEDRO_ENV, else local)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show Kedro's and the bridge's INFO log"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not args.verbose:
        for name in ("kedro", "predictive_maintenance"):
            logging.getLogger(name).setLevel(logging.WARNING)

    parameters, sagemaker, catalog_config = load_project(args.env)
    missing = [
        path
        for name in INPUTS
        if not (path := PROJECT_ROOT / catalog_config["catalog"][name]["filepath"]).is_file()
    ]
    if missing:
        print(
            f"missing {', '.join(str(path.relative_to(PROJECT_ROOT)) for path in missing)}:"
            " run `kedro run --pipeline data_engineering` first",
            file=sys.stderr,
        )
        return 2
    inputs = load_inputs(catalog_config)
    node = training_node()
    result = measure(args.runs, node, inputs, parameters["xgboost"], sagemaker)
    mismatch = report(result, node, inputs, parameters["xgboost"])
    return 1 if mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
