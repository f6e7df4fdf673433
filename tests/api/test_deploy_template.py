"""The AWS deployment of the HTTP API (deploy/api/): the SAM template lints clean and grants least
privilege, and the Lambda package deploy/api/build.py writes runs on its own, without the
project's heavy dependencies."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from cfnlint.decode import decode

from predictive_maintenance.api.handler import ROUTES, STATIC_FILES
from tests.api.events import v2_event

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "api"
TEMPLATE = DEPLOY / "template.yaml"
BUILD_SCRIPT = DEPLOY / "build.py"
ENDPOINT_ARN = (
    "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/${EndpointName}"
)
#: What the handler serves, as API Gateway routes (the static files behind one path parameter).
EXPECTED_ROUTES = {
    ("POST", "/predict"),
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/"),
    ("GET", "/static/{file}"),
} | {("OPTIONS", path) for path in ("/predict", "/health", "/openapi.json", "/", "/static/{file}")}
#: Installed here, absent from Lambda: the package must not need them.
BLOCKED = {"numpy", "pandas", "xgboost", "kedro", "sklearn"}
#: The files of the Lambda package, relative to the build directory.
PACKAGE_FILES = {
    "predictive_maintenance/__init__.py",
    "predictive_maintenance/schema.py",
    "predictive_maintenance/serving/__init__.py",
    "predictive_maintenance/serving/contract.py",
    "predictive_maintenance/serving/requests.py",
    "predictive_maintenance/serving/openapi.py",
    "predictive_maintenance/api/__init__.py",
    "predictive_maintenance/api/handler.py",
    "predictive_maintenance/api/openapi.py",
    *(f"predictive_maintenance/api/static/{name}" for name, _ in STATIC_FILES.values()),
}


# ---- the template ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The template as cfn-lint reads it (short forms like !Sub become {"Fn::Sub": ...})."""
    parsed, problems = decode(str(TEMPLATE))
    assert not problems, problems
    return parsed


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template["Resources"].items()
        if resource["Type"] == kind
    }


def the_one(template: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(template, kind)
    assert len(found) == 1, f"expected one {kind}, found {sorted(found)}"
    name, resource = next(iter(found.items()))
    return name, resource.get("Properties", {})


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def test_the_template_passes_cfn_lint_without_errors_warnings_or_notes():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            "--format",
            "json",
            "--include-checks",
            "I",
            "--regions",
            "eu-west-1",
            "us-east-1",
            "--",
            str(TEMPLATE),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_the_function_runs_the_handler_from_the_build_directory(template):
    _, function = the_one(template, "AWS::Serverless::Function")
    assert function["Handler"] == "predictive_maintenance.api.handler"
    assert function["Runtime"] in ("python3.11", "python3.12")
    assert set(function["Architectures"]) <= {"arm64", "x86_64"}
    assert (DEPLOY / function["CodeUri"]).resolve() == load_build_script().DEFAULT_OUT
    assert function["Timeout"] <= 30  # an HTTP API integration gives up after 30 s
    assert function["MemorySize"] >= 128
    assert function["Environment"]["Variables"] == {
        "ENDPOINT_NAME": {"Ref": "EndpointName"},
        "API_KEY": {"Ref": "ApiKey"},
        "CORS_ALLOW_ORIGINS": {"Ref": "CorsAllowOrigins"},
    }


def test_the_parameters_default_to_the_projects_endpoint_and_an_open_api(template):
    parameters = template["Parameters"]
    endpoint_name = yaml.safe_load((ROOT / "conf" / "base" / "globals.yml").read_text())[
        "endpoint"
    ]["name"]
    assert parameters["EndpointName"]["Default"] == endpoint_name
    # Endpoint ARNs are lowercase and CloudFormation cannot lowercase: the parameter must be.
    pattern = re.compile(parameters["EndpointName"]["AllowedPattern"])
    assert pattern.fullmatch(endpoint_name)
    assert not pattern.fullmatch("Predictive-Maintenance")
    assert parameters["ApiKey"]["NoEcho"] is True
    assert parameters["ApiKey"]["Default"] == ""
    assert parameters["CorsAllowOrigins"]["Default"] == ""


def test_the_api_routes_every_handler_route_and_leaves_cors_to_the_handler(template):
    api_name, api = the_one(template, "AWS::Serverless::HttpApi")
    # The handler answers preflight and adds the CORS headers itself: API Gateway must not.
    assert "CorsConfiguration" not in api
    _, function = the_one(template, "AWS::Serverless::Function")
    events = function["Events"].values()
    assert all(event["Type"] == "HttpApi" for event in events)
    assert all(event["Properties"]["ApiId"] == {"Ref": api_name} for event in events)
    routes = {(event["Properties"]["Method"], event["Properties"]["Path"]) for event in events}
    assert routes == EXPECTED_ROUTES
    # ... and every route of the handler is reachable through one of them.
    for path, methods in ROUTES.items():
        route = "/static/{file}" if path.startswith("/static/") else path
        for method in (*methods, "OPTIONS"):
            assert (method, route) in routes, (method, path)


def test_the_role_may_invoke_only_the_one_endpoint_and_write_only_its_own_logs(template):
    role_name, role = the_one(template, "AWS::IAM::Role")
    _, function = the_one(template, "AWS::Serverless::Function")
    assert function["Role"] == {"Fn::GetAtt": [role_name, "Arn"]}
    assert "Policies" not in function  # SAM would otherwise add a role of its own
    assert not role.get("ManagedPolicyArns")
    log_group_name, log_group = the_one(template, "AWS::Logs::LogGroup")
    assert log_group["RetentionInDays"] > 0
    assert function["LoggingConfig"]["LogGroup"] == {"Ref": log_group_name}
    # The handler logs one INFO line per request: the runtime must not drop it.
    assert function["LoggingConfig"]["ApplicationLogLevel"] in ("DEBUG", "INFO")

    statements = [
        statement
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
    ]
    assert all(statement["Effect"] == "Allow" for statement in statements)
    keys = {"Sid", "Effect", "Action", "Resource"}  # no NotAction, NotResource, Condition games
    assert all(set(statement) <= keys for statement in statements)
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    assert not any("*" in action for action in actions)
    assert actions == {
        "sagemaker:InvokeEndpoint",
        "sagemaker:DescribeEndpoint",  # GET /health: is the endpoint in service?
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }

    sagemaker = [s for s in statements if any("sagemaker:" in a for a in as_list(s["Action"]))]
    assert len(sagemaker) == 1
    assert as_list(sagemaker[0]["Action"]) == [
        "sagemaker:InvokeEndpoint",
        "sagemaker:DescribeEndpoint",
    ]
    assert as_list(sagemaker[0]["Resource"]) == [{"Fn::Sub": ENDPOINT_ARN}]
    arn = substitute(ENDPOINT_ARN, EndpointName=template["Parameters"]["EndpointName"]["Default"])
    assert arn == "arn:aws:sagemaker:eu-west-1:123456789012:endpoint/predictive-maintenance"

    for statement in statements:
        if statement is not sagemaker[0]:  # the logs: the function's own group (and its streams)
            assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [log_group_name, "Arn"]}]


def substitute(text: str, **parameters: str) -> str:
    """``Fn::Sub`` for a deployment to eu-west-1 in account 123456789012."""
    values = {
        "AWS::Partition": "aws",
        "AWS::Region": "eu-west-1",
        "AWS::AccountId": "123456789012",
        **parameters,
    }
    return re.sub(r"\$\{([^}]+)\}", lambda match: values[match.group(1)], text)


def test_the_stack_outputs_the_api_url(template):
    api_name, _ = the_one(template, "AWS::Serverless::HttpApi")
    assert template["Outputs"]["ApiUrl"]["Value"] == {"Fn::GetAtt": [api_name, "ApiEndpoint"]}


# ---- the Lambda package ----------------------------------------------------------------------
def load_build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_api_build", BUILD_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    """The Lambda package, built by running deploy/api/build.py as a user would."""
    out = tmp_path_factory.mktemp("lambda") / "build"
    result = subprocess.run(
        [sys.executable, str(BUILD_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_build_holds_exactly_the_handlers_modules_and_files(package):
    files = {path.relative_to(package).as_posix() for path in package.rglob("*") if path.is_file()}
    assert files == PACKAGE_FILES
    source = ROOT / "src"
    for relative in files:
        assert (package / relative).read_bytes() == (source / relative).read_bytes(), relative


def test_the_build_refuses_a_module_list_that_misses_an_import():
    build = load_build_script()
    build.check_imports()
    incomplete = tuple(module for module in build.MODULES if not module.endswith("openapi.py"))
    with pytest.raises(build.BuildError, match=r"api/handler\.py imports .*api\.openapi"):
        build.check_imports(modules=incomplete)


def test_the_build_directory_is_git_ignored():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "-q", "deploy/api/build/predictive_maintenance"],
        capture_output=True,
        check=False,
    )
    assert result.returncode == 0, "deploy/api/build/ is not git-ignored"


#: Runs in a fresh interpreter: resolves the handler as the Lambda runtime does, from the package
#: alone, with every import outside the standard library and boto3's stack refused (numpy,
#: pandas, xgboost, kedro, sklearn and the rest of the project's dependencies are installed here,
#: but not in Lambda), then answers the events from stdin.
LAMBDA_RUNNER = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys
    from pathlib import Path
    from types import SimpleNamespace

    package, handler_name = Path(sys.argv[1]).resolve(), sys.argv[2]
    # What the Lambda Python runtime offers besides the code: the standard library and boto3.
    ALLOWED = set(sys.stdlib_module_names) | {
        "predictive_maintenance", "boto3", "botocore", "s3transfer", "jmespath", "dateutil",
        "urllib3", "six", "awslambdaric",
    }
    refused = []

    class RefuseOutsideTheLambdaRuntime(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top not in ALLOWED:
                refused.append(name)
                raise ImportError(f"{name} is not in the Lambda runtime (blocked)")
            return None

    sys.meta_path.insert(0, RefuseOutsideTheLambdaRuntime())
    # The project's editable install puts src/ on sys.path: only the package may be found.
    sys.path[:] = [str(package)] + [
        entry for entry in sys.path if not (Path(entry or ".") / "predictive_maintenance").exists()
    ]
    for blocked in ("numpy", "pandas", "xgboost", "kedro", "sklearn"):
        try:
            importlib.import_module(blocked)
        except ImportError:
            pass
        else:
            raise SystemExit(f"the import hook let {blocked} through")
    refused.clear()  # from here on: what the handler itself tries

    module_name, _, attribute = handler_name.rpartition(".")
    handler = getattr(importlib.import_module(module_name), attribute)
    context = SimpleNamespace(
        function_name="predictive-maintenance-api", aws_request_id="c6af9ac6-7b61-11e6-9a41"
    )
    responses = [handler(event, context) for event in json.load(sys.stdin)]
    loaded = {
        name: getattr(module, "__file__", None)
        for name, module in sys.modules.items()
        if name.partition(".")[0] == "predictive_maintenance"
    }
    heavy = sorted(
        name for name in ("numpy", "pandas", "xgboost", "kedro", "sklearn") if name in sys.modules
    )
    report = {"responses": responses, "loaded": loaded, "refused": refused, "heavy": heavy}
    print(json.dumps(report))
    """
)


def test_the_package_answers_api_gateway_events_without_the_projects_dependencies(
    package, template
):
    _, function = the_one(template, "AWS::Serverless::Function")
    missing_torque = {
        "type": "L",
        "air_temperature_k": 298.4,
        "process_temperature_k": 308.2,
        "rotational_speed_rpm": 1582,
        "tool_wear_min": 216,
    }
    events = [
        v2_event("GET", "/health"),
        v2_event(
            "POST",
            "/predict",
            body=json.dumps(missing_torque),
            headers={"content-type": "application/json"},
        ),
        v2_event("GET", "/openapi.json"),
        v2_event("GET", "/"),
        v2_event("GET", "/static/app.js", route="/static/{file}"),
        v2_event(
            "OPTIONS",
            "/predict",
            headers={
                "origin": "https://dashboard.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        ),
    ]
    environment = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "ENDPOINT_NAME": "predictive-maintenance",
        "AWS_REGION": "eu-west-1",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "CORS_ALLOW_ORIGINS": "https://dashboard.example.com",
        "AWS_EC2_METADATA_DISABLED": "true",  # no credentials from this machine's metadata
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    result = subprocess.run(
        [sys.executable, "-I", "-c", LAMBDA_RUNNER, str(package), function["Handler"]],
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environment,
        cwd=package.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    health, bad_predict, openapi, page, script, preflight = report["responses"]

    # On AWS /health asks DescribeEndpoint; here there are no credentials, and it says so.
    assert health["statusCode"] == 503
    assert json.loads(health["body"]) == {
        "status": "unavailable",
        "message": "cannot read the state of the model endpoint predictive-maintenance: Unable "
        "to locate credentials",
        "endpoint": {"name": "predictive-maintenance", "status": "unknown"},
    }

    assert bad_predict["statusCode"] == 400
    error = json.loads(bad_predict["body"])
    assert error["field"] == "torque_nm"
    assert "torque_nm" in error["message"]

    assert openapi["statusCode"] == 200
    assert "/predict" in json.loads(openapi["body"])["paths"]
    assert page["statusCode"] == 200
    assert page["headers"]["content-type"].startswith("text/html")
    assert script["statusCode"] == 200
    assert script["headers"]["content-type"].startswith("text/javascript")

    assert preflight["statusCode"] == 204
    assert preflight["headers"]["access-control-allow-origin"] == "https://dashboard.example.com"
    assert "POST" in preflight["headers"]["access-control-allow-methods"]

    # Everything came from the package, and nothing heavy was loaded or even attempted.
    assert set(report["loaded"]) == {
        ".".join(Path(relative).with_suffix("").parts).removesuffix(".__init__")
        for relative in PACKAGE_FILES
        if relative.endswith(".py")
    }
    for name, file in report["loaded"].items():
        assert file is not None, name
        assert Path(file).resolve().is_relative_to(package), (name, file)
    assert report["heavy"] == []
    # The handler tried (and does without) only the optional SageMaker toolkit; "org" is the
    # standard library's copy module probing for Jython; the rest are optional packages boto3's
    # stack (botocore, urllib3) probes for when /health makes a client, and does without.
    assert set(report["refused"]) <= {"sagemaker_inference", "org"} | {
        "awscrt",
        "certifi",
        "OpenSSL",
        "brotli",
        "brotlicffi",
        "backports",
    }
