"""Runs a SageMaker Pipeline definition (the JSON itself) on this machine, without Docker.

Steps are ordered from ``DependsOn`` and the property references in their arguments; ``Get``
(parameters, execution variables, step properties), ``Std:Join`` and ``Std:JsonGet`` are resolved
as SageMaker resolves them; Processing and Training steps become CreateProcessingJob /
CreateTrainingJob requests run by the ``local`` backend; Condition steps are evaluated and their
true or false branch taken; a Fail step fails the execution with its message. A Model step
becomes a CreateModel request (validated by botocore) kept for the steps after it (a model
package it names is described by the ``NativeSteps``); a Transform step runs its
CreateTransformJob request as Batch Transform does, serving that model with the image's own
serving stack (:mod:`.transform`). Steps SageMaker performs as a service (RegisterModel, and
steps that load or save a catalog service such as the model registry or an endpoint) are handed
to a ``NativeSteps`` object, which ``kedro sagemaker run-local`` implements with the project's
own nodes and local catalog.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.sagemaker.backends import follow_job
from predictive_maintenance.sagemaker.local import LocalTrainingJobs, validate_request
from predictive_maintenance.sagemaker.storage import ObjectStore
from predictive_maintenance.sagemaker.workflow.transform import (
    LocalModel,
    LocalTransformJob,
    TransformJobError,
)

logger = logging.getLogger(__name__)

_STEP_REFERENCE: Final = re.compile(r"^Steps\.([A-Za-z0-9\-_]+)\.")


class ExecutionError(RuntimeError):
    """The definition cannot be executed as written (names the step and the expression)."""


class NativeSteps(Protocol):
    """What SageMaker does as a service, done locally."""

    def handles(self, step: dict[str, Any]) -> bool: ...

    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        """Runs the step; returns its properties (e.g. ``ModelPackageArn``)."""
        ...

    def after_condition(
        self, step: dict[str, Any], outcome: bool, executor: PipelineExecutor
    ) -> None: ...

    def model_package(
        self,
        name: str,
        container: Mapping[str, Any],
        step: dict[str, Any],
        executor: PipelineExecutor,
    ) -> ModelContainer:
        """What CreateModel finds in the model package ``name`` (``container``: the Model step's
        container as the definition writes it, e.g. the JsonGet that reads ``name``)."""
        ...


@dataclass(frozen=True)
class ModelContainer:
    """A model package's inference container: what a Model step serves."""

    image: str
    model_data_url: str
    environment: Mapping[str, str] = field(default_factory=dict)
    model_data_sha256: str | None = None


@dataclass
class StepResult:
    name: str
    type: str
    status: str = "NotStarted"
    reason: str = ""
    job: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    property_files: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def _references(value: Any) -> set[str]:
    """Names of the steps an expression refers to."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        get = value.get("Get")
        if isinstance(get, str) and (match := _STEP_REFERENCE.match(get)):
            found.add(match.group(1))
        for item in value.values():
            found |= _references(item)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item)
    return found


def _json_path(path: str) -> list[str | int]:
    """``a.b[0]['c d']`` -> ["a", "b", 0, "c d"] (SageMaker's JsonGet path syntax)."""
    parts = re.findall(r"\[(\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]|([^.\[\]]+)", path)
    return [
        int(index) if index else single or double or name for index, single, double, name in parts
    ]


def _step_names(steps: list[Mapping[str, Any]]) -> set[str]:
    """Names of ``steps`` and of the steps nested in their condition branches."""
    names = set()
    for step in steps:
        names.add(step["Name"])
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments", {})
            names |= _step_names([*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])])
    return names


def _parameter_value(kind: str, value: Any, name: str) -> Any:
    if value is None:
        raise ExecutionError(
            f"parameter {name} has no default: give it with --parameters {name}=..."
        )
    try:
        if kind == "Integer":
            return int(value)
        if kind == "Float":
            return float(value)
        if kind == "Boolean":
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "false"}:
                return str(value).lower() == "true"
            raise ValueError(value)
    except ValueError:
        raise ExecutionError(f"parameter {name}: {value!r} is not a {kind}") from None
    return str(value)


def output_property(name: str) -> str:
    """The property of a processing step that holds its output ``name``'s S3 URI."""
    return f"ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"


def processing_outputs(request: Mapping[str, Any]) -> dict[str, str]:
    """Output name -> S3 URI in a CreateProcessingJob request."""
    outputs = request.get("ProcessingOutputConfig", {}).get("Outputs", [])
    return {item["OutputName"]: item["S3Output"]["S3Uri"] for item in outputs}


def _text(value: Any) -> str:
    """How SageMaker renders a value inside Std:Join or a string argument."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class PipelineExecutor:
    """Executes one run of a definition.

    Args:
        definition: The parsed pipeline definition.
        store: Where S3 URIs are read and written.
        jobs: The local backend that runs processing and training jobs.
        native: Service steps, done locally (None: such a step is an error).
        parameters: Values for the definition's parameters, by name (strings are converted).
        execution_id: Stands for ``Execution.PipelineExecutionId``.
        job_variables: Job variables replaced where a step sets them (None: removed), e.g. the
            MLflow tracking server by a local store, as the store replaces S3.
    """

    def __init__(
        self,
        definition: Mapping[str, Any],
        store: ObjectStore,
        jobs: LocalTrainingJobs,
        *,
        native: NativeSteps | None = None,
        parameters: Mapping[str, Any] | None = None,
        execution_id: str | None = None,
        pipeline_name: str = "pipeline",
        poll_seconds: float = 0.2,
        max_parallel: int | None = None,
        transform_python: str | None = None,
        job_variables: Mapping[str, str | None] | None = None,
    ) -> None:
        self.definition = definition
        self.store = store
        self.jobs = jobs
        self.native = native
        self.execution_id = execution_id or time.strftime("local-%Y%m%d-%H%M%S", time.gmtime())
        self.pipeline_name = pipeline_name
        self.poll_seconds = poll_seconds
        self.max_parallel = max(1, max_parallel or os.cpu_count() or 1)
        declared = {item["Name"]: item for item in definition.get("Parameters", [])}
        unknown = sorted(set(parameters or {}) - set(declared))
        if unknown:
            raise ExecutionError(
                f"unknown parameter(s) {', '.join(unknown)} (the definition has "
                f"{', '.join(sorted(declared)) or 'none'})"
            )
        self.parameters = {
            name: _parameter_value(
                item.get("Type", "String"),
                (parameters or {}).get(name, item.get("DefaultValue")),
                name,
            )
            for name, item in declared.items()
        }
        self.results: dict[str, StepResult] = {}
        #: Steps of condition branches not taken, and the steps after them.
        self.skipped: set[str] = set()
        self.status = "Executing"
        self.failure_reason = ""
        #: Models the Model steps created, by ModelName (what Transform steps serve).
        self.models: dict[str, LocalModel] = {}
        #: The interpreter that serves Transform steps' models: the jobs' (the image's stand-in
        #: with run-local --python).
        self.transform_python = transform_python or sys.executable
        self.job_variables = dict(job_variables or {})

    # ---- expressions ---------------------------------------------------------------------------
    def resolve(self, value: Any, where: str = "") -> Any:
        """The value of an argument, with every function and reference resolved."""
        if isinstance(value, list):
            return [self.resolve(item, where) for item in value]
        if not isinstance(value, Mapping):
            return value
        if set(value) == {"Get"}:
            return self._get(value["Get"], where)
        if set(value) == {"Std:Join"}:
            join = value["Std:Join"]
            return join["On"].join(_text(self.resolve(item, where)) for item in join["Values"])
        if set(value) == {"Std:JsonGet"}:
            return self._json_get(value["Std:JsonGet"], where)
        return {key: self.resolve(item, f"{where}.{key}") for key, item in value.items()}

    def _get(self, expression: str, where: str) -> Any:
        if expression.startswith("Parameters."):
            name = expression.removeprefix("Parameters.")
            if name not in self.parameters:
                raise ExecutionError(f"{where}: no parameter {name}")
            return self.parameters[name]
        if expression == "Execution.PipelineExecutionId":
            return self.execution_id
        if expression == "Execution.PipelineName":
            return self.pipeline_name
        if expression == "Execution.PipelineExecutionArn":
            pipeline = f"arn:aws:sagemaker:local:000000000000:pipeline/{self.pipeline_name}"
            return f"{pipeline}/execution/{self.execution_id}"
        match = _STEP_REFERENCE.match(expression)
        if match:
            result = self.results.get(match.group(1))
            if result is None or result.status != "Succeeded":
                raise ExecutionError(
                    f"{where}: {expression} refers to a step that has not succeeded"
                )
            path = expression[match.end() :]
            if path in result.properties:
                return result.properties[path]
            raise ExecutionError(f"{where}: step {result.name} has no property {path}")
        raise ExecutionError(f"{where}: cannot resolve {expression!r}")

    def _json_get(self, spec: Mapping[str, Any], where: str) -> Any:
        reference = spec["PropertyFile"]["Get"]
        match = re.fullmatch(r"Steps\.([A-Za-z0-9\-_]+)\.PropertyFiles\.(.+)", reference)
        if not match:
            raise ExecutionError(f"{where}: {reference!r} is not a property file reference")
        result = self.results.get(match.group(1))
        if result is None or match.group(2) not in result.property_files:
            raise ExecutionError(f"{where}: property file {reference} is not available")
        value: Any = result.property_files[match.group(2)]
        path = self.resolve(spec["Path"], where)
        for key in _json_path(path):
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                raise ExecutionError(f"{where}: {path} is not in {reference}") from None
        return value

    # ---- running ---------------------------------------------------------------------------------
    def run(self) -> str:
        """Runs the pipeline; returns the execution status (Succeeded or Failed).

        Steps whose dependencies have succeeded run at the same time, as on SageMaker (up to
        ``max_parallel``); after a failure no new step starts and the running ones finish.
        """
        pending = list(self.definition["Steps"])
        running: dict[Future[list[dict[str, Any]]], dict[str, Any]] = {}
        with ThreadPoolExecutor(max_workers=self.max_parallel) as pool:
            while pending or running:
                # Steps after a branch that was not taken do not run, as on SageMaker.
                pending = [step for step in pending if not self._blocked(step)]
                if self.status == "Executing":
                    ready = [step for step in pending if self._ready(step)]
                    for step in ready[: self.max_parallel - len(running)]:
                        pending.remove(step)
                        self.results[step["Name"]] = StepResult(step["Name"], step["Type"])
                        running[pool.submit(self._run_step, step)] = step
                if not running:
                    if pending and self.status == "Executing":
                        names = ", ".join(step["Name"] for step in pending)
                        raise ExecutionError(f"steps {names} wait on steps that never run")
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    pending.extend(future.result())
        if self.status == "Executing":
            self.status = "Succeeded"
        return self.status

    def _dependencies(self, step: Mapping[str, Any]) -> set[str]:
        arguments = step.get("Arguments", {})
        if step.get("Type") == "Condition":
            # A condition depends on what its conditions read, not on its branches' steps.
            arguments = {"Conditions": arguments.get("Conditions", [])}
        return set(step.get("DependsOn", [])) | _references(arguments)

    def _blocked(self, step: Mapping[str, Any]) -> bool:
        if self._dependencies(step) & self.skipped:
            self.skipped.add(step["Name"])
            return True
        return False

    def _ready(self, step: Mapping[str, Any]) -> bool:
        # A step that has not finished (or has not started) is not a dependency met.
        return all(
            name in self.results and self.results[name].status == "Succeeded"
            for name in self._dependencies(step)
        )

    def _run_step(self, step: dict[str, Any]) -> list[dict[str, Any]]:
        result = self.results[step["Name"]]
        result.status = "Executing"
        started = time.perf_counter()
        logger.info("Step %s (%s): started", result.name, result.type)
        follow: list[dict[str, Any]] = []
        try:
            if self.native is not None and self.native.handles(step):
                result.properties = self.native.run(step, self)
                self._read_property_files(step, result)
            elif step["Type"] == "Processing":
                self._run_processing(step, result)
            elif step["Type"] == "Training":
                self._run_training(step, result)
            elif step["Type"] == "Model":
                self._run_model(step, result)
            elif step["Type"] == "Transform":
                self._run_transform(step, result)
            elif step["Type"] == "Condition":
                follow = self._run_condition(step, result)
            elif step["Type"] == "Fail":
                message = _text(
                    self.resolve(step["Arguments"].get("ErrorMessage", ""), step["Name"])
                )
                result.status, result.reason = "Failed", message
            else:
                raise ExecutionError(f"step {step['Name']}: type {step['Type']} is not supported")
            if result.status == "Executing":
                result.status = "Succeeded"
        except (ExecutionError, TransformJobError) as error:
            result.status, result.reason = "Failed", str(error)
        except Exception as error:  # a node, a job request or a file: the step fails, not run()
            logger.debug("Step %s failed", result.name, exc_info=True)
            result.status, result.reason = "Failed", f"{type(error).__name__}: {error}"
        result.seconds = time.perf_counter() - started
        logger.info(
            "Step %s (%s): %s in %.1f s%s",
            result.name,
            result.type,
            result.status,
            result.seconds,
            f": {result.reason}" if result.reason else "",
        )
        if result.status == "Failed":
            self.status, self.failure_reason = "Failed", f"step {result.name}: {result.reason}"
        return follow

    def _job_name(self, step: Mapping[str, Any]) -> str:
        name = re.sub(r"[^A-Za-z0-9-]+", "-", f"{self.execution_id}-{step['Name']}").strip("-")
        if len(name) <= 63:
            return name
        digest = sha256_hex(step["Name"].encode())[:8]
        return f"{name[:54].rstrip('-')}-{digest}"

    def step_environment(self, arguments: Mapping[str, Any]) -> dict[str, str]:
        """A step's resolved ``Environment`` with :attr:`job_variables` applied."""
        environment = dict(arguments.get("Environment") or {})
        for key, value in self.job_variables.items():
            if key in environment:
                if value is None:
                    environment.pop(key)
                else:
                    environment[key] = value
        return environment

    def _run_job(self, step: dict[str, Any], result: StepResult, kind: str) -> dict[str, Any]:
        """Submits the step's job (``kind``: Processing or Training) and waits for it; marks the
        step Failed if the job did not complete. Returns the request with the job's description."""
        request = self.resolve(step["Arguments"], step["Name"])
        if "Environment" in request:
            request["Environment"] = self.step_environment(request)
        request[f"{kind}JobName"] = result.job = self._job_name(step)
        getattr(self.jobs, f"create_{kind.lower()}_job")(request)
        finished = follow_job(self.jobs, result.job, kind, self.poll_seconds)
        result.properties[f"{kind}JobName"] = result.job
        if finished.status != "Completed":
            result.status, result.reason = "Failed", finished.reason
        return {**request, **finished.described}

    def _run_processing(self, step: dict[str, Any], result: StepResult) -> None:
        request = self._run_job(step, result, "Processing")
        if result.status == "Failed":
            return
        outputs = processing_outputs(request)
        result.properties.update({output_property(name): uri for name, uri in outputs.items()})
        self._read_property_files(step, result)

    def _read_property_files(self, step: Mapping[str, Any], result: StepResult) -> None:
        """The step's PropertyFiles, from the outputs it wrote (a job, or a native step, which
        may also have set them itself)."""
        for item in step.get("PropertyFiles", []):
            if item["PropertyFileName"] in result.property_files:
                continue
            output = result.properties.get(output_property(item["OutputName"]))
            if output is None:
                raise ExecutionError(
                    f"step {step['Name']}: property file {item['PropertyFileName']} reads output "
                    f"{item['OutputName']}, which the step did not write"
                )
            uri = f"{output.rstrip('/')}/{item['FilePath']}"
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "property.json"
                self.store.download_file(uri, path)
                result.property_files[item["PropertyFileName"]] = json.loads(path.read_text())

    def _run_training(self, step: dict[str, Any], result: StepResult) -> None:
        described = self._run_job(step, result, "Training")
        if result.status != "Failed":
            artifacts = described["ModelArtifacts"]["S3ModelArtifacts"]
            result.properties["ModelArtifacts.S3ModelArtifacts"] = artifacts

    def property_file(self, expression: Any) -> tuple[str, dict[str, Any], str] | None:
        """(producing step, property file, JSON path) of a ``Std:JsonGet`` expression, else
        None."""
        if not (isinstance(expression, Mapping) and set(expression) == {"Std:JsonGet"}):
            return None
        spec = expression["Std:JsonGet"]
        reference = spec["PropertyFile"]["Get"]
        match = re.fullmatch(r"Steps\.([A-Za-z0-9\-_]+)\.PropertyFiles\.(.+)", reference)
        result = self.results.get(match.group(1)) if match else None
        if match is None or result is None or match.group(2) not in result.property_files:
            return None
        path = self.resolve(spec["Path"], "PropertyFile")
        return match.group(1), result.property_files[match.group(2)], path

    def _run_model(self, step: dict[str, Any], result: StepResult) -> None:
        """CreateModel: one container, given (Image, ModelDataUrl) or a model package the
        NativeSteps describe. The request, with a package name the local registry cannot give
        replaced by what it describes, is validated as boto3 would before it is kept."""
        arguments = step["Arguments"]
        request = self.resolve(arguments, step["Name"])
        containers = request.get("Containers") or [request.get("PrimaryContainer") or {}]
        if len(containers) != 1:
            raise ExecutionError(
                f"step {step['Name']}: {len(containers)} containers (an inference pipeline) "
                "are not supported locally; one container"
            )
        container = containers[0]
        if "ModelPackageName" in container:
            describe = getattr(self.native, "model_package", None)
            if describe is None:
                raise ExecutionError(
                    f"step {step['Name']}: model package {container['ModelPackageName']!r} "
                    "cannot be described here (no NativeSteps.model_package)"
                )
            raw = (arguments.get("Containers") or [arguments.get("PrimaryContainer")])[0]
            described = describe(container["ModelPackageName"], raw, step, self)
            if not container["ModelPackageName"]:
                # The local registry has no ARNs: the model is made from what it describes.
                container.pop("ModelPackageName")
                container.update(
                    Image=described.image,
                    ModelDataUrl=described.model_data_url,
                    Environment=dict(described.environment),
                )
        else:
            described = ModelContainer(
                container["Image"],
                container["ModelDataUrl"],
                container.get("Environment", {}),
            )
        request["ModelName"] = result.job = self._job_name(step)
        validate_request("CreateModel", request)
        self.models[result.job] = LocalModel(
            name=result.job,
            image=described.image,
            model_data_url=described.model_data_url,
            environment=dict(described.environment),
            model_data_sha256=described.model_data_sha256,
        )
        result.properties["ModelName"] = result.job
        result.properties["ModelArn"] = f"arn:aws:sagemaker:local:000000000000:model/{result.job}"
        result.reason = f"model data {described.model_data_url}"

    def _run_transform(self, step: dict[str, Any], result: StepResult) -> None:
        """CreateTransformJob, run here (:class:`.transform.LocalTransformJob`)."""
        request = self.resolve(step["Arguments"], step["Name"])
        request["TransformJobName"] = result.job = self._job_name(step)
        validate_request("CreateTransformJob", request)
        model = self.models.get(request["ModelName"])
        if model is None:
            raise ExecutionError(
                f"step {step['Name']}: model {request['ModelName']} was not created by a Model "
                "step of this execution"
            )
        job = LocalTransformJob(request, model, self.store, self.transform_python)
        with tempfile.TemporaryDirectory(prefix="transform-") as directory:
            summary = job.run(Path(directory))
        output_path = request["TransformOutput"]["S3OutputPath"]
        result.properties.update(
            {
                "TransformJobName": result.job,
                "TransformJobArn": (
                    f"arn:aws:sagemaker:local:000000000000:transform-job/{result.job.lower()}"
                ),
                "TransformJobStatus": "Completed",
                "ModelName": model.name,
                "TransformOutput.S3OutputPath": output_path,
            }
        )
        result.reason = (
            f"{summary.records:,} records of {summary.objects} object(s) in "
            f"{summary.requests:,} requests -> {self.store.location(output_path)}"
        )

    def _run_condition(self, step: dict[str, Any], result: StepResult) -> list[dict[str, Any]]:
        arguments = step["Arguments"]
        outcome = all(self._condition(item, step["Name"]) for item in arguments["Conditions"])
        result.properties["Outcome"] = outcome
        result.reason = f"outcome {str(outcome).lower()}"
        if self.native is not None:
            self.native.after_condition(step, outcome, self)
        self.skipped |= _step_names(arguments["ElseSteps"] if outcome else arguments["IfSteps"])
        return list(arguments["IfSteps"] if outcome else arguments["ElseSteps"])

    def _condition(self, condition: Mapping[str, Any], where: str) -> bool:
        kind = condition["Type"]
        if kind == "Not":
            return not self._condition(condition["Condition"], where)
        if kind == "Or":
            return any(self._condition(item, where) for item in condition["Conditions"])
        if kind == "In":
            value = self.resolve(condition["QueryValue"], where)
            return value in [self.resolve(item, where) for item in condition["Values"]]
        left = self.resolve(condition["LeftValue"], where)
        right = self.resolve(condition["RightValue"], where)
        comparisons = {
            "Equals": lambda a, b: a == b,
            "GreaterThan": lambda a, b: a > b,
            "GreaterThanOrEqualTo": lambda a, b: a >= b,
            "LessThan": lambda a, b: a < b,
            "LessThanOrEqualTo": lambda a, b: a <= b,
        }
        if kind not in comparisons:
            raise ExecutionError(f"step {where}: condition type {kind} is not supported")
        try:
            return bool(comparisons[kind](left, right))
        except TypeError as error:
            raise ExecutionError(f"step {where}: cannot compare {left!r} and {right!r}") from error
