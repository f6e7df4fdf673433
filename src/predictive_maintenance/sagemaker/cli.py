"""``kedro sagemaker``: export the Kedro pipeline to SageMaker Pipelines and manage it.

    kedro sagemaker compile   [--pipelines NAME[,NAME]] [--env ENV] [--output pipeline.json]
    kedro sagemaker upsert    [--pipelines NAME[,NAME]] [--env ENV]
    kedro sagemaker start     [--pipelines NAME] [--parameters Name=value ...] [--wait]
    kedro sagemaker status    [--pipelines NAME]
    kedro sagemaker cleanup   [--pipelines NAME] [--data]

``--pipelines batch_scoring`` selects the batch-scoring export (``pipeline.batch_pipeline``: a
SageMaker pipeline of its own, with a Batch Transform); otherwise the ``pipeline`` block's.
    kedro sagemaker run-local pipeline.json [--parameters Name=value ...]

Settings come from the ``sagemaker`` configuration (``conf/<env>/sagemaker.yml``) through the
project's config loader, as for ``SageMakerRunner``. AWS calls go through boto3 (so
``AWS_ENDPOINT_URL`` works); ``compile`` and ``run-local`` make none. Expected failures (no AWS
credentials, a refused request, a bad setting) are one or two lines (:mod:`..console`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import ClientError
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option, split_string

from predictive_maintenance.console import ReportingGroup, expected_failure
from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.sagemaker.aws import client, client_with_retries, split_s3_uri
from predictive_maintenance.sagemaker.config import (
    BridgeSettings,
    SageMakerConfigError,
    parse_settings,
)
from predictive_maintenance.sagemaker.experiment_tracking import (
    ENV_TRACKING_URI,
    ExportTracking,
    execution_run,
    export_tracking,
    local_store,
    open_local_store,
    project_tracking,
    tracking_run_datasets,
)
from predictive_maintenance.sagemaker.jobs import upload_dataset
from predictive_maintenance.sagemaker.storage import (
    DirectoryStore,
    ObjectStore,
    S3Store,
    upload_bytes,
)
from predictive_maintenance.sagemaker.wheels import upload_wheels
from predictive_maintenance.sagemaker.workflow.compiler import (
    CodePackage,
    build_code_package,
    compile_definition,
    gate_bindings,
    import_sdk,
    input_uri,
)
from predictive_maintenance.sagemaker.workflow.executor import ExecutionError
from predictive_maintenance.sagemaker.workflow.plan import (
    ExportPlan,
    PlanError,
    build_plan,
    data_name,
    effective_settings,
)
from predictive_maintenance.sagemaker.workflow.settings import PipelineSettings, settings_for

logger = logging.getLogger(__name__)

#: Execution statuses after which nothing changes.
FINISHED = frozenset({"Succeeded", "Failed", "Stopped"})
#: Definitions above this size go to S3 (PipelineDefinitionS3Location) on upsert.
INLINE_DEFINITION_LIMIT = 100_000


@dataclass
class Export:
    """The project as the export sees it: settings, plan, parameters and catalog."""

    bridge: BridgeSettings
    settings: PipelineSettings
    plan: ExportPlan
    parameters: dict[str, Any]
    catalog_config: dict[str, Any]
    context: Any
    #: How the steps track (``mlflow.tracking_server_arn``); None: they do not.
    tracking: ExportTracking | None = None

    def code(self) -> CodePackage:
        return build_code_package(
            self.plan,
            self.bridge,
            self.settings,
            self.parameters,
            self.catalog_config,
            tracking=self.tracking,
        )

    def compile(self, code: CodePackage) -> str:
        return compile_definition(
            self.plan, self.bridge, self.settings, self.parameters, code, tracking=self.tracking
        )

    def code_and_definition(self) -> tuple[CodePackage, str]:
        """The code package and the definition that runs it. The package is built (file reads,
        gzip and sha256, which release the GIL) while the SDK is imported: about a second less
        than one after the other."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            building = pool.submit(self.code)
            import_sdk(self.bridge.region or "us-east-1")
            code = building.result()
        return code, self.compile(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Configuration errors as one-line CLI errors; AWS refusals as one or two lines. (No
    credentials and the like are reported by the group, :class:`ReportingGroup`.)"""
    try:
        yield
    except (SageMakerConfigError, ValueError, ExecutionError) as error:
        raise click.ClickException(str(error)) from error
    except ClientError as error:
        raise expected_failure(error) or click.ClickException(f"AWS: {error}") from error


def load_export(env: str | None, pipelines: list[str] | None) -> Export:
    from kedro.framework.project import pipelines as kedro_pipelines  # noqa: PLC0415
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415
    from kedro.utils import find_kedro_project  # noqa: PLC0415

    project = find_kedro_project(Path.cwd()) or Path.cwd()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env=env) as session:
        context = session.load_context()
        config = context.config_loader["sagemaker"]
        bridge = parse_settings(config, project)
        settings = settings_for(config, pipelines)
        catalog = context.config_loader["catalog"]
        parameters = context.params
        # mlflow.yml (what the steps log) matters only to an export that tracks.
        tracked = bridge.mlflow.tracking_server_arn is not None
        tracking = export_tracking(bridge, project_tracking(context) if tracked else None)
    names = list(pipelines or [settings.kedro_pipeline])
    unknown = [name for name in names if name not in kedro_pipelines]
    if unknown:
        raise click.ClickException(
            f"no Kedro pipeline {', '.join(map(repr, unknown))} "
            f"(have: {', '.join(sorted(kedro_pipelines))})"
        )
    memory_only = {
        dataset
        for dataset, entry in catalog.items()
        if isinstance(entry, dict) and str(entry.get("type", "")).split(".")[-1] == "MemoryDataset"
    }
    pipeline = sum((kedro_pipelines[name] for name in names[1:]), kedro_pipelines[names[0]])
    plan = build_plan(pipeline, bridge, settings, memory_only)
    settings = effective_settings(settings, plan)
    missing = [dataset for dataset in settings.catalog_datasets if dataset not in catalog]
    if missing:
        raise PlanError(f"catalog_datasets {', '.join(missing)} have no catalog entry")
    catalog_config = {dataset: catalog[dataset] for dataset in settings.catalog_datasets}
    return Export(bridge, settings, plan, dict(parameters), catalog_config, context, tracking)


def parse_parameters(pairs: tuple[str, ...]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name:
            raise click.BadParameter(f"{pair!r} is not Name=value", param_hint="--parameters")
        parsed[name] = value
    return parsed


def stage(export: Export, code: CodePackage, store: ObjectStore) -> None:
    """Uploads the shipped wheels, the code (archive and tree) and the pipeline inputs' data."""
    upload_wheels(store, code.wheels_uri, code.wheels)
    if not store.exists(code.archive_uri):
        # The archive goes last: its presence means the tree is complete.
        for relative, content in sorted(code.files.items()):
            upload_bytes(store, content, f"{code.tree_uri}{relative}")
        upload_bytes(store, code.archive, code.archive_uri)
        logger.info(
            "Uploaded the code (%d files) to %s", len(code.files), store.location(code.tree_uri)
        )
    for dataset in export.plan.pipeline_inputs:
        value = export.context.catalog.load(dataset)
        prefix = input_uri(export.bridge, dataset)
        upload_dataset(
            store, value, dataset, data_name(dataset, set()), prefix, what=f"input {dataset}"
        )
        logger.info("Staged pipeline input %s at %s", dataset, store.location(prefix))


@click.group(name="sagemaker", context_settings=CONTEXT_SETTINGS, cls=ReportingGroup)
def sagemaker() -> None:
    """Export the pipeline to SageMaker Pipelines, run it there or here."""


pipelines_option = click.option(
    "--pipelines",
    "-p",
    "pipelines",
    default="",
    callback=split_string,
    metavar="NAME[,NAME]",
    help="Kedro pipelines to export, comma-separated, as for kedro run "
    "(default: pipeline.kedro_pipeline; batch_scoring: the batch-scoring export).",
)
parameters_option = click.option(
    "--parameters",
    multiple=True,
    metavar="Name=value",
    help="A pipeline parameter for this execution (repeatable).",
)


@sagemaker.command(name="compile")
@pipelines_option
@env_option
@click.option("--output", "-o", default="pipeline.json", show_default=True, type=click.Path())
def compile_command(pipelines: list[str], env: str | None, output: str) -> None:
    """Write the SageMaker Pipeline definition (offline: no credentials, no network)."""
    with _errors():
        export = load_export(env, pipelines)
        code, definition = export.code_and_definition()
    target = Path(output)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(definition)
    partial.replace(target)
    steps = len(export.plan.steps)
    click.echo(
        f"Wrote {target} ({len(definition):,} bytes): pipeline {export.settings.name}, "
        f"{steps} job steps, code {code.sha256[:12]}"
    )


@sagemaker.command(name="upsert")
@pipelines_option
@env_option
def upsert(pipelines: list[str], env: str | None) -> None:
    """Upload code and inputs, then create or update the pipeline on SageMaker."""
    with _errors():
        export = load_export(env, pipelines)
        code, definition = export.code_and_definition()
        store = S3Store(export.bridge.region)
        stage(export, code, store)
        arguments: dict[str, Any] = {
            "PipelineName": export.settings.name,
            "RoleArn": export.bridge.execution_role_arn,
            "PipelineDescription": export.settings.description or export.settings.name,
        }
        if len(definition) > INLINE_DEFINITION_LIMIT:
            digest = sha256_hex(definition.encode())
            uri = f"{export.bridge.s3_root}/definitions/{digest}.json"
            upload_bytes(store, definition.encode(), uri)
            bucket, key = split_s3_uri(uri)
            arguments["PipelineDefinitionS3Location"] = {"Bucket": bucket, "ObjectKey": key}
        else:
            arguments["PipelineDefinition"] = definition
        sagemaker_client = client("sagemaker", export.bridge.region)
        registration = export.settings.registration
        if registration is not None:
            _ensure_model_package_group(sagemaker_client, registration.model_package_group)
        try:
            sagemaker_client.describe_pipeline(PipelineName=export.settings.name)
            exists = True
        except ClientError:
            exists = False
        operation = "update_pipeline" if exists else "create_pipeline"
        response = getattr(sagemaker_client, operation)(**arguments)
    click.echo(f"{'Updated' if exists else 'Created'} pipeline {response['PipelineArn']}")


@sagemaker.command(name="start")
@pipelines_option
@parameters_option
@click.option("--wait", is_flag=True, help="Wait until the execution ends.")
@click.option("--timeout", default=3600, show_default=True, help="Seconds to wait at most.")
@env_option
def start(
    pipelines: list[str], parameters: tuple[str, ...], wait: bool, timeout: int, env: str | None
) -> None:
    """Start an execution of the pipeline on SageMaker."""
    with _errors():
        export = load_export(env, pipelines)
        values = parse_parameters(parameters)
        sagemaker_client = client("sagemaker", export.bridge.region)
        described = sagemaker_client.describe_pipeline(PipelineName=export.settings.name)
        declared = _declared_parameters(described.get("PipelineDefinition"))
        unknown = sorted(set(values) - declared)
        if declared and unknown:
            raise click.BadParameter(
                f"unknown pipeline parameter(s) {', '.join(unknown)}; the pipeline has "
                f"{', '.join(sorted(declared))}",
                param_hint="--parameters",
            )
        response = sagemaker_client.start_pipeline_execution(
            PipelineName=export.settings.name,
            PipelineParameters=[{"Name": name, "Value": value} for name, value in values.items()],
        )
        arn = response["PipelineExecutionArn"]
        click.echo(f"Started {arn}")
        if wait:
            deadline = time.monotonic() + timeout
            while True:
                status = sagemaker_client.describe_pipeline_execution(PipelineExecutionArn=arn)[
                    "PipelineExecutionStatus"
                ]
                if status in FINISHED or time.monotonic() > deadline:
                    break
                time.sleep(export.bridge.poll_seconds)
            click.echo(f"Execution {status}")
            if status != "Succeeded":
                raise SystemExit(1)


@sagemaker.command(name="status")
@pipelines_option
@env_option
def status(pipelines: list[str], env: str | None) -> None:
    """The pipeline's latest executions, and the newest one's steps."""
    with _errors():
        export = load_export(env, pipelines)
        sagemaker_client = client("sagemaker", export.bridge.region)
        executions = sagemaker_client.list_pipeline_executions(
            PipelineName=export.settings.name,
            SortBy="CreationTime",
            SortOrder="Descending",
            MaxResults=5,
        )["PipelineExecutionSummaries"]
        if not executions:
            click.echo(f"Pipeline {export.settings.name}: no executions yet")
            return
        for item in executions:
            click.echo(
                f"{item['StartTime']:%Y-%m-%d %H:%M:%S}  {item['PipelineExecutionStatus']:<10}  "
                f"{item['PipelineExecutionArn']}"
            )
        # One try: `status` is for a person waiting, not a job that must get through.
        steps_client = client_with_retries("sagemaker", export.bridge.region, attempts=1)
        try:
            steps = steps_client.list_pipeline_execution_steps(
                PipelineExecutionArn=executions[0]["PipelineExecutionArn"]
            )["PipelineExecutionSteps"]
        except ClientError as error:
            click.echo(
                "Steps of the newest execution: not available "
                f"({error.response['Error'].get('Code')})"
            )
            return
        for step in steps:
            reason = step.get("FailureReason", "")
            click.echo(f"  {step['StepName']:<32} {step['StepStatus']:<10} {reason}")


@sagemaker.command(name="cleanup")
@pipelines_option
@click.option("--data", is_flag=True, help="Also delete every object under the bucket prefix.")
@env_option
def cleanup(pipelines: list[str], data: bool, env: str | None) -> None:
    """Delete what the project created on SageMaker: the pipeline, and with --data its S3 data."""
    with _errors():
        export = load_export(env, pipelines)
        sagemaker_client = client("sagemaker", export.bridge.region)
        try:
            sagemaker_client.delete_pipeline(PipelineName=export.settings.name)
            click.echo(f"Deleted pipeline {export.settings.name}")
        except ClientError as error:
            click.echo(f"Pipeline {export.settings.name}: {error.response['Error'].get('Message')}")
        endpoint = export.settings.endpoint_name
        if endpoint:
            # SageMaker refuses to delete an endpoint a monitoring schedule still watches.
            from predictive_maintenance.serving.sagemaker_endpoint import (  # noqa: PLC0415
                delete_monitoring,
            )

            for deleted in delete_monitoring(sagemaker_client, endpoint):
                click.echo(f"Deleted {deleted}")
            _delete_endpoint(sagemaker_client, endpoint)
        if data:
            s3 = client("s3", export.bridge.region)
            bucket, prefix = split_s3_uri(export.bridge.s3_root)
            deleted = 0
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{prefix}/"
            ):
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
                    deleted += len(keys)
            click.echo(f"Deleted {deleted} objects under {export.bridge.s3_root}/")


def _local_tracking(
    export: Export, override: str | None
) -> tuple[dict[str, str | None], dict[str, Any]]:
    """run-local's MLflow: the steps' tracking server replaced by a local store (the project's,
    or ``--tracking-uri``; none: the steps do not track), and the ``tracking_run`` catalog
    entries given the execution's parent run there."""
    tracking = export.tracking
    if tracking is None:
        if override:
            logger.warning(
                "--tracking-uri: the definition does not track (no mlflow.tracking_server_arn "
                "in sagemaker.yml); nothing is logged"
            )
        return {}, {}
    project = project_tracking(export.context)
    uri = override or local_store(project)
    if uri is None:
        logger.info("MLflow: tracking is off in conf/<env>/mlflow.yml; the steps do not log")
        return {ENV_TRACKING_URI: None}, {}
    logger.info(
        "MLflow: the steps log to %s (standing in for %s)", uri, tracking.tracking_server_arn
    )
    from predictive_maintenance.tracking.settings import TrackingSettings  # noqa: PLC0415

    open_local_store(
        tracking,
        project
        if project is not None and not override
        else TrackingSettings.from_job_spec(tracking.spec, tracking_uri=uri),
    )

    def run_of(executor: Any) -> dict[str, str] | None:
        arn = executor.resolve({"Get": "Execution.PipelineExecutionArn"}, "tracking_run")
        return execution_run(tracking, uri, str(arn))

    services = {name: run_of for name in tracking_run_datasets(export.catalog_config)}
    return {ENV_TRACKING_URI: uri}, services


def _declared_parameters(definition: str | None) -> set[str]:
    """Parameter names of a stored definition (none if it cannot be read; SageMaker checks)."""
    try:
        parsed = json.loads(definition or "")
    except ValueError:
        logger.warning("The stored pipeline definition is not JSON; parameters are not checked")
        return set()
    return {item["Name"] for item in parsed.get("Parameters", [])}


def _ensure_model_package_group(sagemaker_client: Any, group: str) -> None:
    """RegisterModel needs its model package group to exist."""
    try:
        sagemaker_client.describe_model_package_group(ModelPackageGroupName=group)
    except ClientError:
        sagemaker_client.create_model_package_group(
            ModelPackageGroupName=group,
            ModelPackageGroupDescription="Created by kedro sagemaker upsert",
        )
        click.echo(f"Created model package group {group}")


def _delete_endpoint(sagemaker_client: Any, endpoint: str) -> None:
    """The endpoint, and every endpoint config and model named ``<endpoint>-...`` (the
    deployment creates them so)."""
    try:
        sagemaker_client.delete_endpoint(EndpointName=endpoint)
        click.echo(f"Deleted endpoint {endpoint}")
    except ClientError as error:
        click.echo(f"Endpoint {endpoint}: {error.response['Error'].get('Message')}")
    kinds = (
        ("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "endpoint config"),
        ("list_models", "Models", "ModelName", "model"),
    )
    for operation, key, field, label in kinds:
        pages = sagemaker_client.get_paginator(operation).paginate(NameContains=endpoint)
        for name in [item[field] for page in pages for item in page[key]]:
            if name.startswith(f"{endpoint}-"):
                getattr(sagemaker_client, f"delete_{label.replace(' ', '_')}")(**{field: name})
                click.echo(f"Deleted {label} {name}")


@sagemaker.command(name="run-local")
@click.argument("definition_file", type=click.Path(exists=True, dir_okay=False))
@parameters_option
@pipelines_option
@env_option
@click.option(
    "--python",
    "python",
    default=None,
    metavar="PATH",
    help="Run every job with this interpreter, e.g. the stock image's stand-in "
    "(make image-env: .venv-image/bin/python), instead of the project's own.",
)
@click.option(
    "--tracking-uri",
    default=None,
    metavar="URI",
    help="The MLflow store the steps log to instead of the definition's tracking server "
    "(default: the project's, conf/<env>/mlflow.yml).",
)
def run_local(  # noqa: PLR0917 -- one argument per option (click)
    definition_file: str,
    parameters: tuple[str, ...],
    pipelines: list[str],
    env: str | None,
    python: str | None,
    tracking_uri: str | None,
) -> None:
    """Execute a compiled definition on this machine: no Docker, no AWS.

    Processing and training steps run as jobs of SageMakerRunner's local backend (with
    --python, in that interpreter; training jobs through the image's training toolkit when it
    has one); conditions and Fail steps as SageMaker evaluates them; RegisterModel and the catalog
    steps (registry, endpoint) with the project's own nodes and this environment's catalog (the
    local registry and endpoint); Model and Transform steps (the batch_scoring export) as Batch
    Transform runs them: the model package's own serving code in the image's serving stack, so
    a Transform step needs --python with the image's stand-in.

    A definition compiled with mlflow.tracking_server_arn logs as on SageMaker (one parent run
    per execution, tagged with its ARN, a nested run per job step), into the project's MLflow
    store (conf/<env>/mlflow.yml) or --tracking-uri instead of the tracking server, as the
    local store stands in for S3; the registration records the execution's run.
    """
    from predictive_maintenance.sagemaker.local import (  # noqa: PLC0415
        LocalTrainingJobs,
        check_interpreter,
    )
    from predictive_maintenance.sagemaker.workflow.executor import PipelineExecutor  # noqa: PLC0415
    from predictive_maintenance.sagemaker.workflow.local_native import KedroNativeSteps  # noqa: PLC0415

    with _errors():
        text = Path(definition_file).read_text()
        definition = json.loads(text)
        export = load_export(env, pipelines)
        interpreter = (
            check_interpreter(python, export.bridge.job_environment.python_version)
            if python
            else sys.executable
        )
        code = export.code()
        code_root = re.escape(f"{export.bridge.s3_root}/code/")
        code_uris = set(re.findall(rf"{code_root}[^/\"]*/?", text))
        if code_uris != {f"{export.bridge.s3_root}/code/{code.sha256}/"}:
            raise click.ClickException(
                f"{definition_file} was not compiled from this project's current code and "
                f"configuration (code {code.sha256[:12]}): run `kedro sagemaker compile` again"
            )
        directory = export.bridge.local_store_directory
        store = (
            DirectoryStore(directory) if directory is not None else S3Store(export.bridge.region)
        )
        stage(export, code, store)
        jobs = LocalTrainingJobs(store, export.bridge.region, python=interpreter)
        bindings = [*export.settings.parameters, *gate_bindings(export.settings, export.parameters)]
        job_variables, services = _local_tracking(export, tracking_uri)
        native = KedroNativeSteps(export, bindings, store, services)
        executor = PipelineExecutor(
            definition,
            store,
            jobs,
            native=native,
            parameters=parse_parameters(parameters),
            pipeline_name=export.settings.name,
            poll_seconds=export.bridge.local_poll_seconds,
            transform_python=interpreter,
            job_variables=job_variables,
        )
        status = executor.run()
    click.echo(f"Execution {executor.execution_id}: {status}")
    for result in executor.results.values():
        reason = f"  {result.reason}" if result.reason else ""
        click.echo(
            f"  {result.name:<32} {result.type:<14} {result.status:<10} "
            f"{result.seconds:6.1f} s{reason}"
        )
    data = f"{export.bridge.s3_root}/executions/{executor.execution_id}/"
    click.echo(f"Data: {store.location(data)}")
    if status != "Succeeded":
        raise click.ClickException(executor.failure_reason)
