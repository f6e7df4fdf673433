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

from predictive_maintenance.sagemaker.step_entry import read_dataset
from predictive_maintenance.sagemaker.storage import ObjectStore, download_prefix
from predictive_maintenance.sagemaker.workflow.executor import ExecutionError, PipelineExecutor
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
        self._run_nodes(list(self._plan.step(step["Name"]).nodes), executor)
        return {}

    def after_condition(
        self, step: dict[str, Any], outcome: bool, executor: PipelineExecutor
    ) -> None:
        if step["Name"] == self._plan.gate_step and outcome and self._plan.gate_node is not None:
            # The condition passed; the gate node writes the report registration records.
            self._run_nodes([self._plan.gate_node], executor)

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

    def _load(self, dataset: str, parameters: Mapping[str, Any], executor: PipelineExecutor) -> Any:
        if dataset == "parameters":
            return parameters
        if is_parameter(dataset):
            value: Any = parameters
            for key in dataset.removeprefix("params:").split("."):
                value = value[key]
            return value
        if dataset in self._memory:
            return self._memory[dataset]
        if dataset in self._export.settings.catalog_datasets:
            return self._export.context.catalog.load(dataset)
        producer = self._plan.producers.get(dataset)
        if producer is None or producer not in executor.results:
            raise ExecutionError(f"{dataset} was not written by any step of this execution")
        properties = executor.results[producer].properties
        producer_plan = self._plan.step(producer)
        with tempfile.TemporaryDirectory() as directory:
            target = Path(directory)
            if producer_plan.kind == PROCESSING:
                name = producer_plan.outputs[dataset]
                uri = properties[f"ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"]
                download_prefix(self._store, uri, target)
            else:
                uri = properties["ModelArtifacts.S3ModelArtifacts"]
                self._store.download_file(uri, target / "model.tar.gz")
            return read_dataset(target, dataset)

    def _run_nodes(self, nodes: list[Any], executor: PipelineExecutor) -> None:
        parameters = self._parameters(executor)
        for node in nodes:
            inputs = {dataset: self._load(dataset, parameters, executor) for dataset in node.inputs}
            outputs = node.run(inputs)
            for dataset, value in outputs.items():
                if dataset in self._export.settings.catalog_datasets:
                    self._export.context.catalog.save(dataset, value)
                else:
                    self._memory[dataset] = value
            logger.info("kedro node %s: ran in this process (local stand-in)", node.name)
