"""The ``pipeline`` block of the ``sagemaker`` configuration: how a Kedro pipeline is exported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from predictive_maintenance.sagemaker.config import (
    CONFIG_FILE,
    SageMakerConfigError,
    TrainingJobSettings,
    _check_keys,
    _expect,
    _merge,
)
from predictive_maintenance.sagemaker.workflow.grouping import GROUP_BY

#: Names SageMaker accepts for pipelines, steps and parameters.
NAME_PATTERN: Final = r"^[A-Za-z0-9\-_]{1,64}$"


@dataclass(frozen=True)
class ParameterBinding:
    """A pipeline parameter and what it sets: a Kedro parameter, a pipeline input or a setting."""

    name: str
    kedro_parameter: tuple[str, ...] | None = None
    dataset: str | None = None
    setting: str | None = None


@dataclass(frozen=True)
class QualityGate:
    node: str
    metrics: str
    minimums: tuple[str, ...]


@dataclass(frozen=True)
class Registration:
    node: str
    model_data: str
    model_metrics: str | None
    model_package_group: str
    approval_status_parameter: str | None
    content_types: tuple[str, ...]
    response_types: tuple[str, ...]
    inference_instances: tuple[str, ...]
    transform_instances: tuple[str, ...]
    environment: Mapping[str, str]


@dataclass(frozen=True)
class PipelineSettings:
    name: str
    processing: TrainingJobSettings
    kedro_pipeline: str = "__default__"
    group_by: str = "namespace"
    group_tags: tuple[str, ...] = ()
    parameters: tuple[ParameterBinding, ...] = ()
    catalog_datasets: tuple[str, ...] = ()
    quality_gate: QualityGate | None = None
    registration: Registration | None = None
    description: str = ""
    #: The endpoint `kedro sagemaker cleanup` deletes (with its configs and models).
    endpoint_name: str | None = None


def key_path(value: Any, where: str) -> tuple[str, ...]:
    """``a.b.c`` or ``[a, b.with.dot]`` -> ("a", "b", ...)."""
    if isinstance(value, str):
        return tuple(value.split("."))
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise SageMakerConfigError(
        f"{CONFIG_FILE}: {where} must be a dotted key or a list of keys, got {value!r}"
    )


#: The register block's lists and the one value each defaults to.
_REGISTER_LISTS: Final = {
    "content_types": "text/csv",
    "response_types": "text/csv",
    "inference_instances": "ml.m5.large",
    "transform_instances": "ml.m5.large",
}


def _block(value: Any, settings: type, where: str) -> Mapping[str, Any]:
    """A mapping whose keys are the fields of the ``settings`` dataclass."""
    _check_keys(_expect(value, Mapping, where), (f.name for f in fields(settings)), where)
    return value


def _field(block: Mapping[str, Any], key: str, kind: Any, where: str, default: Any = None) -> Any:
    return _expect(block.get(key, default), kind, f"{where}.{key}")


def _quality_gate(value: Any) -> QualityGate:
    gate = _block(value, QualityGate, "pipeline.quality_gate")
    return QualityGate(
        node=_field(gate, "node", str, "pipeline.quality_gate"),
        metrics=_field(gate, "metrics", str, "pipeline.quality_gate"),
        minimums=key_path(gate.get("minimums"), "pipeline.quality_gate.minimums"),
    )


def _registration(value: Any) -> Registration:
    block = _block(value, Registration, "pipeline.register")
    return Registration(
        node=_field(block, "node", str, "pipeline.register"),
        model_data=_field(block, "model_data", str, "pipeline.register"),
        model_metrics=block.get("model_metrics"),
        model_package_group=_field(block, "model_package_group", str, "pipeline.register"),
        approval_status_parameter=block.get("approval_status_parameter"),
        **{
            key: _strings(block.get(key, [default]), f"pipeline.register.{key}")
            for key, default in _REGISTER_LISTS.items()
        },
        environment=dict(
            _expect(block.get("environment") or {}, Mapping, "pipeline.register.environment")
        ),
    )


def _strings(value: Any, where: str) -> tuple[str, ...]:
    _expect(value, list, where)
    return tuple(_expect(item, str, f"{where}[]") for item in value)


def parse_pipeline_settings(config: Mapping[str, Any]) -> PipelineSettings:
    """Checks the ``pipeline`` block; raises SageMakerConfigError naming the key."""
    block = _expect(config.get("pipeline") or {}, Mapping, "pipeline")
    # The block's keys are PipelineSettings' fields; its ``register`` block is ``registration``.
    keys = {field.name for field in fields(PipelineSettings)} - {"registration"} | {"register"}
    _check_keys(block, keys, "pipeline")
    name = _field(block, "name", str, "pipeline")
    if not re.fullmatch(NAME_PATTERN, name):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: pipeline.name {name!r} must match {NAME_PATTERN}"
        )
    group_by = _field(block, "group_by", str, "pipeline", "namespace")
    if group_by not in GROUP_BY:
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: pipeline.group_by must be one of {', '.join(GROUP_BY)}"
        )
    bindings = []
    for parameter, target in _expect(
        block.get("parameters") or {}, Mapping, "pipeline.parameters"
    ).items():
        where = f"pipeline.parameters.{parameter}"
        if not re.fullmatch(NAME_PATTERN, str(parameter)):
            raise SageMakerConfigError(
                f"{CONFIG_FILE}: {where}: the name must match {NAME_PATTERN}"
            )
        _expect(target, Mapping, where)
        _check_keys(target, ("parameter", "dataset", "setting"), where)
        if len(target) != 1:
            raise SageMakerConfigError(
                f"{CONFIG_FILE}: {where} sets exactly one of parameter, dataset or setting"
            )
        bindings.append(
            ParameterBinding(
                name=str(parameter),
                kedro_parameter=key_path(target["parameter"], where)
                if "parameter" in target
                else None,
                dataset=_expect(target["dataset"], str, where) if "dataset" in target else None,
                setting=_expect(target["setting"], str, where) if "setting" in target else None,
            )
        )
    for binding in bindings:
        if binding.setting not in (None, "training_instance_type", "processing_instance_type"):
            raise SageMakerConfigError(
                f"{CONFIG_FILE}: pipeline.parameters.{binding.name}.setting must be "
                "training_instance_type or processing_instance_type"
            )
    gate = _quality_gate(block["quality_gate"]) if block.get("quality_gate") else None
    registration = _registration(block["register"]) if block.get("register") else None
    names = {binding.name for binding in bindings}
    approval = registration.approval_status_parameter if registration else None
    if approval is not None and approval not in names:
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: pipeline.register.approval_status_parameter {approval!r} is not one "
            f"of pipeline.parameters ({', '.join(sorted(names)) or 'none'})"
        )
    return PipelineSettings(
        name=name,
        description=_field(block, "description", str, "pipeline", ""),
        kedro_pipeline=_field(block, "kedro_pipeline", str, "pipeline", "__default__"),
        group_by=group_by,
        group_tags=_strings(block.get("group_tags") or [], "pipeline.group_tags"),
        processing=_merge(
            TrainingJobSettings(instance_type="ml.m5.large"),
            block.get("processing") or {},
            "pipeline.processing",
        ),
        parameters=tuple(bindings),
        catalog_datasets=_strings(block.get("catalog_datasets") or [], "pipeline.catalog_datasets"),
        quality_gate=gate,
        registration=registration,
        endpoint_name=_field(block, "endpoint_name", (str, type(None)), "pipeline"),
    )
