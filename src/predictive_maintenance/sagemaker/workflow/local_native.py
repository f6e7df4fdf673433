"""``kedro sagemaker run-local``'s stand-ins for what SageMaker does as a service.

A RegisterModel step, the quality gate's Condition step and the steps that load or save catalog
services (``pipeline.catalog_datasets``: the model registry, the endpoint) are run with the Kedro
nodes they were compiled from, in this process, against the environment's catalog: the model
lands in the local registry and the local endpoint's state, as with ``kedro run``. Their inputs
come from the execution's data (what earlier steps wrote), their parameters from Kedro with the
execution's pipeline parameters applied.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from predictive_maintenance.sagemaker.job import (
    parameter_value,
    read_dataset,
)
from predictive_maintenance.sagemaker.jobs import upload_dataset
from predictive_maintenance.sagemaker.storage import ObjectStore, download_input
from predictive_maintenance.sagemaker.workflow.executor import (
    ExecutionError,
    PipelineExecutor,
    output_property,
    processing_outputs,
)
from predictive_maintenance.sagemaker.workflow.plan import PROCESSING, is_parameter
from predictive_maintenance.sagemaker.workflow.settings import ParameterBinding

logger = logging.getLogger(__name__)


class KedroNativeSteps:
    """Runs service steps with the project's nodes and catalog (see the module docstring)."""

    def __init__(self, export: Any, bindings: list[ParameterBinding], store: ObjectStore) -> None:
        self._export = export
        self._plan = export.plan
        self._bindings = bindings
        self._store = store
        self._memory: dict[str, Any] = {}  # outputs of nodes run here (the gate's report)
        self._catalog_steps = {step.name for step in self._plan.steps if step.catalog_datasets}

    def handles(self, step: dict[str, Any]) -> bool:
        return step["Type"] == "RegisterModel" or step["Name"] in self._catalog_steps

    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        if step["Type"] == "RegisterModel":
            if self._plan.register_node is None:
                raise ExecutionError(f"step {step['Name']}: no registration node is configured")
            self._run_nodes([self._plan.register_node], executor)
            return {"ModelPackageArn": f"local-registry:{step['Name']}"}
        return self._run_catalog_step(step, executor)

    def after_condition(
        self, step: dict[str, Any], outcome: bool, executor: PipelineExecutor
    ) -> None:
        if step["Name"] == self._plan.gate_step and outcome and self._plan.gate_node is not None:
            # The condition passed; the gate node writes the report registration records.
            self._run_nodes([self._plan.gate_node], executor)

    def _run_catalog_step(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        """The step's nodes here; its file outputs written where the definition says, so later
        job steps read them as they would on SageMaker."""
        plan = self._plan.step(step["Name"])
        arguments = executor.resolve(step.get("Arguments", {}), step["Name"])
        inputs = {
            item["InputName"]: item["S3Input"]["S3Uri"]
            for item in arguments.get("ProcessingInputs", [])
            if "S3Input" in item
        }
        outputs = processing_outputs(arguments)
        step_inputs = {
            dataset: inputs[name] for dataset, name in plan.inputs.items() if name in inputs
        }
        values = self._run_nodes(list(plan.nodes), executor, step_inputs)
        properties = {}
        for dataset, name in plan.outputs.items():
            if name not in outputs:  # the definition keeps it inside the step
                continue
            upload_dataset(self._store, values[dataset], dataset, name, outputs[name])
            properties[output_property(name)] = outputs[name]
        return properties

    # ---- helpers -------------------------------------------------------------------------------
    def _parameters(self, executor: PipelineExecutor) -> dict[str, Any]:
        parameters = copy.deepcopy(self._export.parameters)
        for binding in self._bindings:
            if binding.kedro_parameter is None or binding.name not in executor.parameters:
                continue
            target = parameters
            for key in binding.kedro_parameter[:-1]:
                target = target[key]
            target[binding.kedro_parameter[-1]] = executor.parameters[binding.name]
        return parameters

    def _load(
        self,
        dataset: str,
        parameters: Mapping[str, Any],
        executor: PipelineExecutor,
        step_inputs: Mapping[str, str],
    ) -> Any:
        if is_parameter(dataset):
            return parameter_value(parameters, dataset)
        if dataset in self._memory:
            return self._memory[dataset]
        if dataset in self._export.settings.catalog_datasets:
            return self._export.context.catalog.load(dataset)
        # What the definition hands the step (a pipeline input, say), else what a step wrote.
        uri = step_inputs.get(dataset)
        producer = self._plan.producers.get(dataset)
        if uri is None:
            if producer is None or producer not in executor.results:
                raise ExecutionError(f"{dataset} was not written by any step of this execution")
            properties = executor.results[producer].properties
            producer_plan = self._plan.step(producer)
            if producer_plan.kind == PROCESSING:
                uri = properties[output_property(producer_plan.outputs[dataset])]
            else:
                uri = properties["ModelArtifacts.S3ModelArtifacts"]
        with tempfile.TemporaryDirectory() as directory:
            download_input(self._store, uri, Path(directory))
            return read_dataset(Path(directory), dataset)

    def _run_nodes(
        self,
        nodes: list[Any],
        executor: PipelineExecutor,
        step_inputs: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Runs ``nodes`` in order; returns the values they made that are not catalog services."""
        parameters = self._parameters(executor)
        made: dict[str, Any] = {}
        for node in nodes:
            inputs = {
                dataset: made[dataset]
                if dataset in made
                else self._load(dataset, parameters, executor, step_inputs or {})
                for dataset in node.inputs
            }
            for dataset, value in node.run(inputs).items():
                if dataset in self._export.settings.catalog_datasets:
                    self._export.context.catalog.save(dataset, value)
                else:
                    made[dataset] = self._memory[dataset] = value
            logger.info("kedro node %s: ran in this process (local stand-in)", node.name)
        return made
