"""The ``pipeline`` block of the ``sagemaker`` configuration: how a Kedro pipeline is exported."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
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
    #: ``statistics`` and ``constraints``: the datasets (Model Monitor's statistics.json and
    #: constraints.json, written by a processing step) registered as the package's
    #: DriftCheckBaselines.ModelDataQuality and ModelMetrics.ModelDataQuality.
    drift_check_baselines: Mapping[str, str] | None = None


#: The parts of a data-quality drift-check baseline.
_BASELINE_PARTS: Final = ("statistics", "constraints")


#: Values SageMaker's CreateTransformJob accepts, by setting.
_TRANSFORM_CHOICES: Final = {
    "split_type": ("None", "Line", "RecordIO", "TFRecord"),
    "assemble_with": ("None", "Line"),
    "join_source": ("None", "Input"),
    "strategy": ("MultiRecord", "SingleRecord"),
}


@dataclass(frozen=True)
class Transform:
    """A node that becomes a Batch Transform of a registered model package (a Model step, then a
    Transform step): SageMaker runs the package's own serving code over an S3 prefix."""

    node: str
    #: The dataset the node scores: the transform's input, an S3 prefix the
    #: ``transform_input_uri`` setting (a pipeline parameter) names; never staged by upsert.
    input: str
    #: The JSON dataset a processing step writes with the model package's ARN at ``arn_path``.
    model: str
    arn_path: str = "model_package_arn"
    #: Default of the input URI (None: ``batch-input/`` under the bridge's S3 root).
    input_uri: str | None = None
    content_type: str = "text/csv"
    split_type: str = "Line"
    accept: str = "text/csv"
    assemble_with: str = "Line"
    join_source: str = "Input"
    input_filter: str | None = None
    output_filter: str | None = None
    strategy: str = "MultiRecord"
    max_payload_mb: int = 6
    max_concurrent_transforms: int | None = None
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogImage:
    """A container image URI the compiler writes into a catalog entry a step ships: the
    SageMaker SDK that looks images up is not in the stock image the step runs on."""

    #: The entry's key (a dotted key reaches into a nested block, which must be there).
    key: tuple[str, ...]
    #: ``sagemaker.core.image_uris`` framework (``xgboost``, ``model-monitor``, ...).
    framework: str
    #: The framework version; ``version_key`` names an entry key that holds it instead.
    version: str = ""
    version_key: str | None = None


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
    transform: Transform | None = None
    #: By catalog dataset type (its ``type`` in the catalog): the images its entries get.
    catalog_images: Mapping[str, tuple[CatalogImage, ...]] = field(default_factory=dict)


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
        drift_check_baselines=_drift_check_baselines(block.get("drift_check_baselines")),
    )


def _drift_check_baselines(value: Any) -> dict[str, str] | None:
    where = "pipeline.register.drift_check_baselines"
    if value is None:
        return None
    block = _expect(value, Mapping, where)
    if set(block) != set(_BASELINE_PARTS):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where} names exactly the datasets {', '.join(_BASELINE_PARTS)}, "
            f"not {sorted(block)}"
        )
    return {part: _expect(block[part], str, f"{where}.{part}") for part in _BASELINE_PARTS}


def _catalog_images(value: Any, where: str) -> dict[str, tuple[CatalogImage, ...]]:
    images: dict[str, tuple[CatalogImage, ...]] = {}
    for dataset_type, keys in _expect(value or {}, Mapping, where).items():
        at = f"{where}.{dataset_type}"
        entries = []
        for key, spec in _expect(keys, Mapping, at).items():
            spec_where = f"{at}.{key}"
            _expect(spec, Mapping, spec_where)
            _check_keys(spec, ("framework", "version", "version_key"), spec_where)
            entries.append(
                CatalogImage(
                    key=key_path(key, spec_where),
                    framework=_field(spec, "framework", str, spec_where),
                    version=str(_field(spec, "version", (str, int, float), spec_where, "")),
                    version_key=_field(spec, "version_key", (str, type(None)), spec_where),
                )
            )
        images[str(dataset_type)] = tuple(entries)
    return images


def _strings(value: Any, where: str) -> tuple[str, ...]:
    _expect(value, list, where)
    return tuple(_expect(item, str, f"{where}[]") for item in value)


def _transform(value: Any, where: str) -> Transform:
    block = _block(value, Transform, where)
    types: dict[str, Any] = {item.name: str for item in fields(Transform)}
    types |= {
        "input_uri": (str, type(None)),
        "input_filter": (str, type(None)),
        "output_filter": (str, type(None)),
        "max_payload_mb": int,
        "max_concurrent_transforms": (int, type(None)),
        "instance_count": int,
        "environment": Mapping,
    }
    values = {key: _expect(raw, types[key], f"{where}.{key}") for key, raw in block.items()}
    for key in ("node", "input", "model"):
        if key not in values:
            raise SageMakerConfigError(f"{CONFIG_FILE}: {where}.{key} is required")
    for key, choices in _TRANSFORM_CHOICES.items():
        if key in values and values[key] not in choices:
            raise SageMakerConfigError(
                f"{CONFIG_FILE}: {where}.{key} must be one of {', '.join(choices)}, "
                f"not {values[key]!r}"
            )
    if not 0 <= values.get("max_payload_mb", 6) <= 100:
        raise SageMakerConfigError(f"{CONFIG_FILE}: {where}.max_payload_mb must be 0-100 (MB)")
    if values.get("instance_count", 1) < 1:
        raise SageMakerConfigError(f"{CONFIG_FILE}: {where}.instance_count must be at least 1")
    if "environment" in values:
        values["environment"] = {
            str(key): _expect(item, str, f"{where}.environment.{key}")
            for key, item in values["environment"].items()
        }
    return Transform(**values)


#: The sub-block of ``pipeline`` that exports the batch-scoring pipeline, a pipeline block of its
#: own; what it leaves out of these keys it takes from ``pipeline``.
BATCH_BLOCK: Final = "batch_pipeline"
_INHERITED: Final = (
    "processing",
    "group_by",
    "group_tags",
    "catalog_datasets",
    "catalog_images",
)
#: Settings a pipeline parameter may be bound to.
SETTINGS: Final = (
    "training_instance_type",
    "processing_instance_type",
    "transform_instance_type",
    "transform_input_uri",
)


def parse_pipeline_settings(config: Mapping[str, Any]) -> PipelineSettings:
    """Checks the ``pipeline`` block; raises SageMakerConfigError naming the key."""
    block = _expect(config.get("pipeline") or {}, Mapping, "pipeline")
    return _parse_block(
        {key: value for key, value in block.items() if key != BATCH_BLOCK}, "pipeline"
    )


def parse_batch_pipeline_settings(config: Mapping[str, Any]) -> PipelineSettings | None:
    """The ``pipeline.batch_pipeline`` block (the batch-scoring export), or None without one."""
    outer = _expect(config.get("pipeline") or {}, Mapping, "pipeline")
    if not outer.get(BATCH_BLOCK):
        return None
    where = f"pipeline.{BATCH_BLOCK}"
    block = dict(_expect(outer[BATCH_BLOCK], Mapping, where))
    for key in _INHERITED:
        if key not in block and key in outer:
            block[key] = outer[key]
    return _parse_block(block, where)


def settings_for(config: Mapping[str, Any], pipelines: list[str] | None) -> PipelineSettings:
    """The export that ``pipelines`` (``--pipelines``) names: the batch-scoring export when they
    are its Kedro pipeline, else the ``pipeline`` block."""
    batch = parse_batch_pipeline_settings(config)
    if batch is not None and pipelines and list(pipelines) == [batch.kedro_pipeline]:
        return batch
    return parse_pipeline_settings(config)


def _parse_block(block: Mapping[str, Any], where: str) -> PipelineSettings:
    # The block's keys are PipelineSettings' fields; its ``register`` block is ``registration``.
    keys = {item.name for item in fields(PipelineSettings)} - {"registration"} | {"register"}
    _check_keys(block, keys, where)
    name = _field(block, "name", str, where)
    if not re.fullmatch(NAME_PATTERN, name):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where}.name {name!r} must match {NAME_PATTERN}"
        )
    group_by = _field(block, "group_by", str, where, "namespace")
    if group_by not in GROUP_BY:
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where}.group_by must be one of {', '.join(GROUP_BY)}"
        )
    bindings = []
    block_where = where
    for parameter, target in _expect(
        block.get("parameters") or {}, Mapping, f"{block_where}.parameters"
    ).items():
        where = f"{block_where}.parameters.{parameter}"
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
    where = block_where
    for binding in bindings:
        if binding.setting is not None and binding.setting not in SETTINGS:
            raise SageMakerConfigError(
                f"{CONFIG_FILE}: {where}.parameters.{binding.name}.setting must be one of "
                f"{', '.join(SETTINGS)}"
            )
    transform = (
        _transform(block["transform"], f"{where}.transform") if block.get("transform") else None
    )
    if transform is None and any(
        (binding.setting or "").startswith("transform_") for binding in bindings
    ):
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where}.parameters: transform settings need a {where}.transform block"
        )
    gate = _quality_gate(block["quality_gate"]) if block.get("quality_gate") else None
    registration = _registration(block["register"]) if block.get("register") else None
    names = {binding.name for binding in bindings}
    approval = registration.approval_status_parameter if registration else None
    if approval is not None and approval not in names:
        raise SageMakerConfigError(
            f"{CONFIG_FILE}: {where}.register.approval_status_parameter {approval!r} is not one "
            f"of {where}.parameters ({', '.join(sorted(names)) or 'none'})"
        )
    return PipelineSettings(
        name=name,
        description=_field(block, "description", str, where, ""),
        kedro_pipeline=_field(block, "kedro_pipeline", str, where, "__default__"),
        group_by=group_by,
        group_tags=_strings(block.get("group_tags") or [], f"{where}.group_tags"),
        processing=_merge(
            TrainingJobSettings(instance_type="ml.m5.large"),
            block.get("processing") or {},
            f"{where}.processing",
        ),
        parameters=tuple(bindings),
        catalog_datasets=_strings(block.get("catalog_datasets") or [], f"{where}.catalog_datasets"),
        quality_gate=gate,
        registration=registration,
        endpoint_name=_field(block, "endpoint_name", (str, type(None)), where),
        transform=transform,
        catalog_images=_catalog_images(block.get("catalog_images"), f"{where}.catalog_images"),
    )
