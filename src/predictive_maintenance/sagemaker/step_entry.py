"""The entry script's pipeline-step mode: runs the Kedro nodes of one exported pipeline step.

A step of an exported SageMaker Pipeline (``kedro sagemaker compile``) is a processing or a
training job on a stock image, running ``kedro_node_entry.py`` from the project's code package.
The step's description, ``kedro_steps/<step>.json`` in that package, names its nodes (run in
order, in memory), its inputs and outputs and its parameters' compile-time values; pipeline
parameters passed at start time arrive as ``KEDRO_PARAM_<n>`` variables
(``<JSON key path>=<value>``) and override those values.

Datasets between steps are directories in open formats:

- a processing step writes each output to ``<output dir>/<dataset>/``: the value file and
  ``kedro_value.json`` (codec, file, sha256);
- a training step writes its outputs to the model directory with ``kedro_outputs.json``, so the
  next step receives them inside ``model.tar.gz``;
- a pipeline input may also be a plain file (the raw CSV, say), read as bytes.

Standard library only, plus what the codecs need.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.sagemaker.codecs import read_value, write_value

STEPS_DIR: Final = "kedro_steps"
VALUE_MANIFEST: Final = "kedro_value.json"
OUTPUTS_MANIFEST: Final = "kedro_outputs.json"
PARAMETER_VARIABLE_PREFIX: Final = "KEDRO_PARAM_"


class StepError(RuntimeError):
    """A step's description, inputs or outputs are not what the entry script needs."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_dataset(value: Any, directory: Path, dataset: str, stem: str) -> dict[str, Any]:
    """Writes one dataset as a value file plus ``kedro_value.json``; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    codec, path = write_value(value, directory, stem, f"output {dataset}")
    manifest = {"dataset": dataset, "file": path.name, "codec": codec.name, "sha256": _sha256(path)}
    (directory / VALUE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _checked_read(directory: Path, entry: Mapping[str, Any], dataset: str) -> Any:
    path = directory / entry["file"]
    if path.parent != directory or not path.is_file():
        raise StepError(f"input {dataset}: {entry['file']!r} is missing from {directory}")
    digest = _sha256(path)
    if digest != entry["sha256"]:
        raise StepError(
            f"input {dataset}: {path.name} has sha256 {digest}, its manifest says {entry['sha256']}"
        )
    return read_value(entry["codec"], path, f"input {dataset}")


def read_dataset(directory: Path, dataset: str) -> Any:
    """Reads ``dataset`` from a step input directory, whichever step kind wrote it."""
    if (directory / VALUE_MANIFEST).is_file():
        return _checked_read(
            directory, json.loads((directory / VALUE_MANIFEST).read_text()), dataset
        )
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    archives = [path for path in files if path.name.endswith(".tar.gz")]
    if len(files) == 1 and archives:
        with tempfile.TemporaryDirectory() as extracted:
            with tarfile.open(archives[0], "r:gz") as tar:
                tar.extractall(extracted, filter="data")
            root = Path(extracted)
            manifest_path = root / OUTPUTS_MANIFEST
            if not manifest_path.is_file():
                raise StepError(f"input {dataset}: {archives[0].name} has no {OUTPUTS_MANIFEST}")
            entries = json.loads(manifest_path.read_text())["values"]
            for entry in entries:
                if entry["dataset"] == dataset:
                    return _checked_read(root, entry, dataset)
            names = ", ".join(entry["dataset"] for entry in entries)
            raise StepError(f"input {dataset}: {archives[0].name} holds only {names}")
    if len(files) == 1:
        return files[0].read_bytes()  # a plain pipeline input, e.g. the raw CSV
    listing = ", ".join(path.name for path in files) or "nothing"
    raise StepError(
        f"input {dataset}: {directory} holds {listing}; expected {VALUE_MANIFEST} with its value, "
        "a model.tar.gz from a training step, or a single plain file"
    )


def parameter_overrides(environ: Mapping[str, str]) -> list[tuple[list[str], Any]]:
    """``KEDRO_PARAM_<n>`` variables as (key path, value), in ``n`` order."""
    decoder = json.JSONDecoder()
    overrides = []
    numbered = {}
    for name in environ:
        if name.startswith(PARAMETER_VARIABLE_PREFIX):
            suffix = name.removeprefix(PARAMETER_VARIABLE_PREFIX)
            if not suffix.isdigit():
                raise StepError(f"{name}: expected {PARAMETER_VARIABLE_PREFIX}<number>")
            numbered[name] = int(suffix)
    for name in sorted(numbered, key=numbered.__getitem__):
        text = environ[name]
        try:
            path, end = decoder.raw_decode(text)
        except json.JSONDecodeError:
            path, end = None, 0
        if not isinstance(path, list) or text[end : end + 1] != "=":
            raise StepError(f"{name}={text!r} is not <JSON key path>=<value>")
        raw = text[end + 1 :]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a string parameter
        overrides.append(([str(key) for key in path], value))
    return overrides


def apply_overrides(parameters: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> None:
    """Sets each override's key path in ``parameters``; paths this step does not have belong to
    another step's parameters and are skipped."""
    for path, value in overrides:
        target: Any = parameters
        for key in path[:-1]:
            if not isinstance(target, dict) or key not in target:
                break
            target = target[key]
        else:
            if isinstance(target, dict) and path[-1] in target:
                keeps_text = isinstance(target[path[-1]], str) and not isinstance(value, str)
                # A String parameter such as "2024" or "true" stays a string.
                target[path[-1]] = json.dumps(value) if keeps_text else value


def parameter_value(parameters: dict[str, Any], dataset: str) -> Any:
    """The value of a ``params:a.b`` (or ``parameters``) input."""
    if dataset == "parameters":
        return parameters
    value: Any = parameters
    for key in dataset.removeprefix("params:").split("."):
        value = value[key]
    return value


def import_with_requirements(function_path: str, code_dir: Path) -> Any:
    """Imports ``module:name``; if a module is missing and the package lists requirements,
    installs them first (stock images lack Kedro and friends) and tries again."""
    from predictive_maintenance.sagemaker.entry_point import import_function  # noqa: PLC0415

    try:
        return import_function(function_path)
    except ModuleNotFoundError as error:
        requirements = code_dir / "requirements.txt"
        if not requirements.is_file():
            raise
        print(f"{error}: installing {requirements}", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            check=True,
        )
        importlib.invalidate_caches()
        return import_function(function_path)


def run_step(
    description: dict[str, Any],
    input_dirs: Mapping[str, Path],
    code_dir: Path,
    environ: Mapping[str, str],
) -> dict[str, Any]:
    """Runs the step's nodes in order; returns the values of its outputs by dataset."""
    from predictive_maintenance.sagemaker.entry_point import call_node_function  # noqa: PLC0415

    parameters = json.loads(json.dumps(description["parameters"]))
    apply_overrides(parameters, parameter_overrides(environ))
    values: dict[str, Any] = {}
    catalog = description.get("catalog", {})

    def catalog_dataset(name: str) -> Any:
        # Services (a model registry, an endpoint) are reached through their catalog entry.
        from_config = import_with_requirements("kedro.io:AbstractDataset.from_config", code_dir)
        return from_config(name, json.loads(json.dumps(catalog[name])))

    def load(dataset: str) -> Any:
        if dataset == "parameters" or dataset.startswith("params:"):
            return parameter_value(parameters, dataset)
        if dataset in catalog:
            return catalog_dataset(dataset).load()
        if dataset not in values:
            if dataset not in input_dirs:
                raise StepError(f"dataset {dataset} is neither a step input nor made by the step")
            values[dataset] = read_dataset(input_dirs[dataset], dataset)
        return values[dataset]

    for node in description["nodes"]:
        started = time.perf_counter()
        args = [load(item["dataset"]) for item in node["inputs"]["items"]]
        function = import_with_requirements(node["function"], code_dir)
        result = call_node_function(function, node["inputs"], args)
        for dataset, value in _named_outputs(node, result).items():
            if dataset in catalog:
                catalog_dataset(dataset).save(value)
            else:
                values[dataset] = value
        elapsed = time.perf_counter() - started
        print(f"kedro node {node['node']}: done in {elapsed:.2f} s (with its inputs)", flush=True)
    missing = [dataset for dataset in description["outputs"] if dataset not in values]
    if missing:
        raise StepError(f"step {description['step']} did not produce {', '.join(missing)}")
    return {dataset: values[dataset] for dataset in description["outputs"]}


def _named_outputs(node: dict[str, Any], result: Any) -> dict[str, Any]:
    from predictive_maintenance.sagemaker.entry_point import output_items  # noqa: PLC0415

    return {dataset: value for _, dataset, value in output_items(node["outputs"], result)}


def main_processing(argv: list[str]) -> None:
    """``--kedro-step NAME --input-dir DIR --output-dir DIR``: a processing step."""
    arguments = dict(zip(argv[::2], argv[1::2], strict=False))
    code_dir = Path(sys.argv[0]).resolve().parent
    step = arguments["--kedro-step"]
    input_root = Path(arguments.get("--input-dir", "/opt/ml/processing/input"))
    output_root = Path(arguments.get("--output-dir", "/opt/ml/processing/output"))
    description = load_description(code_dir, step)
    input_dirs = {dataset: input_root / name for dataset, name in description["inputs"].items()}
    outputs = run_step(description, input_dirs, code_dir, os.environ)
    for dataset, value in outputs.items():
        name = description["outputs"][dataset]
        write_dataset(value, output_root / name, dataset, name)


def main_training(step: str, input_dir: Path, model_dir: Path) -> None:
    """A training step: inputs are channels, outputs go to the model directory."""
    from predictive_maintenance.sagemaker.entry_point import (  # noqa: PLC0415
        channel_directory,
        write_outputs,
    )

    code_dir = Path(sys.argv[0]).resolve().parent
    description = load_description(code_dir, step)
    input_dirs = {
        dataset: channel_directory(name, input_dir)
        for dataset, name in description["inputs"].items()
    }
    outputs = run_step(description, input_dirs, code_dir, os.environ)
    names = {dataset: dataset for dataset in outputs}
    write_outputs(step, {"kind": "dict", "names": names}, outputs, model_dir)


def load_description(code_dir: Path, step: str) -> dict[str, Any]:
    path = code_dir / STEPS_DIR / f"{step}.json"
    if not path.is_file():
        raise StepError(f"no description of step {step!r} at {path}")
    return json.loads(path.read_text())
