"""The SageMaker Pipeline definition compiled from the real project (``kedro sagemaker compile``).

The definition is compiled in this process once per module, and once more by the CLI in a
subprocess with no AWS credentials and no network (started first, so the two overlap). Checks:
determinism, offline compilation, every job request against botocore's model of the API, the
public JSON schema (with its known false errors named), the Kedro DAG against the definition's
references, parameters, the quality gate, and a pipeline parameter's way into a node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import botocore.session
import jsonschema
import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from kedro.pipeline import Pipeline, node

from predictive_maintenance.sagemaker.cli import Export, load_export
from predictive_maintenance.sagemaker.config import (
    BridgeSettings,
    MlflowSettings,
    NetworkSettings,
    SageMakerConfigError,
    parse_settings,
)
from predictive_maintenance.sagemaker.experiment_tracking import export_tracking, project_tracking
from predictive_maintenance.sagemaker.job import (
    JOB_FILE,
    JOB_INPUT,
    PARAMETER_VARIABLE_PREFIX,
    apply_overrides,
    parameter_overrides,
    run_job,
    write_dataset,
)
from predictive_maintenance.sagemaker.jobs import JOB_ENVIRONMENT
from predictive_maintenance.sagemaker.packaging import ENTRY_SCRIPT, JOBS_DIR
from predictive_maintenance.sagemaker.wheels import wheelhouse
from predictive_maintenance.sagemaker.workflow.compiler import (
    CodePackage,
    build_code_package,
    camel,
    compile_definition,
    input_uri,
)
from predictive_maintenance.sagemaker.workflow.plan import (
    PROCESSING,
    TRAINING,
    build_plan,
    dataset_dependencies,
    is_parameter,
)
from predictive_maintenance.sagemaker.workflow.settings import (
    parse_batch_pipeline_settings,
    parse_pipeline_settings,
)
from tests.sagemaker.export_nodes import combine, passthrough, with_options
from tests.support.cli import KEDRO
from tests.support.project import PROJECT_ROOT

SCHEMA_FILE = Path(__file__).with_name("reference") / "sagemaker-pipeline-definition.schema.json"
#: SageMaker's rule for pipeline, step and parameter names.
NAME_RULE = re.compile(r"^[A-Za-z0-9\-_]{1,64}$")
OUTPUT_URI = re.compile(r"^ProcessingOutputConfig\.Outputs\['([^']+)'\]\.S3Output\.S3Uri$")
STEP_REFERENCE = re.compile(r"^Steps\.([A-Za-z0-9\-_]+)\.(.+)$")
#: The API operation each job step type stands for, and the name the pipeline service adds.
OPERATIONS = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "export-test-processing"}),
    "Training": ("CreateTrainingJob", {"TrainingJobName": "export-test-training"}),
    "RegisterModel": ("CreateModelPackage", {}),
}


# ---- the compiled definition, twice -------------------------------------------------------------
@dataclass
class OfflineRun:
    process: subprocess.Popen
    output: Path
    attempts: Path
    environment: dict[str, str]
    log: str | None = None

    def finish(self) -> str:
        """Waits for the compile (once); returns its console output."""
        if self.log is None:
            self.log, _ = self.process.communicate(timeout=300)
        return self.log

    def recorded(self) -> list[str]:
        return self.attempts.read_text().splitlines() if self.attempts.exists() else []


#: sitecustomize.py for a subprocess: every connection or name lookup that is not loopback is
#: refused and written to $NETWORK_GUARD_LOG.
GUARD_SOURCE = textwrap.dedent(
    '''
    """Network guard for tests: loopback only; other attempts are refused and recorded."""
    import ipaddress
    import os
    import socket

    _LOG = os.environ.get("NETWORK_GUARD_LOG")


    def _loopback(host):
        if isinstance(host, bytes):
            host = host.decode()
        if host is None or host == "localhost":
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False


    def _refuse(what, target):
        if _LOG:
            with open(_LOG, "a") as log:
                log.write(f"{what} {target!r}\\n")
        raise ConnectionRefusedError(f"network guard: {what} {target!r} refused")


    def _check(what, address):
        if isinstance(address, tuple) and address and not _loopback(address[0]):
            _refuse(what, address)


    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _create_connection, _getaddrinfo = socket.create_connection, socket.getaddrinfo


    def connect(self, address):
        _check("connect", address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check("connect_ex", address)
        return _connect_ex(self, address)


    def create_connection(address, *args, **kwargs):
        _check("create_connection", address)
        return _create_connection(address, *args, **kwargs)


    def getaddrinfo(host, *args, **kwargs):
        if not _loopback(host):
            _refuse("getaddrinfo", host)
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.create_connection, socket.getaddrinfo = create_connection, getaddrinfo
    '''
)


def offline_environment(directory: Path) -> tuple[dict[str, str], Path]:
    """No AWS credentials or config, the network guard first on PYTHONPATH."""
    guard = directory / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD_SOURCE)
    attempts = directory / "network-attempts.log"
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "SAGEMAKER_", "PYTEST_"))
    }
    environment.update(
        {
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "KEDRO_DISABLE_TELEMETRY": "true",
            "NETWORK_GUARD_LOG": str(attempts),
            "PYTHONPATH": os.pathsep.join(
                [str(guard), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
        }
    )
    return environment, attempts


@pytest.fixture(scope="module")
def project_export() -> Iterator[Export]:
    """The project's export, loaded here, its jobs' wheels in the cache.

    The instance metadata service is switched off for this process: the SDK looks for
    credentials there (see test_compiling_offline_attempts_no_connection) and tests stay on
    127.0.0.1. The wheels are downloaded first (from the package index, once per machine): the
    offline subprocess below may only read them from the cache.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        export = load_export(None, None)
        wheelhouse(export.bridge.job_environment)
        yield export


@pytest.fixture(scope="module")
def offline_compile(tmp_path_factory, project_export) -> Iterator[OfflineRun]:
    """`kedro sagemaker compile` in a subprocess, offline (see offline_environment)."""
    directory = tmp_path_factory.mktemp("offline-compile")
    environment, attempts = offline_environment(directory)
    output = directory / "out" / "pipeline.json"
    process = subprocess.Popen(
        [KEDRO, "sagemaker", "compile", "--output", str(output)],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield OfflineRun(process, output, attempts, environment)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@dataclass
class Compiled:
    export: Export
    code: CodePackage
    text: str
    definition: dict[str, Any]


@pytest.fixture(scope="module")
def compiled(project_export, offline_compile) -> Iterator[Compiled]:
    """The definition, compiled here (while the subprocess compiles it too)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        export = project_export
        code = export.code()
        text = export.compile(code)
        yield Compiled(export, code, text, json.loads(text))


@pytest.fixture(scope="module")
def definition(compiled) -> dict[str, Any]:
    return compiled.definition


@pytest.fixture(scope="module")
def export(compiled) -> Export:
    return compiled.export


# ---- walking a definition ------------------------------------------------------------------------
def all_steps(
    steps: list[dict[str, Any]], condition: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every step, condition branches included."""
    for step in steps:
        yield step
        if step["Type"] == "Condition":
            yield from all_steps(step["Arguments"]["IfSteps"], step["Name"])
            yield from all_steps(step["Arguments"]["ElseSteps"], step["Name"])


def steps_by_name(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["Name"]: step for step in all_steps(definition["Steps"])}


def own_arguments(step: dict[str, Any]) -> Any:
    """A step's arguments without the steps nested in a condition's branches."""
    if step["Type"] == "Condition":
        return step["Arguments"]["Conditions"]
    return step["Arguments"]


def gets(value: Any) -> Iterator[str]:
    """Every ``{"Get": ...}`` expression in ``value``."""
    if isinstance(value, dict):
        if set(value) == {"Get"}:
            yield value["Get"]
            return
        for item in value.values():
            yield from gets(item)
    elif isinstance(value, list):
        for item in value:
            yield from gets(item)


def json_gets(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if set(value) == {"Std:JsonGet"}:
            yield value["Std:JsonGet"]
        for item in value.values():
            yield from json_gets(item)
    elif isinstance(value, list):
        for item in value:
            yield from json_gets(item)


def referenced_steps(value: Any) -> set[str]:
    return {m.group(1) for get in gets(value) if (m := STEP_REFERENCE.match(get))}


def render(value: Any) -> str:
    """How SageMaker writes a value into a Std:Join."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def concrete(value: Any, parameters: dict[str, Any]) -> Any:  # noqa: PLR0911 -- one per form
    """``value`` with every pipeline expression replaced by a plausible value."""
    if isinstance(value, list):
        return [concrete(item, parameters) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Get"}:
        expression = value["Get"]
        if expression.startswith("Parameters."):
            return parameters[expression.removeprefix("Parameters.")]
        if expression.startswith("Execution."):
            return "execution-placeholder"
        if expression.startswith("Steps."):
            return "s3://bucket/placeholder"
        raise AssertionError(f"unknown expression {expression!r}")
    if set(value) == {"Std:Join"}:
        join = value["Std:Join"]
        return join["On"].join(render(concrete(item, parameters)) for item in join["Values"])
    if set(value) == {"Std:JsonGet"}:
        return 0.5
    return {key: concrete(item, parameters) for key, item in value.items()}


def job_steps(definition: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in all_steps(definition["Steps"]) if s["Type"] in ("Processing", "Training")]


def input_uris(step: dict[str, Any]) -> dict[str, Any]:
    """Input (channel) name -> its S3 URI expression."""
    arguments = step["Arguments"]
    if step["Type"] == "Processing":
        return {
            item["InputName"]: item["S3Input"]["S3Uri"]
            for item in arguments.get("ProcessingInputs", [])
        }
    return {
        item["ChannelName"]: item["DataSource"]["S3DataSource"]["S3Uri"]
        for item in arguments.get("InputDataConfig", [])
    }


def output_names(step: dict[str, Any]) -> list[str]:
    outputs = step["Arguments"].get("ProcessingOutputConfig", {}).get("Outputs", [])
    return [item["OutputName"] for item in outputs]


# ---- determinism, offline ------------------------------------------------------------------------
def test_compiling_twice_gives_identical_bytes(compiled):
    again = compiled.export.code()
    first = compiled.code.files
    changed = sorted(
        path for path in {*first, *again.files} if first.get(path) != again.files.get(path)
    )
    assert changed == [], "the code package differs between two builds (files edited meanwhile?)"
    assert again.sha256 == compiled.code.sha256
    assert again.archive == compiled.code.archive
    assert compiled.export.compile(again) == compiled.text
    assert compiled.text.endswith("\n")
    assert compiled.text == json.dumps(compiled.definition, indent=2, sort_keys=True) + "\n"


def spec_of(code: CodePackage, step: str) -> dict[str, Any]:
    """A job step's spec, as the code package ships it."""
    return json.loads(code.files[f"{JOBS_DIR}/{step}/{JOB_FILE}"])


def test_the_definition_names_exactly_the_code_it_runs(compiled, definition):
    code = compiled.code
    assert code.sha256 in code.tree_uri
    assert code.sha256 in code.archive_uri
    steps = job_steps(definition)
    for step in steps:
        inputs = input_uris(step)
        # The job spec: its own input (channel), from the same code tree.
        assert inputs[JOB_INPUT] == f"{code.tree_uri}{JOBS_DIR}/{step['Name']}/"
        assert spec_of(code, step["Name"])["job"] == step["Name"]
        if step["Type"] == "Processing":
            assert inputs["code"] == code.tree_uri
            entrypoint = step["Arguments"]["AppSpecification"]["ContainerEntrypoint"]
            assert entrypoint == [
                "python3",
                f"/opt/ml/processing/input/code/{ENTRY_SCRIPT}",
                "--kedro_job",
                step["Name"],
                "--input-dir",
                "/opt/ml/processing/input",
                "--output-dir",
                "/opt/ml/processing/output",
                "--message-file",
                "/opt/ml/output/message",
            ]
            assert ENTRY_SCRIPT == "kedro_job_entry.py"
        else:
            hyperparameters = step["Arguments"]["HyperParameters"]
            assert hyperparameters["sagemaker_submit_directory"] == code.archive_uri
            assert hyperparameters["sagemaker_program"] == ENTRY_SCRIPT
            assert hyperparameters["kedro_job"] == step["Name"]
            assert "kedro_step" not in hyperparameters
    shipped = sorted(path for path in code.files if path.startswith(f"{JOBS_DIR}/"))
    assert shipped == sorted(f"{JOBS_DIR}/{step['Name']}/{JOB_FILE}" for step in steps)
    assert ENTRY_SCRIPT in code.files


def test_each_job_spec_describes_its_step(export, compiled):
    """The spec in the code package agrees with the plan: nodes in order, the step's inputs and
    outputs by name, the parameters its nodes read, its catalog services."""
    for step in export.plan.steps:
        spec = spec_of(compiled.code, step.name)
        assert [item["node"] for item in spec["nodes"]] == [n.name for n in step.nodes]
        assert spec["inputs"] == step.inputs
        assert spec["outputs"] == step.outputs
        assert set(spec["catalog"]) == set(step.catalog_datasets)
        expected = {key: export.parameters[key] for key in step.parameter_keys}
        assert spec["parameters"] == json.loads(json.dumps(expected))
    deploy = spec_of(compiled.code, "deploy")
    assert deploy["catalog"]["endpoint"] == export.catalog_config["endpoint"]
    assert set(deploy["parameters"]) == {"deploy_model", "endpoint"}


def test_the_network_guard_refuses_and_records_non_loopback_connections(tmp_path: Path):
    """The offline check below is only as good as this guard."""
    environment, attempts = offline_environment(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        script = textwrap.dedent(
            f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=5).close()
            for attempt in (
                lambda: socket.create_connection(("192.0.2.1", 443), timeout=1),
                lambda: socket.getaddrinfo("api.sagemaker.eu-west-1.amazonaws.com", 443),
                lambda: socket.socket().connect(("203.0.113.9", 80)),
            ):
                try:
                    attempt()
                except ConnectionRefusedError as error:
                    assert "network guard" in str(error)
                else:
                    raise SystemExit("not refused")
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    recorded = attempts.read_text().splitlines()
    assert len(recorded) == 3
    assert "192.0.2.1" in recorded[0]
    assert "amazonaws.com" in recorded[1]
    assert "203.0.113.9" in recorded[2]


def test_the_cli_compiles_offline_to_the_same_bytes(compiled, offline_compile):
    run = offline_compile
    assert not [
        name
        for name in run.environment
        if name.startswith("AWS_")
        and name not in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")
    ]
    output = run.finish()
    assert run.process.returncode == 0, output
    assert "Wrote" in output
    assert run.output.read_text() == compiled.text  # another process: another hash seed
    assert not run.output.with_name(f".{run.output.name}.partial").exists()
    # Whatever was attempted, no AWS endpoint nor any other host but the instance metadata
    # service (the known bug below) was asked for anything.
    others = [line for line in run.recorded() if "169.254.169.254" not in line]
    assert others == [], others


def test_compiling_offline_attempts_no_connection(offline_compile):
    run = offline_compile
    run.finish()
    assert run.process.returncode == 0
    recorded = run.recorded()
    assert recorded == [], f"{len(recorded)} network attempts, e.g. {recorded[:2]}"


# ---- botocore's model of the API ----------------------------------------------------------------
@pytest.fixture(scope="module")
def sagemaker_model():
    return botocore.session.get_session().get_service_model("sagemaker")


def constraint_errors(  # noqa: PLR0912 -- one branch per shape type and constraint
    value: Any, shape: Any, path: str
) -> Iterator[str]:
    """What botocore's validator leaves out: enums, maximum lengths and sizes, patterns."""
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                yield from constraint_errors(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            yield f"{path}: {len(value)} items, at most {shape.metadata['max']}"
        for index, item in enumerate(value):
            yield from constraint_errors(item, shape.member, f"{path}[{index}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            yield from constraint_errors(key, shape.key, f"{path} key")
            yield from constraint_errors(item, shape.value, f"{path}.{key}")
    elif shape.type_name == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            yield f"{path}: {value!r} is not one of {shape.enum}"
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            yield f"{path}: {len(value)} characters, at most {shape.metadata['max']}"
        pattern = shape.metadata.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:  # Java-only syntax (\p{...}): not checked here
                compiled = None
            if compiled is not None and not compiled.fullmatch(value):
                yield f"{path}: {value!r} does not match {pattern}"
    elif (
        shape.type_name in ("integer", "long")
        and isinstance(value, int)
        and value > shape.metadata.get("max", value)
    ):
        yield f"{path}: {value} is above {shape.metadata['max']}"


def test_every_job_and_registration_request_is_valid_for_the_api(
    export, definition, sagemaker_model
):
    parameters = {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]}
    checked = Counter()
    for step in all_steps(definition["Steps"]):
        if step["Type"] not in OPERATIONS:
            assert step["Type"] in ("Condition", "Fail"), step["Type"]
            continue
        operation, names = OPERATIONS[step["Type"]]
        request = {**concrete(step["Arguments"], parameters), **names}
        shape = sagemaker_model.operation_model(operation).input_shape
        try:
            validate_parameters(request, shape)
        except ParamValidationError as error:
            pytest.fail(f"step {step['Name']} ({operation}): {error}")
        problems = list(constraint_errors(request, shape, operation))
        assert problems == [], f"step {step['Name']}: {problems}"
        checked[step["Type"]] += 1
    kinds = Counter(step.kind for step in export.plan.steps)
    assert checked == Counter(
        {"Processing": kinds[PROCESSING], "Training": kinds[TRAINING], "RegisterModel": 1}
    )
    assert kinds[TRAINING] == 1


def test_the_api_check_catches_a_broken_request(definition, sagemaker_model):
    """The check above is not vacuous: a wrong type, an unknown key, a bad enum value."""
    parameters = {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]}
    step = steps_by_name(definition)["evaluate"]
    shape = sagemaker_model.operation_model("CreateProcessingJob").input_shape
    request = {**concrete(step["Arguments"], parameters), "ProcessingJobName": "job"}
    broken = json.loads(json.dumps(request))
    broken["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "one"
    broken["Unknown"] = 1
    with pytest.raises(ParamValidationError) as raised:
        validate_parameters(broken, shape)
    assert "ProcessingResources.ClusterConfig.InstanceCount" in str(raised.value)
    assert '"Unknown"' in str(raised.value)
    odd = json.loads(json.dumps(request))
    odd["ProcessingInputs"][0]["S3Input"]["S3DataType"] = "Folder"
    odd["ProcessingJobName"] = "no_underscores_allowed"
    problems = list(constraint_errors(odd, shape, "CreateProcessingJob"))
    assert len(problems) == 2, problems


# ---- the public JSON schema ---------------------------------------------------------------------
#: False errors of the public schema that NOTES.md names (the schema is behind SDK v3).
TOP_LEVEL_FIELDS = "top-level MlflowConfig / PipelineExperimentConfig"
TRAINING_CACHE = "CacheConfig on a Training step"
PROCESSING_PROPERTY_FILES = "PropertyFiles on a Processing step"
CONDITION_ONEOF = "a Condition step's oneOf"
#: False errors NOTES.md does not name, found on this definition: the schema accepts only a
#: literal or a Get where SageMaker accepts any pipeline function (Std:Join, Std:JsonGet), and it
#: lacks API fields that botocore's model of the same operation has (checked field by field).
FUNCTION_VALUE = "a pipeline function where the schema wants a literal or a Get"
API_FIELD = "an API field the schema lacks (botocore's model has it)"
KNOWN_FALSE_ERRORS = {
    TOP_LEVEL_FIELDS,
    TRAINING_CACHE,
    PROCESSING_PROPERTY_FILES,
    CONDITION_ONEOF,
    FUNCTION_VALUE,
    API_FIELD,
}
#: Known kinds that need not occur: the compiler sets no CacheConfig on any step.
MAY_BE_ABSENT = {TRAINING_CACHE}


def well_formed_function(value: Any) -> bool:
    """A Std:Join or Std:JsonGet as SageMaker reads it (recursively)."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    if "Get" in value:
        return isinstance(value["Get"], str)
    if "Std:Join" in value:
        join = value["Std:Join"]
        return (
            isinstance(join, dict)
            and set(join) == {"On", "Values"}
            and isinstance(join["On"], str)
            and isinstance(join["Values"], list)
            and all(
                isinstance(item, (str, int, float, bool)) or well_formed_function(item)
                for item in join["Values"]
            )
        )
    if "Std:JsonGet" in value:
        spec = value["Std:JsonGet"]
        return (
            isinstance(spec, dict)
            and set(spec) == {"PropertyFile", "Path"}
            and isinstance(spec["PropertyFile"], dict)
            and re.fullmatch(
                r"Steps\.[A-Za-z0-9\-_]+\.PropertyFiles\.[A-Za-z0-9\-_]+",
                str(spec["PropertyFile"].get("Get")),
            )
            is not None
            and (isinstance(spec["Path"], str) or well_formed_function(spec["Path"]))
        )
    return False


def _argument_value_union(alternatives: list[dict[str, Any]]) -> bool:
    """oneOf/anyOf over plain types, GetFunction and *ArgumentValue (a literal or a Get)."""
    return all(
        set(alternative) == {"type"}
        or alternative.get("$ref") == "#/definitions/GetFunction"
        or str(alternative.get("$ref", "")).endswith("ArgumentValue")
        for alternative in alternatives
    )


def _locate(definition: dict[str, Any], path: list[Any]) -> tuple[dict | None, list[Any] | None]:
    """The innermost step on ``path``, and the rest of the path inside its Arguments."""
    step, inside, value = None, None, definition
    for index, key in enumerate(path):
        value = value[key]
        if isinstance(value, dict) and "Type" in value and "Name" in value:
            step, inside = value, None
        elif key == "Arguments" and step is not None and inside is None:
            inside = list(path[index + 1 :])
    return step, inside


def _api_shape(model: Any, step: dict[str, Any], inside: list[Any]) -> Any:
    if step["Type"] not in OPERATIONS:
        return None
    shape = model.operation_model(OPERATIONS[step["Type"]][0]).input_shape
    for key in inside:
        if shape.type_name == "list":
            shape = shape.member
        elif shape.type_name == "map":
            shape = shape.value
        elif shape.type_name == "structure" and key in shape.members:
            shape = shape.members[key]
        else:
            return None
    return shape


class SchemaErrors:
    """Sorts a definition's schema errors into known false-error kinds and the rest."""

    def __init__(self, definition: dict[str, Any], model: Any) -> None:
        self.definition = definition
        self.model = model
        self.known: list[tuple[str, str]] = []
        self.unexplained: list[str] = []

    def kinds(self) -> set[str]:
        return {kind for kind, _ in self.known}

    def explain(self, error: jsonschema.ValidationError) -> None:
        path = list(error.absolute_path)
        where = "/".join(str(key) for key in path) or "<root>"
        if error.validator in ("oneOf", "anyOf"):
            self._explain_union(error, path, where)
        elif error.validator == "additionalProperties":
            self._explain_extra_fields(error, path, where)
        else:
            self.unexplained.append(f"{where}: {error.message[:300]}")

    def _explain_union(self, error, path, where) -> None:
        if (
            _argument_value_union(error.validator_value)
            and well_formed_function(error.instance)
            and "Get" not in error.instance
        ):
            self.known.append((FUNCTION_VALUE, where))
            return
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        for index in range(len(error.validator_value)):
            branches.setdefault(index, [])
        # The branch meant for this value: the one whose Type matches (a step or a condition).
        meant = [
            errors
            for errors in branches.values()
            if not any(e.validator == "enum" and list(e.relative_path) == ["Type"] for e in errors)
        ]
        if len(meant) != 1:
            self.unexplained.append(
                f"{where}: {error.validator} with {len(meant)} matching branches: "
                f"{error.message[:200]}"
            )
            return
        if len(path) >= 2 and path[-2] in ("Conditions", "IfSteps", "ElseSteps"):
            step, _ = _locate(self.definition, path[:-3])
            if step is not None and step["Type"] == "Condition":
                self.known.append((CONDITION_ONEOF, where))
        for sub in meant[0]:
            self.explain(sub)

    def _explain_extra_fields(self, error, path, where) -> None:
        schema = error.schema
        patterns = list(schema.get("patternProperties", {}))
        extra = {
            key
            for key in error.instance
            if key not in schema.get("properties", {})
            and not any(re.search(pattern, key) for pattern in patterns)
        }
        if not path and extra <= {"MlflowConfig", "PipelineExperimentConfig"}:
            self.known.append((TOP_LEVEL_FIELDS, where))
            return
        step, inside = _locate(self.definition, path)
        if step is not None and step is error.instance:
            if step["Type"] == "Training" and extra == {"CacheConfig"}:
                self.known.append((TRAINING_CACHE, where))
                return
            if step["Type"] == "Processing" and extra == {"PropertyFiles"}:
                self.known.append((PROCESSING_PROPERTY_FILES, where))
                return
        if step is not None and inside is not None:
            shape = _api_shape(self.model, step, inside)
            if shape is not None and shape.type_name == "structure" and extra <= set(shape.members):
                self.known.append((API_FIELD, f"{where}: {', '.join(sorted(extra))}"))
                return
        self.unexplained.append(f"{where}: {error.message[:300]}")


def schema_errors(definition: dict[str, Any], model: Any) -> SchemaErrors:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = SchemaErrors(definition, model)
    for error in validator.iter_errors(definition):
        errors.explain(error)
    return errors


def test_the_schema_reference_is_a_valid_schema():
    jsonschema.Draft7Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_the_definition_fails_the_public_schema_only_in_known_ways(definition, sagemaker_model):
    errors = schema_errors(definition, sagemaker_model)
    assert errors.unexplained == []
    kinds = errors.kinds()
    assert kinds <= KNOWN_FALSE_ERRORS
    assert KNOWN_FALSE_ERRORS - kinds == MAY_BE_ABSENT
    # Where the NOTES.md kinds occur, exactly.
    where = {kind: sorted(w for k, w in errors.known if k == kind) for kind in kinds}
    assert where[TOP_LEVEL_FIELDS] == ["<root>"]
    assert {"MlflowConfig", "PipelineExperimentConfig"} <= set(definition)
    assert (
        len(where[PROCESSING_PROPERTY_FILES])
        == sum(1 for step in all_steps(definition["Steps"]) if step.get("PropertyFiles"))
        == 1
    )
    assert not any("CacheConfig" in step for step in all_steps(definition["Steps"]))
    condition = next(i for i, s in enumerate(definition["Steps"]) if s["Type"] == "Condition")
    assert all(w.startswith(f"Steps/{condition}/Arguments/") for w in where[CONDITION_ONEOF])
    assert len(where[CONDITION_ONEOF]) == sum(
        len(definition["Steps"][condition]["Arguments"][key])
        for key in ("Conditions", "IfSteps", "ElseSteps")
    )


def test_the_schema_check_reports_real_errors(definition, sagemaker_model):
    """Not everything is explained away: a mistyped argument, an unknown argument, a bad name."""
    broken = json.loads(json.dumps(definition))
    steps = steps_by_name(broken)
    steps["evaluate"]["Arguments"]["ProcessingResources"]["ClusterConfig"]["InstanceCount"] = "one"
    steps["train"]["Arguments"]["Bogus"] = {"Std:Join": {"On": "", "Values": []}}
    steps["deploy"]["Arguments"]["StoppingCondition"]["MaxRuntimeInSeconds"] = "1h"
    broken["Parameters"][0]["Name"] = "not a name"
    broken["Extra"] = 1
    errors = schema_errors(broken, sagemaker_model)
    text = "\n".join(errors.unexplained)
    assert "InstanceCount" in text
    assert "Bogus" in text
    assert "MaxRuntimeInSeconds" in text
    assert "Parameters/0" in text
    assert "Extra" in text


# ---- the Kedro DAG and the definition's references -----------------------------------------------
def kedro_nodes(export: Export) -> list[Any]:
    from kedro.framework.project import pipelines  # noqa: PLC0415

    return list(pipelines[export.settings.kedro_pipeline].nodes)


def definition_graph(definition: dict[str, Any]) -> dict[str, set[str]]:
    """step -> the steps it waits for: references, DependsOn, the condition it is a branch of."""
    graph: dict[str, set[str]] = {}

    def visit(steps, condition):
        for step in steps:
            graph[step["Name"]] = (
                referenced_steps(own_arguments(step))
                | set(step.get("DependsOn", []))
                | ({condition} if condition else set())
            )
            if step["Type"] == "Condition":
                visit(step["Arguments"]["IfSteps"], step["Name"])
                visit(step["Arguments"]["ElseSteps"], step["Name"])

    visit(definition["Steps"], None)
    return graph


def ancestors(graph: dict[str, set[str]], name: str) -> set[str]:
    seen: set[str] = set()
    pending = list(graph[name])
    while pending:
        current = pending.pop()
        if current not in seen:
            seen.add(current)
            pending.extend(graph[current])
    return seen


def test_every_kedro_node_is_in_exactly_one_step(export, definition):
    plan = export.plan
    placed = [n.name for step in plan.steps for n in step.nodes]
    placed += [plan.gate_node.name, plan.register_node.name]
    assert sorted(placed) == sorted(n.name for n in kedro_nodes(export))
    names = [step["Name"] for step in all_steps(definition["Steps"])]
    assert len(names) == len(set(names))
    assert set(names) == {
        *(step.name for step in plan.steps),
        plan.gate_step,
        plan.register_step,
        f"{plan.gate_step}-failed",
    }
    for step in plan.steps:
        kind = steps_by_name(definition)[step.name]["Type"]
        assert kind == {PROCESSING: "Processing", TRAINING: "Training"}[step.kind]
        assert steps_by_name(definition)[step.name]["Description"] == "kedro nodes: " + ", ".join(
            n.name for n in step.nodes
        )


def test_every_kedro_edge_between_steps_is_in_the_definition(export, definition):
    plan = export.plan
    steps = steps_by_name(definition)
    graph = definition_graph(definition)
    step_of = {n.name: step.name for step in plan.steps for n in step.nodes}
    step_of[plan.gate_node.name] = plan.gate_step
    step_of[plan.register_node.name] = plan.register_step
    maker = {dataset: n for n in kedro_nodes(export) for dataset in n.outputs}
    catalog = set(export.settings.catalog_datasets)
    checked = 0
    for consumer in kedro_nodes(export):
        for dataset in consumer.inputs:
            if is_parameter(dataset) or dataset not in maker:
                continue
            producer = maker[dataset]
            source, target = step_of[producer.name], step_of[consumer.name]
            if source == target:
                continue
            checked += 1
            # Whatever the edge, the definition runs the consumer's step after the producer's.
            assert source in ancestors(graph, target), f"{dataset}: {source} -> {target}"
            target_plan = next((s for s in plan.steps if s.name == target), None)
            if target_plan is None or dataset in catalog:
                continue
            # Data between job steps: the consumer's input is the producer's output, by name.
            source_plan = plan.step(source)
            expected = (
                "ModelArtifacts.S3ModelArtifacts"
                if source_plan.kind == TRAINING
                else f"ProcessingOutputConfig.Outputs['{source_plan.outputs[dataset]}']"
                ".S3Output.S3Uri"
            )
            uri = input_uris(steps[target])[target_plan.inputs[dataset]]
            assert uri == {"Get": f"Steps.{source}.{expected}"}, (dataset, source, target)
    # prepare -> baseline, train, evaluate; train -> evaluate; evaluate -> gate, register;
    # baseline -> register (statistics, constraints); gate -> register; register -> deploy: by
    # node input, 28 edges cross steps (evaluate.fit_calibration reads model and validation;
    # train.train_failure_mode_model reads train and validation, its model goes to three
    # evaluate nodes, evaluate.evaluate_failure_modes reads test, register reads the card).
    assert checked == 28


def test_every_reference_in_the_definition_is_a_planned_dependency(export, definition):
    plan = export.plan
    steps = steps_by_name(definition)
    dependencies = dataset_dependencies(plan)
    for step in plan.steps:
        defined = steps[step.name]
        assert referenced_steps(defined["Arguments"]) == dependencies[step.name], step.name
        assert set(defined.get("DependsOn", [])) == set(step.depends_on), step.name
    registration = export.settings.registration
    assert referenced_steps(steps[plan.register_step]["Arguments"]) == {
        plan.producers[registration.model_data],
        plan.producers[registration.model_metrics],
        *(plan.producers[dataset] for dataset in registration.drift_check_baselines.values()),
    }
    gate_source = {plan.producers[export.settings.quality_gate.metrics]}
    assert referenced_steps(own_arguments(steps[plan.gate_step])) == gate_source
    assert referenced_steps(steps[f"{plan.gate_step}-failed"]["Arguments"]) == gate_source
    planned = {s.name for s in plan.steps}
    for step in all_steps(definition["Steps"]):
        if step["Name"] not in planned:
            assert "DependsOn" not in step, step["Name"]


def test_every_step_reference_resolves(definition):
    steps = steps_by_name(definition)
    property_files = {
        (step["Name"], item["PropertyFileName"]): item
        for step in steps.values()
        for item in step.get("PropertyFiles", [])
    }
    in_json_get = set()
    for spec in json_gets(definition["Steps"]):
        reference = spec["PropertyFile"]["Get"]
        in_json_get.add(reference)
        match = re.fullmatch(r"Steps\.([A-Za-z0-9\-_]+)\.PropertyFiles\.(.+)", reference)
        assert match, reference
        assert (match.group(1), match.group(2)) in property_files, reference
    for (name, _), item in property_files.items():
        assert steps[name]["Type"] == "Processing"
        assert item["OutputName"] in output_names(steps[name])
        assert item["FilePath"] == f"{item['OutputName']}.json"
    count = 0
    for step in steps.values():
        for get in gets(own_arguments(step)):
            match = STEP_REFERENCE.match(get)
            if not match:
                continue
            count += 1
            name, path = match.groups()
            assert name in steps, get
            assert name != step["Name"], get
            target = steps[name]
            if get in in_json_get:
                continue
            if target["Type"] == "Processing":
                output = OUTPUT_URI.match(path)
                assert output, get
                assert output.group(1) in output_names(target), get
            else:
                assert target["Type"] == "Training", get
                assert path == "ModelArtifacts.S3ModelArtifacts", get
    # baseline 1, train 2, evaluate 4, the gate's conditions 4, register 7 (archive, metrics, the
    # model card, the baseline's two files as drift-check baseline and as data-quality metrics),
    # gate-failed's message 4.
    assert count == 22


# ---- parameters ----------------------------------------------------------------------------------
def test_parameters_are_well_named_declared_and_typed_from_kedro(export, definition):
    declared = definition["Parameters"]
    names = [item["Name"] for item in declared]
    assert len(names) == len(set(names))
    assert all(NAME_RULE.match(name) for name in names), names
    by_name = {item["Name"]: item for item in declared}

    used = {
        get.removeprefix("Parameters.")
        for get in gets(definition["Steps"])
        if get.startswith("Parameters.")
    }
    assert used <= set(names)
    assert used == set(names), f"declared but never used: {set(names) - used}"

    minimums = export.parameters["quality_gate"]["minimums"]
    gate = {f"Min{camel(metric)}" for metric in minimums}
    assert gate == {
        "MinAtChosenThresholdF1",
        "MinAtChosenThresholdRecall",
        "MinPrAuc",
        "MinRocAuc",
    }
    workshop = {"Eta", "MaxDepth", "DeployModel"}
    assert {*workshop, "InputDataUri", "TrainingInstanceType", "ProcessingInstanceType"} | gate <= (
        set(names)
    )
    assert by_name["Eta"]["Type"] == "Float"
    assert by_name["MaxDepth"]["Type"] == "Integer"
    assert by_name["DeployModel"]["Type"] == "Boolean"
    for metric, value in minimums.items():
        assert by_name[f"Min{camel(metric)}"] == {
            "Name": f"Min{camel(metric)}",
            "Type": "Float",
            "DefaultValue": value,
        }

    types = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}
    bridge = export.bridge
    for binding in export.settings.parameters:
        item = by_name[binding.name]
        if binding.kedro_parameter is not None:
            value: Any = export.parameters
            for key in binding.kedro_parameter:
                value = value[key]
            assert item["Type"] == types[type(value)], binding.name
            assert item["DefaultValue"] == value
            assert type(item["DefaultValue"]) is type(value)
        elif binding.dataset is not None:
            assert item == {
                "Name": binding.name,
                "Type": "String",
                "DefaultValue": input_uri(bridge, binding.dataset),
            }
        else:
            expected = (
                bridge.training_job.instance_type
                if binding.setting == "training_instance_type"
                else export.settings.processing.instance_type
            )
            assert item == {"Name": binding.name, "Type": "String", "DefaultValue": expected}


def test_setting_and_dataset_parameters_reach_their_arguments(export, definition):
    steps = steps_by_name(definition)
    for step in job_steps(definition):
        arguments = step["Arguments"]
        if step["Type"] == "Processing":
            instance = arguments["ProcessingResources"]["ClusterConfig"]["InstanceType"]
            assert instance == {"Get": "Parameters.ProcessingInstanceType"}
        else:
            instance = arguments["ResourceConfig"]["InstanceType"]
            assert instance == {"Get": "Parameters.TrainingInstanceType"}
    readers = [step for step in export.plan.steps if "ai4i2020_raw" in step.inputs]
    assert [step.name for step in readers] == ["prepare"]
    uri = input_uris(steps["prepare"])[readers[0].inputs["ai4i2020_raw"]]
    assert uri == {"Get": "Parameters.InputDataUri"}


def test_a_pipeline_parameter_reaches_the_node(compiled, definition):
    train = steps_by_name(definition)["train"]
    joins = {
        name: value["Std:Join"]
        for name, value in train["Arguments"]["Environment"].items()
        if name.startswith(PARAMETER_VARIABLE_PREFIX)
    }
    eta = [
        join
        for join in joins.values()
        if join["Values"][0] == '["xgboost", "booster_params", "eta"]='
    ]
    assert len(eta) == 1
    assert eta[0] == {
        "On": "",
        "Values": ['["xgboost", "booster_params", "eta"]=', {"Get": "Parameters.Eta"}],
    }
    # As the container sees it with Eta=0.3 and MaxDepth=4: the step's parameters change.
    values = {"Parameters.Eta": 0.3, "Parameters.MaxDepth": 4}
    environ = {
        name: join["On"].join(
            render(values[item["Get"]]) if isinstance(item, dict) else item
            for item in join["Values"]
        )
        for name, join in joins.items()
    }
    parameters = spec_of(compiled.code, "train")["parameters"]
    assert parameters["xgboost"]["booster_params"]["eta"] == 0.1
    apply_overrides(parameters, parameter_overrides(environ))
    assert parameters["xgboost"]["booster_params"]["eta"] == 0.3
    assert parameters["xgboost"]["booster_params"]["max_depth"] == 4


@pytest.mark.parametrize("rendered", ["False", "false"])
def test_a_boolean_pipeline_parameter_set_false_reaches_the_node_as_false(compiled, rendered):
    """DeployModel=false at `kedro sagemaker start`: the deploy job's node gets False, not the
    truthy string SageMaker puts in the variable ("False" or "false", however it renders)."""
    deploy = steps_by_name(compiled.definition)["deploy"]
    environment = deploy["Arguments"]["Environment"]
    (variable,) = [
        name
        for name, value in environment.items()
        if name.startswith(PARAMETER_VARIABLE_PREFIX)
        and {"Get": "Parameters.DeployModel"} in value["Std:Join"]["Values"]
    ]
    join = environment[variable]["Std:Join"]
    environ = {
        variable: join["On"].join(
            rendered if item == {"Get": "Parameters.DeployModel"} else item
            for item in join["Values"]
        )
    }
    assert environ[variable] == f'["deploy_model"]={rendered}'

    # What the job entry does with the spec it reads from its kedro-job input.
    parameters = spec_of(compiled.code, "deploy")["parameters"]
    assert parameters["deploy_model"] is True  # the Kedro default
    apply_overrides(parameters, parameter_overrides(environ))
    assert parameters["deploy_model"] is False


def test_parameter_variables_go_to_exactly_the_steps_that_read_the_parameter(export, definition):
    steps = steps_by_name(definition)
    bound = [b for b in export.settings.parameters if b.kedro_parameter is not None]
    for step in export.plan.steps:
        environment = steps[step.name]["Arguments"].get("Environment", {})
        variables = sorted(
            (value["Std:Join"]["Values"][0], value["Std:Join"]["Values"][1]["Get"])
            for name, value in environment.items()
            if name.startswith(PARAMETER_VARIABLE_PREFIX)
        )
        expected = sorted(
            (json.dumps(list(b.kedro_parameter)) + "=", f"Parameters.{b.name}")
            for b in bound
            if b.kedro_parameter[0] in step.parameter_keys or "*" in step.parameter_keys
        )
        assert variables == expected, step.name
    assert any("DeployModel" in json.dumps(steps[s.name]["Arguments"]) for s in export.plan.steps)


# ---- the quality gate ----------------------------------------------------------------------------
def test_the_quality_gate_registers_or_fails_naming_each_metric(export, definition):
    plan, settings = export.plan, export.settings
    conditions = [step for step in definition["Steps"] if step["Type"] == "Condition"]
    assert [step["Name"] for step in conditions] == [plan.gate_step]
    arguments = conditions[0]["Arguments"]
    metrics_step = plan.producers[settings.quality_gate.metrics]
    property_file = {"Get": f"Steps.{metrics_step}.PropertyFiles.metrics"}
    minimums = export.parameters["quality_gate"]["minimums"]

    assert arguments["Conditions"] == [
        {
            "Type": "GreaterThanOrEqualTo",
            "LeftValue": {"Std:JsonGet": {"PropertyFile": property_file, "Path": metric}},
            "RightValue": {"Get": f"Parameters.Min{camel(metric)}"},
        }
        for metric in sorted(minimums)
    ]

    registers = [step for step in arguments["IfSteps"] if step["Type"] == "RegisterModel"]
    assert [step["Name"] for step in registers] == [plan.register_step]
    register = registers[0]["Arguments"]
    assert register["ModelApprovalStatus"] == {"Get": "Parameters.ApprovalStatus"}
    assert register["ModelPackageGroupName"] == settings.registration.model_package_group
    metrics_uri = f"Steps.{metrics_step}.ProcessingOutputConfig.Outputs['metrics'].S3Output.S3Uri"
    assert register["ModelMetrics"]["ModelQuality"]["Statistics"] == {
        "ContentType": "application/json",
        "S3Uri": {"Std:Join": {"On": "/", "Values": [{"Get": metrics_uri}, "metrics.json"]}},
    }
    archive_step = plan.producers[settings.registration.model_data]
    container = register["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"]["Std:Join"]["Values"][0] == {
        "Get": f"Steps.{archive_step}.ProcessingOutputConfig.Outputs['model_archive']"
        ".S3Output.S3Uri"
    }
    # Deployment waits for registration, inside the same branch.
    deploy = [step for step in arguments["IfSteps"] if step.get("DependsOn")]
    assert [(s["Name"], s["DependsOn"]) for s in deploy] == [("deploy", [plan.register_step])]

    assert [step["Type"] for step in arguments["ElseSteps"]] == ["Fail"]
    message = arguments["ElseSteps"][0]["Arguments"]["ErrorMessage"]["Std:Join"]["Values"]
    text = " ".join(item for item in message if isinstance(item, str))
    for metric in minimums:
        assert metric in text
        assert {"Std:JsonGet": {"PropertyFile": property_file, "Path": metric}} in message
        assert {"Get": f"Parameters.Min{camel(metric)}"} in message


def test_an_undeclared_approval_status_parameter_is_a_configuration_error():
    with pytest.raises(SageMakerConfigError, match="approval_status_parameter 'Approval'"):
        parse_pipeline_settings(
            {
                "pipeline": {
                    "name": "export-tests",
                    "catalog_datasets": ["registry"],
                    "register": {
                        "node": "register",
                        "model_data": "archive",
                        "model_package_group": "group",
                        "approval_status_parameter": "Approval",
                    },
                }
            }
        )


# ---- the default export: its steps, model archive, network, job environment ----------------------
def execution_paths(steps: list[dict[str, Any]]) -> list[list[str]]:
    """Every sequence of steps an execution may run (a condition runs one of its branches)."""
    paths: list[list[str]] = [[]]
    for step in steps:
        if step["Type"] == "Condition":
            branches = [
                execution_paths(step["Arguments"]["IfSteps"]),
                execution_paths(step["Arguments"]["ElseSteps"]),
            ]
            paths = [
                [*path, step["Name"], *taken]
                for path in paths
                for branch in branches
                for taken in branch
            ]
        else:
            paths = [[*path, step["Name"]] for path in paths]
    return paths


def test_the_default_export_is_five_jobs_a_gate_a_registration_and_a_fail_step(export, definition):
    plan = export.plan
    assert export.settings.group_by == "namespace"
    assert [(step.name, step.kind) for step in plan.steps] == [
        ("prepare", PROCESSING),
        ("baseline", PROCESSING),
        ("train", TRAINING),
        ("evaluate", PROCESSING),
        ("deploy", PROCESSING),
    ]
    assert (plan.gate_step, plan.register_step) == ("gate", "register")
    kinds = {step["Name"]: step["Type"] for step in all_steps(definition["Steps"])}
    assert kinds == {
        "prepare": "Processing",
        "baseline": "Processing",
        "train": "Training",
        "evaluate": "Processing",
        "gate": "Condition",
        "register": "RegisterModel",
        "deploy": "Processing",
        "gate-failed": "Fail",
    }
    assert [step["Name"] for step in definition["Steps"]] == [
        "prepare",
        "baseline",
        "train",
        "evaluate",
        "gate",
    ]
    gate = steps_by_name(definition)["gate"]["Arguments"]
    assert [step["Name"] for step in gate["IfSteps"]] == ["register", "deploy"]
    assert [step["Name"] for step in gate["ElseSteps"]] == ["gate-failed"]
    paths = execution_paths(definition["Steps"])
    assert sorted(paths) == [
        ["prepare", "baseline", "train", "evaluate", "gate", "gate-failed"],
        ["prepare", "baseline", "train", "evaluate", "gate", "register", "deploy"],
    ]
    assert max(len(path) for path in paths) <= 7
    # The baseline reads only the training split: it runs beside train, not after it.
    graph = definition_graph(definition)
    assert graph["baseline"] == {"prepare"}
    assert "baseline" not in ancestors(graph, "train")
    assert "baseline" in ancestors(graph, "register")
    # Namespaces are the steps: every node of a job step has the step's namespace.
    for step in plan.steps:
        assert {n.namespace.split(".")[0] for n in step.nodes} == {step.name}


def test_registration_points_at_the_model_tar_gz_the_evaluate_job_writes(export, compiled):
    register = steps_by_name(compiled.definition)["register"]["Arguments"]
    url = register["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    parameters = {item["Name"]: item["DefaultValue"] for item in compiled.definition["Parameters"]}
    rendered = concrete(url, parameters)
    assert rendered == "s3://bucket/placeholder/model.tar.gz"
    assert rendered.endswith("/model.tar.gz")  # SageMaker's rule for a model's data
    # The job writes that very file name into the output the URL is joined to.
    model_data = export.settings.registration.model_data
    producer = export.plan.producers[model_data]
    spec = spec_of(compiled.code, producer)
    output = spec["outputs"][model_data]
    assert spec["files"] == {model_data: "model.tar.gz"}
    assert url["Std:Join"] == {
        "On": "/",
        "Values": [
            {"Get": f"Steps.{producer}.ProcessingOutputConfig.Outputs['{output}'].S3Output.S3Uri"},
            "model.tar.gz",
        ],
    }
    # No other job names a fixed file.
    others = [step.name for step in export.plan.steps if step.name != producer]
    assert all(spec_of(compiled.code, name)["files"] == {} for name in others)


def test_every_job_step_runs_without_a_package_index(definition):
    steps = job_steps(definition)
    assert len(steps) == 5
    for step in steps:
        environment = step["Arguments"]["Environment"]
        assert environment["PIP_NO_INDEX"] == "1", step["Name"]
        assert environment["KEDRO_DISABLE_TELEMETRY"] == "true", step["Name"]
        assert environment["MLFLOW_DISABLE_TELEMETRY"] == "true", step["Name"]
        assert JOB_ENVIRONMENT.items() <= environment.items(), step["Name"]


def test_without_network_settings_no_step_has_a_network_configuration(export, definition):
    assert export.bridge.network == NetworkSettings()
    for step in job_steps(definition):
        arguments = step["Arguments"]
        assert "NetworkConfig" not in arguments, step["Name"]
        assert "VpcConfig" not in arguments, step["Name"]
        assert "EnableNetworkIsolation" not in arguments, step["Name"]


NETWORK = NetworkSettings(
    enable_network_isolation=True,
    subnets=("subnet-0a1b2c3d4e5f60718", "subnet-0b1b2c3d4e5f60718"),
    security_group_ids=("sg-0a1b2c3d4e5f60718",),
)


@pytest.fixture(scope="module")
def network_definition(compiled) -> dict[str, Any]:
    """The project's definition with the network block set (same code, other settings)."""
    export = compiled.export
    bridge = dataclasses.replace(export.bridge, network=NETWORK)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        text = compile_definition(
            export.plan, bridge, export.settings, export.parameters, compiled.code
        )
    return json.loads(text)


def test_network_settings_reach_every_job_step_and_pass_the_api_check(
    network_definition, definition, sagemaker_model
):
    vpc = {"Subnets": list(NETWORK.subnets), "SecurityGroupIds": list(NETWORK.security_group_ids)}
    parameters = {item["Name"]: item["DefaultValue"] for item in network_definition["Parameters"]}
    checked = Counter()
    for step in job_steps(network_definition):
        arguments = step["Arguments"]
        if step["Type"] == "Processing":
            # deploy saves the endpoint through SageMaker's API: it keeps its network.
            isolated = step["Name"] != "deploy"
            assert arguments["NetworkConfig"] == {
                "EnableNetworkIsolation": isolated,
                "VpcConfig": vpc,
            }, step["Name"]
        else:
            assert arguments["EnableNetworkIsolation"] is True
            assert arguments["VpcConfig"] == vpc
            assert "NetworkConfig" not in arguments
        operation, names = OPERATIONS[step["Type"]]
        request = {**concrete(arguments, parameters), **names}
        shape = sagemaker_model.operation_model(operation).input_shape
        try:
            validate_parameters(request, shape)
        except ParamValidationError as error:
            pytest.fail(f"step {step['Name']} ({operation}): {error}")
        assert list(constraint_errors(request, shape, operation)) == [], step["Name"]
        checked[step["Type"]] += 1
    assert checked == Counter({"Processing": 4, "Training": 1})
    # Nothing else changes.
    without = json.loads(json.dumps(network_definition))
    for step in job_steps(without):
        for key in ("NetworkConfig", "VpcConfig", "EnableNetworkIsolation"):
            step["Arguments"].pop(key, None)
    assert without == definition


# ---- MLflow: SageMaker's managed tracking server -------------------------------------------
TRACKING_SERVER = "arn:aws:sagemaker:eu-west-1:123456789012:mlflow-tracking-server/pm-tests"
TRACKING_VARIABLES = {
    "MLFLOW_TRACKING_URI",
    "MLFLOW_EXPERIMENT_NAME",
    "MLFLOW_HTTP_REQUEST_TIMEOUT",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
    "KEDRO_MLFLOW_EXECUTION",
}


@pytest.fixture(scope="module")
def tracked(compiled) -> Compiled:
    """The project's export with mlflow.tracking_server_arn set (same pipeline and settings)."""
    export = compiled.export
    bridge = dataclasses.replace(
        export.bridge, mlflow=MlflowSettings(TRACKING_SERVER, "predictive-maintenance")
    )
    tracking = export_tracking(bridge, project_tracking(export.context))
    tracked_export = dataclasses.replace(export, bridge=bridge, tracking=tracking)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        code = tracked_export.code()
        text = tracked_export.compile(code)
    return Compiled(tracked_export, code, text, json.loads(text))


def test_a_tracking_server_gives_the_pipeline_its_mlflow_config_and_every_job_its_run(
    tracked, compiled, sagemaker_model
):
    definition = tracked.definition
    assert definition["MlflowConfig"] == {
        "MlflowResourceArn": TRACKING_SERVER,
        "MlflowExperimentName": "predictive-maintenance",
    }
    assert compiled.definition["MlflowConfig"] is None  # the default: no server, no tracking
    parameters = {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]}
    spec = tracked.export.tracking.spec
    assert spec["log"]["models"] == ["model"]  # what mlflow.yml says to log
    for step in job_steps(definition):
        environment = step["Arguments"]["Environment"]
        assert {key: environment[key] for key in TRACKING_VARIABLES} == {
            "MLFLOW_TRACKING_URI": TRACKING_SERVER,
            "MLFLOW_EXPERIMENT_NAME": "predictive-maintenance",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            # Every job of one execution finds (or makes) the execution's parent run by it.
            "KEDRO_MLFLOW_EXECUTION": {"Get": "Execution.PipelineExecutionArn"},
        }, step["Name"]
        assert spec_of(tracked.code, step["Name"])["tracking"] == spec
        assert "tracking" not in spec_of(compiled.code, step["Name"])
        assert not TRACKING_VARIABLES & set(
            next(s for s in job_steps(compiled.definition) if s["Name"] == step["Name"])[
                "Arguments"
            ]["Environment"]
        )
        operation, names = OPERATIONS[step["Type"]]
        validate_parameters(
            {**concrete(step["Arguments"], parameters), **names},
            sagemaker_model.operation_model(operation).input_shape,
        )
    # The registered version records the execution whose parent run made it (found by its tag).
    (register,) = [s for s in all_steps(definition["Steps"]) if s["Type"] == "RegisterModel"]
    assert register["Arguments"]["CustomerMetadataProperties"] == {
        "mlflow_tracking_server_arn": TRACKING_SERVER,
        "mlflow_experiment": "predictive-maintenance",
        "mlflow_pipeline_execution_arn": {"Get": "Execution.PipelineExecutionArn"},
    }
    operation, names = OPERATIONS["RegisterModel"]
    validate_parameters(
        {**concrete(register["Arguments"], parameters), **names},
        sagemaker_model.operation_model(operation).input_shape,
    )
    # Nothing else changes but the code (the specs carry the tracking block).
    without = json.loads(tracked.text.replace(tracked.code.sha256, compiled.code.sha256))
    without["MlflowConfig"] = None
    for step in job_steps(without):
        for key in TRACKING_VARIABLES:
            step["Arguments"]["Environment"].pop(key)
    for step in all_steps(without["Steps"]):
        if step["Type"] == "RegisterModel":
            step["Arguments"].pop("CustomerMetadataProperties")
    assert without == compiled.definition


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        ("arn:aws:sagemaker:eu-west-1:123456789012:model/pm", "is not a SageMaker MLflow ARN"),
        ("https://mlflow.example.com", "is not a SageMaker MLflow ARN"),
        (42, "mlflow.tracking_server_arn must be str"),
    ],
)
def test_a_tracking_server_arn_is_checked(arn, message):
    config = {"bucket": "b", "execution_role_arn": "arn:aws:iam::123456789012:role/r"}

    with pytest.raises(SageMakerConfigError, match=message):
        parse_settings({**config, "mlflow": {"tracking_server_arn": arn}}, PROJECT_ROOT)
    app = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-app/app-0123abcd"
    parsed = parse_settings({**config, "mlflow": {"tracking_server_arn": app}}, PROJECT_ROOT)
    assert parsed.mlflow == MlflowSettings(app, None)


# ---- a test pipeline exported by node: many steps, training feeding training ---------------------
@dataclass
class NodeExport:
    plan: Any
    code: CodePackage
    definition: dict[str, Any]


NODE_BRIDGE = BridgeSettings(
    region="eu-west-1",
    bucket="export-tests",
    prefix="by-node",
    execution_role_arn="arn:aws:iam::123456789012:role/ExportTests",
    remote_tags=frozenset({"remote"}),
)
NODE_PARAMETERS = {
    "prep": {"rows": 3},
    "model": {"booster": {"eta": 0.1}},
    "flags": {"strict": True},
}


@pytest.fixture(scope="module")
def node_export() -> NodeExport:
    """raw -> prepare -> featurise -> train -> retrain -> evaluate -> summarise, one step per node
    (train and retrain are training steps); Strict binds the Boolean flags.strict."""
    pipeline = Pipeline(
        [
            node(with_options, ["raw", "params:prep"], "clean_rows", name="prepare"),
            node(passthrough, "clean_rows", "features", name="featurise"),
            node(
                with_options,
                ["features", "params:model.booster"],
                "model",
                name="train",
                tags=["remote"],
            ),
            node(passthrough, "model", "model2", name="retrain", tags=["remote"]),
            node(combine, ["model2", "features"], "metrics", name="evaluate"),
            node(with_options, ["metrics", "params:flags.strict"], "summary", name="summarise"),
        ]
    )
    settings = parse_pipeline_settings(
        {
            "pipeline": {
                "name": "by-node",
                "group_by": "node",
                "parameters": {
                    "Strict": {"parameter": "flags.strict"},
                    "Eta": {"parameter": "model.booster.eta"},
                },
            }
        }
    )
    plan = build_plan(pipeline, NODE_BRIDGE, settings)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        code = build_code_package(plan, NODE_BRIDGE, settings, NODE_PARAMETERS, {})
        text = compile_definition(plan, NODE_BRIDGE, settings, NODE_PARAMETERS, code)
    return NodeExport(plan, code, json.loads(text))


def test_a_pipeline_exported_by_node_has_a_valid_job_step_per_node(node_export, sagemaker_model):
    definition, code = node_export.definition, node_export.code
    kinds = {step["Name"]: step["Type"] for step in all_steps(definition["Steps"])}
    assert kinds == {
        "prepare": "Processing",
        "featurise": "Processing",
        "train": "Training",
        "retrain": "Training",
        "evaluate": "Processing",
        "summarise": "Processing",
    }
    steps = steps_by_name(definition)
    artifacts = {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert input_uris(steps["retrain"])["model"] == artifacts  # training into training
    assert input_uris(steps["evaluate"])["model2"] == {
        "Get": "Steps.retrain.ModelArtifacts.S3ModelArtifacts"
    }
    assert input_uris(steps["train"])["features"] == {
        "Get": "Steps.featurise.ProcessingOutputConfig.Outputs['features'].S3Output.S3Uri"
    }
    dependencies = dataset_dependencies(node_export.plan)
    parameters = {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]}
    for step in job_steps(definition):
        name = step["Name"]
        assert referenced_steps(step["Arguments"]) == dependencies[name], name
        assert input_uris(step)[JOB_INPUT] == f"{code.tree_uri}{JOBS_DIR}/{name}/"
        assert spec_of(code, name)["job"] == name
        assert step["Arguments"]["Environment"]["PIP_NO_INDEX"] == "1"
        operation, names = OPERATIONS[step["Type"]]
        request = {**concrete(step["Arguments"], parameters), **names}
        shape = sagemaker_model.operation_model(operation).input_shape
        validate_parameters(request, shape)
        assert list(constraint_errors(request, shape, operation)) == [], name
    assert not any(path.startswith("wheels/") for path in code.files)  # no requirements


@pytest.mark.parametrize("rendered", ["False", "false"])
def test_a_boolean_parameter_set_false_reaches_the_test_pipelines_node_as_false(
    node_export, rendered, tmp_path
):
    """End to end on the job side: the step's variable as SageMaker renders Strict=false, the
    spec from the code package, the job's own run (overrides, then the node)."""
    summarise = steps_by_name(node_export.definition)["summarise"]
    environment = summarise["Arguments"]["Environment"]
    joins = {
        name: value["Std:Join"]
        for name, value in environment.items()
        if name.startswith(PARAMETER_VARIABLE_PREFIX)
    }
    assert list(joins.values()) == [
        {"On": "", "Values": ['["flags", "strict"]=', {"Get": "Parameters.Strict"}]}
    ]
    environ = {
        name: join["On"].join(
            rendered if isinstance(item, dict) else item for item in join["Values"]
        )
        for name, join in joins.items()
    }
    spec = spec_of(node_export.code, "summarise")
    assert spec["parameters"] == {"flags": {"strict": True}}
    write_dataset({"f1": 0.9}, tmp_path / "metrics", "metrics", "metrics")

    outputs = run_job(spec, {"metrics": tmp_path / "metrics"}, environ)

    assert outputs["summary"] == {"value": {"f1": 0.9}, "options": False}
    assert outputs["summary"]["options"] is False
    # Without the variable, the Kedro default.
    assert run_job(spec, {"metrics": tmp_path / "metrics"}, {})["summary"]["options"] is True


def test_a_training_step_takes_the_job_settings_of_its_remote_node():
    """node_overrides of the remote node apply, though another node of its group comes first."""
    bridge = dataclasses.replace(
        NODE_BRIDGE,
        node_overrides={
            "fit.train": {"instance_type": "ml.c5.2xlarge", "max_runtime_seconds": 900}
        },
    )
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "features", name="featurise", namespace="fit"),
            node(passthrough, "features", "model", name="train", namespace="fit", tags=["remote"]),
        ]
    )
    settings = parse_pipeline_settings({"pipeline": {"name": "overrides"}})
    plan = build_plan(pipeline, bridge, settings)
    assert [(step.name, step.kind) for step in plan.steps] == [("fit", TRAINING)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        code = build_code_package(plan, bridge, settings, {}, {})
        definition = json.loads(compile_definition(plan, bridge, settings, {}, code))
    (step,) = definition["Steps"]
    assert step["Arguments"]["ResourceConfig"]["InstanceType"] == "ml.c5.2xlarge"
    assert step["Arguments"]["StoppingCondition"] == {"MaxRuntimeInSeconds": 900}


def test_the_register_step_records_the_baseline_steps_files_as_drift_check_baselines(
    definition, export
):
    """As SageMaker's QualityCheckStep registration: the baseline node's own step writes
    statistics.json and constraints.json; the package gets them as its drift-check baseline and
    as its data-quality metrics."""
    plan, settings = export.plan, export.settings
    baselines = settings.registration.drift_check_baselines
    register = next(s for s in all_steps(definition["Steps"]) if s["Type"] == "RegisterModel")
    arguments = register["Arguments"]

    expected = {}
    for part, dataset in baselines.items():
        step = plan.producers[dataset]
        name = plan.step(step).outputs[dataset]
        uri = f"Steps.{step}.ProcessingOutputConfig.Outputs['{name}'].S3Output.S3Uri"
        expected[part.capitalize()] = {
            "ContentType": "application/json",
            "S3Uri": {"Std:Join": {"On": "/", "Values": [{"Get": uri}, f"{name}.json"]}},
        }
    assert plan.producers["baseline_statistics"] == "baseline"  # its own step, by namespace
    assert arguments["DriftCheckBaselines"] == {"ModelDataQuality": expected}
    assert arguments["ModelMetrics"]["ModelDataQuality"] == expected


# ---- images the steps' catalog entries need, pinned at compile time ------------------------------
@dataclass
class SageMakerEnvExport:
    export: Export
    code: CodePackage


@pytest.fixture(scope="module")
def sagemaker_env_export(compiled) -> SageMakerEnvExport:
    """The project's export with ``--env sagemaker``: the deploy step ships the SageMaker
    registry and endpoint entries. Only its code package (the job specs), not a definition.
    After ``compiled``, whose SDK import it shares."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        export = load_export("sagemaker", None)
        return SageMakerEnvExport(export, export.code())


#: The stock images of the project's region (eu-west-1), read from sagemaker.core.image_uris by
#: hand: a job on them has no SageMaker SDK to look them up itself.
XGBOOST_IMAGE = "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-xgboost:3.0-5"
ANALYZER_IMAGE = "468650794304.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-model-monitor-analyzer"


class RecordingSageMaker:
    """A SageMaker client for one CreateModel: the model does not exist yet; the request is kept."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def describe_model(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError  # noqa: PLC0415

        error = {"Error": {"Code": "ValidationException", "Message": "Could not find model"}}
        raise ClientError(error, "DescribeModel")

    def create_model(self, **request: Any) -> None:
        self.requests.append(request)


def endpoint_requests(dataset: Any) -> tuple[str, str]:
    """The model image and the analyzer image the endpoint dataset would send to SageMaker
    (CreateModel, CreateDataQualityJobDefinition)."""
    sagemaker = RecordingSageMaker()
    dataset._ensure_model(sagemaker, "predictive-maintenance-v1", "s3://b/p/model.tar.gz", 1)
    baseline = {
        part: {"uri": f"s3://b/p/{part}.json", "sha256": "0" * 64}
        for part in ("statistics", "constraints")
    }
    with pytest.MonkeyPatch.context() as patch:
        # Checking the baseline's bytes in S3 is test_monitoring_aws.py's.
        patch.setattr(dataset, "_verify_baseline", lambda data, part: None)
        definition = dataset._job_definition("predictive-maintenance", {"model_baseline": baseline})
    return (
        sagemaker.requests[0]["PrimaryContainer"]["Image"],
        definition["DataQualityAppSpecification"]["ImageUri"],
    )


def test_the_deploy_step_ships_the_image_uris_its_endpoint_and_registry_need(
    sagemaker_env_export,
):
    export, code = sagemaker_env_export.export, sagemaker_env_export.code
    catalog = spec_of(code, "deploy")["catalog"]
    endpoint, registry = catalog["endpoint"], catalog["model_registry"]
    assert endpoint["type"].endswith("SageMakerEndpointDataset")
    assert endpoint["image_uri"] == XGBOOST_IMAGE
    assert endpoint["monitoring"]["image_uri"] == ANALYZER_IMAGE
    assert registry["image_uri"] == XGBOOST_IMAGE
    # Nothing else changes: the entries are the catalog's, with the images set.
    configured = export.catalog_config
    assert configured["endpoint"].get("image_uri") is None
    assert configured["endpoint"]["monitoring"]["image_uri"] is None
    assert {key: value for key, value in endpoint.items() if key != "image_uri"} == {
        **configured["endpoint"],
        "monitoring": {**configured["endpoint"]["monitoring"], "image_uri": ANALYZER_IMAGE},
    }
    assert {key: value for key, value in registry.items() if key != "image_uri"} == {
        key: value for key, value in configured["model_registry"].items() if key != "image_uri"
    }
    # The batch export's model-choice step ships the same registry entry.
    batch = parse_batch_pipeline_settings(export.context.config_loader["sagemaker"])
    assert batch is not None
    assert batch.catalog_images == export.settings.catalog_images


def test_the_shipped_endpoint_entry_needs_no_image_lookup_in_the_job(
    sagemaker_env_export, monkeypatch
):
    """The deploy job runs on the stock image, without the SageMaker SDK: the endpoint dataset
    made from the shipped entry asks for the pinned images; made from the catalog's entry, it
    would look both up (and fail there)."""
    from kedro.io import AbstractDataset  # noqa: PLC0415

    from predictive_maintenance.sagemaker import aws  # noqa: PLC0415

    def no_sdk(framework: str, version: str, region: str | None) -> str:
        raise ModuleNotFoundError(f"looked up the {framework} image: no SageMaker SDK here")

    monkeypatch.setattr(aws, "_stock_image_uri", no_sdk)
    shipped = spec_of(sagemaker_env_export.code, "deploy")["catalog"]["endpoint"]
    dataset = AbstractDataset.from_config("endpoint", shipped)
    assert endpoint_requests(dataset) == (XGBOOST_IMAGE, ANALYZER_IMAGE)

    configured = sagemaker_env_export.export.catalog_config["endpoint"]
    unpinned = AbstractDataset.from_config("endpoint", json.loads(json.dumps(configured)))
    with pytest.raises(ModuleNotFoundError, match="looked up the xgboost image"):
        endpoint_requests(unpinned)


def test_compiling_with_images_to_pin_leaves_the_process_as_it_was(sagemaker_env_export):
    """`kedro sagemaker compile|upsert --env sagemaker` build the code package (pinning images,
    in the offline SDK environment) in a thread while the SDK is imported (in that environment
    too). Afterwards the environment and the SDK's functions are as before, so that upsert
    finds the operator's credentials (the instance metadata service included).

    The threads are made to overlap the bad way: the package's thread goes in first and leaves
    first while the import is inside (each waits at most a second for the other). Without the
    lock in offline_sdk, the import then restored the package thread's values on its way out,
    leaving AWS_EC2_METADATA_DISABLED=true and the SDK's config check replaced."""
    from sagemaker.core.config.config_manager import SageMakerConfig  # noqa: PLC0415

    from predictive_maintenance.sagemaker import cli  # noqa: PLC0415
    from predictive_maintenance.sagemaker.workflow import compiler  # noqa: PLC0415

    export = sagemaker_env_export.export
    pinning, importing, built = threading.Event(), threading.Event(), threading.Event()
    import_sdk, import_module = cli.import_sdk, compiler.importlib.import_module
    resolve_image_uri, build = compiler.resolve_image_uri, export.code

    def code() -> CodePackage:  # the package's thread
        try:
            return build()
        finally:
            built.set()

    def first_lookup_waits(*args: Any) -> str:  # inside the package thread's offline_sdk
        if not pinning.is_set():
            pinning.set()
            importing.wait(1)
        return resolve_image_uri(*args)

    def import_after_pinning(region: str) -> None:  # the main thread
        pinning.wait(1)
        import_sdk(region)

    def import_until_built(name: str) -> Any:  # inside the main thread's offline_sdk
        importing.set()
        built.wait(1)
        return import_module(name)

    keys = (
        "AWS_EC2_METADATA_DISABLED",
        "SAGEMAKER_VALIDATE_ROLE",
        "SAGEMAKER_USER_CONFIG_OVERRIDE",
        "AWS_DEFAULT_REGION",
    )
    before = {key: os.environ.get(key) for key in keys}
    validate = SageMakerConfig.__dict__["validate_sagemaker_config"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT_ROOT)
        patch.setattr(export, "code", code)
        patch.setattr(compiler, "resolve_image_uri", first_lookup_waits)
        patch.setattr(cli, "import_sdk", import_after_pinning)
        patch.setattr(compiler, "importlib", SimpleNamespace(import_module=import_until_built))
        package, text = export.code_and_definition()
    assert pinning.is_set()
    assert importing.is_set()
    assert built.is_set()
    assert {key: os.environ.get(key) for key in keys} == before
    assert SageMakerConfig.__dict__["validate_sagemaker_config"] is validate
    assert package.sha256 == sagemaker_env_export.code.sha256
    assert [step["Name"] for step in json.loads(text)["Steps"]][:2] == ["prepare", "baseline"]


def test_images_are_pinned_only_where_an_entry_of_the_type_leaves_them_unset(monkeypatch):
    from predictive_maintenance.sagemaker.workflow import compiler  # noqa: PLC0415

    looked_up = []

    def lookup(image_uri: str | None, framework: str, version: str, region: str | None) -> str:
        assert image_uri is None
        looked_up.append((framework, version, region))
        return f"{framework}:{version}@{region}"

    monkeypatch.setattr(compiler, "resolve_image_uri", lookup)
    settings = parse_pipeline_settings(
        {
            "pipeline": {
                "name": "images",
                "catalog_images": {
                    "my.Endpoint": {
                        "image_uri": {"framework": "xgboost", "version_key": "framework_version"},
                        "monitoring.image_uri": {"framework": "model-monitor"},
                        "other": {"framework": "xgboost", "version": "1.7-1"},
                    }
                },
            }
        }
    )
    entry = {
        "type": "my.Endpoint",
        "framework_version": "3.0-5",
        "region": "ap-south-1",
        "other": "mine:1",
        "monitoring": {"image_uri": None},
    }
    assert compiler.pin_images("endpoint", entry, settings, "eu-west-1") == {
        **entry,
        "image_uri": "xgboost:3.0-5@ap-south-1",  # the entry's version and region
        "monitoring": {"image_uri": "model-monitor:@ap-south-1"},
        "other": "mine:1",  # set in the entry: kept
    }
    assert entry["monitoring"] == {"image_uri": None}  # the catalog's entry is not changed
    # No monitoring block: none is made (its absence switches monitoring off); the pipeline's
    # region; another type: untouched.
    looked_up.clear()
    assert compiler.pin_images("endpoint", {"type": "my.Endpoint"}, settings, "eu-west-1") == {
        "type": "my.Endpoint",
        "image_uri": "xgboost:@eu-west-1",
        "other": "xgboost:1.7-1@eu-west-1",
    }
    assert compiler.pin_images("other", {"type": "my.Other", "x": 1}, settings, "eu-west-1") == {
        "type": "my.Other",
        "x": 1,
    }
    assert len(looked_up) == 2

    # An image the SDK does not know: the entry and the setting are named.
    def unknown(*_: Any) -> str:
        raise ValueError("Unsupported xgboost version: None.")  # what the SDK says

    monkeypatch.setattr(compiler, "resolve_image_uri", unknown)
    with pytest.raises(compiler.CompileError, match="catalog entry endpoint: no xgboost image"):
        compiler.pin_images("endpoint", {"type": "my.Endpoint"}, settings, "eu-west-1")
    with pytest.raises(SageMakerConfigError, match=r"catalog_images\.my\.Endpoint\.image_uri"):
        parse_pipeline_settings(
            {
                "pipeline": {
                    "name": "images",
                    "catalog_images": {"my.Endpoint": {"image_uri": {"framwork": "xgboost"}}},
                }
            }
        )
