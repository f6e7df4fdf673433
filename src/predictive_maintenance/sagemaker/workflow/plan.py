"""The export plan: which Kedro nodes become which SageMaker Pipeline steps, and how data flows.

Pure Python over Kedro's ``Pipeline``: no SDK, no AWS. The compiler turns a plan into a
definition; ``kedro sagemaker run-local`` uses it to run the steps SageMaker would run natively
(the quality gate's condition, RegisterModel) with the project's own nodes and catalog.

- Every node becomes part of exactly one job step (:mod:`.grouping`: by namespace, tag or node),
  except the quality-gate node (a ConditionStep), the registration node (a RegisterModel
  step) and the transform node (a Model step and a Transform step: a Batch Transform of a
  registered model package), named in the ``pipeline`` configuration.
- A step is a training step if any of its nodes is selected to run remotely (the runner's
  ``remote_nodes``), otherwise a processing step.
- A dataset that crosses steps is an output of the step that makes it and an input of the steps
  that read it; a dataset nothing makes is a pipeline input (staged in S3, or a parameter's URI);
  ``catalog_datasets`` are loaded and saved in the step through their catalog entry (services such
  as the model registry or an endpoint, which cannot travel as files).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any, Final

from predictive_maintenance.sagemaker.config import BridgeSettings, SageMakerConfigError
from predictive_maintenance.sagemaker.job import is_parameter
from predictive_maintenance.sagemaker.jobs import data_name
from predictive_maintenance.sagemaker.workflow.grouping import group_key, group_nodes
from predictive_maintenance.sagemaker.workflow.settings import PipelineSettings

logger = logging.getLogger(__name__)

TRAINING: Final = "training"
PROCESSING: Final = "processing"

__all__ = ["data_name", "is_parameter"]


class PlanError(SageMakerConfigError):
    """The Kedro pipeline cannot be exported as configured."""


def step_name(name: str) -> str:
    """A SageMaker step name (``[A-Za-z0-9-_]{1,64}``) for a node or group name."""
    return (re.sub(r"[^A-Za-z0-9\-_]", "-", name).strip("-") or "step")[:64]


@dataclass(frozen=True)
class StepPlan:
    """One job step: its nodes (in run order) and the datasets it reads and writes."""

    name: str
    kind: str
    nodes: tuple[Any, ...]
    #: Datasets read from other steps or pipeline inputs -> input (channel) name.
    inputs: dict[str, str]
    #: Datasets written for other steps or kept as results -> output name.
    outputs: dict[str, str]
    #: Datasets loaded/saved through their catalog entry inside the step.
    catalog_datasets: tuple[str, ...]
    #: Top-level Kedro parameter keys the step's nodes read.
    parameter_keys: tuple[str, ...]
    #: Steps that must finish first without a data reference (e.g. RegisterModel).
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportPlan:
    """Everything the compiler and the local executor need to know about the Kedro side."""

    steps: tuple[StepPlan, ...]
    #: dataset -> the step that writes it.
    producers: dict[str, str]
    #: Datasets no node makes (staged in S3 before a run).
    pipeline_inputs: tuple[str, ...]
    gate_node: Any | None
    gate_step: str | None
    register_node: Any | None
    register_step: str | None
    transform_node: Any | None = None
    transform_step: str | None = None

    def step(self, name: str) -> StepPlan:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(name)


def build_plan(  # noqa: PLR0912, PLR0915 -- one pass over the pipeline, kept in one place
    pipeline: Any,
    bridge: BridgeSettings,
    settings: PipelineSettings,
    memory_only: Collection[str] = (),
) -> ExportPlan:
    """Plans the export of ``pipeline`` (a Kedro ``Pipeline``); ``memory_only`` datasets (their
    catalog entry is a MemoryDataset) may not cross steps."""
    nodes = list(pipeline.nodes)  # Kedro's topological order
    transcoded = sorted({d for n in nodes for d in (*n.inputs, *n.outputs) if "@" in d})
    if transcoded:
        raise PlanError(
            f"transcoded datasets ({', '.join(transcoded)}) cannot be exported yet: between steps "
            "a dataset is one file in one format"
        )
    by_name = {node.name: node for node in nodes}
    gate, registration, transform = settings.quality_gate, settings.registration, settings.transform
    special = {}
    for role, config in (
        ("quality_gate", gate),
        ("register", registration),
        ("transform", transform),
    ):
        if config is not None and config.node not in by_name:
            # A partial pipeline (e.g. --pipeline training) has no gate or registration.
            logger.warning("pipeline.%s.node %s is not in this Kedro pipeline", role, config.node)
        elif config is not None:
            special[config.node] = role
    gate_node = by_name.get(gate.node) if gate else None
    register_node = by_name.get(registration.node) if registration else None
    transform_node = by_name.get(transform.node) if transform else None

    try:
        groups = group_nodes(
            [node for node in nodes if node.name not in special],
            settings.group_by,
            settings.group_tags,
            memory_only,
        )
    except ValueError as error:
        raise PlanError(f"pipeline.group_by {settings.group_by}: {error}") from None
    # The gate and registration nodes are groups of their own, "<role>", in no job step.
    group_of = {node.name: key for key, members in groups.items() for node in members}
    group_of |= {node: f"<{role}>" for node, role in special.items()}
    producer_group = {dataset: group_of[node.name] for node in nodes for dataset in node.outputs}
    catalog_bound = set(settings.catalog_datasets)
    consumers: dict[str, set[str]] = defaultdict(set)
    for node in nodes:
        for dataset in node.inputs:
            consumers[dataset].add(group_of[node.name])
    names = {group: step_name(group) for group in groups}
    if len(set(names.values())) != len(names):
        raise PlanError(f"two steps would share a name: {sorted(names.values())}")
    register_step = _special_step_name(register_node, settings, names.values())
    # The step that saves a catalog dataset: a job step, or the RegisterModel step.
    writer_step = {**names, "<register>": register_step}
    steps = []
    producers: dict[str, str] = {}
    for group, members in groups.items():
        made = {dataset for node in members for dataset in node.outputs}
        read = [dataset for node in members for dataset in node.inputs]
        taken: set[str] = set()
        inputs = {}
        for dataset in dict.fromkeys(read):
            if is_parameter(dataset) or dataset in made or dataset in catalog_bound:
                continue
            source = producer_group.get(dataset)
            if source is not None and source.startswith("<"):
                raise PlanError(
                    f"{dataset}, made by the {source[1:-1]} node, is read by step {names[group]}: "
                    "only the quality gate and registration nodes, or catalog_datasets, may "
                    "read it"
                )
            inputs[dataset] = data_name(dataset, taken)
        outputs = {}
        for node in members:
            for dataset in node.outputs:
                # Read by another step, or a result nothing reads.
                if dataset not in catalog_bound and consumers.get(dataset, set()) != {group}:
                    outputs[dataset] = data_name(dataset, taken)
                    producers[dataset] = names[group]
        remote = any(bridge.is_remote(node.name, node.tags) for node in members)
        keys = {d.removeprefix("params:").split(".")[0] for d in read if d.startswith("params:")}
        # A catalog service written by one step and read by another orders them (no file does).
        writers = {writer_step.get(producer_group.get(d)) for d in read if d in catalog_bound}
        steps.append(
            StepPlan(
                name=names[group],
                kind=TRAINING if remote else PROCESSING,
                nodes=tuple(members),
                inputs=inputs,
                outputs=outputs,
                catalog_datasets=tuple(sorted((set(read) | made) & catalog_bound)),
                parameter_keys=("*",) if "parameters" in read else tuple(sorted(keys)),
                depends_on=tuple(sorted(writers - {None, names[group]})),
            )
        )
    data_read = {dataset for node in nodes for dataset in node.inputs if not is_parameter(dataset)}
    # The transform's input is an S3 prefix a pipeline parameter names, not a file upsert stages.
    transformed = {transform.input} if transform_node is not None else set()
    pipeline_inputs = tuple(sorted(data_read - producer_group.keys() - catalog_bound - transformed))
    _check_special_inputs(gate_node, register_node, producers, memory_only, catalog_bound)
    if transform_node is not None:
        _check_transform(transform_node, transform, producers, producer_group, consumers)
    return ExportPlan(
        steps=tuple(steps),
        producers=producers,
        pipeline_inputs=pipeline_inputs,
        gate_node=gate_node,
        gate_step=_special_step_name(gate_node, settings, names.values()),
        register_node=register_node,
        register_step=register_step,
        transform_node=transform_node,
        transform_step=_special_step_name(transform_node, settings, names.values()),
    )


def _check_transform(
    node: Any,
    transform: Any,
    producers: dict[str, str],
    producer_group: dict[str, str],
    consumers: dict[str, set[str]],
) -> None:
    """The transform node reads its input (made by no node) and the model choice (made by a job
    step); what it makes is the transform's output, which no other node may read."""
    for dataset in node.inputs:
        if is_parameter(dataset):
            continue
        if dataset == transform.input:
            if dataset in producer_group:
                raise PlanError(
                    f"transform input {dataset} is made by a node; a Batch Transform reads data "
                    "that is in S3 before the pipeline starts"
                )
        elif dataset == transform.model:
            if dataset not in producers:
                raise PlanError(
                    f"transform model {dataset} must be written by a job step of the pipeline"
                )
        else:
            raise PlanError(
                f"the transform node {node.name} reads {dataset}; a Batch Transform reads only "
                f"its input ({transform.input}) and its model ({transform.model})"
            )
    for dataset in node.outputs:
        if consumers.get(dataset):
            raise PlanError(
                f"{dataset}, made by the transform node {node.name}, is read by another node; "
                "a Batch Transform's output is a result, not a step's input"
            )


def _special_step_name(node: Any, settings: PipelineSettings, taken: Iterable[str]) -> str | None:
    """The quality gate's or the registration's step: named as its group would be (``gate``,
    ``register``), or after the node if a job step already has that name."""
    if node is None:
        return None
    name = step_name(group_key(node, settings.group_by, settings.group_tags))
    return step_name(node.name) if name in set(taken) else name


def effective_settings(settings: PipelineSettings, plan: ExportPlan) -> PipelineSettings:
    """``settings`` without what this pipeline lacks: the gate, registration and transform when
    their nodes are not in it, parameters bound to pipeline inputs it does not read."""
    registration = settings.registration if plan.register_node is not None else None
    transform = settings.transform if plan.transform_node is not None else None
    # Without the registration, its approval parameter has nothing to set.
    dropped = settings.registration if registration is None else None
    unused = {dropped.approval_status_parameter} if dropped is not None else set()
    parameters = []
    for binding in settings.parameters:
        if binding.dataset is not None and binding.dataset not in plan.pipeline_inputs:
            logger.warning(
                "pipeline parameter %s: %s is not an input of this pipeline; left out",
                binding.name,
                binding.dataset,
            )
        elif transform is None and (binding.setting or "").startswith("transform_"):
            logger.warning(
                "pipeline parameter %s: this pipeline has no transform node; left out",
                binding.name,
            )
        elif binding.name not in unused:
            parameters.append(binding)
    return replace(
        settings,
        quality_gate=settings.quality_gate if plan.gate_node is not None else None,
        registration=registration,
        transform=transform,
        parameters=tuple(parameters),
    )


def _check_special_inputs(
    gate_node: Any,
    register_node: Any,
    producers: dict[str, str],
    memory_only: Collection[str],
    catalog_bound: Collection[str],
) -> None:
    """The gate's and the registration's inputs are made by job steps, or are services
    (``catalog_datasets``, e.g. this run's MLflow run): SageMaker's RegisterModel step needs
    no data from them, run-local loads them through their catalog entry."""
    gate_outputs = set(gate_node.outputs) if gate_node is not None else set()
    for node in (gate_node, register_node):
        if node is None:
            continue
        for dataset in node.inputs:
            if is_parameter(dataset) or dataset in gate_outputs or dataset in catalog_bound:
                continue
            if dataset in memory_only and dataset in producers:
                # The gate and registration are steps of their own: this would cross too.
                raise PlanError(
                    f"dataset {dataset} is memory-only (its catalog entry is a MemoryDataset) "
                    f"but would cross from step {producers[dataset]} to the {node.name} node's "
                    "step: give it a file dataset"
                )
            if dataset not in producers:
                raise PlanError(
                    f"{dataset}, read by the {node.name} node, is not written by any exported "
                    "step (a service loaded through its catalog entry belongs in "
                    "pipeline.catalog_datasets)"
                )


def dataset_dependencies(plan: ExportPlan) -> dict[str, set[str]]:
    """step -> the steps it reads data from (what the definition's references must express)."""
    return {
        step.name: {plan.producers[d] for d in step.inputs if d in plan.producers}
        for step in plan.steps
    }


def node_names(steps: Iterable[StepPlan]) -> list[str]:
    return [node.name for step in steps for node in step.nodes]
