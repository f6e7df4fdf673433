"""The job contract on the submitting side: Kedro nodes -> job specs, and the runner's jobs.

:func:`node_call` and :func:`job_spec` describe nodes the way :mod:`.job` runs them; the exporter
puts one spec per step in the code package, the runner uploads one per remote node as the job's
``kedro-job`` channel (:func:`prepare_job`) with its inputs, each a value and its manifest, and
reads the node's outputs back from the job's ``model.tar.gz`` (:func:`read_outputs`).
"""

from __future__ import annotations

import json
import re
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.integrity import file_sha256
from predictive_maintenance.sagemaker.archives import extract_tar_gz
from predictive_maintenance.sagemaker.codecs import (
    CodecError,
    codec_named,
    is_plain_json,
    write_value,
)
from predictive_maintenance.sagemaker.config import BridgeSettings, TrainingJobSettings
from predictive_maintenance.sagemaker.distributed import (
    DistributedJobError,
    part_stem,
    split_rows,
)
from predictive_maintenance.sagemaker.job import (
    JOB_ARGUMENT,
    JOB_FILE,
    JOB_INPUT,
    TRACKING_KEY,
    VALUE_MANIFEST,
    WHEELS_INPUT,
    JobError,
    import_function,
    is_parameter,
    read_dataset,
    write_dataset,
)
from predictive_maintenance.sagemaker.packaging import ENTRY_SCRIPT
from predictive_maintenance.sagemaker.storage import ObjectStore, upload_bytes

#: SageMaker's limits on a CreateTrainingJob request.
MAX_CHANNELS: Final = 20
MAX_JOB_NAME_CHARS: Final = 63
_TAG_VALUE_UNSAFE: Final = re.compile(r"[^\w .:/=+\-@]")
#: Input and output names the contract itself uses.
RESERVED_NAMES: Final = frozenset({"code", JOB_INPUT, WHEELS_INPUT})
#: Every job's environment: no package index (the wheels are shipped), no Kedro or MLflow
#: telemetry (a job may have no route out, and should not try one).
JOB_ENVIRONMENT: Final = {
    "PIP_NO_INDEX": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


class RemoteNodeError(RuntimeError):
    """A node cannot run as a job, or its job failed or returned something unusable."""


def job_name(name: str) -> str:
    """``<name>-<UTC time>-<random>``: unique, and SageMaker's 63-character name rule."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    suffix = f"-{stamp}-{secrets.token_hex(2)}"
    base = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-") or "kedro-job"
    return base[: MAX_JOB_NAME_CHARS - len(suffix)].rstrip("-") + suffix


def data_name(dataset: str, taken: set[str]) -> str:
    """An input/output/channel name for ``dataset`` (letters, digits, ``-``, ``_``), unique
    among ``taken`` ignoring case, as the toolkit's ``SM_CHANNEL_<NAME>`` variables are."""
    base = (re.sub(r"[^A-Za-z0-9_-]", "-", dataset).strip("-_") or "data")[:60]
    candidate, counter = base, 1
    while candidate.upper() in taken or candidate in RESERVED_NAMES:
        counter += 1
        candidate = f"{base}-{counter}"
    taken.add(candidate.upper())
    return candidate


def function_path(node_name: str, function: Any) -> str:
    """``module:qualname`` of a node's function, checked to import back to the same object."""
    path = f"{getattr(function, '__module__', '')}:{getattr(function, '__qualname__', '')}"
    try:
        importable = "<" not in path and import_function(path) is function
    except (ImportError, AttributeError):
        importable = False
    if not importable or path.startswith("__main__:"):
        raise RemoteNodeError(
            f"node {node_name}: its function {function!r} cannot be imported by name "
            f"({path}); a node that runs as a job needs a module-level function (no lambda, "
            "partial or closure) so the job can import it."
        )
    return path


def node_call(node: Any) -> dict[str, Any]:
    """How a job calls ``node``: function path, inputs by argument, the shape of its outputs."""
    # Kedro keeps a node's inputs and outputs as given (str, list or dict) only in _inputs and
    # _outputs; the call depends on that form.
    inputs, outputs = node._inputs, node._outputs
    if isinstance(inputs, dict):
        kind, items = "dict", [{"arg": arg, "dataset": ds} for arg, ds in inputs.items()]
    else:
        kind, items = "list", [{"arg": None, "dataset": ds} for ds in node.inputs]
    if outputs is None:
        shape: dict[str, Any] = {"kind": "none", "names": []}
    elif isinstance(outputs, str):
        shape = {"kind": "single", "names": [outputs]}
    elif isinstance(outputs, dict):
        shape = {"kind": "dict", "names": dict(outputs)}
    else:
        shape = {"kind": "list", "names": list(outputs)}
    return {
        "node": node.name,
        "function": function_path(node.name, node.func),
        "inputs": {"kind": kind, "items": items},
        "outputs": shape,
    }


def job_spec(
    name: str,
    nodes: Iterable[Any],
    *,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    parameters: Mapping[str, Any],
    files: Mapping[str, str] | None = None,
    catalog: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A job spec (see :mod:`.job`)."""
    return {
        "job": name,
        "nodes": [node_call(node) for node in nodes],
        "inputs": dict(inputs),
        "outputs": dict(outputs),
        "files": dict(files or {}),
        "parameters": dict(parameters),
        "catalog": dict(catalog or {}),
    }


def spec_bytes(spec: Mapping[str, Any]) -> bytes:
    return (json.dumps(spec, indent=2, sort_keys=True, default=str) + "\n").encode()


def nest_parameter(parameters: dict[str, Any], dataset: str, value: Any) -> None:
    """Puts the value of input ``params:a.b`` (or ``parameters``) where the job looks it up."""
    if dataset == "parameters":
        parameters.update(value)
        return
    *parents, last = dataset[len("params:") :].split(".")
    target = parameters
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value


def upload_dataset(
    store: ObjectStore, value: Any, dataset: str, stem: str, uri: str, *, what: str | None = None
) -> dict[str, Any]:
    """Uploads ``value`` as a job would write it (value file and manifest) under the ``uri``
    prefix; returns the manifest."""
    with tempfile.TemporaryDirectory() as directory:
        written = write_dataset(value, Path(directory), dataset, stem, what=what)
        for file in (written["file"], VALUE_MANIFEST):
            store.upload_file(Path(directory) / file, f"{uri.rstrip('/')}/{file}")
    return written


# ---- the runner's jobs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeJob:
    """A prepared job: the request to submit and what is needed to read its outputs."""

    node_name: str
    name: str
    request: dict[str, Any]
    outputs: dict[str, str]
    shape: dict[str, Any]


def _channel(
    name: str, uri: str, content_type: str, distribution: str = "FullyReplicated"
) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": distribution,
            }
        },
        "ContentType": content_type,
        "InputMode": "File",
    }


def _call_values(node: Any, args: tuple, kwargs: dict) -> list[tuple[str, Any]]:
    """(dataset, value) for each input of the call Kedro makes."""
    if kwargs:
        return [(node._inputs[arg], value) for arg, value in kwargs.items()]
    return list(zip(node.inputs, args, strict=True))


def prepare_job(
    node: Any,
    args: tuple,
    kwargs: dict,
    *,
    settings: BridgeSettings,
    job_settings: TrainingJobSettings,
    image_uri: str,
    code_uri: str,
    store: ObjectStore,
    wheels_uri: str | None = None,
    run_id: str | None = None,
    tracking: Mapping[str, Any] | None = None,
    environment: Mapping[str, str] | None = None,
) -> NodeJob:
    """Uploads the node's spec and inputs and returns its CreateTrainingJob request (with the
    ``kedro-wheels`` channel if ``wheels_uri`` is given). ``tracking`` (what the job logs to
    MLflow) goes into the spec, ``environment`` (e.g. the MLflow run to log into) into the
    job's variables."""
    call = node_call(node)  # before anything is uploaded: the function must be importable
    name = job_name(node.name)
    job_root = f"{settings.s3_root}/jobs/{name}"
    values = _call_values(node, args, kwargs)
    datasets = [(dataset, value) for dataset, value in values if not is_parameter(dataset)]
    contract_channels = 1 if wheels_uri is None else 2
    if len(datasets) + contract_channels > MAX_CHANNELS:
        raise RemoteNodeError(
            f"node {node.name} has {len(datasets)} dataset inputs; a training job takes at "
            f"most {MAX_CHANNELS} channels, and the job spec and the shipped wheels take "
            f"{contract_channels}"
        )
    taken = {JOB_INPUT.upper(), WHEELS_INPUT.upper()}
    inputs = {dataset: data_name(dataset, taken) for dataset, _ in datasets}
    output_taken: set[str] = set()
    outputs = {dataset: data_name(dataset, output_taken) for dataset in node.outputs}
    parameters: dict[str, Any] = {}
    for dataset, value in values:
        if is_parameter(dataset):
            # json.dumps would make a tuple a list and (default=str) a set a string.
            if not is_plain_json(value):
                raise RemoteNodeError(
                    f"node {node.name}: parameter input {dataset} is not plain JSON data "
                    f"({type(value).__name__}), so it cannot travel in the job spec"
                )
            nest_parameter(parameters, dataset, value)
    spec = job_spec(node.name, [node], inputs=inputs, outputs=outputs, parameters=parameters)
    if tracking is not None:
        spec[TRACKING_KEY] = dict(tracking)
    try:
        spec_text = spec_bytes(spec)
    except (TypeError, ValueError) as error:
        raise RemoteNodeError(f"node {node.name}: a parameter is not JSON data: {error}") from None
    channels, sharded = _upload_inputs(
        node.name, datasets, inputs, job_settings=job_settings, store=store, job_root=job_root
    )
    if job_settings.instance_count > 1:
        spec["distributed"] = {
            "collective": "xgboost",
            "instances": job_settings.instance_count,
            "sharded": sharded,
        }
        spec_text = spec_bytes(spec)
    upload_bytes(store, spec_text, f"{job_root}/input/{JOB_INPUT}/{JOB_FILE}")
    channels.append(_channel(JOB_INPUT, f"{job_root}/input/{JOB_INPUT}/", "application/json"))
    if wheels_uri is not None:
        channels.append(_channel(WHEELS_INPUT, wheels_uri, "application/octet-stream"))
    request = training_request(
        name,
        settings=settings,
        job_settings=job_settings,
        image_uri=image_uri,
        hyperparameters=script_mode_hyperparameters(code_uri, node.name, settings.region),
        output_path=f"{settings.s3_root}/jobs",
    )
    request["InputDataConfig"] = channels
    request["Environment"].update(environment or {})
    request["Tags"] = [{"Key": "kedro:node", "Value": _TAG_VALUE_UNSAFE.sub("_", node.name)[:256]}]
    if run_id:
        request["Tags"].append({"Key": "kedro:run-id", "Value": _TAG_VALUE_UNSAFE.sub("_", run_id)})
    return NodeJob(node.name, name, request, outputs, call["outputs"])


def _upload_inputs(
    node_name: str,
    datasets: list[tuple[str, Any]],
    inputs: Mapping[str, str],
    *,
    job_settings: TrainingJobSettings,
    store: ObjectStore,
    job_root: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Uploads each dataset input under ``<job_root>/input/<channel>/``: a value and its
    manifest (``FullyReplicated``), or a sharded input's parts (``ShardedByS3Key``). Returns the
    channels and what the spec lists of each sharded input."""
    sharded = _sharded_inputs(node_name, [dataset for dataset, _ in datasets], job_settings)
    channels = []
    for dataset, value in datasets:
        channel = inputs[dataset]
        uri = f"{job_root}/input/{channel}/"
        try:
            if dataset in sharded:
                parts = job_settings.instance_count * job_settings.shards_per_instance
                sharded[dataset] = upload_parts(store, value, dataset, parts, uri)
                channels.append(_channel(channel, uri, "application/x-parquet", "ShardedByS3Key"))
                continue
            manifest = upload_dataset(store, value, dataset, channel, uri, what=f"input {dataset}")
        except CodecError as error:
            raise RemoteNodeError(f"node {node_name}: {error}") from error
        except DistributedJobError as error:
            raise RemoteNodeError(f"node {node_name}: input {dataset}: {error}") from error
        channels.append(_channel(channel, uri, codec_named(manifest["codec"]).content_type))
    return channels, sharded


def _sharded_inputs(
    node_name: str, datasets: list[str], job_settings: TrainingJobSettings
) -> dict[str, Any]:
    """The node's inputs to shard across its instances (none for a single instance), checked
    against what the node reads: replicating every input to every instance would train on
    each row n times."""
    if job_settings.instance_count == 1:
        return {}
    unknown = [name for name in job_settings.sharded_inputs if name not in datasets]
    if unknown:
        raise RemoteNodeError(
            f"node {node_name}: training_job.sharded_inputs names {', '.join(unknown)}, which "
            f"the node does not read (its dataset inputs: {', '.join(datasets) or 'none'})"
        )
    if not job_settings.sharded_inputs:
        raise RemoteNodeError(
            f"node {node_name} runs on {job_settings.instance_count} instances, but none of its "
            "inputs is sharded, so every instance would train on all the rows: name the "
            "training rows in training_job.sharded_inputs (its dataset inputs: "
            f"{', '.join(datasets) or 'none'})"
        )
    return dict.fromkeys(job_settings.sharded_inputs)


def upload_parts(
    store: ObjectStore, frame: Any, dataset: str, parts: int, uri: str
) -> dict[str, Any]:
    """Uploads ``frame`` as ``parts`` Parquet objects under the ``uri`` prefix (one S3 key each,
    for ``ShardedByS3Key``); returns what the job spec lists: each part's file, sha256, rows."""
    listed = []
    with tempfile.TemporaryDirectory() as directory:
        for index, part in enumerate(split_rows(frame, parts)):
            codec, path = write_value(part, Path(directory), part_stem(index), f"input {dataset}")
            if codec.name != "parquet":
                raise DistributedJobError(f"a sharded input must be a data frame ({codec.name})")
            store.upload_file(path, f"{uri.rstrip('/')}/{path.name}")
            listed.append({"file": path.name, "sha256": file_sha256(path), "rows": len(part)})
    return {"codec": "parquet", "parts": listed}


def script_mode_hyperparameters(code_uri: str, job: str, region: str | None) -> dict[str, str]:
    """What the framework image's training toolkit needs to run the entry script (script mode),
    and the job's name; SageMaker stores hyperparameters as strings, the toolkit JSON-decodes."""
    hyperparameters = {
        "sagemaker_program": json.dumps(ENTRY_SCRIPT),
        "sagemaker_submit_directory": json.dumps(code_uri),
        "sagemaker_container_log_level": "20",
        JOB_ARGUMENT: json.dumps(job),
    }
    if region:
        hyperparameters["sagemaker_region"] = json.dumps(region)
    return hyperparameters


def training_request(
    name: str,
    *,
    settings: BridgeSettings,
    job_settings: TrainingJobSettings,
    image_uri: str,
    hyperparameters: dict[str, str],
    output_path: str,
) -> dict[str, Any]:
    """A CreateTrainingJob request without its channels."""
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
        "RoleArn": settings.execution_role_arn,
        "OutputDataConfig": {"S3OutputPath": output_path},
        "ResourceConfig": {
            "InstanceType": job_settings.instance_type,
            "InstanceCount": job_settings.instance_count,
            "VolumeSizeInGB": job_settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": job_settings.max_runtime_seconds},
        "Environment": {**JOB_ENVIRONMENT, **job_settings.environment},
    }
    network = settings.network
    if network.enable_network_isolation:
        request["EnableNetworkIsolation"] = True
    if network.subnets:
        request["VpcConfig"] = {
            "Subnets": list(network.subnets),
            "SecurityGroupIds": list(network.security_group_ids),
        }
    return request


def read_outputs(job: NodeJob, artifacts_uri: str, store: ObjectStore) -> Any:
    """Downloads the job's ``model.tar.gz``, checks every output's sha256, returns the value the
    node function returned (same shape: nothing, one value, a list or a dict)."""
    with tempfile.TemporaryDirectory(prefix=f"{job.name}-output-") as staging:
        archive_path = Path(staging) / "model.tar.gz"
        store.download_file(artifacts_uri, archive_path)
        root = extract_tar_gz(
            archive_path.read_bytes(), Path(staging) / "model", what=artifacts_uri
        )
        values = {}
        for dataset, name in job.outputs.items():
            if not (root / name / VALUE_MANIFEST).is_file():
                raise RemoteNodeError(
                    f"job {job.name}: {artifacts_uri} has no output {name} (dataset {dataset})"
                )
            try:
                values[dataset] = read_dataset(root / name, dataset)
            except (JobError, CodecError) as error:  # a tampered or unreadable value
                raise RemoteNodeError(
                    f"job {job.name}: output {name} (dataset {dataset}) of {artifacts_uri} "
                    f"is unusable: {error}"
                ) from error
    kind, names = job.shape["kind"], job.shape["names"]
    if kind == "none":
        return None
    if kind == "single":
        return values[names[0]]
    if kind == "list":
        return [values[name] for name in names]
    return {key: values[dataset] for key, dataset in names.items()}
