"""The IAM policies in deploy/iam/ against every AWS operation the product code makes.

The code under src/ is read, not run: ``ast`` finds every method called on a boto3 client
(``client.create_training_job(...)``, ``get_paginator("list_...")``, ``get_waiter(...)``,
``getattr(client, f"delete_{...}")``, the S3 transfer methods boto3 adds) and botocore's service
models turn the snake_case names into API operations, then IAM actions. Calls the SageMaker Python
SDK makes on the project's behalf, S3 reached through fsspec/s3fs, tag-on-create and
``iam:PassRole`` are derived too. Each operation is then required of the policy of whoever makes
it:

* ``deploy/iam/operator.json``: the person or CI running ``kedro sagemaker ...``, ``kedro run``
  with ``SageMakerRunner`` or ``--env sagemaker``, ``kedro model ... --env sagemaker``. All of
  src/ but the API's Lambda runs on their machine, so every call outside ``api/`` is theirs.
* ``deploy/iam/pipeline-execution-role.json``: the role that jobs, the pipeline and the endpoint
  run as. It needs the calls of the code that runs inside a job (reached from the job's entry
  script, the node functions and the ``catalog_datasets`` a step loads or saves: the SageMaker
  registry and endpoint datasets), what the pipeline service does with the role for each kind of
  step, and what SageMaker needs to run any job (image, data, logs, metrics).
* the SAM template's function role (deploy/api/template.yaml): the calls of ``api/``.

And the other way round: every action granted is a real operation of its service (botocore's
model; a typo fails) and is needed by something found here, so a grant outlives no call.

MLflow tracking on a SageMaker MLflow tracking server (``mlflow.tracking_server_arn``, or an ARN
as the runner's tracking URI) is not boto3: the job code's ``MlflowClient`` calls (and
``mlflow.<flavor>.log_model``) are read the same way and turned into ``sagemaker-mlflow:``
actions through :data:`MLFLOW_CALLS`. botocore has no model of that service, so those actions
are checked against AWS's Service Authorization Reference, copied to
``tests/sagemaker/reference/sagemaker-mlflow-actions.json``.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore import xform_name
from botocore.exceptions import DataNotFoundError, UnknownServiceError

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "predictive_maintenance"
API_PACKAGE = f"{PACKAGE}.api"  # the Lambda: its own role, in the SAM template
IAM_DIR = ROOT / "deploy" / "iam"
OPERATOR_POLICY = IAM_DIR / "operator.json"
EXECUTION_POLICY = IAM_DIR / "pipeline-execution-role.json"
EXECUTION_TRUST = IAM_DIR / "pipeline-execution-role-trust.json"
IAM_README = IAM_DIR / "README.md"
SAM_TEMPLATE = ROOT / "deploy" / "api" / "template.yaml"
CONF = ROOT / "conf"

#: The placeholders the policies may use (deploy/iam/README.md says how to fill each).
PLACEHOLDERS = {
    "Region",
    "AccountId",
    "Bucket",
    "Prefix",
    "ExecutionRoleName",
    "ImageAccountId",
    "MonitorImageAccountId",
    "MlflowTrackingServerName",
    "MlflowArtifactStore",
}
#: Realistic worst-case values, to check the size limit of a managed policy.
PLACEHOLDER_EXAMPLES = {
    "Region": "ap-southeast-3",
    "AccountId": "123456789012",
    "Bucket": "b" * 63,
    "Prefix": "p" * 64,
    "ExecutionRoleName": "service-role/" + "r" * 64,
    "ImageAccountId": "123456789012",
    "MonitorImageAccountId": "123456789012",
    "MlflowTrackingServerName": "t" * 256,  # CreateMlflowTrackingServer's limit
    "MlflowArtifactStore": "a" * 63 + "/" + "p" * 64,
}
#: IAM's limit on a managed policy, in characters without whitespace.
MANAGED_POLICY_LIMIT = 6144

# ---- operations -> IAM actions -----------------------------------------------------------------
#: The services whose IAM prefix is not their botocore name.
IAM_PREFIX = {"sagemaker-runtime": "sagemaker"}
#: S3's IAM actions are not named after its operations: each operation the code may make and
#: the action that authorises it (an S3 operation missing here fails the test: add it).
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "DeleteObject": "s3:DeleteObject",
    "DeleteObjects": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
}
#: Operations no IAM permission governs.
NO_PERMISSION = {("sts", "GetCallerIdentity")}
#: Methods boto3 adds to S3 clients (s3transfer) and the operations they make (multipart above
#: 8 MB, aborted on failure).
S3_TRANSFER_METHODS = {
    "upload_file": (
        "PutObject",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
    ),
    "download_file": ("HeadObject", "GetObject"),
}
S3_TRANSFER_METHODS["upload_fileobj"] = S3_TRANSFER_METHODS["upload_file"]
S3_TRANSFER_METHODS["download_fileobj"] = S3_TRANSFER_METHODS["download_file"]
#: Client methods that call nothing.
CLIENT_LOCAL_METHODS = {"can_paginate", "close"}
#: S3 through fsspec/s3fs (a catalog dataset with an s3:// filepath, or code using fsspec): the
#: operations behind open/ls/exists/rm.
FSSPEC_S3_OPERATIONS = ("GetObject", "HeadObject", "PutObject", "ListObjectsV2", "DeleteObject")
#: IAM actions that are not API operations.
PERMISSION_ONLY_ACTIONS = {"s3:ListBucket", "iam:PassRole"}
#: The botocore services behind each IAM prefix the policies may use.
PREFIX_SERVICES = {
    "sagemaker": ("sagemaker", "sagemaker-runtime"),
    "s3": ("s3",),
    "logs": ("logs",),
    "ecr": ("ecr",),
    "cloudwatch": ("cloudwatch",),
    "iam": ("iam",),
    "sts": ("sts",),
}
#: Actions with no resource-level permissions: the only ones allowed on Resource "*".
UNSCOPED_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "cloudwatch:PutMetricData",
    "sagemaker:ListModelPackages",
    "sagemaker:ListModels",
    "sagemaker:ListEndpointConfigs",
    "sagemaker:ListDataQualityJobDefinitions",
}

# ---- MLflow on a SageMaker MLflow tracking server -----------------------------------------------
#: The IAM service prefix of SageMaker's managed MLflow (the plugin signs each MLflow REST request
#: for it); botocore has no model of it.
MLFLOW_PREFIX = "sagemaker-mlflow"
#: AWS's list of that service's actions (Service Authorization Reference), with its URL.
MLFLOW_REFERENCE = Path(__file__).resolve().parent / "reference" / "sagemaker-mlflow-actions.json"
#: The one resource the MLflow actions are granted on: the tracking server.
MLFLOW_SERVER_ARN = (
    "arn:aws:sagemaker:${Region}:${AccountId}:mlflow-tracking-server/${MlflowTrackingServerName}"
)
#: Where MLflow's client uploads run and model artifacts itself (boto3, the execution role's
#: credentials; SAGEMAKER_PRESIGNED_URL_UPLOAD_ENABLED unset): the server's artifact store.
MLFLOW_ARTIFACT_ARN = "arn:aws:s3:::${MlflowArtifactStore}/*"
#: What each MLflow call of src/ asks of the tracking server, as sagemaker-mlflow actions: the
#: REST requests MLflow 3.17 makes for it (recorded against an MLflow server with the project's
#: own Recorder and job tracking, 2026-12-03), each authorised by the action named after its REST
#: method. ``True``: the call also uploads artifacts to the artifact store (s3:PutObject). A call
#: of src/ missing here fails the test: record what it sends and add it.
MLFLOW_CALLS: dict[str, tuple[tuple[str, ...], bool]] = {
    "get_experiment_by_name": (("GetExperimentByName",), False),
    "create_experiment": (("CreateExperiment",), False),
    "create_run": (("CreateRun",), False),
    "get_run": (("GetRun",), False),
    "update_run": (("UpdateRun",), False),
    # The ended run is read back for the printed link to it.
    "set_terminated": (("UpdateRun", "GetRun"), False),
    "search_runs": (("SearchRuns",), False),
    # A duplicate parent run (two jobs of one execution starting together).
    "delete_run": (("DeleteRun",), False),
    # Parameters, metrics and tags (the registration's tags too).
    "log_batch": (("LogBatch",), False),
    # The run's artifact URI (GetRun), then an S3 upload.
    "log_text": (("GetRun",), True),
    "log_figure": (("GetRun",), True),
    "log_artifact": (("GetRun",), True),
    # POST /logged-models. The reference has no CreateLoggedModel: LogModel ("log the model
    # associated with a run") is the action it lists for logging a model (inferred, not stated).
    "create_logged_model": (("LogModel",), False),
    # mlflow.<flavor>.log_model(model_id=...): GET /logged-models/<id> (twice), POST
    # /runs/outputs, GET /runs/get, GET /metrics/get-history, POST /runs/log-batch, the model's
    # files to S3, PATCH /logged-models/<id> (finalize).
    "flavor.log_model": (
        (
            "GetLoggedModel",
            "LogOutputs",
            "GetRun",
            "GetMetricHistory",
            "LogBatch",
            "FinalizeLoggedModel",
        ),
        True,
    ),
}
#: MLflow names called in src/ that send no request: the global tracking URI, the client object,
#: entities (RunTag, Param, Metric).
MLFLOW_OFFLINE_NAMES = {
    "set_tracking_uri",
    "MlflowClient",
    "_use_tracking_uri",
    "RunTag",
    "Param",
    "Metric",
}
#: What makes an MLflow client in src/: a module naming it holds one as ``client``,
#: ``self.client`` or ``recorder.client``.
MLFLOW_CLIENT_FACTORY = f"{PACKAGE}.tracking.recorder.open_client"
MLFLOW_CLIENT_NAMES = {"client", "self.client", "recorder.client"}


# ---- what runs on SageMaker without being a call in src/ ---------------------------------------
#: Whatever a job or an endpoint runs, SageMaker does this with the execution role: pull the
#: stock image from ECR, read its S3 inputs (listing S3Prefix inputs), write its outputs, write
#: CloudWatch logs, publish metrics (SageMaker's documented execution-role permissions).
JOB_RUNTIME_ACTIONS = {
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
    "s3:GetObject",
    "s3:ListBucket",
    "s3:PutObject",
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogStreams",
    "cloudwatch:PutMetricData",
}
#: SageMaker Pipelines step classes: what the pipeline service does with the execution role
#: for a step of that class ("Create and Describe permissions for each of the job types in the
#: pipeline", Stop when an execution is stopped; AddTags because the service tags the jobs it
#: starts with sagemaker:pipeline-execution-arn and sagemaker:pipeline-step-name, and
#: tag-on-create is authorised as AddTags). A step class missing here fails the test.
SDK_STEPS: dict[str, tuple[tuple[str, str], ...]] = {
    "ProcessingStep": (
        ("sagemaker", "CreateProcessingJob"),
        ("sagemaker", "DescribeProcessingJob"),
        ("sagemaker", "StopProcessingJob"),
        ("sagemaker", "AddTags"),
    ),
    "TrainingStep": (
        ("sagemaker", "CreateTrainingJob"),
        ("sagemaker", "DescribeTrainingJob"),
        ("sagemaker", "StopTrainingJob"),
        ("sagemaker", "AddTags"),
    ),
    # Batch Transform: the service starts, follows and (when an execution is stopped) stops the
    # transform job, tagging it as it tags every job it starts.
    "TransformStep": (
        ("sagemaker", "CreateTransformJob"),
        ("sagemaker", "DescribeTransformJob"),
        ("sagemaker", "StopTransformJob"),
        ("sagemaker", "AddTags"),
    ),
    # What a ModelStep does is the request it wraps: ModelBuilder.register (CreateModelPackage)
    # or PipelineSession.create_model (CreateModel), both in SDK_METHODS.
    "ModelStep": (),
    "ConditionStep": (),  # evaluated by the service; JsonGet reads S3 (SDK_SERVICE_SIDE)
    "FailStep": (),
}
#: Other SDK names whose use makes the pipeline service call AWS with the execution role.
SDK_SERVICE_SIDE: dict[str, tuple[tuple[str, str], ...]] = {
    "JsonGet": (("s3", "GetObject"),),  # reads a PropertyFile from S3 for a ConditionStep
}
#: SDK classes whose methods call AWS, method by method, read in the SDK v3 source
#: (sagemaker/mlops/workflow/pipeline.py and friends). ``"deferred"`` methods make no call under
#: a PipelineSession (they return step arguments; the service makes the call, with the execution
#: role: the operations listed); outside one they would call AWS at once, which this table does
#: not cover, so the test fails. A method missing here fails the test.
#:
#: The project's ``kedro sagemaker upsert/start/status/cleanup`` call boto3 themselves (found by
#: the scan); if they move to ``Pipeline.upsert()``/``start()``, these rows apply:
#: ``upsert`` = ``create`` (CreatePipeline), on a name collision ``update`` (UpdatePipeline), with
#: ``tags=`` also ListTags and AddTags; definitions over 100 KB are uploaded to S3 first (PutObject,
#: to the SDK's default bucket); the role is validated with iam:SimulatePrincipalPolicy and
#: iam:GetRole unless SAGEMAKER_VALIDATE_ROLE=false (a denied check only warns, so those two are
#: not required). ``start`` = StartPipelineExecution.
SDK_METHODS: dict[str, dict[str, Any]] = {
    "Pipeline": {
        "definition": (),  # JSON, offline
        "upsert": (
            ("sagemaker", "CreatePipeline"),
            ("sagemaker", "UpdatePipeline"),
            ("s3", "PutObject"),
        ),
        "create": (("sagemaker", "CreatePipeline"), ("s3", "PutObject")),
        "update": (("sagemaker", "UpdatePipeline"), ("s3", "PutObject")),
        "describe": (("sagemaker", "DescribePipeline"),),
        "delete": (("sagemaker", "DeletePipeline"),),
        "start": (("sagemaker", "StartPipelineExecution"),),
        "list_executions": (("sagemaker", "ListPipelineExecutions"),),
    },
    "Processor": {"run": ("deferred", ())},  # ProcessingStep says what the service does
    "ModelTrainer": {"train": ("deferred", ())},  # TrainingStep says what the service does
    "ModelBuilder": {"register": ("deferred", (("sagemaker", "CreateModelPackage"),))},
    # Transformer.transform under a PipelineSession returns the CreateTransformJob request for a
    # TransformStep (which says what the service does).
    "Transformer": {"transform": ("deferred", ())},
    "PipelineSession": {
        # Sets the session's context to a step-arguments holder: no request at all.
        "init_model_step_arguments": (),
        # Session.create_model under a PipelineSession records the CreateModel request in the
        # context for a ModelStep; the service makes it with the execution role (the request's
        # ExecutionRoleArn: iam:PassRole, implied by the scan).
        "create_model": ("deferred", (("sagemaker", "CreateModel"),)),
    },
}
#: SDK methods whose keyword ``tags=`` adds tagging calls.
SDK_TAGGING = (("sagemaker", "ListTags"), ("sagemaker", "AddTags"))
#: SDK names that make no AWS call: request shapes, pipeline parameters and expressions, the
#: offline image URI tables.
SDK_OFFLINE_MODULES = (
    "sagemaker.core.shapes",
    "sagemaker.core.model_metrics",
    "sagemaker.core.drift_check_baselines",
    "sagemaker.core.network",
    "sagemaker.core.training.configs",
    "sagemaker.core.workflow.conditions",
    "sagemaker.core.workflow.execution_variables",
    "sagemaker.core.workflow.functions",
    "sagemaker.core.workflow.parameters",
    "sagemaker.core.workflow.properties",
    "sagemaker.train.configs",
)
SDK_OFFLINE_NAMES = {
    "sagemaker.core.image_uris",  # bundled tables
    "sagemaker.core.config.config_manager.SageMakerConfig",  # validates local config files
    # Imported as modules by the compiler only to validate the SDK's config once and to skip a
    # local-mode session per step while compiling (which is tested to open no connection).
    "sagemaker.core.config.config",
    "sagemaker.core.helper.session_helper",
    "sagemaker.core.local.local_session",
    "sagemaker.mlops.workflow.steps",
}


# ---- policies ----------------------------------------------------------------------------------
def load_policy(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return policy["Statement"]


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def granted(policy: dict[str, Any]) -> set[str]:
    return {
        action
        for statement in statements(policy)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
    }


def sam_role_actions() -> set[str]:
    from cfnlint.decode import decode  # noqa: PLC0415

    template, problems = decode(str(SAM_TEMPLATE))
    assert not problems, problems
    actions = set()
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::IAM::Role":
            continue
        for policy in resource["Properties"].get("Policies", []):
            actions |= granted(policy["PolicyDocument"])
    return actions


# ---- botocore ----------------------------------------------------------------------------------
@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def known_services() -> frozenset[str]:
    return frozenset(_session().get_available_services())


@cache
def service_operations(service: str) -> dict[str, str]:
    """snake_case method -> operation name."""
    model = _session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


@cache
def paginator_operation(service: str, method: str) -> str | None:
    operation = service_operations(service).get(method)
    if operation is None:
        return None
    try:
        _session().get_paginator_model(service).get_paginator(operation)
    except (DataNotFoundError, UnknownServiceError, ValueError):
        return None
    return operation


@cache
def waiter_operation(service: str, name: str) -> str | None:
    try:
        model = _session().get_waiter_model(service)
    except (DataNotFoundError, UnknownServiceError):
        return None
    by_snake = {xform_name(waiter): waiter for waiter in model.waiter_names}
    if name not in by_snake:
        return None
    return model.get_waiter(by_snake[name]).operation


@cache
def input_members(service: str, operation: str) -> frozenset[str]:
    shape = _session().get_service_model(service).operation_model(operation).input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


def iam_actions(service: str, operation: str) -> set[str]:
    """The IAM actions that authorise one API operation."""
    if (service, operation) in NO_PERMISSION:
        return set()
    if service == "s3":
        if operation not in S3_ACTIONS:
            raise AssertionError(f"s3 {operation}: add its IAM action to S3_ACTIONS")
        return {S3_ACTIONS[operation]}
    return {f"{IAM_PREFIX.get(service, service)}:{operation}"}


# ---- the scan ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AwsCall:
    """One place in src/ that makes (or makes SageMaker make) AWS operations."""

    module: str
    scope: str  # qualified name of the enclosing def; "" for module level
    line: int
    service: str
    operations: tuple[str, ...]
    via: str
    #: Made by the pipeline service with the execution role, not by the code's caller.
    by_pipeline: bool = False
    #: Extra IAM actions implied by the request (iam:PassRole, tag-on-create).
    implied: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        place = f"{self.module.replace('.', '/')}.py:{self.line}" if self.line else self.module
        return f"{place} ({self.scope or 'module'}, {self.via})"

    def actions(self) -> set[str]:
        found = set(self.implied)
        for operation in self.operations:
            found |= iam_actions(self.service, operation)
        return found


@dataclass
class Module:
    name: str
    tree: ast.Module
    imports: dict[str, str] = field(default_factory=dict)  # local name -> absolute dotted name
    scopes: dict[str, ast.AST] = field(default_factory=dict)  # qualname -> def ("" = module)
    scope_class: dict[str, str | None] = field(default_factory=dict)
    classes: set[str] = field(default_factory=set)
    bindings: dict[str, set[str]] = field(default_factory=dict)  # target text -> services
    returns: dict[str, set[str]] = field(default_factory=dict)  # qualname -> services
    sdk_objects: dict[str, str] = field(default_factory=dict)  # target text -> SDK class
    #: Targets assigned something other than a client or another name (``re.compile(...)``).
    not_clients: set[str] = field(default_factory=set)


@dataclass
class Scan:
    calls: list[AwsCall]
    problems: list[str]  # calls the scan cannot map to operations, SDK names it does not know
    modules: dict[str, Module]


def scope_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of one scope, not descending into nested functions or classes."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if isinstance(child, ast.ClassDef):
                yield from class_body_nodes(child)
            else:
                yield from child.decorator_list
                yield from child.args.defaults
            continue
        yield child
        yield from scope_nodes(child)


def class_body_nodes(node: ast.ClassDef) -> Iterator[ast.AST]:
    for statement in node.body:
        if not isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield statement
            yield from scope_nodes(statement)


def parse_module(name: str, source: str) -> Module:
    tree = ast.parse(source)
    module = Module(name, tree)
    package = name if name.endswith("__init__") else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    module.imports[alias.asname] = alias.name
                else:
                    module.imports[alias.name.split(".")[0]] = alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                module.imports[alias.asname or alias.name] = f"{base}.{alias.name}"
    module.scopes[""] = tree
    module.scope_class[""] = None

    def visit(parent: ast.AST, prefix: str, cls: str | None) -> None:
        for child in ast.iter_child_nodes(parent):
            if isinstance(child, ast.ClassDef):
                qualname = f"{prefix}{child.name}"
                module.classes.add(qualname)
                visit(child, f"{qualname}.", qualname)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                qualname = f"{prefix}{child.name}"
                module.scopes[qualname] = child
                module.scope_class[qualname] = cls
                visit(child, f"{qualname}.", cls)
            else:
                visit(child, prefix, cls)

    visit(tree, "", None)
    return module


def constant_string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def scope_strings(module: Module, scope: str) -> set[str]:
    """String constants of a scope, as written and as identifiers ("endpoint config" ->
    "endpoint_config")."""
    found = set()
    for node in scope_nodes(module.scopes[scope]):
        text = constant_string(node)
        if text:
            found |= {text, re.sub(r"\W+", "_", text.strip().lower())}
    return found


class Scanner:
    """Finds the AWS calls of a set of modules (source text by dotted module name)."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.modules = {name: parse_module(name, text) for name, text in sources.items()}
        self.factories: dict[tuple[str, str], int] = {}  # (module, qualname) -> service argument
        self.calls: list[AwsCall] = []
        self.problems: list[str] = []

    # -- resolving names ----------------------------------------------------------------------
    def resolve_dotted(self, dotted: str) -> tuple[str, str] | None:
        """``pkg.module.name`` -> (module, qualname) of a def or class in the scanned modules."""
        for split in range(dotted.count("."), 0, -1):
            module_name = ".".join(dotted.split(".")[:split])
            attr = ".".join(dotted.split(".")[split:])
            for candidate in (module_name, f"{module_name}.__init__"):
                module = self.modules.get(candidate)
                if module and (attr in module.scopes or attr in module.classes):
                    return candidate, attr
        return None

    def callable_targets(self, module: Module, scope: str, node: ast.AST) -> list[tuple[str, str]]:
        """The defs (or class constructors) a name or attribute refers to."""
        found = self.named_target(module, scope, node)
        if found is None:
            return []
        target_module, qualname = found
        if qualname in self.modules[target_module].classes:
            # The class's own __init__, else the first one its bases define (here).
            for cls_module, cls in self.class_and_bases(target_module, qualname):
                init = f"{cls}.__init__"
                if init in self.modules[cls_module].scopes:
                    return [(cls_module, init)]
            return []
        return [found]

    def class_and_bases(self, module_name: str, qualname: str) -> list[tuple[str, str]]:
        """A class of the scanned modules and its bases among them, depth first."""
        module = self.modules[module_name]
        definition = next(
            (
                node
                for node in module.tree.body
                if isinstance(node, ast.ClassDef) and node.name == qualname
            ),
            None,
        )
        found = [(module_name, qualname)]
        for written in definition.bases if definition is not None else ():
            # AbstractDataset[dict, dict] -> AbstractDataset
            base = written.value if isinstance(written, ast.Subscript) else written
            target = self.named_target(module, "", base)
            if target is not None and target[1] in self.modules[target[0]].classes:
                found += [item for item in self.class_and_bases(*target) if item not in found]
        return found

    def named_target(self, module: Module, scope: str, node: ast.AST) -> tuple[str, str] | None:
        """The def or class of the scanned modules a name or attribute refers to."""
        found: tuple[str, str] | None = None
        if isinstance(node, ast.Name):
            if node.id in module.scopes or node.id in module.classes:
                found = (module.name, node.id)
            elif node.id in module.imports:
                found = self.resolve_dotted(module.imports[node.id])
        elif isinstance(node, ast.Attribute):
            owner = node.value
            cls = module.scope_class.get(scope)
            if isinstance(owner, ast.Name) and owner.id in {"self", "cls"} and cls:
                qualname = f"{cls}.{node.attr}"
                if qualname in module.scopes:
                    found = (module.name, qualname)
            elif isinstance(owner, ast.Name) and owner.id in module.imports:
                found = self.resolve_dotted(f"{module.imports[owner.id]}.{node.attr}")
        return found

    def created_service(self, module: Module, scope: str, call: ast.Call) -> set[str]:
        """The service of a client that ``call`` creates, if it does."""
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in {"client", "resource"}:
            name = constant_string(call.args[0]) if call.args else None
            for keyword in call.keywords:
                if keyword.arg == "service_name":
                    name = constant_string(keyword.value)
            if name in known_services():
                return {name}
        for target in self.callable_targets(module, scope, func):
            if target in self.factories:
                index = self.factories[target]
                argument = call.args[index] if len(call.args) > index else None
                name = constant_string(argument)
                if name in known_services():
                    return {name}
            if target[1] in self.modules[target[0]].returns:
                return set(self.modules[target[0]].returns[target[1]])
        return set()

    def services_of(self, module: Module, scope: str, node: ast.AST | None) -> set[str]:
        """The services of the boto3 client(s) an expression may be."""
        if node is None:
            return set()
        if isinstance(node, ast.Call):
            return self.created_service(module, scope, node)
        if isinstance(node, ast.Name | ast.Attribute):
            return set(module.bindings.get(ast.unparse(node), set()))
        if isinstance(node, ast.BoolOp):
            return set().union(*(self.services_of(module, scope, value) for value in node.values))
        if isinstance(node, ast.IfExp):
            return self.services_of(module, scope, node.body) | self.services_of(
                module, scope, node.orelse
            )
        return set()

    # -- fixpoints: client factories, bindings, functions returning clients --------------------
    def find_factories(self) -> None:
        changed = True
        while changed:
            changed = False
            for module in self.modules.values():
                for qualname, node in module.scopes.items():
                    if not qualname or (module.name, qualname) in self.factories:
                        continue
                    parameters = [argument.arg for argument in node.args.args]
                    offset = 1 if module.scope_class.get(qualname) else 0
                    for child in scope_nodes(node):
                        if not (
                            isinstance(child, ast.Return) and isinstance(child.value, ast.Call)
                        ):
                            continue
                        call = child.value
                        first = call.args[0] if call.args else None
                        is_client = isinstance(call.func, ast.Attribute) and call.func.attr in {
                            "client",
                            "resource",
                        }
                        inner = [
                            self.factories[target]
                            for target in self.callable_targets(module, qualname, call.func)
                            if target in self.factories
                        ]
                        if inner:
                            first = call.args[inner[0]] if len(call.args) > inner[0] else None
                        if (
                            (is_client or inner)
                            and isinstance(first, ast.Name)
                            and first.id in parameters
                        ):
                            index = parameters.index(first.id) - offset
                            self.factories[(module.name, qualname)] = index
                            changed = True
                            break

    def find_bindings(self) -> None:
        changed = True
        while changed:
            changed = False
            for module in self.modules.values():
                for qualname, node in module.scopes.items():
                    for child in scope_nodes(node):
                        if isinstance(child, ast.Assign | ast.AnnAssign) and child.value:
                            targets = (
                                child.targets if isinstance(child, ast.Assign) else [child.target]
                            )
                            services = self.services_of(module, qualname, child.value)
                            sdk_class = self.sdk_class_of(module, child.value)
                            for target in targets:
                                key = ast.unparse(target)
                                if not services and not isinstance(
                                    child.value, ast.Name | ast.Attribute | ast.BoolOp
                                ):
                                    module.not_clients.add(key)
                                if services - module.bindings.get(key, set()):
                                    module.bindings.setdefault(key, set()).update(services)
                                    changed = True
                                if sdk_class and module.sdk_objects.get(key) != sdk_class:
                                    module.sdk_objects[key] = sdk_class
                                    changed = True
                        elif isinstance(child, ast.Return) and qualname:
                            services = self.services_of(module, qualname, child.value)
                            if services - module.returns.get(qualname, set()):
                                module.returns.setdefault(qualname, set()).update(services)
                                changed = True

    # -- the SageMaker Python SDK --------------------------------------------------------------
    def sdk_imports(self, module: Module) -> dict[str, str]:
        return {
            local: dotted
            for local, dotted in module.imports.items()
            if dotted == "sagemaker" or dotted.startswith("sagemaker.")
        }

    def sdk_class_of(self, module: Module, node: ast.AST) -> str | None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            dotted = self.sdk_imports(module).get(node.func.id)
            if dotted and dotted.rsplit(".", 1)[-1] in SDK_METHODS:
                return dotted.rsplit(".", 1)[-1]
        return None

    def classify_sdk_imports(self, module: Module) -> None:
        for dotted in self.sdk_imports(module).values():
            name = dotted.rsplit(".", 1)[-1]
            known = (
                name in SDK_METHODS
                or name in SDK_STEPS
                or name in SDK_SERVICE_SIDE
                or dotted in SDK_OFFLINE_NAMES
                or dotted.rsplit(".", 1)[0] in SDK_OFFLINE_MODULES
            )
            if not known:
                self.problems.append(
                    f"{module.name}: SageMaker SDK name {dotted} is not classified: add it to "
                    "SDK_METHODS, SDK_STEPS, SDK_SERVICE_SIDE or the offline lists, with the AWS "
                    "operations it makes"
                )

    def scan_sdk(self, module: Module) -> None:
        imports = self.sdk_imports(module)
        short = {local: dotted.rsplit(".", 1)[-1] for local, dotted in imports.items()}
        pipeline_session = "PipelineSession" in short.values()
        for qualname, node in module.scopes.items():
            for child in scope_nodes(node):
                if isinstance(child, ast.Name) and child.id in imports:
                    name = short[child.id]
                    for service, operation in (
                        *SDK_STEPS.get(name, ()),
                        *SDK_SERVICE_SIDE.get(name, ()),
                    ):
                        self.add(
                            module,
                            qualname,
                            child,
                            service,
                            (operation,),
                            via=name,
                            by_pipeline=True,
                        )
                if not (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute)):
                    continue
                receiver = child.func.value
                sdk_class = module.sdk_objects.get(ast.unparse(receiver)) or self.sdk_class_of(
                    module, receiver
                )
                if sdk_class is not None:
                    self.scan_sdk_call(module, qualname, child, sdk_class, pipeline_session)

    def scan_sdk_call(
        self, module: Module, scope: str, call: ast.Call, sdk_class: str, pipeline_session: bool
    ) -> None:
        """One method call on an SDK object, through SDK_METHODS."""
        assert isinstance(call.func, ast.Attribute)
        method = call.func.attr
        table = SDK_METHODS[sdk_class]
        if method not in table:
            self.problems.append(
                f"{module.name}:{call.lineno}: SDK call {sdk_class}.{method} is not in "
                "SDK_METHODS: read the SDK source and list the AWS operations it makes"
            )
            return
        entry = table[method]
        via = f"SDK {sdk_class}.{method}"
        if entry and entry[0] == "deferred":
            if not pipeline_session:
                self.problems.append(
                    f"{module.name}:{call.lineno}: {via} outside a PipelineSession calls AWS at "
                    "once: list its operations in SDK_METHODS"
                )
                return
            for service, operation in entry[1]:
                self.add(module, scope, call, service, (operation,), via=via, by_pipeline=True)
            return
        operations = list(entry)
        if any(keyword.arg == "tags" for keyword in call.keywords):
            operations += SDK_TAGGING
        for service, operation in operations:
            self.add(module, scope, call, service, (operation,), via=via)

    # -- boto3 clients -------------------------------------------------------------------------
    def method_operations(
        self, service: str, method: str, call: ast.Call, strings: set[str]
    ) -> tuple[str, ...] | None:
        operations = service_operations(service)
        if method in {"get_paginator", "get_waiter"}:
            argument = call.args[0] if call.args else None
            name = constant_string(argument)
            names = {name} if name else strings
            lookup = paginator_operation if method == "get_paginator" else waiter_operation
            found = tuple(sorted({op for n in names if (op := lookup(service, n))}))
            return found or None
        if method in operations:
            return (operations[method],)
        if service == "s3" and method in S3_TRANSFER_METHODS:
            return S3_TRANSFER_METHODS[method]
        if method in CLIENT_LOCAL_METHODS:
            return ()
        return None

    def knows_method(self, service: str, method: str) -> bool:
        return (
            method in service_operations(service)
            or method in {"get_paginator", "get_waiter"}
            or (service == "s3" and method in S3_TRANSFER_METHODS)
        )

    def may_hold_tags(self, module: Module, scope: str, call: ast.Call) -> bool:
        """Whether the request may carry ``Tags`` (``**name`` of unknown content included)."""
        for keyword in call.keywords:
            if keyword.arg == "Tags":
                return True
            if keyword.arg is None:
                if not isinstance(keyword.value, ast.Name):
                    return True
                if not self.tag_free_dict(module, scope, keyword.value.id):
                    return True
        return False

    def tag_free_dict(self, module: Module, scope: str, name: str) -> bool:
        """``name`` is built in this scope from dict literals and constant keys, none "Tags"."""
        built = False
        for node in scope_nodes(module.scopes[scope]):
            if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name) and target.id == name:
                        if not isinstance(node, ast.AugAssign) and isinstance(node.value, ast.Dict):
                            keys = [constant_string(key) for key in node.value.keys]
                            if None in keys or "Tags" in keys:
                                return False
                            built = True
                        else:
                            return False
                    if (
                        isinstance(target, ast.Subscript)
                        and isinstance(target.value, ast.Name)
                        and target.value.id == name
                        and constant_string(target.slice) in {None, "Tags"}
                    ):
                        return False
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == name
                and node.func.attr in {"update", "setdefault", "__setitem__"}
            ):
                return False
        return built

    def implied_actions(
        self,
        module: Module,
        scope: str,
        node: ast.AST,
        service: str,
        operations: Iterable[str],
        *,
        tags: bool,
    ) -> tuple[str, ...]:
        """iam:PassRole for a request naming a role; AddTags for one that may carry Tags
        (tag-on-create is authorised as AddTags)."""
        implied = set()
        for operation in operations:
            members = input_members(service, operation)
            if any(member.endswith("RoleArn") for member in members):
                implied.add("iam:PassRole")
            if (
                tags
                and isinstance(node, ast.Call)
                and "Tags" in members
                and "AddTags" in service_operations(service).values()
                and self.may_hold_tags(module, scope, node)
            ):
                implied.add(f"{IAM_PREFIX.get(service, service)}:AddTags")
        return tuple(sorted(implied))

    def scan_clients(self, module: Module) -> None:
        module_services = set().union(*module.bindings.values(), *module.returns.values())
        for qualname, node in module.scopes.items():
            for child in scope_nodes(node):
                if isinstance(child, ast.Call):
                    module_services |= self.created_service(module, qualname, child)
        for qualname, node in module.scopes.items():
            for child in scope_nodes(node):
                if isinstance(child, ast.Call):
                    func = child.func
                    if isinstance(func, ast.Name) and func.id == "getattr" and len(child.args) >= 2:
                        self.scan_getattr(module, qualname, child)
                    elif isinstance(func, ast.Attribute):
                        self.scan_method_call(module, qualname, child, module_services)

    def scan_method_call(
        self, module: Module, scope: str, call: ast.Call, module_services: set[str]
    ) -> None:
        func = call.func
        assert isinstance(func, ast.Attribute)
        receiver = func.value
        services = self.services_of(module, scope, receiver)
        resolved = bool(services)
        if not resolved and self.may_be_client(module, receiver):
            # A client passed in as a parameter (or an alias of one): count the call if the
            # method is an operation of a service this module makes clients of.
            services = {s for s in module_services if self.knows_method(s, func.attr)}
        for service in sorted(services):
            operations = self.method_operations(
                service, func.attr, call, scope_strings(module, scope)
            )
            if operations is None:
                if resolved:
                    self.problems.append(
                        f"{module.name}:{call.lineno}: {service} client method {func.attr!r} "
                        "maps to no API operation (typo, or a helper this test must learn)"
                    )
                continue
            if operations:
                self.add(module, scope, call, service, operations, via=f"{service}.{func.attr}")

    def may_be_client(self, module: Module, receiver: ast.AST) -> bool:
        """A parameter or an alias, not an import, a call's result or a known non-client."""
        if not isinstance(receiver, ast.Name | ast.Attribute):
            return False
        root = receiver
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in module.imports:
            return False
        return ast.unparse(receiver) not in module.not_clients

    def scan_getattr(self, module: Module, scope: str, call: ast.Call) -> None:
        services = self.services_of(module, scope, call.args[0])
        if not services:
            return
        name = call.args[1]
        strings = scope_strings(module, scope)
        if constant_string(name):
            candidates = {constant_string(name)}
        elif isinstance(name, ast.JoinedStr):
            parts = name.values
            prefix = constant_string(parts[0]) or "" if parts else ""
            suffix = constant_string(parts[-1]) or "" if len(parts) > 1 else ""
            candidates = {f"{prefix}{text}{suffix}" for text in strings}
        else:
            candidates = strings
        for service in sorted(services):
            operations = tuple(
                sorted(
                    service_operations(service)[candidate]
                    for candidate in candidates
                    if candidate in service_operations(service)
                )
            )
            if not operations:
                self.problems.append(
                    f"{module.name}:{call.lineno}: getattr on a {service} client whose method "
                    "name this scan cannot work out: call the method by name"
                )
                continue
            self.add(module, scope, call, service, operations, via=f"getattr({service}, ...)")

    def scan_fsspec(self, module: Module) -> None:
        """S3 through fsspec/s3fs where the code uses them: each scope that names an fsspec or
        s3fs import (``fsspec.filesystem(...)``, ``fsspec.open(...)``, an imported function).
        A filesystem object is made there before any of its methods can reach S3, so the scope
        that makes it stands for every later use (which reachability then follows)."""
        local = {
            name
            for name, dotted in module.imports.items()
            if dotted.split(".")[0] in {"fsspec", "s3fs"}
        }
        if not local:
            return
        for qualname, scope in module.scopes.items():
            use = next(
                (
                    node
                    for node in scope_nodes(scope)
                    if isinstance(node, ast.Name) and node.id in local
                ),
                None,
            )
            if use is not None:
                self.add(module, qualname, use, "s3", FSSPEC_S3_OPERATIONS, via="fsspec/s3fs")

    def add(
        self,
        module: Module,
        scope: str,
        node: ast.AST,
        service: str,
        operations: Iterable[str],
        *,
        via: str,
        by_pipeline: bool = False,
    ) -> None:
        operations = tuple(operations)
        boto3_call = isinstance(node, ast.Call) and not by_pipeline and not via.startswith("SDK")
        implied = self.implied_actions(module, scope, node, service, operations, tags=boto3_call)
        self.calls.append(
            AwsCall(
                module.name,
                scope,
                getattr(node, "lineno", 0),
                service,
                operations,
                via,
                by_pipeline,
                implied,
            )
        )

    def run(self) -> Scan:
        self.find_factories()
        self.find_bindings()
        for module in self.modules.values():
            self.scan_clients(module)
            self.classify_sdk_imports(module)
            self.scan_sdk(module)
            self.scan_fsspec(module)
        return Scan(self.calls, self.problems, self.modules)


def module_name(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    parts = list(relative.parts)
    return ".".join(parts)


@cache
def product_sources() -> dict[str, str]:
    return {
        module_name(path): path.read_text()
        for path in sorted((SRC / PACKAGE).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


@cache
def product_scan() -> Scan:
    return Scanner(product_sources()).run()


def mlflow_calls(scan: Scan) -> tuple[list[AwsCall], list[str]]:
    """The MLflow requests of src/ (:data:`MLFLOW_CALLS`) as calls needing ``sagemaker-mlflow``
    actions (and s3:PutObject for uploads), with the calls the table does not know."""
    found: list[AwsCall] = []
    problems: list[str] = []
    factory_module, _, factory = MLFLOW_CLIENT_FACTORY.rpartition(".")
    for module in scan.modules.values():
        holds_client = module.name == factory_module or (
            module.imports.get(factory) == MLFLOW_CLIENT_FACTORY
        )
        mlflow_names = {
            local
            for local, dotted in module.imports.items()
            if dotted == "mlflow" or dotted.startswith("mlflow.")
        }
        for qualname, scope in module.scopes.items():
            for node in scope_nodes(scope):
                if not isinstance(node, ast.Call):
                    continue
                key = None
                func = node.func
                if (
                    isinstance(func, ast.Attribute)
                    and holds_client
                    and ast.unparse(func.value) in MLFLOW_CLIENT_NAMES
                ):
                    key = func.attr
                root = func
                while isinstance(root, ast.Attribute):
                    root = root.value
                if key is None and isinstance(root, ast.Name) and root.id in mlflow_names:
                    dotted = f"{module.imports[root.id]}{ast.unparse(func)[len(root.id) :]}"
                    parts = dotted.split(".")
                    if parts[-1] in MLFLOW_OFFLINE_NAMES:
                        continue
                    key = "flavor.log_model" if parts[-1] == "log_model" else dotted
                if key is None:
                    continue
                if key not in MLFLOW_CALLS:
                    problems.append(
                        f"{module.name}:{node.lineno}: MLflow call {key} is not in MLFLOW_CALLS: "
                        "record the REST requests it makes and add their sagemaker-mlflow actions"
                    )
                    continue
                actions, uploads = MLFLOW_CALLS[key]
                implied = {f"{MLFLOW_PREFIX}:{action}" for action in actions}
                if uploads:
                    implied.add("s3:PutObject")
                found.append(
                    AwsCall(
                        module.name,
                        qualname,
                        node.lineno,
                        MLFLOW_PREFIX,
                        (),
                        f"MLflow {key}",
                        implied=tuple(sorted(implied)),
                    )
                )
    return found, problems


@cache
def mlflow_reference() -> dict[str, Any]:
    return json.loads(MLFLOW_REFERENCE.read_text())


@cache
def mlflow_reference_actions() -> frozenset[str]:
    return frozenset(mlflow_reference()["actions"])


# ---- configuration ------------------------------------------------------------------------------
@cache
def conf_globals() -> dict[str, Any]:
    return yaml.safe_load((CONF / "base" / "globals.yml").read_text())


def resolve_globals(value: Any) -> Any:
    """``${globals:a.b}`` interpolations of the project's config files."""
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> str:
        found: Any = conf_globals()
        for key in match.group(1).split("."):
            found = found[key]
        return str(found)

    return re.sub(r"\$\{globals:([\w.]+)\}", lookup, value)


def conf_files(pattern: str) -> list[Path]:
    return sorted(path for path in CONF.glob(f"*/{pattern}") if path.is_file())


def catalog_entries() -> dict[str, list[dict[str, Any]]]:
    """Catalog entries by name, across every environment."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for path in conf_files("catalog*.yml") + conf_files("catalog*/*.yml"):
        for name, entry in (yaml.safe_load(path.read_text()) or {}).items():
            if isinstance(entry, dict) and not name.startswith("_"):
                entries.setdefault(name, []).append(entry)
    return entries


def sagemaker_settings() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) or {} for path in conf_files("sagemaker*.yml")]


def step_catalog_datasets() -> set[str]:
    """The catalog entries exported pipeline steps load and save themselves."""
    names: set[str] = set()
    for settings in sagemaker_settings():
        names |= set((settings.get("pipeline") or {}).get("catalog_datasets") or [])
    return names


def s3_catalog_entries() -> set[str]:
    """Catalog entries stored at an s3:// path (read and written through fsspec/s3fs)."""
    return {
        name
        for name, entries in catalog_entries().items()
        for entry in entries
        for key in ("filepath", "path")
        if str(entry.get(key, "")).startswith(("s3://", "s3a://"))
    }


# ---- who runs what -----------------------------------------------------------------------------
def job_roots(scan: Scan) -> set[tuple[str, str]]:
    """Where code inside a job starts: the modules the job's entry script imports, the node
    functions' modules (the pipelines), and load/save of the catalog_datasets a step uses."""
    from predictive_maintenance.sagemaker.packaging import ENTRY_SOURCE  # noqa: PLC0415

    roots: set[tuple[str, str]] = set()
    entry = ast.parse(ENTRY_SOURCE)
    entry_modules = {
        node.module
        for node in ast.walk(entry)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PACKAGE)
    }
    assert entry_modules, "the job entry script imports nothing from the package"
    whole = {
        name
        for name in scan.modules
        if name in entry_modules or name.startswith(f"{PACKAGE}.pipelines.")
    }
    for name in whole:
        roots |= {(name, scope) for scope in scan.modules[name].scopes}
    for dataset in step_catalog_datasets():
        for entry_config in catalog_entries().get(dataset, []):
            dotted = str(entry_config.get("type", ""))
            module, _, cls = dotted.rpartition(".")
            if module in scan.modules and cls in scan.modules[module].classes:
                for method in ("__init__", "load", "save", "_load", "_save", "_exists", "exists"):
                    if f"{cls}.{method}" in scan.modules[module].scopes:
                        roots.add((module, f"{cls}.{method}"))
    return roots


#: Where Kedro's dataset classes come from: a class of src/ deriving from one of their classes
#: is a dataset class.
DATASET_PACKAGES = ("kedro", "kedro_datasets")


def dataset_classes(scan: Scan) -> set[tuple[str, str]]:
    """(module, class) of every Kedro dataset class in src/: derived from a kedro or
    kedro_datasets ``...Dataset`` class, or from another dataset class of src/."""
    scanner = Scanner.__new__(Scanner)
    scanner.modules = scan.modules
    definitions = [
        (module, node)
        for module in scan.modules.values()
        for node in module.tree.body
        if isinstance(node, ast.ClassDef)
    ]
    found: set[tuple[str, str]] = set()
    changed = True
    while changed:
        changed = False
        for module, node in definitions:
            if (module.name, node.name) in found:
                continue
            for written in node.bases:
                # AbstractDataset[dict, dict] -> AbstractDataset
                base = written.value if isinstance(written, ast.Subscript) else written
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                dotted = module.imports.get(root.id, "") if isinstance(root, ast.Name) else ""
                named = ast.unparse(base).endswith("Dataset")
                external = named and dotted.split(".")[0] in DATASET_PACKAGES
                if external or scanner.named_target(module, "", base) in found:
                    found.add((module.name, node.name))
                    changed = True
                    break
    return found


def reachable(scan: Scan, roots: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Everything the roots may run: defs they name (called or passed on), methods called on
    ``self``, nested defs, module-level code of their modules and, for a method called on an
    object of unknown type, every method of that name in a module already running.

    Except for Kedro dataset classes: their objects are made by a catalog from a catalog entry
    (job_roots: the entries a job loads itself) or by code that names the class. A dataset
    class that neither is a root nor is named by code that runs has no objects, so its methods
    are not run for a method of the same name called on some unknown object.
    """
    scanner = Scanner.__new__(Scanner)
    scanner.modules = scan.modules
    reached: set[tuple[str, str]] = set()
    pending = list(roots)
    unknown_methods: set[str] = set()
    datasets = dataset_classes(scan)
    # Dataset classes with objects: the roots' classes, then every class named by code reached.
    made = {
        made_class
        for name, scope in roots
        if (cls := scan.modules[name].scope_class.get(scope)) is not None
        for made_class in scanner.class_and_bases(name, cls)
    }
    while True:
        while pending:
            item = pending.pop()
            if item in reached:
                continue
            reached.add(item)
            module_name_, scope = item
            module = scan.modules[module_name_]
            pending.append((module_name_, ""))
            pending += [
                (module_name_, nested)
                for nested in module.scopes
                if scope
                and nested.startswith(f"{scope}.")
                and module.scope_class.get(nested) == module.scope_class.get(scope)
            ]
            for node in scope_nodes(module.scopes[scope]):
                if isinstance(node, ast.Name | ast.Attribute):
                    pending += scanner.callable_targets(module, scope, node)
                    named = scanner.named_target(module, scope, node)
                    if named in datasets:
                        # An object of a class is an object of its bases too.
                        made.update(scanner.class_and_bases(*named))
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and not scanner.callable_targets(module, scope, node.func)
                ):
                    unknown_methods.add(node.func.attr)
                if isinstance(node, ast.Import | ast.ImportFrom) and not scope:
                    for dotted in module_imports(module, node):
                        for candidate in (dotted, f"{dotted}.__init__"):
                            if candidate in scan.modules:
                                pending.append((candidate, ""))
        running = {name for name, scope in reached if scope} | {name for name, _ in made}
        extra = {
            (name, qualname)
            for name in running
            for qualname in scan.modules[name].scopes
            if (cls := scan.modules[name].scope_class.get(qualname))
            and qualname.rsplit(".", 1)[-1] in unknown_methods
            and ((name, cls) not in datasets or (name, cls) in made)
        } - reached
        if not extra:
            return reached
        pending = list(extra)


def module_imports(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [module.imports[alias.asname or alias.name] for alias in node.names] + [
        module.imports[alias.asname or alias.name].rsplit(".", 1)[0] for alias in node.names
    ]


def actions_of(calls: Iterable[AwsCall]) -> dict[str, list[AwsCall]]:
    found: dict[str, list[AwsCall]] = {}
    for call in calls:
        for action in call.actions():
            found.setdefault(action, []).append(call)
    return found


@dataclass(frozen=True)
class Required:
    """The IAM actions each principal needs, with the calls that need them."""

    operator: dict[str, list[AwsCall]]
    execution: dict[str, list[AwsCall]]
    api: dict[str, list[AwsCall]]


def is_api(call: AwsCall) -> bool:
    return call.module == API_PACKAGE or call.module.startswith(f"{API_PACKAGE}.")


@cache
def required() -> Required:
    scan = product_scan()
    in_jobs = reachable(scan, job_roots(scan))
    own = [call for call in scan.calls if not call.by_pipeline]
    # The operator runs all of src/ but the Lambda: the CLI, SageMakerRunner, `kedro run --env
    # sagemaker` (which loads and saves the registry and endpoint datasets on their machine) and
    # `kedro model`. Calls that jobs also make (the registry and endpoint datasets inside the
    # deploy/register steps) are therefore needed by both principals, deliberately.
    operator = actions_of(call for call in own if not is_api(call))
    execution = actions_of(
        call
        for call in scan.calls
        if call.by_pipeline or ((call.module, call.scope) in in_jobs and not is_api(call))
    )
    if s3_catalog_entries():
        fsspec = AwsCall("conf", "catalog", 0, "s3", FSSPEC_S3_OPERATIONS, "catalog s3:// path")
        for action in fsspec.actions():
            operator.setdefault(action, []).append(fsspec)
        if s3_catalog_entries() & step_catalog_datasets():
            for action in fsspec.actions():
                execution.setdefault(action, []).append(fsspec)
    # MLflow: the job code's requests to a SageMaker MLflow tracking server (exported steps with
    # mlflow.tracking_server_arn, runner jobs given an ARN), made with the execution role.
    tracking, _ = mlflow_calls(scan)
    in_job_tracking = [call for call in tracking if (call.module, call.scope) in in_jobs]
    for action, calls in actions_of(in_job_tracking).items():
        execution.setdefault(action, []).extend(calls)
    runtime = AwsCall("SageMaker", "any job or endpoint", 0, "-", (), "job runtime")
    for action in JOB_RUNTIME_ACTIONS:
        execution.setdefault(action, []).append(runtime)
    api = actions_of(call for call in own if is_api(call))
    return Required(operator, execution, api)


def describe(calls: list[AwsCall]) -> str:
    return "; ".join(sorted({call.where for call in calls})[:4])


# ---- tests: the scan ---------------------------------------------------------------------------
def test_every_aws_call_in_src_is_understood():
    """No client method the scan cannot map, no SDK name it does not know."""
    scan = product_scan()
    assert not scan.problems, "\n".join(scan.problems)
    services = {call.service for call in scan.calls}
    # The scan sees the bridge's clients (a scan that finds nothing would pass every check).
    assert {"sagemaker", "s3", "logs", "sagemaker-runtime"} <= services, services


SAMPLE_AWS = """
import boto3


def client(service, region=None):
    return boto3.client(service, region_name=region)
"""
SAMPLE = """
import boto3
from predictive_maintenance.sample_aws import client


class Thing:
    def __init__(self, region):
        self._sm = client("sagemaker", region)

    def go(self, request):
        self._sm.create_transform_job(**request)
        boto3.client("s3").head_object(Bucket="b", Key="k")
        for kind in ("endpoint config", "model"):
            getattr(self._sm, f"delete_{kind.replace(' ', '_')}")(Name="x")
        self._sm.get_paginator("list_training_jobs")
        self._sm.get_waiter("training_job_completed_or_stopped")
        self._sm.create_pipelin(PipelineName="typo")
"""


def test_the_scan_finds_a_new_call():
    """A call added anywhere is found (and a typo is reported), so it must be granted."""
    sources = {
        "predictive_maintenance.sample_aws": SAMPLE_AWS,
        "predictive_maintenance.sample": SAMPLE,
    }
    scan = Scanner(sources).run()
    found = {(call.service, op) for call in scan.calls for op in call.operations}
    assert {
        ("sagemaker", "CreateTransformJob"),
        ("s3", "HeadObject"),
        ("sagemaker", "DeleteEndpointConfig"),
        ("sagemaker", "DeleteModel"),
        ("sagemaker", "ListTrainingJobs"),
        ("sagemaker", "DescribeTrainingJob"),
    } <= found, found
    implied = {action for call in scan.calls for action in call.implied}
    assert "sagemaker:AddTags" in implied  # **request may carry Tags
    assert any("create_pipelin" in problem for problem in scan.problems), scan.problems
    policy = granted(load_policy(OPERATOR_POLICY))
    assert "sagemaker:CreateTransformJob" not in policy  # so the real check would fail


SAMPLE_DATASETS = """
import fsspec
from kedro.io import AbstractDataset


class FileDataset(AbstractDataset[str, str]):
    def __init__(self, filepath):
        self._fs = fsspec.filesystem("s3")
        self._path = filepath

    def save(self, data):
        self._fs.rm(self._path)


class DerivedDataset(FileDataset):
    def save(self, data):
        super().save(data)


class Chunk:
    def __init__(self, table):
        self.table = table
"""
SAMPLE_NODES = """
from predictive_maintenance.sample_datasets import Chunk


def score(chunks, output):
    output.save(Chunk(chunks))
"""
SAMPLE_WRITER = """
from predictive_maintenance.sample_datasets import DerivedDataset


def write(data):
    DerivedDataset("s3://bucket/key").save(data)
"""


def test_fsspec_is_counted_where_used_and_datasets_where_code_makes_them():
    """S3 through fsspec is the scope that makes the filesystem, not the module importing it.
    In a job, a dataset class's methods run only if the class is a catalog root or named by
    code that runs; a node calling ``save`` on some object does not make every dataset's
    ``save`` run (the job passes data through its own channels)."""
    sources = {
        "predictive_maintenance.sample_datasets": SAMPLE_DATASETS,
        "predictive_maintenance.pipelines.sample.nodes": SAMPLE_NODES,
        "predictive_maintenance.pipelines.other.nodes": SAMPLE_WRITER,
    }
    scan = Scanner(sources).run()
    assert not scan.problems, scan.problems
    fsspec_calls = [(call.module, call.scope) for call in scan.calls if call.service == "s3"]
    assert fsspec_calls == [("predictive_maintenance.sample_datasets", "FileDataset.__init__")]
    assert dataset_classes(scan) == {
        ("predictive_maintenance.sample_datasets", "FileDataset"),
        ("predictive_maintenance.sample_datasets", "DerivedDataset"),
    }
    nodes = scan.modules["predictive_maintenance.pipelines.sample.nodes"]
    in_job = reachable(scan, {(nodes.name, scope) for scope in nodes.scopes})
    assert ("predictive_maintenance.sample_datasets", "Chunk.__init__") in in_job
    assert not {scope for name, scope in in_job if "Dataset" in scope}, in_job
    # Code that names the class makes objects of it: its methods (and the base's) run.
    writer = scan.modules["predictive_maintenance.pipelines.other.nodes"]
    in_job = reachable(scan, {(writer.name, scope) for scope in writer.scopes})
    assert {
        ("predictive_maintenance.sample_datasets", "DerivedDataset.save"),
        ("predictive_maintenance.sample_datasets", "FileDataset.__init__"),
        ("predictive_maintenance.sample_datasets", "FileDataset.save"),
    } <= in_job
    # In the project: the batch pipeline's nodes use Chunk, never a TableChunksDataset.
    product = product_scan()
    in_jobs = reachable(product, job_roots(product))
    module = f"{PACKAGE}.datasets.table_chunks"
    assert (module, "Chunk.__init__") in in_jobs
    assert (module, "TableChunksDataset.__init__") not in in_jobs


# ---- tests: every call is granted --------------------------------------------------------------
def missing(needed: dict[str, list[AwsCall]], policy: set[str]) -> list[str]:
    return [
        f"{action}: {describe(calls)}"
        for action, calls in sorted(needed.items())
        if action not in policy
    ]


def test_operator_policy_grants_every_operation_of_the_cli():
    absent = missing(required().operator, granted(load_policy(OPERATOR_POLICY)))
    assert not absent, "deploy/iam/operator.json lacks:\n" + "\n".join(absent)


def test_execution_role_grants_every_operation_of_jobs_and_steps():
    absent = missing(required().execution, granted(load_policy(EXECUTION_POLICY)))
    assert not absent, "deploy/iam/pipeline-execution-role.json lacks:\n" + "\n".join(absent)


def test_api_lambda_role_grants_its_calls():
    absent = missing(required().api, sam_role_actions())
    assert not absent, "deploy/api/template.yaml's function role lacks:\n" + "\n".join(absent)


@pytest.mark.parametrize(
    ("path", "principal"), [(OPERATOR_POLICY, "operator"), (EXECUTION_POLICY, "execution")]
)
def test_policies_grant_nothing_the_code_does_not_need(path, principal):
    needed = getattr(required(), principal)
    unused = sorted(granted(load_policy(path)) - set(needed))
    assert not unused, f"{path.name} grants actions nothing needs (remove them): {unused}"


def test_the_deploy_steps_calls_are_in_both_policies():
    """The registry and endpoint datasets run inside the pipeline's deploy step and under
    `kedro run --env sagemaker` on the operator's machine: both principals need them."""
    shared = {
        action
        for action, calls in required().execution.items()
        if any(
            not call.by_pipeline
            and call.module.startswith(PACKAGE)
            and call.service != MLFLOW_PREFIX  # the operator's own runs: see the MLflow tests
            for call in calls
        )
    }
    assert shared, "no call found in the code jobs run"
    assert shared <= granted(load_policy(OPERATOR_POLICY))


# ---- tests: the policies themselves ------------------------------------------------------------
POLICIES = [OPERATOR_POLICY, EXECUTION_POLICY]


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_policy_is_valid_iam_json(path):
    policy = load_policy(path)
    assert set(policy) == {"Version", "Statement"}
    assert policy["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in statements(policy)]
    assert len(sids) == len(set(sids)), sids
    for statement in statements(policy):
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, statement
        assert re.fullmatch(r"[A-Za-z0-9]+", statement["Sid"]), statement["Sid"]
        assert statement["Effect"] == "Allow"
        actions = as_list(statement["Action"])
        assert actions == sorted(set(actions)), f"{statement['Sid']}: sort, no duplicates"
        for action in actions:
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), f"{action}: no wildcards"
        resources = as_list(statement["Resource"])
        assert resources
        if "*" in resources:
            assert resources == ["*"]
            outside = set(actions) - UNSCOPED_ACTIONS
            assert not outside, f"{statement['Sid']}: {outside} on Resource '*'"
        for resource in resources:
            assert resource == "*" or resource.startswith("arn:aws:"), resource
    compact = json.dumps(policy, separators=(",", ":"))
    for name, value in PLACEHOLDER_EXAMPLES.items():
        compact = compact.replace(f"${{{name}}}", value)
    assert len(compact) <= MANAGED_POLICY_LIMIT, len(compact)


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_every_action_is_a_real_operation(path):
    """Catches typos: each action is an operation of its service in botocore's models (or one
    of the few permission-only actions)."""
    for action in granted(load_policy(path)):
        if action in PERMISSION_ONLY_ACTIONS:
            continue
        prefix, name = action.split(":")
        if prefix == MLFLOW_PREFIX:
            # Not an AWS SDK service: AWS's list of its actions (the reference copy).
            assert name in mlflow_reference_actions(), (
                f"{action} is not an action of {MLFLOW_PREFIX} ({mlflow_reference()['source']})"
            )
            continue
        assert prefix in PREFIX_SERVICES, f"{action}: unknown service prefix"
        operations = set().union(
            *(set(service_operations(service).values()) for service in PREFIX_SERVICES[prefix])
        )
        assert name in operations, f"{action} is not an operation of {prefix}"


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_placeholders_are_the_documented_ones(path):
    text = path.read_text()
    used = set(re.findall(r"\$\{([^}]*)\}", text))
    assert used <= PLACEHOLDERS, used - PLACEHOLDERS
    readme = IAM_README.read_text()
    for name in used:
        assert f"${{{name}}}" in readme, f"deploy/iam/README.md does not explain ${{{name}}}"
    assert "aws iam create-policy" in readme


@pytest.mark.parametrize("path", POLICIES, ids=lambda path: path.name)
def test_pass_role_passes_only_the_execution_role_to_sagemaker(path):
    for statement in statements(load_policy(path)):
        if "iam:PassRole" not in as_list(statement["Action"]):
            continue
        assert as_list(statement["Action"]) == ["iam:PassRole"]
        assert as_list(statement["Resource"]) == [
            "arn:aws:iam::${AccountId}:role/${ExecutionRoleName}"
        ]
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
        }


def test_the_execution_role_trusts_sagemaker_only():
    trust = load_policy(EXECUTION_TRUST)
    assert trust["Version"] == "2012-10-17"
    assert trust["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ]


def resources_of(policy: dict[str, Any]) -> list[str]:
    return [
        resource for statement in statements(policy) for resource in as_list(statement["Resource"])
    ]


def test_resource_names_are_the_configured_ones():
    """The pipelines, model package group and endpoint named in the ARNs are the project's; the
    models the pipeline service names itself (a Model step's) are its ``pipelines-*``."""
    pipelines = {
        block["name"]
        for settings in sagemaker_settings()
        for block in (
            settings.get("pipeline") or {},
            (settings.get("pipeline") or {}).get("batch_pipeline") or {},
        )
        if block.get("name")
    }
    assert len(pipelines) == 2, pipelines
    group = conf_globals()["model_registry"]["group"]
    endpoint = resolve_globals(
        next(
            settings["pipeline"]["endpoint_name"]
            for settings in sagemaker_settings()
            if (settings.get("pipeline") or {}).get("endpoint_name")
        )
    )
    names = {
        "pipeline": pipelines,
        "pipeline-execution": pipelines,
        "model-package-group": {group},
        "model-package": {group},
        "endpoint": {endpoint},
        "endpoint-config": {endpoint},
        "model": {endpoint, PIPELINE_PREFIX},
        "transform-job": {PIPELINE_PREFIX},
    }
    for path in POLICIES:
        for resource in resources_of(load_policy(path)):
            if ":log-group:/aws/sagemaker/Endpoints/" in resource:
                logged = resource.split("/Endpoints/", 1)[1].removesuffix(":*")
                assert logged == endpoint, resource
            match = re.fullmatch(
                r"arn:aws:sagemaker:\$\{Region\}:\$\{AccountId\}:([a-z-]+)/(.+)", resource
            )
            if resource.startswith("arn:aws:sagemaker:"):
                assert match, resource
                kind, name = match.groups()
                if kind in names:
                    assert re.split(r"[/*]|-\*", name)[0] in names[kind], resource
                    assert name == name.lower(), f"{resource}: SageMaker ARNs are lowercase"


def test_s3_access_is_the_project_prefix():
    """Objects under the project's prefix; and the execution role's uploads of MLflow artifacts
    to the tracking server's artifact store (write only)."""
    bucket = "arn:aws:s3:::${Bucket}"
    for path in POLICIES:
        for statement in statements(load_policy(path)):
            for resource in as_list(statement["Resource"]):
                if resource == MLFLOW_ARTIFACT_ARN and path == EXECUTION_POLICY:
                    assert as_list(statement["Action"]) == ["s3:PutObject"], statement
                    assert as_list(statement["Resource"]) == [MLFLOW_ARTIFACT_ARN], statement
                    continue
                if resource.startswith("arn:aws:s3:::"):
                    assert resource in {bucket, f"{bucket}/${{Prefix}}/*"}, resource
                    if resource == bucket:
                        assert as_list(statement["Action"]) == ["s3:ListBucket"]
    # Everything the bridge writes is under s3://<bucket>/<prefix>/ (globals), the registry's
    # artifacts too.
    prefix = (
        f"s3://{conf_globals()['sagemaker']['bucket']}/{conf_globals()['sagemaker']['prefix']}/"
    )
    for dataset in step_catalog_datasets():
        for entry in catalog_entries().get(dataset, []):
            for key, value in entry.items():
                if isinstance(value, str) and value.startswith("s3://"):
                    assert resolve_globals(value).startswith(prefix), f"{dataset}.{key}"


def test_log_groups_in_the_code_are_readable():
    """Each CloudWatch log group the code names is in the operator's logs statement."""
    groups = {
        node.value
        for text in product_sources().values()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"/aws/sagemaker/[\w/-]+", node.value)
    }
    assert groups
    resources = resources_of(load_policy(OPERATOR_POLICY))
    for group in groups:
        arn = f"arn:aws:logs:${{Region}}:${{AccountId}}:log-group:{group}"
        assert arn in resources, group
        assert f"{arn}:*" in resources, group


def test_tag_conditions_name_tags_the_code_sets():
    constants = {
        node.value
        for text in product_sources().values()
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    for path in POLICIES:
        for key in re.findall(r"aws:RequestTag/([^\"]+)", path.read_text()):
            assert key in constants, f"{path.name}: tag {key} is set nowhere in src/"


#: The account placeholder of each stock image repository (a repository lives in one account per
#: region, and the analyzer's is not the XGBoost image's).
IMAGE_ACCOUNTS = {
    "sagemaker-xgboost": "ImageAccountId",
    "sagemaker-model-monitor-analyzer": "MonitorImageAccountId",
}


def test_ecr_statements_are_the_stock_image_repositories():
    """The image pulls are scoped to the repositories of the stock images the project uses: the
    jobs' and the endpoint's XGBoost image, and Model Monitor's analyzer, which runs the data
    quality schedule's jobs as the execution role (the images the compiler pins into the deploy
    step's catalog entries, pipeline.catalog_images)."""
    from sagemaker.core import image_uris  # noqa: PLC0415 -- seconds to import

    region = conf_globals()["sagemaker"]["region"]
    uris = set()
    for settings in sagemaker_settings():
        pipeline = settings.get("pipeline") or {}
        for block in (settings.get("training_job"), pipeline.get("processing")):
            if block and block.get("framework"):
                version = resolve_globals(str(block["framework_version"]))
                uris.add(image_uris.retrieve(block["framework"], region=region, version=version))
        for images in (pipeline.get("catalog_images") or {}).values():
            for image in images.values():
                version = resolve_globals(str(image.get("version", "")))
                if image.get("version_key"):  # the entries' framework_version: the globals'
                    version = conf_globals()["sagemaker"]["xgboost_version"]
                uris.add(image_uris.retrieve(image["framework"], region=region, version=version))
    repositories = {uri.partition(".dkr.ecr.")[2].split("/", 1)[1].split(":")[0] for uri in uris}
    assert repositories == set(IMAGE_ACCOUNTS), repositories
    ecr = [r for r in resources_of(load_policy(EXECUTION_POLICY)) if r.startswith("arn:aws:ecr:")]
    readme = IAM_README.read_text()
    expected = set()
    for uri in uris:
        account, _, rest = uri.partition(".dkr.ecr.")
        repository = rest.split("/", 1)[1].split(":")[0]
        placeholder = IMAGE_ACCOUNTS[repository]
        expected.add(f"arn:aws:ecr:${{Region}}:${{{placeholder}}}:repository/{repository}")
        assert account in readme, f"README: the account of {repository} in {region} ({account})"
    assert set(ecr) == expected


#: A name the pipeline service gives what it creates for a step: ``pipelines-<execution>-<step>-
#: <random>`` (AWS's documented example of a Model step's model:
#: ``model/pipelines-cfvy1tjuxdq8-abalonecreatemodel-jl94rai0ra``).
PIPELINE_PREFIX = "pipelines"
PIPELINE_GENERATED = f"{PIPELINE_PREFIX}-cfvy1tjuxdq8-batch-score-batch-model-jl94rai0ra"
#: What a step's operation acts on: Create/Describe/Stop<kind>.
STEP_RESOURCE = re.compile(
    r"(?:Create|Describe|Stop)(ProcessingJob|TrainingJob|TransformJob|Model)"
)


def allows(policy: dict[str, Any], action: str, arn: str) -> bool:
    """Whether an Allow statement grants ``action`` on ``arn`` (placeholders as examples)."""
    for statement in statements(policy):
        if action not in as_list(statement["Action"]):
            continue
        for resource in as_list(statement["Resource"]):
            pattern = resource
            for name, value in PLACEHOLDER_EXAMPLES.items():
                pattern = pattern.replace(f"${{{name}}}", value)
            if fnmatch.fnmatchcase(arn, pattern):
                return True
    return False


def example_arn(kind: str, name: str) -> str:
    region, account = PLACEHOLDER_EXAMPLES["Region"], PLACEHOLDER_EXAMPLES["AccountId"]
    return f"arn:aws:sagemaker:{region}:{account}:{kind}/{name}"


def test_the_execution_role_may_act_on_what_the_pipeline_service_names():
    """Jobs and models a step creates are named by the service, not by the project: the
    execution role's grants for the steps' operations cover those names (a model scoped to the
    endpoint's ``predictive-maintenance-*`` names would deny the batch export's Model step)."""
    policy = load_policy(EXECUTION_POLICY)
    checked = set()
    for action, calls in sorted(required().execution.items()):
        service, _, operation = action.partition(":")
        match = STEP_RESOURCE.fullmatch(operation)
        if service != "sagemaker" or not match or not any(c.by_pipeline for c in calls):
            continue
        kind = re.sub(r"(?<!^)(?=[A-Z])", "-", match.group(1)).lower()
        arn = example_arn(kind, PIPELINE_GENERATED)
        assert allows(policy, action, arn), f"{action} on {arn}: {describe(calls)}"
        checked.add(action)
    assert {
        "sagemaker:CreateProcessingJob",
        "sagemaker:CreateTrainingJob",
        "sagemaker:CreateTransformJob",
        "sagemaker:CreateModel",
    } <= checked, checked
    # Not vacuous: the endpoint's own models are not pipeline-named, and vice versa.
    assert not allows(policy, "sagemaker:CreateModel", example_arn("model", "another-model"))
    assert not allows(policy, "sagemaker:DeleteModel", example_arn("model", PIPELINE_GENERATED))


def test_the_operator_follows_the_executions_of_both_exported_pipelines():
    """An execution's ARN is ``pipeline/<name>/execution/<id>`` (botocore's pattern for it): the
    operator's grants on executions match that form, for both pipelines."""
    model = _session().get_service_model("sagemaker")
    shape = model.operation_model("DescribePipelineExecution").input_shape
    pattern = shape.members["PipelineExecutionArn"].metadata["pattern"]
    policy = load_policy(OPERATOR_POLICY)
    for settings in sagemaker_settings():
        pipeline = settings.get("pipeline") or {}
        for name in (pipeline.get("name"), (pipeline.get("batch_pipeline") or {}).get("name")):
            if not name:
                continue
            execution = example_arn("pipeline", f"{name}/execution/0a1b2c3d4e5f")
            assert re.fullmatch(pattern, execution), (pattern, execution)
            for action in ("DescribePipelineExecution", "ListPipelineExecutionSteps"):
                assert allows(policy, f"sagemaker:{action}", execution), (action, execution)
            for action in ("StartPipelineExecution", "UpdatePipeline", "DeletePipeline"):
                assert allows(policy, f"sagemaker:{action}", example_arn("pipeline", name))
    other = example_arn("pipeline", "someone-elses/execution/0a1b2c3d4e5f")
    assert not allows(policy, "sagemaker:DescribePipelineExecution", other)


# ---- tests: MLflow on a SageMaker MLflow tracking server ----------------------------------------
def test_the_sagemaker_mlflow_reference_is_awss_list():
    """The copy names its source; its actions are action names, sorted, once each."""
    reference = mlflow_reference()
    assert reference["service_prefix"] == MLFLOW_PREFIX
    assert reference["source"].startswith(
        "https://docs.aws.amazon.com/service-authorization/latest/reference/"
    )
    actions = reference["actions"]
    assert actions == sorted(set(actions))
    for action in actions:
        assert re.fullmatch(r"[A-Z][A-Za-z]+", action), action
    # The operations the MLflow client needs for runs and logged models are in it.
    assert {"CreateRun", "LogBatch", "FinalizeLoggedModel", "LogOutputs"} <= set(actions)


def test_every_mlflow_call_in_src_is_understood():
    """Each MLflow request of src/ is in MLFLOW_CALLS, whose actions are all in AWS's list; the
    job code's tracking calls are found (a scan finding none would pass every check)."""
    _, problems = mlflow_calls(product_scan())
    assert not problems, "\n".join(problems)
    for key, (actions, _) in MLFLOW_CALLS.items():
        unknown = set(actions) - mlflow_reference_actions()
        assert not unknown, f"MLFLOW_CALLS[{key!r}]: {unknown} not in {MLFLOW_REFERENCE.name}"
    in_jobs = {
        action
        for action, needers in required().execution.items()
        if any(call.service == MLFLOW_PREFIX for call in needers)
    }
    assert {
        f"{MLFLOW_PREFIX}:CreateRun",
        f"{MLFLOW_PREFIX}:LogBatch",
        f"{MLFLOW_PREFIX}:SearchRuns",
        f"{MLFLOW_PREFIX}:FinalizeLoggedModel",
    } <= in_jobs, in_jobs


SAMPLE_TRACKING = """
import mlflow.xgboost
from predictive_maintenance.tracking.recorder import open_client


def track(settings, run_id, booster):
    client = open_client(settings)
    client.log_param(run_id, "k", "v")
    mlflow.xgboost.log_model(booster, name="model")
    mlflow.register_model("runs:/x/model", "name")
"""


def test_the_scan_finds_a_new_mlflow_call():
    """An MLflow call the table does not know fails the test (so it must be looked up)."""
    calls, problems = mlflow_calls(
        Scanner({"predictive_maintenance.sample_tracking": SAMPLE_TRACKING}).run()
    )
    assert [call.via for call in calls] == ["MLflow flavor.log_model"]
    assert "s3:PutObject" in calls[0].implied
    assert len(problems) == 2, problems
    assert "log_param" in problems[0]
    assert "mlflow.register_model" in problems[1]


def test_mlflow_grants_are_the_tracking_server_and_its_artifact_store_only():
    """The sagemaker-mlflow actions are granted on the one tracking server (an ARN the
    configuration accepts), to the execution role only; its artifacts are write-only."""
    from predictive_maintenance.sagemaker.config import MLFLOW_ARN_PATTERN  # noqa: PLC0415

    assert not any(
        action.startswith(f"{MLFLOW_PREFIX}:") for action in granted(load_policy(OPERATOR_POLICY))
    )
    policy = load_policy(EXECUTION_POLICY)
    mlflow_statements = [
        statement
        for statement in statements(policy)
        if any(action.startswith(f"{MLFLOW_PREFIX}:") for action in as_list(statement["Action"]))
    ]
    assert len(mlflow_statements) == 1, mlflow_statements
    (statement,) = mlflow_statements
    assert all(action.startswith(f"{MLFLOW_PREFIX}:") for action in as_list(statement["Action"]))
    assert as_list(statement["Resource"]) == [MLFLOW_SERVER_ARN]
    assert "Condition" not in statement
    server = example_arn("mlflow-tracking-server", PLACEHOLDER_EXAMPLES["MlflowTrackingServerName"])
    assert re.fullmatch(MLFLOW_ARN_PATTERN, server), server
    for action in as_list(statement["Action"]):
        assert allows(policy, action, server)
        assert not allows(policy, action, example_arn("mlflow-tracking-server", "another"))
    store = "arn:aws:s3:::" + PLACEHOLDER_EXAMPLES["MlflowArtifactStore"] + "/1/abc/artifacts/x"
    assert allows(policy, "s3:PutObject", store)
    assert not allows(policy, "s3:GetObject", store)
