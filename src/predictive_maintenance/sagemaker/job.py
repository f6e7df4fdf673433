"""The job contract: a group of Kedro nodes that runs as one SageMaker job, inside the stock image.

Every job the bridge makes (a remote node of ``SageMakerRunner``, a step of an exported pipeline,
a step that ``kedro sagemaker run-local`` executes) is described by one *job spec*, ``job.json``
in the job's ``kedro-job`` input, and run by one program, ``kedro_job_entry.py``, which calls
:func:`main`::

    {"job": "evaluate",
     "nodes": [{"node": "evaluate.score_test_set", "function": "package.module:function",
                "inputs": {"kind": "list", "items": [{"arg": null, "dataset": "model"}]},
                "outputs": {"kind": "single", "names": ["test_predictions"]}}],
     "inputs": {"model": "model"},            # dataset -> input (channel) name
     "outputs": {"metrics": "metrics"},       # dataset -> output name
     "files": {"model_archive": "model.tar.gz"},   # outputs whose file name is fixed
     "parameters": {"xgboost": {}},           # the Kedro parameters the nodes read
     "catalog": {"model_registry": {}},       # services, loaded and saved through Kedro
     "tracking": {"experiment": "pm", "log": {"metrics": ["metrics"]}}}   # optional: MLflow

With a ``tracking`` block and ``MLFLOW_TRACKING_URI`` in its environment, the job logs its
parameters and its nodes' outputs to MLflow (:func:`job_tracking`; the runner's and the
exported pipeline's variables are set by :mod:`.experiment_tracking`).

A multi-instance training job's spec also says how it is distributed (:mod:`.distributed`)::

     "distributed": {"collective": "xgboost", "instances": 2,
                     "sharded": {"train": {"codec": "parquet", "parts": [
                         {"file": "part-00000.parquet", "sha256": "...", "rows": 4000}, ...]}}}

Every host then runs the nodes inside XGBoost's collective, reading only the parts of each
sharded input it received (checked against the listed sha256), and only rank 0 writes outputs.

Nodes run in order, passing data in memory; only the spec's inputs and outputs touch files. Where
they are follows SageMaker's own layout for the job's kind:

- processing (``--output-dir`` given): inputs in ``<input dir>/<name>/``, outputs written to
  ``<output dir>/<name>/``, a failure's reason to ``--message-file`` (``/opt/ml/output/message``,
  which SageMaker reports as the processing job's FailureReason);
- training (script mode): inputs in ``/opt/ml/input/data/<name>/``, outputs to
  ``<SM_MODEL_DIR>/<name>/`` (SageMaker returns them in ``model.tar.gz``), a failure's reason to
  ``<SM_OUTPUT_DIR>/failure``.

Every output directory holds the value, in an open format (:mod:`.codecs`), and
``kedro_value.json`` naming its file, codec and sha256: the one manifest, read back by
:func:`read_dataset` from a directory, from a ``model.tar.gz`` of such directories, or from a
single plain file (a pipeline input such as a raw CSV). Pipeline parameters given when an
execution starts arrive as ``KEDRO_PARAM_<n>=<JSON key path>=<value>`` variables, converted to the
type of the Kedro parameter they override.

Python 3.10 and the standard library (plus what the codecs and the nodes need): this runs inside
the stock image, where the packages the image lacks are installed first from the wheels of the
job's ``kedro-wheels`` input (:func:`install_shipped_wheels`), with no package index.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.integrity import file_sha256
from predictive_maintenance.sagemaker.archives import extract_tar_gz
from predictive_maintenance.sagemaker.codecs import read_value, write_value
from predictive_maintenance.sagemaker.distributed import (
    check_collective,
    cluster_from_environment,
    xgboost_collective,
)

#: The input (processing input or training channel) holding the job spec.
JOB_INPUT: Final = "kedro-job"
JOB_FILE: Final = "job.json"
#: The manifest beside every value a job writes.
VALUE_MANIFEST: Final = "kedro_value.json"
#: Names the job in a training job's hyperparameters and on a processing job's command line.
JOB_ARGUMENT: Final = "kedro_job"
PARAMETER_VARIABLE_PREFIX: Final = "KEDRO_PARAM_"
#: The input holding the wheels of what the image lacks, installed without an index.
WHEELS_INPUT: Final = "kedro-wheels"
#: The job spec's block of what the job logs to MLflow (``TrackingSettings.job_spec()``).
TRACKING_KEY: Final = "tracking"
#: SageMaker shows at most this many characters of a failure file as FailureReason.
FAILURE_REASON_LIMIT: Final = 1024


class JobError(RuntimeError):
    """A job's spec, inputs or outputs are not what the contract says."""


class NodeFailedError(JobError):
    """A node raised; the message is ``node <name> failed: <reason>``."""


# ---- names ---------------------------------------------------------------------------------------
def is_parameter(dataset: str) -> bool:
    return dataset == "parameters" or dataset.startswith("params:")


def import_function(path: str) -> Any:
    """``package.module:qualified.name`` -> the object."""
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


# ---- values on disk ------------------------------------------------------------------------------
def write_dataset(
    value: Any,
    directory: Path,
    dataset: str,
    stem: str,
    file_name: str | None = None,
    *,
    what: str | None = None,
) -> dict[str, Any]:
    """Writes one dataset into ``directory``: the value file and its manifest (returned).

    The file is ``<stem><codec suffix>``, or ``file_name`` where the consumer needs a fixed name
    (SageMaker's ModelDataUrl must end in ``model.tar.gz``). ``what`` names the value in errors
    (default ``output <dataset>``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    codec, path = write_value(value, directory, stem, what or f"output {dataset}")
    if file_name is not None and path.name != file_name:
        path = path.rename(directory / file_name)
    manifest = {
        "dataset": dataset,
        "file": path.name,
        "codec": codec.name,
        "sha256": file_sha256(path),
    }
    (directory / VALUE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _read_manifested(directory: Path, dataset: str) -> Any:
    manifest = json.loads((directory / VALUE_MANIFEST).read_text())
    path = directory / manifest["file"]
    if path.parent != directory or not path.is_file():
        raise JobError(f"input {dataset}: {manifest['file']!r} is missing from {directory}")
    digest = file_sha256(path)
    if digest != manifest["sha256"]:
        raise JobError(
            f"input {dataset}: {path.name} has sha256 {digest}, its manifest says "
            f"{manifest['sha256']}"
        )
    return read_value(manifest["codec"], path, f"input {dataset}")


def read_dataset(directory: Path, dataset: str) -> Any:
    """Reads ``dataset`` from an input directory, whichever kind of job wrote it: the value and
    its manifest; a training job's ``model.tar.gz`` holding a directory with them; or one plain
    file, read as bytes."""
    if (directory / VALUE_MANIFEST).is_file():
        return _read_manifested(directory, dataset)
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    if len(files) == 1 and files[0].name.endswith(".tar.gz"):
        with tempfile.TemporaryDirectory() as extracted:
            root = extract_tar_gz(files[0].read_bytes(), Path(extracted), what=files[0].name)
            manifests = sorted(root.glob(f"*/{VALUE_MANIFEST}"))
            for manifest in manifests:
                if json.loads(manifest.read_text()).get("dataset") == dataset:
                    return _read_manifested(manifest.parent, dataset)
            if manifests:
                raise JobError(f"input {dataset}: {files[0].name} does not hold it")
        # A pipeline input that happens to be an archive: plain bytes like any other file.
    if len(files) == 1:
        return files[0].read_bytes()  # a plain pipeline input, e.g. the raw CSV
    listing = ", ".join(path.name for path in files) or "nothing"
    raise JobError(
        f"input {dataset}: {directory} holds {listing}; expected {VALUE_MANIFEST} with its value, "
        "a model.tar.gz from a training job, or a single plain file"
    )


def read_parts(directory: Path, dataset: str, sharded: Mapping[str, Any], host: str) -> Any:
    """The parts of a sharded input this host received (``ShardedByS3Key``), each checked
    against the sha256 the spec lists for it, concatenated in part order."""
    listed = {part["file"]: (index, part) for index, part in enumerate(sharded["parts"])}
    present = sorted(path for path in directory.rglob("*") if path.is_file())
    unknown = [path.name for path in present if path.name not in listed]
    if unknown:
        raise JobError(
            f"input {dataset}: {directory} holds {', '.join(unknown)}, which the job spec does "
            f"not list among its {len(listed)} parts"
        )
    if not present:
        raise JobError(
            f"input {dataset}: {host} received none of its {len(listed)} parts; ShardedByS3Key "
            "gives each instance about 1/n of the objects, so some instance got none: raise "
            "training_job.shards_per_instance in conf/<env>/sagemaker.yml"
        )
    frames, rows = [], 0
    for path in sorted(present, key=lambda item: listed[item.name][0]):
        part = listed[path.name][1]
        digest = file_sha256(path)
        if digest != part["sha256"]:
            raise JobError(
                f"input {dataset}: {path.name} has sha256 {digest}, the job spec says "
                f"{part['sha256']}"
            )
        frames.append(read_value(sharded["codec"], path, f"input {dataset} ({path.name})"))
        rows += len(frames[-1])
    import pandas as pd  # noqa: PLC0415 -- parts are data frames; the job needs pandas then

    print(
        f"kedro job: {host}: input {dataset}: {len(frames)} of {len(listed)} parts "
        f"({', '.join(path.name for path in present)}), {rows:,} rows",
        flush=True,
    )
    return pd.concat(frames) if len(frames) > 1 else frames[0]


# ---- parameters ----------------------------------------------------------------------------------
def parameter_overrides(environ: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """``KEDRO_PARAM_<n>`` variables as (variable, key path, raw value), in ``n`` order."""
    decoder = json.JSONDecoder()
    numbered = {}
    for variable in environ:
        if variable.startswith(PARAMETER_VARIABLE_PREFIX):
            suffix = variable[len(PARAMETER_VARIABLE_PREFIX) :]
            if not suffix.isdigit():
                raise JobError(f"{variable}: expected {PARAMETER_VARIABLE_PREFIX}<number>")
            numbered[variable] = int(suffix)
    overrides = []
    for variable in sorted(numbered, key=numbered.__getitem__):
        text = environ[variable]
        try:
            path, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            path, end = None, 0
        if not isinstance(path, list) or text[end : end + 1] != "=":
            raise JobError(f"{variable}={text!r} is not <JSON key path>=<value>")
        overrides.append((variable, [str(key) for key in path], text[end + 1 :]))
    return overrides


def typed_like(current: Any, raw: str, where: str) -> Any:
    """``raw`` (how SageMaker renders a pipeline parameter) as the type of ``current``.

    A Boolean parameter arrives as ``true``/``false`` (any case); a String parameter such as
    ``"2024"`` stays a string; numbers must parse.
    """
    if isinstance(current, bool):
        if raw.strip().lower() in {"true", "false"}:
            return raw.strip().lower() == "true"
        raise JobError(f"{where}: {raw!r} is not a boolean (true or false)")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            raise JobError(f"{where}: {raw!r} is not an integer") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            raise JobError(f"{where}: {raw!r} is not a number") from None
    if isinstance(current, str) or current is None:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        raise JobError(f"{where}: {raw!r} is not JSON") from None


def apply_overrides(
    parameters: dict[str, Any], overrides: list[tuple[str, list[str], str]]
) -> None:
    """Sets each override's key path; paths this job does not have belong to other jobs."""
    for variable, path, raw in overrides:
        target: Any = parameters
        for key in path[:-1]:
            if not isinstance(target, dict) or key not in target:
                break
            target = target[key]
        else:
            if isinstance(target, dict) and path[-1] in target:
                where = f"{variable} (parameter {'.'.join(path)})"
                target[path[-1]] = typed_like(target[path[-1]], raw, where)


def parameter_value(parameters: Mapping[str, Any], dataset: str) -> Any:
    """The value of a ``params:a.b`` (or ``parameters``) input."""
    if dataset == "parameters":
        return parameters
    value: Any = parameters
    for key in dataset[len("params:") :].split("."):
        value = value[key]
    return value


# ---- running nodes -------------------------------------------------------------------------------
def call_node(node: Mapping[str, Any], args: list[Any]) -> dict[str, Any]:
    """Calls the node's function as Kedro does; returns its outputs by dataset."""
    function = import_function(node["function"])
    inputs = node["inputs"]
    try:
        if inputs["kind"] == "dict":
            items = zip(inputs["items"], args, strict=True)
            result = function(**{item["arg"]: value for item, value in items})
        else:
            result = function(*args)
    except Exception as error:
        raise NodeFailedError(
            f"node {node['node']} failed: {type(error).__name__}: {error}"
        ) from error
    return named_outputs(node, result)


def named_outputs(node: Mapping[str, Any], result: Any) -> dict[str, Any]:
    """A node's return value as {dataset: value}, checked against its declared outputs."""
    kind, names = node["outputs"]["kind"], node["outputs"]["names"]
    if kind == "none":
        return {}
    if kind == "single":
        return {names[0]: result}
    if kind == "list":
        if not isinstance(result, (list, tuple)) or len(result) != len(names):
            raise NodeFailedError(
                f"node {node['node']} failed: it returned {type(result).__name__}, "
                f"not {len(names)} values"
            )
        return dict(zip(names, result, strict=True))
    if not isinstance(result, dict) or set(result) != set(names):
        raise NodeFailedError(
            f"node {node['node']} failed: it returned {type(result).__name__}, "
            f"not keys {sorted(names)}"
        )
    return {names[key]: result[key] for key in names}


def job_tracking(spec: Mapping[str, Any], environ: Mapping[str, str]) -> Any | None:
    """The job's MLflow tracking (:func:`predictive_maintenance.tracking.jobs.job_tracking`):
    None without the spec's ``tracking`` block, or without a store in ``environ``. MLflow is
    imported only then (seconds; shipped as wheels on the image)."""
    if not spec.get(TRACKING_KEY) or not environ.get("MLFLOW_TRACKING_URI"):
        return None
    from predictive_maintenance.tracking.jobs import job_tracking as tracking  # noqa: PLC0415

    return tracking(spec[TRACKING_KEY], environ, spec["job"])


def run_job(
    spec: Mapping[str, Any],
    input_dirs: Mapping[str, Path],
    environ: Mapping[str, str],
    host: str = "this host",
    *,
    track: bool = True,
) -> dict[str, Any]:
    """Runs the spec's nodes in order; returns the values of its outputs by dataset. A sharded
    input (a multi-instance job's) is read from the parts ``host`` received.

    With the spec's ``tracking`` block and ``track``, the job's parameters and each node's
    outputs are logged to MLflow (see :func:`job_tracking`); its run ends with the job. A
    tracking failure is a warning, never the job's failure."""
    parameters = json.loads(json.dumps(spec.get("parameters", {})))
    apply_overrides(parameters, parameter_overrides(environ))
    tracking = None
    if track and spec.get(TRACKING_KEY) and environ.get("MLFLOW_TRACKING_URI"):
        tracking = _TrackingLog(spec, environ, parameters)
    catalog = spec.get("catalog", {})
    sharded = spec.get("distributed", {}).get("sharded", {})
    values: dict[str, Any] = {}

    def service(name: str) -> Any:
        from kedro.io import AbstractDataset  # noqa: PLC0415 -- only jobs with services

        return AbstractDataset.from_config(name, json.loads(json.dumps(catalog[name])))

    def load(dataset: str) -> Any:
        if is_parameter(dataset):
            return parameter_value(parameters, dataset)
        if dataset in catalog:
            return service(dataset).load()
        if dataset not in values:
            if dataset not in input_dirs:
                raise JobError(
                    f"dataset {dataset} is neither an input of job {spec['job']} nor "
                    "made by one of its nodes"
                )
            if dataset in sharded:
                values[dataset] = read_parts(input_dirs[dataset], dataset, sharded[dataset], host)
            else:
                values[dataset] = read_dataset(input_dirs[dataset], dataset)
        return values[dataset]

    try:
        for node in spec["nodes"]:
            started = time.perf_counter()
            args = [load(item["dataset"]) for item in node["inputs"]["items"]]
            made = call_node(node, args)
            for dataset, value in made.items():
                if dataset in catalog:
                    service(dataset).save(value)
                else:
                    values[dataset] = value
            if tracking is not None:
                tracking.log_outputs(node["node"], made)
            seconds = time.perf_counter() - started
            print(f"kedro node {node['node']}: done in {seconds:.2f} s", flush=True)
    except BaseException:
        if tracking is not None:
            tracking.finish(failed=True)
        raise
    if tracking is not None:
        tracking.finish(failed=False)
    missing = [dataset for dataset in spec["outputs"] if dataset not in values]
    if missing:
        raise JobError(f"job {spec['job']} did not produce {', '.join(missing)}")
    return {dataset: values[dataset] for dataset in spec["outputs"]}


class _TrackingLog:
    """A job's MLflow logging, set up on a thread while the first nodes run (``import mlflow``
    and opening the store take seconds); what the nodes made meanwhile is logged once it is
    ready, later nodes' outputs right after them."""

    def __init__(
        self, spec: Mapping[str, Any], environ: Mapping[str, str], parameters: Mapping[str, Any]
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kedro-job-mlflow")
        self._tracking = self._pool.submit(job_tracking, spec, dict(environ))
        self._pending: list[tuple[str, Mapping[str, Any]]] = []
        self._parameters = parameters
        self._flushed = False

    def log_outputs(self, node: str, outputs: Mapping[str, Any]) -> None:
        self._pending.append((node, outputs))
        if self._tracking.done():
            self._flush()

    def _flush(self) -> Any | None:
        try:
            tracking = self._tracking.result()
        except Exception as error:  # job_tracking warns itself; this is its own failure
            print(f"kedro job: MLflow tracking off: {type(error).__name__}: {error}", flush=True)
            tracking = None
        if tracking is not None:
            if not self._flushed:
                tracking.log_parameters(self._parameters)
            for node, outputs in self._pending:
                tracking.log_outputs(node, outputs)
        self._flushed = True
        self._pending.clear()
        return tracking

    def finish(self, failed: bool) -> None:
        tracking = self._flush()
        if tracking is not None:
            tracking.finish(failed=failed)
        self._pool.shutdown(wait=False)


def run_distributed(
    spec: Mapping[str, Any],
    input_dirs: Mapping[str, Path],
    environ: Mapping[str, str],
    config_dir: Path,
    output_root: Path,
) -> None:
    """A multi-instance job on this host: the nodes run inside the collective, on this host's
    shards; rank 0 (the first host) writes the outputs, the others none."""
    distribution = spec["distributed"]
    check_collective(distribution["collective"])
    cluster = cluster_from_environment(environ, config_dir)
    if cluster.size != distribution["instances"]:
        raise JobError(
            f"job {spec['job']} was prepared for {distribution['instances']} instances but runs "
            f"on {cluster.size} ({', '.join(cluster.hosts)})"
        )
    with xgboost_collective(cluster, environ) as rank:
        try:
            # Every host computes the same model; the first logs it, as it writes it.
            outputs = run_job(spec, input_dirs, environ, cluster.describe(), track=rank == 0)
        except NodeFailedError as error:  # which host's shard failed it
            raise NodeFailedError(f"{error} (on {cluster.describe()})") from error
    if rank == 0:
        write_outputs(spec, outputs, output_root)
    else:
        print(
            f"kedro job: {cluster.describe()}: rank 0 writes the outputs, not this host", flush=True
        )


def write_outputs(spec: Mapping[str, Any], outputs: Mapping[str, Any], root: Path) -> None:
    """Each output into ``root/<output name>/`` (see :func:`write_dataset`)."""
    files = spec.get("files", {})
    for dataset, value in outputs.items():
        name = spec["outputs"][dataset]
        write_dataset(value, root / name, dataset, name, files.get(dataset))


# ---- the image's environment ---------------------------------------------------------------------
#: No index, no resolution (the set is closed), no bytecode (jobs run once).
_PIP_OFFLINE: Final = (
    "--quiet",
    "--disable-pip-version-check",
    "--no-index",
    "--no-deps",
    "--no-compile",
)


def _installed(wheel: Path) -> bool:
    """True if the wheel's distribution is installed at the wheel's version."""
    name, version = wheel.name.split("-")[:2]
    try:
        return importlib.metadata.version(name) == version
    except importlib.metadata.PackageNotFoundError:
        return False


def wheels_python(wheels: list[Path]) -> str | None:
    """The Python (``3.10``) a wheel set is for, from its CPython-specific wheels (``cp310``,
    not the stable ABI); None if it has none (a pure-Python set installs anywhere)."""
    versions = set()
    for wheel in wheels:
        parts = wheel.name[: -len(".whl")].split("-")
        if len(parts) < 5:
            continue
        python_tags, abi_tags = parts[-3].split("."), parts[-2].split(".")
        if any(abi in ("abi3", "none") for abi in abi_tags):
            continue
        for tag in python_tags:
            if tag.startswith("cp3") and tag[3:].isdigit():
                versions.add(f"3.{tag[3:]}")
    return versions.pop() if len(versions) == 1 else None


#: Set by the local backend only (on SageMaker every job starts from the bare image): a directory
#: where installed wheel sets are kept by content, so the jobs of local runs install a set once.
PACKAGES_CACHE_VARIABLE: Final = "KEDRO_JOB_PACKAGES_CACHE"
#: Installed sets kept in that directory (the newest by use); older ones are removed.
PACKAGES_CACHE_ENTRIES: Final = 4


def install_shipped_wheels(wheels_dir: Path) -> Path | None:
    """Installs the wheels in ``wheels_dir`` that this Python lacks (at their version).

    Installed with pip, no index and no dependency resolution (the wheel set is closed), into a
    fresh directory put first on ``sys.path``: the image itself is not modified. With
    :data:`PACKAGES_CACHE_VARIABLE` set (local jobs), the directory is kept there under the
    sha256 of the interpreter and the wheels, and reused by the next job of the same set.
    Returns that directory, or None when nothing was missing (e.g. in the project's own
    environment).
    """
    shipped = sorted(wheels_dir.glob("*.whl"))
    target, running = wheels_python(shipped), f"{sys.version_info[0]}.{sys.version_info[1]}"
    if target is not None and target != running:
        # The set is the image's (its Python); a local job on the project's own environment
        # (SageMakerRunner's local backend without python=...) has what the nodes need.
        print(
            f"kedro job: the {len(shipped)} shipped wheels are for Python {target}; this is "
            f"Python {running}: its own packages are used",
            flush=True,
        )
        return None
    missing = [wheel for wheel in shipped if not _installed(wheel)]
    if not missing:
        return None
    started = time.perf_counter()
    cache = os.environ.get(PACKAGES_CACHE_VARIABLE)
    if cache:
        target, reused = _cached_install(Path(cache), missing)
    else:
        target, reused = Path(tempfile.mkdtemp(prefix="kedro-job-packages-")), False
        _pip_install(target, missing)
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    done = "reused" if reused else "installed"
    print(
        f"kedro job: {done} {len(missing)} shipped wheels in "
        f"{time.perf_counter() - started:.1f} s" + (f" ({target})" if cache else ""),
        flush=True,
    )
    return target


def _pip_install(target: Path, wheels: list[Path]) -> None:
    command = [sys.executable, "-m", "pip", "install", *_PIP_OFFLINE, "--target", str(target)]
    installed = subprocess.run(
        [*command, *map(str, wheels)], capture_output=True, text=True, check=False
    )
    if installed.returncode != 0:
        raise JobError(
            f"installing {len(wheels)} shipped wheels failed: {installed.stderr.strip()[-600:]}"
        )


def _cached_install(cache: Path, wheels: list[Path]) -> tuple[Path, bool]:
    """The installed set of ``wheels`` in ``cache`` (made now if absent) and whether it was
    there. Made in a scratch directory and renamed into place, so concurrent jobs never see half
    an install: the first rename wins, the others use it and drop their own."""
    digest = hashlib.sha256(f"{sys.executable}\0{sys.version}".encode())
    for wheel in wheels:
        digest.update(f"\0{wheel.name}\0{file_sha256(wheel)}".encode())
    target = cache / digest.hexdigest()[:32]
    if target.is_dir():
        os.utime(target)  # the newest by use stay (see _prune)
        return target, True
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
    try:
        _pip_install(scratch, wheels)
        scratch.rename(target)
    except OSError:
        if not target.is_dir():
            raise
        shutil.rmtree(scratch, ignore_errors=True)  # another job installed the same set first
        return target, True
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    _prune(cache, keep=target)
    return target, False


def _prune(cache: Path, keep: Path) -> None:
    """Removes all but the :data:`PACKAGES_CACHE_ENTRIES` most recently used sets."""
    entries = sorted(
        (entry for entry in cache.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.stat().st_mtime,
        reverse=True,
    )
    for entry in entries[PACKAGES_CACHE_ENTRIES:]:
        if entry != keep:
            shutil.rmtree(entry, ignore_errors=True)


# ---- entry ---------------------------------------------------------------------------------------
def _arguments(argv: list[str]) -> dict[str, str]:
    """``--key value`` pairs; SageMaker passes hyperparameters this way too."""
    return {
        key.lstrip("-").replace("-", "_"): value
        for key, value in zip(argv[::2], argv[1::2], strict=False)
        if key.startswith("--")
    }


def read_spec(directory: Path) -> dict[str, Any]:
    path = directory / JOB_FILE
    if not path.is_file():
        raise JobError(f"the job spec {path} is missing (the job's {JOB_INPUT!r} input)")
    return json.loads(path.read_text())


def main(argv: list[str], code_dir: Path) -> int:
    """The entry script's body; returns the exit code.

    Processing jobs pass ``--kedro_job NAME --input-dir DIR --output-dir DIR --message-file
    PATH``; training jobs get ``--kedro_job NAME`` from their hyperparameters and the ``SM_*``
    variables of the training toolkit.
    """
    arguments = _arguments(argv)
    processing = "output_dir" in arguments
    if processing:
        failure_file = Path(arguments.get("message_file", "/opt/ml/output/message"))
    else:
        failure_file = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output")) / "failure"
    try:
        if processing:
            input_root = Path(arguments.get("input_dir", "/opt/ml/processing/input"))
            output_root = Path(arguments["output_dir"])

            def input_dir(name: str) -> Path:
                return input_root / name
        else:
            # SageMaker's fixed layout: /opt/ml/input/data/<channel>, /opt/ml/model.
            data_dir = Path(os.environ.get("SM_INPUT_DIR", "/opt/ml/input")) / "data"
            config_dir = data_dir.parent / "config"
            output_root = Path(os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))

            def input_dir(name: str) -> Path:
                return data_dir / name

        spec = read_spec(input_dir(JOB_INPUT))
        if arguments.get(JOB_ARGUMENT, spec["job"]) != spec["job"]:
            raise JobError(
                f"asked to run job {arguments[JOB_ARGUMENT]!r}, but its spec is of {spec['job']!r}"
            )
        install_shipped_wheels(input_dir(WHEELS_INPUT))
        inputs = {dataset: input_dir(name) for dataset, name in spec["inputs"].items()}
        if processing:
            write_outputs(spec, run_job(spec, inputs, os.environ), output_root)
        elif spec.get("distributed"):
            run_distributed(spec, inputs, os.environ, config_dir, output_root)
        else:
            cluster = cluster_from_environment(os.environ, config_dir)
            if cluster.size > 1:
                # Every host would train alone on all the data and write the same outputs.
                raise JobError(
                    f"job {spec['job']} runs on {cluster.size} instances, but its spec does "
                    "not say how to distribute it: give it one instance (instance_count: 1)"
                )
            write_outputs(spec, run_job(spec, inputs, os.environ), output_root)
    except Exception as error:  # every failure becomes the job's FailureReason
        traceback.print_exc()
        named = isinstance(error, NodeFailedError)  # "node <name> failed: ..." already
        reason = str(error) if named else f"{type(error).__name__}: {error}"
        print(reason, file=sys.stderr, flush=True)
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(reason[:FAILURE_REASON_LIMIT])
        return 1
    return 0
