"""The job contract on the submitting side: a Kedro node call -> a CreateTrainingJob request, and
the finished job's ``model.tar.gz`` -> the node's return value.

Dataset inputs travel as files in open formats (one channel each); ``params:`` inputs as JSON
hyperparameters; the node's description as the ``kedro_node`` hyperparameter, which the generic
entry script (:mod:`~predictive_maintenance.sagemaker.entry_point`) reads in the container.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.sagemaker.archives import extract_tar_gz
from predictive_maintenance.sagemaker.codecs import (
    CodecError,
    is_plain_json,
    read_value,
    write_value,
)
from predictive_maintenance.sagemaker.config import BridgeSettings, TrainingJobSettings
from predictive_maintenance.sagemaker.entry_point import (
    NODE_CHANNEL,
    NODE_FILE,
    NODE_HYPERPARAMETER,
    OUTPUT_MANIFEST,
    channel_variable,
    file_stem,
    import_function,
)
from predictive_maintenance.sagemaker.packaging import ENTRY_SCRIPT
from predictive_maintenance.sagemaker.storage import ObjectStore

#: SageMaker's limits on a CreateTrainingJob request.
MAX_CHANNELS: Final = 20
MAX_HYPERPARAMETERS: Final = 100
MAX_HYPERPARAMETER_CHARS: Final = 2500
MAX_JOB_NAME_CHARS: Final = 63
_TAG_VALUE_UNSAFE: Final = re.compile(r"[^\w .:/=+\-@]")


class RemoteNodeError(RuntimeError):
    """A node cannot run as a job, or its job failed or returned something unusable."""


def job_name(node_name: str) -> str:
    """``<node>-<UTC time>-<random>``: unique, and SageMaker's 63-character name rule."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    suffix = f"-{stamp}-{secrets.token_hex(2)}"
    base = re.sub(r"[^A-Za-z0-9]+", "-", node_name).strip("-") or "kedro-node"
    return base[: MAX_JOB_NAME_CHARS - len(suffix)].rstrip("-") + suffix


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
            f"({path}); a remote node needs a module-level function (no lambda, partial or "
            "closure) so the job can import it."
        )
    return path


@dataclass(frozen=True)
class NodeJob:
    """A prepared job: the request to submit and what is needed to read its outputs."""

    node_name: str
    name: str
    request: dict[str, Any]
    outputs: dict[str, Any]


def _describe_outputs(node: Any) -> dict[str, Any]:
    # Kedro keeps the original form of a node's outputs (str, list or dict) only in _outputs.
    outputs = node._outputs
    if outputs is None:
        return {"kind": "none", "names": []}
    if isinstance(outputs, str):
        return {"kind": "single", "names": [outputs]}
    if isinstance(outputs, dict):
        return {"kind": "dict", "names": dict(outputs)}
    return {"kind": "list", "names": list(outputs)}


def describe_node_call(node: Any) -> dict[str, Any]:
    """How the entry script calls ``node``: function path, inputs by argument, output shape."""
    # Kedro keeps a node's inputs as given (None, str, list or dict) only in _inputs.
    inputs = node._inputs
    if isinstance(inputs, dict):
        kind, items = "dict", [{"arg": arg, "dataset": ds} for arg, ds in inputs.items()]
    else:
        kind, items = "list", [{"arg": None, "dataset": ds} for ds in node.inputs]
    return {
        "node": node.name,
        "function": function_path(node.name, node.func),
        "inputs": {"kind": kind, "items": items},
        "outputs": _describe_outputs(node),
    }


def _input_pairs(node: Any, args: tuple, kwargs: dict) -> tuple[str, list[tuple[Any, str, Any]]]:
    """The call's kind and (argument name or None, dataset, value) for each input."""
    if kwargs:
        # Kedro calls a node with dict inputs by keyword; _inputs maps argument -> dataset.
        return "dict", [(arg, node._inputs[arg], value) for arg, value in kwargs.items()]
    return "list", [
        (None, dataset, value) for dataset, value in zip(node.inputs, args, strict=True)
    ]


def _channel_name(dataset: str, taken_variables: set[str]) -> str:
    """A channel name for ``dataset``: SageMaker's characters, and a unique SM_CHANNEL_ variable
    (``a.b`` and ``a_b`` would share one)."""
    base = re.sub(r"[^A-Za-z0-9._-]", "-", dataset).strip(".-_")[:60] or "input"
    candidate, counter = base, 1
    while channel_variable(candidate) in taken_variables:
        counter += 1
        candidate = f"{base}-{counter}"
    taken_variables.add(channel_variable(candidate))
    return candidate


def _channel(name: str, uri: str, content_type: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {
                "S3DataType": "S3Prefix",
                "S3Uri": uri,
                "S3DataDistributionType": "FullyReplicated",
            }
        },
        "ContentType": content_type,
        "InputMode": "File",
    }


def _is_parameter(dataset: str) -> bool:
    return dataset == "parameters" or dataset.startswith("params:")


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
    run_id: str | None = None,
) -> NodeJob:
    """Writes the node's inputs to the store and returns the CreateTrainingJob request."""
    function = function_path(node.name, node.func)  # before anything is uploaded
    name = job_name(node.name)
    job_root = f"{settings.s3_root}/jobs/{name}"
    kind, pairs = _input_pairs(node, args, kwargs)
    dataset_inputs = sum(not _is_parameter(dataset) for _, dataset, _ in pairs)
    _check_limits(node.name, channels=dataset_inputs + 1)  # before anything is uploaded
    hyperparameters: dict[str, str] = {
        "sagemaker_program": json.dumps(ENTRY_SCRIPT),
        "sagemaker_submit_directory": json.dumps(code_uri),
        "sagemaker_container_log_level": "20",
    }
    if settings.region:
        hyperparameters["sagemaker_region"] = json.dumps(settings.region)
    channels: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    taken_variables = {channel_variable(NODE_CHANNEL)}
    taken_keys = set(hyperparameters) | {NODE_HYPERPARAMETER}
    with tempfile.TemporaryDirectory(prefix=f"{name}-input-") as staging:
        for arg, dataset, value in pairs:
            item: dict[str, Any] = {"arg": arg, "dataset": dataset}
            if _is_parameter(dataset):
                if not is_plain_json(value):
                    raise RemoteNodeError(
                        f"node {node.name}: parameter input {dataset} is not plain JSON data "
                        f"({type(value).__name__}), so it cannot travel as a hyperparameter"
                    )
                encoded = json.dumps(value, sort_keys=True, allow_nan=False)
                if len(encoded) <= MAX_HYPERPARAMETER_CHARS:
                    key = file_stem(dataset.removeprefix("params:"), taken_keys)
                    hyperparameters[key] = encoded
                    items.append({**item, "hyperparameter": key})
                    continue
            channel = _channel_name(dataset, taken_variables)
            directory = Path(staging) / channel
            directory.mkdir()
            try:
                codec, path = write_value(value, directory, file_stem(dataset, set()), dataset)
            except CodecError as error:
                raise RemoteNodeError(f"node {node.name}: input {error}") from error
            uri = f"{job_root}/input/{channel}/{path.name}"
            store.upload_file(path, uri)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            items.append(
                {
                    **item,
                    "channel": channel,
                    "file": path.name,
                    "codec": codec.name,
                    "sha256": digest,
                }
            )
            channels.append(_channel(channel, f"{job_root}/input/{channel}/", codec.content_type))
        outputs = _describe_outputs(node)
        description = {
            "node": node.name,
            "function": function,
            "inputs": {"kind": kind, "items": items},
            "outputs": outputs,
        }
        description_path = Path(staging) / NODE_FILE
        description_path.write_text(json.dumps(description, indent=2, sort_keys=True) + "\n")
        store.upload_file(description_path, f"{job_root}/input/{NODE_CHANNEL}/{NODE_FILE}")
    channels.append(_channel(NODE_CHANNEL, f"{job_root}/input/{NODE_CHANNEL}/", "application/json"))
    hyperparameters[NODE_HYPERPARAMETER] = json.dumps(node.name)
    _check_limits(node.name, channels=len(channels), hyperparameters=len(hyperparameters))
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "HyperParameters": hyperparameters,
        "AlgorithmSpecification": {"TrainingImage": image_uri, "TrainingInputMode": "File"},
        "RoleArn": settings.execution_role_arn,
        "OutputDataConfig": {"S3OutputPath": f"{settings.s3_root}/jobs"},
        "ResourceConfig": {
            "InstanceType": job_settings.instance_type,
            "InstanceCount": job_settings.instance_count,
            "VolumeSizeInGB": job_settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": job_settings.max_runtime_seconds},
        "InputDataConfig": channels,
        "Tags": [{"Key": "kedro:node", "Value": _TAG_VALUE_UNSAFE.sub("_", node.name)[:256]}],
    }
    if job_settings.environment:
        request["Environment"] = dict(job_settings.environment)
    if run_id:
        request["Tags"].append({"Key": "kedro:run-id", "Value": _TAG_VALUE_UNSAFE.sub("_", run_id)})
    return NodeJob(node_name=node.name, name=name, request=request, outputs=outputs)


def _check_limits(node_name: str, *, channels: int, hyperparameters: int = 0) -> None:
    """SageMaker's limits on a request's channels (one of them the description) and
    hyperparameters."""
    if channels > MAX_CHANNELS:
        raise RemoteNodeError(
            f"node {node_name} has {channels - 1} dataset inputs; a training job takes at "
            f"most {MAX_CHANNELS} channels, one of which holds the node's description"
        )
    if hyperparameters > MAX_HYPERPARAMETERS:
        raise RemoteNodeError(
            f"node {node_name} needs {hyperparameters} hyperparameters; a training job "
            f"takes at most {MAX_HYPERPARAMETERS}"
        )


def read_outputs(job: NodeJob, artifacts_uri: str, store: ObjectStore) -> Any:
    """Downloads the job's ``model.tar.gz``, checks every output's sha256, returns the value the
    node function returned (same shape: nothing, one value, a list or a dict)."""
    with tempfile.TemporaryDirectory(prefix=f"{job.name}-output-") as staging:
        archive_path = Path(staging) / "model.tar.gz"
        store.download_file(artifacts_uri, archive_path)
        root = extract_tar_gz(
            archive_path.read_bytes(), Path(staging) / "model", what=artifacts_uri
        )
        manifest_path = root / OUTPUT_MANIFEST
        if not manifest_path.is_file():
            raise RemoteNodeError(f"job {job.name}: {artifacts_uri} has no {OUTPUT_MANIFEST}")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("node") != job.node_name or manifest.get("kind") != job.outputs["kind"]:
            raise RemoteNodeError(
                f"job {job.name}: {artifacts_uri} holds outputs of node {manifest.get('node')!r}"
                f" ({manifest.get('kind')}), not of {job.node_name} ({job.outputs['kind']})"
            )
        values = {}
        for entry in manifest["values"]:
            path = root / entry["file"]
            if not path.is_file() or path.parent != root:
                raise RemoteNodeError(f"job {job.name}: output file {entry['file']!r} is missing")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest != entry["sha256"]:
                raise RemoteNodeError(
                    f"job {job.name}: output {entry['dataset']} ({entry['file']}) has sha256 "
                    f"{digest}, but the job recorded {entry['sha256']}"
                )
            key = entry["key"]
            values[key] = read_value(entry["codec"], path, f"output {entry['dataset']}")
    return _rebuild(job, values)


def _rebuild(job: NodeJob, values: dict[Any, Any]) -> Any:
    kind, names = job.outputs["kind"], job.outputs["names"]
    expected: list[Any] = {
        "none": [],
        "single": [None],
        "list": list(range(len(names))),
        "dict": sorted(names) if isinstance(names, dict) else [],
    }[kind]
    if sorted(values, key=str) != sorted(expected, key=str):
        raise RemoteNodeError(f"job {job.name}: outputs {sorted(values, key=str)} != {expected}")
    if kind == "none":
        return None
    if kind == "single":
        return values[None]
    if kind == "list":
        return [values[index] for index in expected]
    return {key: values[key] for key in expected}
