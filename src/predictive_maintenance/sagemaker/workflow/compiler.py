"""Export plan -> SageMaker Pipeline definition JSON, with the SageMaker Python SDK v3, offline.

Every job step runs one job of the job contract (:mod:`..job`): its spec is
``kedro_jobs/<step>/job.json`` in the code package, given to the step as its ``kedro-job`` input.
Processing steps run the entry script from the code tree (``code/<sha256>/tree/``), training steps
run it in script mode from ``code/<sha256>/sourcedir.tar.gz``; ``kedro sagemaker upsert`` uploads
both (and stages the pipeline inputs) before it creates or updates the pipeline. The code's
sha256 is in both URIs, so a definition names exactly the code it runs. Compiling makes no AWS
call: the SDK gets a session with placeholder credentials, an explicit default bucket, role
validation and telemetry switched off.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.sagemaker.archives import build_tar_gz
from predictive_maintenance.sagemaker.aws import resolve_image_uri
from predictive_maintenance.sagemaker.config import BridgeSettings
from predictive_maintenance.sagemaker.experiment_tracking import SPEC_KEY, ExportTracking
from predictive_maintenance.sagemaker.job import (
    JOB_ARGUMENT,
    JOB_INPUT,
    PARAMETER_VARIABLE_PREFIX,
    WHEELS_INPUT,
)
from predictive_maintenance.sagemaker.jobs import (
    JOB_ENVIRONMENT,
    job_spec,
    script_mode_hyperparameters,
    spec_bytes,
)
from predictive_maintenance.sagemaker.packaging import (
    ENTRY_SCRIPT,
    JOBS_DIR,
    code_files,
    top_level_package,
)
from predictive_maintenance.sagemaker.wheels import wheelhouse, wheels_uri
from predictive_maintenance.sagemaker.workflow.plan import (
    PROCESSING,
    ExportPlan,
    StepPlan,
)
from predictive_maintenance.sagemaker.workflow.settings import ParameterBinding, PipelineSettings

PROCESSING_ROOT: Final = "/opt/ml/processing"
CODE_INPUT: Final = "code"
#: SageMaker reports this file as a processing job's FailureReason.
PROCESSING_MESSAGE_FILE: Final = "/opt/ml/output/message"
#: The file name SageMaker expects at a model package's ModelDataUrl.
MODEL_ARCHIVE_FILE: Final = "model.tar.gz"
#: The region a definition is compiled for when the bridge names none.
DEFAULT_REGION: Final = "us-east-1"


class CompileError(ValueError):
    """The pipeline cannot be compiled (a parameter, dataset or setting does not fit)."""


@dataclass(frozen=True)
class CodePackage:
    """The code every step runs: files, their archive and where upsert puts them."""

    files: dict[str, bytes]
    archive: bytes
    sha256: str
    archive_uri: str
    tree_uri: str
    #: The wheels of what the image lacks (file name -> content) and where upsert puts them.
    wheels: dict[str, bytes]
    wheels_uri: str | None


def camel(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", text) if part)


def gate_bindings(
    settings: PipelineSettings, parameters: Mapping[str, Any]
) -> list[ParameterBinding]:
    """One ``Min<Metric>`` pipeline parameter per quality-gate minimum."""
    gate = settings.quality_gate
    if gate is None:
        return []
    minimums = lookup(parameters, gate.minimums, "pipeline.quality_gate.minimums")
    if not isinstance(minimums, Mapping) or not minimums:
        raise CompileError(
            f"the quality gate's minimums {'.'.join(gate.minimums)} are not a mapping"
        )
    return [
        ParameterBinding(name=f"Min{camel(metric)}", kedro_parameter=(*gate.minimums, metric))
        for metric in sorted(minimums)
    ]


def lookup(parameters: Mapping[str, Any], path: tuple[str, ...], what: str) -> Any:
    value: Any = parameters
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise CompileError(f"{what}: Kedro has no parameter {'.'.join(path)}")
        value = value[key]
    return value


def pin_images(
    name: str, entry: Mapping[str, Any], settings: PipelineSettings, region: str
) -> dict[str, Any]:
    """A catalog entry as a step ships it: with the image URIs ``pipeline.catalog_images`` names
    for its type looked up now, where the entry leaves them unset or null.

    A job runs on the stock image, which has no SageMaker SDK to look images up with (the
    dataset would fail there on its first lookup); the compiler has it. A key inside a nested
    block the entry leaves out (e.g. ``monitoring.image_uri`` without ``monitoring``) is not
    added: the block's absence means something to the dataset. The region is the entry's
    ``region``, else the pipeline's.
    """
    images = settings.catalog_images.get(str(entry.get("type", "")), ())
    shipped = json.loads(json.dumps(entry))  # a copy, as the job will read it
    for image in images:
        *parents, key = image.key
        block: Any = shipped
        for parent in parents:
            block = block.get(parent) if isinstance(block, dict) else None
        if not isinstance(block, dict) or block.get(key) is not None:
            continue
        version = image.version
        if image.version_key is not None and entry.get(image.version_key) is not None:
            version = str(entry[image.version_key])
        entry_region = str(entry.get("region") or region)
        try:
            block[key] = resolve_image_uri(None, image.framework, version, entry_region)
        except (ValueError, OSError) as error:  # the SDK's answer to an unknown image
            raise CompileError(
                f"catalog entry {name}: no {image.framework} image (version {version!r}) in "
                f"{entry_region} for {'.'.join(image.key)} (pipeline.catalog_images): {error}"
            ) from error
    return shipped


def job_specs(
    plan: ExportPlan,
    settings: PipelineSettings,
    parameters: Mapping[str, Any],
    catalog: Mapping[str, Any],
    region: str = DEFAULT_REGION,
    *,
    tracking: ExportTracking | None = None,
) -> dict[str, bytes]:
    """Each job step's spec, by step name (with what it logs to MLflow, given ``tracking``)."""
    specs = {}
    model_data = settings.registration.model_data if settings.registration else None
    for step in plan.steps:
        keys = list(parameters) if "*" in step.parameter_keys else list(step.parameter_keys)
        spec = job_spec(
            step.name,
            step.nodes,
            inputs=step.inputs,
            outputs=step.outputs,
            files={model_data: MODEL_ARCHIVE_FILE} if model_data in step.outputs else {},
            parameters={key: parameters[key] for key in keys if key in parameters},
            catalog={
                name: pin_images(name, catalog[name], settings, region)
                for name in step.catalog_datasets
            },
        )
        if tracking is not None:
            spec[SPEC_KEY] = dict(tracking.spec)
        specs[step.name] = spec_bytes(spec)
    return specs


def build_code_package(
    plan: ExportPlan,
    bridge: BridgeSettings,
    settings: PipelineSettings,
    parameters: Mapping[str, Any],
    catalog: Mapping[str, Any],
    *,
    tracking: ExportTracking | None = None,
) -> CodePackage:
    """The code of every step: sources, shipped wheels and the job specs."""
    nodes = [node for step in plan.steps for node in step.nodes]
    nodes += [node for node in (plan.gate_node, plan.register_node) if node is not None]
    packages = {top_level_package(node.func.__module__) for node in nodes}
    region = bridge.region or DEFAULT_REGION
    # Image lookups import the SDK (seconds): only when a shipped entry has images to pin.
    pinning = any(
        str(catalog[name].get("type", "")) in settings.catalog_images
        for step in plan.steps
        for name in step.catalog_datasets
    )
    with offline_sdk(region) if pinning else nullcontext():
        specs = job_specs(plan, settings, parameters, catalog, region, tracking=tracking)
    files = code_files(sorted(packages), specs)
    archive = build_tar_gz(files)
    digest = sha256_hex(archive)
    root = f"{bridge.s3_root}/code/{digest}"
    wheels = wheelhouse(bridge.job_environment)
    return CodePackage(
        files,
        archive,
        digest,
        f"{root}/sourcedir.tar.gz",
        f"{root}/tree/",
        wheels,
        wheels_uri(bridge.s3_root, wheels),
    )


def input_uri(bridge: BridgeSettings, dataset: str) -> str:
    """Where upsert stages a pipeline input by default."""
    return f"{bridge.s3_root}/inputs/{dataset}/"


#: offline_sdk changes process-wide state (environment, SDK functions) and restores it on exit;
#: two threads inside it at once (the code package, with images to pin, is built in a thread
#: while the SDK is imported) would restore each other's values and leave them set.
_OFFLINE_SDK = threading.RLock()


@contextmanager
def offline_sdk(region: str) -> Iterator[None]:
    """Environment for an offline definition: no role validation, no telemetry, a region."""
    with (
        _OFFLINE_SDK,
        tempfile.TemporaryDirectory() as directory,
        ExitStack() as restore,
    ):
        config = Path(directory) / "sagemaker-config.yaml"
        config.write_text(
            "SchemaVersion: '1.0'\n"
            "SageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
        )
        environment = {
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
            "AWS_DEFAULT_REGION": region,
            # Without credentials the SDK's own sessions would ask the EC2 metadata service;
            # restored afterwards, so that upsert finds an instance role's credentials.
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        for key in environment:
            restore.callback(_restore_variable, key, os.environ.get(key))
        os.environ.update(environment)
        # The SDK re-validates its config file against a JSON schema on every config lookup
        # and every session it makes (about 0.2-0.4 s each, hundreds per definition);
        # validating each distinct config once keeps the check and takes a minute off
        # compiling. The function exists as a static method and as module functions, some
        # imported by name into other modules: each copy is replaced while compiling.
        import sagemaker.core.config.config as config_module  # noqa: PLC0415
        import sagemaker.core.helper.session_helper as session_module  # noqa: PLC0415
        import sagemaker.core.local.local_session as local_module  # noqa: PLC0415
        import sagemaker.mlops.workflow.steps as steps_module  # noqa: PLC0415
        from sagemaker.core.config.config_manager import SageMakerConfig  # noqa: PLC0415

        original = SageMakerConfig.__dict__["validate_sagemaker_config"]
        validated: set[str] = set()

        def validate_once(sagemaker_config: dict | None = None) -> None:
            key = json.dumps(sagemaker_config, sort_keys=True, default=str)
            if key not in validated:
                original.__func__(sagemaker_config)
                validated.add(key)

        _swap(restore, SageMakerConfig, "validate_sagemaker_config", staticmethod(validate_once))
        for module in (config_module, session_module, local_module):
            _swap(restore, module, "validate_sagemaker_config", validate_once)
        # ProcessingStep makes a whole local-mode session (boto3 session, S3 clients, service
        # models: about half a second) per step only to read a method's name from its client.
        _swap(restore, steps_module, "LocalSagemakerClient", _MethodNames)
        # The SDK logs every default it applies (INFO, DEBUG) and warns for every job name it
        # leaves out of a definition, as it should: none of it is news to the user.
        # Some of its modules set their own logger's level, so each is quietened, not the parent.
        for logger in [logging.getLogger("sagemaker")] + [
            logger
            for name, logger in logging.root.manager.loggerDict.items()
            if name.startswith("sagemaker.") and isinstance(logger, logging.Logger)
        ]:
            restore.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Running within a PipelineSession")
            yield


def _swap(restore: ExitStack, target: Any, name: str, value: Any) -> None:
    """Sets ``target.name`` until ``restore`` closes."""
    restore.callback(setattr, target, name, target.__dict__[name])
    setattr(target, name, value)


def _restore_variable(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def import_sdk(region: str) -> None:
    """Imports the SDK modules the compiler uses (seconds), as :func:`compile_definition` would:
    in the offline environment. Lets a caller overlap the import with other work."""
    with offline_sdk(region):
        for module in _SDK_MODULES:
            importlib.import_module(module)


class _MethodNames:
    """Stands in for the SDK's local-mode client where only its methods' names are read."""

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            raise CompileError(f"local mode ({name}) is not used to compile a definition")

        method.__name__ = name
        return method


#: What compile_definition imports from the SDK (the heavy part of compiling).
_SDK_MODULES: Final = (
    "sagemaker.core.processing",
    "sagemaker.core.training.configs",
    "sagemaker.mlops.workflow.pipeline",
    "sagemaker.mlops.workflow.steps",
    "sagemaker.mlops.workflow.model_step",
    "sagemaker.serve",
    "sagemaker.train",
)


def compile_definition(  # noqa: PLR0912, PLR0915 -- the steps are built in one pass, in order
    plan: ExportPlan,
    bridge: BridgeSettings,
    settings: PipelineSettings,
    parameters: Mapping[str, Any],
    code: CodePackage,
    *,
    tracking: ExportTracking | None = None,
) -> str:
    """The SageMaker Pipeline definition (JSON text, deterministic for the same inputs).

    With ``tracking`` (``mlflow.tracking_server_arn``), the pipeline carries SageMaker's MLflow
    configuration (top-level ``MlflowConfig``) and every job step the tracking server, the
    experiment and the execution's ARN (``KEDRO_MLFLOW_EXECUTION``): its job logs into the
    execution's parent run (see :mod:`...experiment_tracking`).
    """
    region = bridge.region or DEFAULT_REGION
    with offline_sdk(region):
        import boto3  # noqa: PLC0415
        from sagemaker.core.model_metrics import MetricsSource, ModelMetrics  # noqa: PLC0415
        from sagemaker.core.network import NetworkConfig  # noqa: PLC0415
        from sagemaker.core.processing import Processor  # noqa: PLC0415
        from sagemaker.core.shapes import (  # noqa: PLC0415
            MlflowConfig,
            ProcessingInput,
            ProcessingOutput,
            ProcessingS3Input,
            ProcessingS3Output,
        )
        from sagemaker.core.training.configs import (  # noqa: PLC0415
            Compute,
            InputData,
            Networking,
            OutputDataConfig,
            StoppingCondition,
        )
        from sagemaker.core.workflow.conditions import ConditionGreaterThanOrEqualTo  # noqa: PLC0415
        from sagemaker.core.workflow.execution_variables import ExecutionVariables  # noqa: PLC0415
        from sagemaker.core.workflow.functions import Join, JsonGet  # noqa: PLC0415
        from sagemaker.core.workflow.parameters import (  # noqa: PLC0415
            ParameterBoolean,
            ParameterFloat,
            ParameterInteger,
            ParameterString,
        )
        from sagemaker.core.workflow.pipeline_context import PipelineSession  # noqa: PLC0415
        from sagemaker.core.workflow.properties import PropertyFile  # noqa: PLC0415
        from sagemaker.mlops.workflow.condition_step import ConditionStep  # noqa: PLC0415
        from sagemaker.mlops.workflow.fail_step import FailStep  # noqa: PLC0415
        from sagemaker.mlops.workflow.model_step import ModelStep  # noqa: PLC0415
        from sagemaker.mlops.workflow.pipeline import Pipeline  # noqa: PLC0415
        from sagemaker.mlops.workflow.steps import ProcessingStep, TrainingStep  # noqa: PLC0415
        from sagemaker.serve import ModelBuilder  # noqa: PLC0415
        from sagemaker.train import ModelTrainer  # noqa: PLC0415

        boto_session = boto3.Session(
            aws_access_key_id="compile-offline",
            aws_secret_access_key="compile-offline",
            region_name=region,
        )
        session = PipelineSession(boto_session=boto_session, default_bucket=bridge.bucket)
        session._default_bucket = bridge.bucket  # else the SDK checks the bucket in S3

        # ---- parameters ------------------------------------------------------------------------
        kinds = {
            bool: ParameterBoolean,
            int: ParameterInteger,
            float: ParameterFloat,
            str: ParameterString,
        }
        bindings = [*settings.parameters, *gate_bindings(settings, parameters)]
        pipeline_parameters: dict[str, Any] = {}
        for binding in bindings:
            kind = ParameterString
            if binding.kedro_parameter is not None:
                default = lookup(parameters, binding.kedro_parameter, f"parameter {binding.name}")
                kind = kinds.get(type(default))
                if kind is None:
                    raise CompileError(
                        f"pipeline parameter {binding.name}: Kedro parameter "
                        f"{'.'.join(binding.kedro_parameter)} is a {type(default).__name__}; "
                        "only booleans, integers, floats and strings can be pipeline parameters"
                    )
            elif binding.dataset is not None:
                if binding.dataset not in plan.pipeline_inputs:
                    raise CompileError(
                        f"pipeline parameter {binding.name}: {binding.dataset} is not an input of "
                        "the exported pipeline"
                    )
                default = input_uri(bridge, binding.dataset)
            elif binding.setting == "training_instance_type":
                default = bridge.training_job.instance_type
            elif binding.setting in TRANSFORM_SETTINGS:
                default = transform_default(bridge, settings, binding.setting)
            else:
                default = settings.processing.instance_type
            pipeline_parameters[binding.name] = kind(name=binding.name, default_value=default)

        def bound(attribute: str, target: str, unbound: Any) -> Any:
            """The pipeline parameter bound to a setting or dataset, else ``unbound``."""
            return next(
                (pipeline_parameters[b.name] for b in bindings if getattr(b, attribute) == target),
                unbound,
            )

        def overrides(step: StepPlan) -> dict[str, Any]:
            """The step's Kedro parameters bound to pipeline parameters, as job variables."""
            paths = [
                (binding.name, binding.kedro_parameter)
                for binding in bindings
                if binding.kedro_parameter is not None
                and (
                    "*" in step.parameter_keys or binding.kedro_parameter[0] in step.parameter_keys
                )
            ]
            return {
                f"{PARAMETER_VARIABLE_PREFIX}{index}": Join(
                    on="", values=[json.dumps(list(path)) + "=", pipeline_parameters[name]]
                )
                for index, (name, path) in enumerate(paths)
            }

        execution_root = Join(
            on="/", values=[bridge.s3_root, "executions", ExecutionVariables.PIPELINE_EXECUTION_ID]
        )
        built: dict[str, Any] = {}

        def source_of(dataset: str) -> Any:
            producer = plan.producers.get(dataset)
            if producer is None:
                return bound("dataset", dataset, input_uri(bridge, dataset))
            step = built[producer]
            producer_plan = plan.step(producer)
            if producer_plan.kind == PROCESSING:
                name = producer_plan.outputs[dataset]
                return step.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri
            return step.properties.ModelArtifacts.S3ModelArtifacts

        def job_inputs(step: StepPlan) -> dict[str, Any]:
            """Input name -> source: the job spec and the shipped wheels first, then the data."""
            inputs = {JOB_INPUT: f"{code.tree_uri}{JOBS_DIR}/{step.name}/"}
            if code.wheels_uri is not None:
                inputs[WHEELS_INPUT] = code.wheels_uri
            return inputs | {name: source_of(dataset) for dataset, name in step.inputs.items()}

        network = bridge.network
        vpc = {
            "security_group_ids": list(network.security_group_ids) or None,
            "subnets": list(network.subnets) or None,
        }

        def network_config(step: StepPlan) -> Any:
            # A step that loads or saves a service (the registry, an endpoint) calls AWS APIs:
            # it keeps the VPC, but network isolation would cut it off.
            isolated = network.enable_network_isolation and not step.catalog_datasets
            if not (isolated or network.subnets):
                return None
            return NetworkConfig(enable_network_isolation=isolated, **vpc)

        networking = None
        if network.enable_network_isolation or network.subnets:
            networking = Networking(
                enable_network_isolation=network.enable_network_isolation or None, **vpc
            )

        def processing_input(name: str, uri: Any) -> Any:
            return ProcessingInput(
                input_name=name,
                s3_input=ProcessingS3Input(
                    s3_uri=uri,
                    local_path=f"{PROCESSING_ROOT}/input/{name}",
                    s3_data_type="S3Prefix",
                    s3_input_mode="File",
                ),
            )

        def processing_output(step: StepPlan, name: str) -> Any:
            return ProcessingOutput(
                output_name=name,
                s3_output=ProcessingS3Output(
                    s3_uri=Join(on="/", values=[execution_root, step.name, name]),
                    local_path=f"{PROCESSING_ROOT}/output/{name}",
                    s3_upload_mode="EndOfJob",
                ),
            )

        processing = settings.processing
        processing_image = resolve_image_uri(
            processing.image_uri, processing.framework, processing.framework_version, region
        )
        gate = settings.quality_gate
        metrics_file = None
        transform, model_file = settings.transform, None
        tracking_environment: dict[str, Any] = {}
        if tracking is not None:
            from predictive_maintenance.tracking.jobs import ENV_EXECUTION  # noqa: PLC0415

            tracking_environment = {
                **tracking.environment,
                ENV_EXECUTION: ExecutionVariables.PIPELINE_EXECUTION_ARN,
            }
        for step_plan in plan.steps:
            environment = {**tracking_environment, **overrides(step_plan)}
            if step_plan.kind == PROCESSING:
                processor = Processor(
                    role=bridge.execution_role_arn,
                    image_uri=processing_image,
                    instance_count=processing.instance_count,
                    instance_type=bound(
                        "setting", "processing_instance_type", processing.instance_type
                    ),
                    volume_size_in_gb=processing.volume_size_gb,
                    max_runtime_in_seconds=processing.max_runtime_seconds,
                    entrypoint=[
                        "python3",
                        f"{PROCESSING_ROOT}/input/{CODE_INPUT}/{ENTRY_SCRIPT}",
                        f"--{JOB_ARGUMENT}",
                        step_plan.name,
                        "--input-dir",
                        f"{PROCESSING_ROOT}/input",
                        "--output-dir",
                        f"{PROCESSING_ROOT}/output",
                        "--message-file",
                        PROCESSING_MESSAGE_FILE,
                    ],
                    env={**JOB_ENVIRONMENT, **processing.environment, **environment},
                    network_config=network_config(step_plan),
                    sagemaker_session=session,
                )
                sources = {CODE_INPUT: code.tree_uri, **job_inputs(step_plan)}
                property_files = []
                if gate is not None and gate.metrics in step_plan.outputs:
                    metrics_name = step_plan.outputs[gate.metrics]
                    metrics_file = PropertyFile(
                        name=metrics_name, output_name=metrics_name, path=f"{metrics_name}.json"
                    )
                    property_files.append(metrics_file)
                if transform is not None and transform.model in step_plan.outputs:
                    model_name = step_plan.outputs[transform.model]
                    model_file = PropertyFile(
                        name=model_name, output_name=model_name, path=f"{model_name}.json"
                    )
                    property_files.append(model_file)
                step = ProcessingStep(
                    name=step_plan.name,
                    step_args=processor.run(
                        inputs=[processing_input(name, uri) for name, uri in sources.items()],
                        outputs=[
                            processing_output(step_plan, name)
                            for name in step_plan.outputs.values()
                        ],
                    ),
                    property_files=property_files or None,
                    description=_describe(step_plan),
                )
            else:
                # The settings of the node that makes the step a training step (its
                # node_overrides), not of whichever node of the group comes first.
                remote = next(
                    node for node in step_plan.nodes if bridge.is_remote(node.name, node.tags)
                )
                job = bridge.job_settings(remote.name, remote.tags)
                trainer = ModelTrainer(
                    training_image=resolve_image_uri(
                        job.image_uri, job.framework, job.framework_version, region
                    ),
                    role=bridge.execution_role_arn,
                    sagemaker_session=session,
                    base_job_name=step_plan.name,
                    compute=Compute(
                        instance_type=bound("setting", "training_instance_type", job.instance_type),
                        instance_count=job.instance_count,
                        volume_size_in_gb=job.volume_size_gb,
                    ),
                    stopping_condition=StoppingCondition(
                        max_runtime_in_seconds=job.max_runtime_seconds
                    ),
                    hyperparameters={
                        key: json.loads(value)
                        for key, value in script_mode_hyperparameters(
                            code.archive_uri, step_plan.name, None
                        ).items()
                    },
                    environment={**JOB_ENVIRONMENT, **job.environment, **environment},
                    networking=networking,
                    output_data_config=OutputDataConfig(
                        s3_output_path=Join(on="/", values=[execution_root, step_plan.name])
                    ),
                )
                channels = [
                    InputData(channel_name=name, data_source=uri)
                    for name, uri in job_inputs(step_plan).items()
                ]
                step = TrainingStep(
                    name=step_plan.name,
                    step_args=trainer.train(input_data_config=channels),
                    description=_describe(step_plan),
                )
            built[step_plan.name] = step
            earlier = [built[name] for name in step_plan.depends_on if name in built]
            if earlier:
                step.add_depends_on(earlier)

        # ---- quality gate, registration ---------------------------------------------------------
        # Steps that depend on the RegisterModel step (e.g. deployment) run in its branch.
        after_registration = [
            built[s.name] for s in plan.steps if plan.register_step in s.depends_on
        ]
        top_level = [built[s.name] for s in plan.steps if plan.register_step not in s.depends_on]
        registration = settings.registration
        register_steps: list[Any] = []
        if registration is not None:
            model_data = registration.model_data
            _check_processing_output(plan, "pipeline.register.model_data", model_data)
            from sagemaker.core.drift_check_baselines import DriftCheckBaselines  # noqa: PLC0415

            def json_output(dataset: str, key: str) -> Any:
                """The JSON file a processing step writes for ``dataset`` (``<output>.json``)."""
                _check_processing_output(plan, key, dataset)
                name = plan.step(plan.producers[dataset]).outputs[dataset]
                return MetricsSource(
                    content_type="application/json",
                    s3_uri=Join(on="/", values=[source_of(dataset), f"{name}.json"]),
                )

            sources: dict[str, Any] = {}
            if registration.model_metrics:
                sources["model_statistics"] = json_output(
                    registration.model_metrics, "pipeline.register.model_metrics"
                )
            # The baseline step's statistics and constraints, registered as SageMaker's
            # QualityCheckStep registers them: the package's drift-check baseline for data
            # quality, and its data-quality metrics. (pipeline.register.drift_check_baselines)
            baselines = registration.drift_check_baselines or {}
            drift_check_baselines = None
            if baselines:
                data_quality = {
                    f"model_data_{part}": json_output(
                        dataset, f"pipeline.register.drift_check_baselines.{part}"
                    )
                    for part, dataset in baselines.items()
                }
                sources.update(data_quality)
                drift_check_baselines = DriftCheckBaselines(**data_quality)
            model_metrics = ModelMetrics(**sources) if sources else None
            builder = ModelBuilder(
                image_uri=resolve_image_uri(
                    None, "xgboost", bridge.training_job.framework_version, region
                ),
                s3_model_data_url=Join(on="/", values=[source_of(model_data), MODEL_ARCHIVE_FILE]),
                role_arn=bridge.execution_role_arn,
                env_vars=dict(registration.environment),
                sagemaker_session=session,
            )
            register_args = builder.register(
                model_package_group_name=registration.model_package_group,
                content_types=list(registration.content_types),
                response_types=list(registration.response_types),
                inference_instances=list(registration.inference_instances),
                transform_instances=list(registration.transform_instances),
                approval_status=pipeline_parameters.get(registration.approval_status_parameter),
                model_metrics=model_metrics,
                drift_check_baselines=drift_check_baselines,
                description=f"Registered by {settings.name} (kedro node {registration.node})",
                customer_metadata_properties=_tracking_metadata(tracking, ExecutionVariables),
            )
            register_step = ModelStep(name=plan.register_step, step_args=register_args)
            for step in after_registration:
                step.add_depends_on([register_step])
            register_steps = [register_step, *after_registration]
        else:
            top_level.extend(after_registration)

        if gate is not None:
            _check_processing_output(plan, "pipeline.quality_gate.metrics", gate.metrics)
            metrics_step = plan.producers[gate.metrics]
            conditions: list[Any] = []
            message: list[Any] = ["The model fails the quality gate (metric value, minimum):"]
            for binding in gate_bindings(settings, parameters):
                metric = binding.kedro_parameter[-1]
                value = JsonGet(
                    step_name=metrics_step, property_file=metrics_file, json_path=metric
                )
                minimum = pipeline_parameters[binding.name]
                conditions.append(ConditionGreaterThanOrEqualTo(left=value, right=minimum))
                message += [f" {metric} ", value, ", ", minimum, ";"]
            fail = FailStep(
                name=f"{plan.gate_step}-failed", error_message=Join(on="", values=message)
            )
            top_level.append(
                ConditionStep(
                    name=plan.gate_step,
                    conditions=conditions,
                    if_steps=register_steps,
                    else_steps=[fail],
                    description=f"kedro node {gate.node}",
                )
            )
        else:
            top_level.extend(register_steps)

        if transform is not None and plan.transform_step is not None:
            top_level += transform_steps(
                plan, transform, session=session, model_file=model_file, bound=bound, bridge=bridge
            )

        pipeline = Pipeline(
            name=settings.name,
            parameters=list(pipeline_parameters.values()),
            steps=top_level,
            sagemaker_session=session,
            mlflow_config=MlflowConfig(
                mlflow_resource_arn=tracking.tracking_server_arn,
                mlflow_experiment_name=tracking.experiment,
            )
            if tracking is not None
            else None,
        )
        definition = json.loads(pipeline.definition())
    return json.dumps(definition, indent=2, sort_keys=True) + "\n"


# ---- Batch Transform ----------------------------------------------------------------------------
#: Settings a pipeline parameter of a transform may be bound to.
TRANSFORM_SETTINGS: Final = ("transform_instance_type", "transform_input_uri")


def transform_default(bridge: BridgeSettings, settings: PipelineSettings, setting: str) -> str:
    """The default of a pipeline parameter bound to a transform setting."""
    transform = settings.transform
    if transform is None:
        raise CompileError(f"pipeline parameter bound to {setting}: the pipeline has no transform")
    if setting == "transform_instance_type":
        return transform.instance_type
    return transform.input_uri or f"{bridge.s3_root}/batch-input/"


class _ModelStepOwner:
    """What the SDK's ModelStep wants of the object behind a CreateModel request: its session."""

    def __init__(self, session: Any) -> None:
        self.sagemaker_session = session


def transform_steps(
    plan: ExportPlan,
    transform: Any,
    *,
    session: Any,
    model_file: Any,
    bound: Any,
    bridge: BridgeSettings,
) -> list[Any]:
    """The transform node as SageMaker runs it: a Model step (CreateModel from the registered
    model package whose ARN the model-choice step wrote) and a Transform step (Batch Transform
    of the transform input with that model, output under the execution's prefix).

    The model package's container is the stock XGBoost image serving ``code/inference.py`` from
    ``model.tar.gz``: the very handlers the endpoint runs, so each record is validated and
    scored as the endpoint would, and the output is the endpoint's CSV answer (one score per
    record), joined to the input record when ``join_source`` is Input.
    """
    from sagemaker.core.transformer import Transformer  # noqa: PLC0415
    from sagemaker.core.workflow.execution_variables import ExecutionVariables  # noqa: PLC0415
    from sagemaker.core.workflow.functions import Join, JsonGet  # noqa: PLC0415
    from sagemaker.mlops.workflow.model_step import ModelStep  # noqa: PLC0415
    from sagemaker.mlops.workflow.steps import TransformStep  # noqa: PLC0415

    _check_processing_output(plan, "pipeline.transform.model", transform.model)
    if model_file is None:
        raise CompileError(f"pipeline.transform.model {transform.model} has no property file")
    package_arn = JsonGet(
        step_name=plan.producers[transform.model],
        property_file=model_file,
        json_path=transform.arn_path,
    )
    # The SDK's own path to a CreateModel request under a PipelineSession (what
    # ModelBuilder.build() does), for a model that is a registered package: the session records
    # the request instead of sending it.
    session.context = None
    session.init_model_step_arguments(_ModelStepOwner(session))
    session.create_model(
        name=f"{plan.transform_step}-model",
        role=bridge.execution_role_arn,
        container_defs={"ModelPackageName": package_arn},
    )
    model_arguments, session.context = session.context, None
    model_step = ModelStep(
        name=step_name_with_suffix(plan.transform_step, "-model"),
        step_args=model_arguments,
        description=f"model of kedro node {transform.node}: the registered model package",
    )
    transformer = Transformer(
        model_name=model_step.properties.ModelName,
        instance_count=transform.instance_count,
        instance_type=bound("setting", "transform_instance_type", transform.instance_type),
        strategy=transform.strategy,
        assemble_with=transform.assemble_with,
        output_path=Join(
            on="/",
            values=[
                bridge.s3_root,
                "executions",
                ExecutionVariables.PIPELINE_EXECUTION_ID,
                plan.transform_step,
            ],
        ),
        accept=transform.accept,
        max_payload=transform.max_payload_mb,
        max_concurrent_transforms=transform.max_concurrent_transforms,
        env=dict(transform.environment) or None,
        sagemaker_session=session,
    )
    transform_arguments = transformer.transform(
        data=bound(
            "setting",
            "transform_input_uri",
            transform.input_uri or f"{bridge.s3_root}/batch-input/",
        ),
        data_type="S3Prefix",
        content_type=transform.content_type,
        split_type=transform.split_type,
        input_filter=transform.input_filter,
        output_filter=transform.output_filter,
        join_source=transform.join_source,
    )
    return [
        model_step,
        TransformStep(
            name=plan.transform_step,
            step_args=transform_arguments,
            description=f"kedro node {transform.node} as a Batch Transform",
        ),
    ]


def step_name_with_suffix(name: str, suffix: str) -> str:
    """``name`` + ``suffix`` within SageMaker's 64 characters for a step name."""
    return name[: 64 - len(suffix)] + suffix


#: The model package's customer metadata naming the MLflow run of the execution that registered
#: it (its parent run carries the tag ``sagemaker.pipeline_execution_arn``).
MLFLOW_METADATA: Final = {
    "server": "mlflow_tracking_server_arn",
    "experiment": "mlflow_experiment",
    "execution": "mlflow_pipeline_execution_arn",
}


def _tracking_metadata(
    tracking: ExportTracking | None, execution_variables: Any
) -> dict[str, Any] | None:
    """What a registered version records of the execution's MLflow run: the tracking server,
    the experiment and the execution's ARN (the run's id is not known when the pipeline is
    defined; the ARN finds the run by its tag)."""
    if tracking is None:
        return None
    metadata = {
        MLFLOW_METADATA["server"]: tracking.tracking_server_arn,
        MLFLOW_METADATA["execution"]: execution_variables.PIPELINE_EXECUTION_ARN,
    }
    if tracking.experiment:
        metadata[MLFLOW_METADATA["experiment"]] = tracking.experiment
    return metadata


def _check_processing_output(plan: ExportPlan, key: str, dataset: str) -> None:
    """SageMaker reads a property file or a model package's data from a processing output."""
    producer = plan.producers.get(dataset)
    if producer is None or plan.step(producer).kind != PROCESSING:
        raise CompileError(f"{key} {dataset} must be written by a processing step")


def _describe(step: StepPlan) -> str:
    return "kedro nodes: " + ", ".join(node.name for node in step.nodes)
