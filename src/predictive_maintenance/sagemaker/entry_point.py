"""The generic entry script of a Kedro node running as a SageMaker training job.

Runs inside the stock framework container in script mode (``sagemaker_program``), with the
project's code extracted from ``sagemaker_submit_directory``:

1. reads the node's description (``node.json`` in the ``kedro-node`` channel) and its
   ``params:`` inputs (one JSON hyperparameter each) from ``hyperparameters.json``;
2. reads each dataset input from its channel directory with the codec the description names;
3. imports the node's function by module path and calls it as Kedro would;
4. writes each output in an open format under the model directory, with ``kedro_outputs.json``
   listing file, codec and sha256, so SageMaker returns them in ``model.tar.gz``.

A failure writes its reason to ``<output dir>/failure``, which SageMaker reports as the job's
``FailureReason``, and exits non-zero. Standard library only (plus what the codecs need).
Paths come from the ``SM_*`` variables the container sets, with SageMaker's fixed defaults.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.sagemaker.codecs import read_value, write_value

#: The hyperparameter naming the node (what the SageMaker console shows).
NODE_HYPERPARAMETER: Final = "kedro_node"
#: The channel and file holding the node's description (a hyperparameter holds 2,500 characters
#: at most, a description with many inputs more).
NODE_CHANNEL: Final = "kedro-node"
NODE_FILE: Final = "node.json"
#: What the entry script writes next to the outputs in the model directory.
OUTPUT_MANIFEST: Final = "kedro_outputs.json"
#: SageMaker shows at most this many characters of the failure file as FailureReason.
FAILURE_REASON_LIMIT: Final = 1024


class NodeJobError(RuntimeError):
    """The job's description or inputs are not what the entry script needs."""


def _env_path(variable: str, default: str) -> Path:
    return Path(os.environ.get(variable, default))


def read_hyperparameters(config_dir: Path) -> dict[str, Any]:
    """``hyperparameters.json`` with each value JSON-decoded (SageMaker stores strings)."""
    raw = json.loads((config_dir / "hyperparameters.json").read_text())
    decoded = {}
    for key, value in raw.items():
        try:
            decoded[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            decoded[key] = value
    return decoded


def import_function(path: str) -> Any:
    """``package.module:qualified.name`` -> the object."""
    module_name, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def channel_variable(channel: str) -> str:
    """The environment variable SageMaker sets to a channel's directory."""
    return "SM_CHANNEL_" + re.sub(r"[^A-Za-z0-9]", "_", channel).upper()


def channel_directory(channel: str, input_dir: Path) -> Path:
    return Path(os.environ.get(channel_variable(channel), input_dir / "data" / channel))


def _load_input(item: dict[str, Any], hyperparameters: dict[str, Any], input_dir: Path) -> Any:
    dataset = item["dataset"]
    if item.get("hyperparameter") is not None:
        key = item["hyperparameter"]
        if key not in hyperparameters:
            raise NodeJobError(f"input {dataset}: hyperparameter {key!r} is missing")
        return hyperparameters[key]
    channel = item["channel"]
    path = channel_directory(channel, input_dir) / item["file"]
    if not path.is_file():
        raise NodeJobError(f"input {dataset}: {path} is missing from channel {channel!r}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != item["sha256"]:
        raise NodeJobError(
            f"input {dataset}: {path.name} has sha256 {digest}, expected {item['sha256']}"
        )
    return read_value(item["codec"], path, f"input {dataset}")


def call_node_function(function: Any, inputs: dict[str, Any], args: list[Any]) -> Any:
    """Calls ``function`` the way Kedro does for the node's kind of inputs."""
    kind = inputs["kind"]
    if kind == "dict":
        return function(
            **{item["arg"]: value for item, value in zip(inputs["items"], args, strict=True)}
        )
    return function(*args)


def output_items(outputs: dict[str, Any], result: Any) -> list[tuple[Any, str, Any]]:
    """(key, dataset, value) for each output; key is None, a position or a dict key."""
    kind, names = outputs["kind"], outputs["names"]
    if kind == "none":
        return []
    if kind == "single":
        return [(None, names[0], result)]
    if kind == "list":
        if not isinstance(result, (list, tuple)) or len(result) != len(names):
            raise NodeJobError(
                f"the node returned {type(result).__name__}, not {len(names)} values"
            )
        return [
            (index, name, value)
            for index, (name, value) in enumerate(zip(names, result, strict=True))
        ]
    if not isinstance(result, dict) or set(result) != set(names):
        raise NodeJobError(f"the node returned {type(result).__name__}, not keys {sorted(names)}")
    return [(key, names[key], result[key]) for key in sorted(names)]


def file_stem(name: str, taken: set[str]) -> str:
    """A file name stem for dataset ``name``: safe characters only, unique within ``taken``."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "value"
    candidate, counter = stem, 1
    while candidate in taken:
        counter += 1
        candidate = f"{stem}-{counter}"
    taken.add(candidate)
    return candidate


def write_outputs(node: str, outputs: dict[str, Any], result: Any, model_dir: Path) -> dict:
    """Writes the outputs and their manifest into ``model_dir``; returns the manifest."""
    model_dir.mkdir(parents=True, exist_ok=True)
    taken: set[str] = {Path(OUTPUT_MANIFEST).stem}
    values = []
    for key, dataset, value in output_items(outputs, result):
        codec, path = write_value(value, model_dir, file_stem(dataset, taken), f"output {dataset}")
        values.append(
            {
                "key": key,
                "dataset": dataset,
                "file": path.name,
                "codec": codec.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
        )
    manifest = {"node": node, "kind": outputs["kind"], "values": values}
    (model_dir / OUTPUT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def run(config_dir: Path, input_dir: Path, model_dir: Path) -> dict[str, Any]:
    """Runs the node the job describes; returns the output manifest."""
    hyperparameters = read_hyperparameters(config_dir)
    description = channel_directory(NODE_CHANNEL, input_dir) / NODE_FILE
    if not description.is_file():
        raise NodeJobError(f"the node description {description} is missing")
    spec = json.loads(description.read_text())
    node = spec["node"]
    if hyperparameters.get(NODE_HYPERPARAMETER, node) != node:
        raise NodeJobError(
            f"hyperparameter {NODE_HYPERPARAMETER}={hyperparameters[NODE_HYPERPARAMETER]!r} "
            f"but the description is of node {node!r}"
        )
    started = time.perf_counter()
    args = [_load_input(item, hyperparameters, input_dir) for item in spec["inputs"]["items"]]
    function = import_function(spec["function"])
    loaded = time.perf_counter()
    print(
        f"kedro node {node}: read {len(args)} inputs and imported {spec['function']} "
        f"in {loaded - started:.2f} s",
        flush=True,
    )
    result = call_node_function(function, spec["inputs"], args)
    ran = time.perf_counter()
    manifest = write_outputs(node, spec["outputs"], result, model_dir)
    written = ", ".join(f"{value['dataset']} ({value['codec']})" for value in manifest["values"])
    print(
        f"kedro node {node}: ran in {ran - loaded:.2f} s; wrote {written or 'nothing'} "
        f"in {time.perf_counter() - ran:.2f} s",
        flush=True,
    )
    return manifest


#: The hyperparameter naming the exported pipeline step a training job runs.
STEP_HYPERPARAMETER: Final = "kedro_step"


def main(argv: list[str] | None = None) -> int:
    """Script entry, in one of three modes:

    - ``--kedro-step NAME ...`` arguments: a processing step of an exported pipeline;
    - hyperparameter ``kedro_step``: a training step of an exported pipeline;
    - otherwise: one node submitted by SageMakerRunner (its description in a channel).

    SageMaker also passes hyperparameters as ``--key value`` arguments; they are ignored.
    """
    from predictive_maintenance.sagemaker import step_entry  # noqa: PLC0415

    argv = list(sys.argv[1:] if argv is None else argv)
    config_dir = _env_path("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
    input_dir = _env_path("SM_INPUT_DIR", "/opt/ml/input")
    model_dir = _env_path("SM_MODEL_DIR", "/opt/ml/model")
    output_dir = _env_path("SM_OUTPUT_DIR", "/opt/ml/output")
    try:
        if "--kedro-step" in argv:
            step_entry.main_processing(argv)
        elif STEP_HYPERPARAMETER in (hyperparameters := read_hyperparameters(config_dir)):
            step_entry.main_training(
                str(hyperparameters[STEP_HYPERPARAMETER]), input_dir, model_dir
            )
        else:
            run(config_dir, input_dir, model_dir)
    except Exception as error:  # every failure becomes the job's FailureReason
        traceback.print_exc()
        reason = f"{type(error).__name__}: {error}"
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "failure").write_text(reason[:FAILURE_REASON_LIMIT])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
