"""``kedro endpoint serve`` and ``kedro endpoint invoke``: the local endpoint from the command line.

:func:`endpoint` is a click group; the project's CLI (``predictive_maintenance.cli``) attaches it.
Run it without Kedro as ``python -m predictive_maintenance.serving.cli``. Importing this module
stays cheap (no pandas, no xgboost): every ``kedro`` command imports it.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option
from kedro.framework.startup import ProjectMetadata

from predictive_maintenance.project_config import project_parameters, project_path, resolve
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.capture import CaptureConfig
from predictive_maintenance.serving.contract import (
    CSV_CONTENT_TYPE,
    CSV_FIELDS,
    EVENT_ID_HEADER,
    JSON_CONTENT_TYPE,
    JSON_INSTANCES_KEY,
    MODEL_VERSION_HEADER,
    SUPPORTED_CONTENT_TYPES,
)
from predictive_maintenance.serving.endpoint import DEFAULT_POLL_INTERVAL_SECONDS
from predictive_maintenance.serving.ports import ListenError, listen

#: Parameters (``parameters_deployment.yml``) the commands read.
ENDPOINT_PARAMS = "endpoint"
LIMITS_PARAMS = "serving_limits"
CAPTURE_PARAMS = "data_capture"
DEFAULT_URL = "http://127.0.0.1:8080"


CAPTURE_OPTIONS: Final = (
    click.option(
        "--data-capture/--no-data-capture",
        "data_capture",
        default=None,
        help=f"Capture answered requests as SageMaker data-capture JSON Lines (or not); default: "
        f"the parameter {CAPTURE_PARAMS}.enabled (globals.yml data_capture.enabled, off).",
    ),
    click.option(
        "--capture-sampling",
        type=click.IntRange(0, 100),
        default=None,
        metavar="PERCENT",
        help=f"Share of answered requests captured; default: {CAPTURE_PARAMS}.sampling_percentage.",
    ),
    click.option(
        "--capture-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"Where captures go; default: {CAPTURE_PARAMS}.directory (data/13_data_capture).",
    ),
)


def capture_options(command: Any) -> Any:
    """The data-capture options of ``kedro endpoint serve`` (``kedro serve`` passes them on)."""
    for option in reversed(CAPTURE_OPTIONS):
        command = option(command)
    return command


def capture_arguments(
    data_capture: bool | None, capture_sampling: int | None, capture_dir: Path | None
) -> list[str]:
    """The command-line arguments that give a child ``kedro endpoint serve`` these options."""
    arguments = []
    if data_capture is not None:
        arguments.append("--data-capture" if data_capture else "--no-data-capture")
    if capture_sampling is not None:
        arguments += ["--capture-sampling", str(capture_sampling)]
    if capture_dir is not None:
        arguments += ["--capture-dir", str(capture_dir)]
    return arguments


@click.group(name="endpoint", context_settings=CONTEXT_SETTINGS)
def endpoint() -> None:
    """Serve the model locally with the SageMaker inference contract, and call it."""


def _configure_logging() -> None:
    package_logger = logging.getLogger("predictive_maintenance")
    if package_logger.getEffectiveLevel() > logging.INFO:
        package_logger.setLevel(logging.INFO)
    if not logging.getLogger().handlers and not package_logger.handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@endpoint.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    envvar="SAGEMAKER_BIND_TO_PORT",
    help="TCP port (environment: SAGEMAKER_BIND_TO_PORT, as in the SageMaker container).",
)
@click.option(
    "--model-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Serve this model directory (an extracted model.tar.gz) as the SageMaker container "
    "does, instead of watching the endpoint state file.",
)
@click.option(
    "--state",
    "state_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Endpoint state file to watch; default: the parameter {ENDPOINT_PARAMS}.state_file. "
    "The server switches to the model it names whenever it changes.",
)
@click.option(
    "--endpoint-name",
    default=None,
    help="Name /endpoints/NAME/invocations answers to; default: the state's endpoint_name "
    f"(or the parameter {ENDPOINT_PARAMS}.name). With --model-dir and no name, any name.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0.05),
    default=DEFAULT_POLL_INTERVAL_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="How often the state file is checked for a new deployment.",
)
@capture_options
@env_option
@click.pass_obj
def serve_command(
    metadata: ProjectMetadata | None,
    *,
    host: str,
    port: int,
    model_dir: Path | None,
    state_file: Path | None,
    endpoint_name: str | None,
    poll_interval: float,
    data_capture: bool | None,
    capture_sampling: int | None,
    capture_dir: Path | None,
    env: str | None,
) -> None:
    """Serve GET /ping, POST /invocations and POST /endpoints/NAME/invocations.

    With data capture on, captured answers carry x-capture-event-id and GET /capture-stats
    (from this machine only) reports the counters. Stop with Ctrl-C.
    """
    if model_dir is not None and state_file is not None:
        raise click.UsageError("pass either --model-dir or --state, not both")
    # The port first: a taken port fails in milliseconds, not after the model has loaded.
    try:
        listener = listen(host, port)
    except ListenError as error:
        raise click.ClickException(str(error)) from None
    try:
        base_dir = Path.cwd()
        watch_project = model_dir is None and state_file is None
        # Read once: each read starts a KedroSession.
        parameters = (
            project_parameters(metadata, env) if metadata is not None or watch_project else None
        )
        if watch_project:
            state_file, endpoint_name = _configured_state(metadata, parameters, endpoint_name)
            base_dir = project_path(metadata)
        configured_limits = serving_limits(
            metadata, env, "endpoint", parameters if metadata is not None else None
        )
        capture = capture_config(
            metadata,
            parameters,
            enabled=data_capture,
            sampling_percentage=capture_sampling,
            directory=capture_dir,
        )
        capture_name = endpoint_name or _parameter_endpoint_name(parameters)
        _configure_logging()
        # pandas, xgboost and uvicorn load here, not when `kedro` starts (every kedro call
        # imports this group)
        from predictive_maintenance.serving.http import Limits  # noqa: PLC0415
        from predictive_maintenance.serving.server import serve  # noqa: PLC0415

        limits = Limits.from_mapping(configured_limits)
    except ValueError as error:
        listener.close()
        raise click.ClickException(str(error)) from None
    except BaseException:
        listener.close()
        raise
    try:
        serve(
            host,
            port,
            model_dir=model_dir,
            state_file=state_file,
            endpoint_name=endpoint_name,
            base_dir=base_dir,
            poll_interval=poll_interval,
            listener=listener,
            limits=limits,
            capture=capture,
            capture_endpoint_name=capture_name,
        )
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from None


def serving_limits(
    metadata: ProjectMetadata | None,
    env: str | None,
    server: str,
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The configured limits of ``server`` (``endpoint`` or ``api``): the parameter
    ``serving_limits.<server>`` (``parameters_serving.yml``) when run in the project, and for the
    endpoint the SageMaker container's ``SAGEMAKER_MAX_REQUEST_SIZE`` (bytes) over it.
    ``parameters``: the project's, if already read."""
    limits: dict[str, Any] = {}
    if metadata is not None:
        if parameters is None:
            parameters = project_parameters(metadata, env)
        configured = parameters.get(LIMITS_PARAMS) or {}
        section = configured.get(server) if isinstance(configured, dict) else None
        if not isinstance(configured, dict) or not isinstance(section, dict | None):
            raise click.ClickException(f"parameter {LIMITS_PARAMS}.{server} must be a mapping")
        limits.update(section or {})
    request_size = os.environ.get("SAGEMAKER_MAX_REQUEST_SIZE")
    if server == "endpoint" and request_size:
        if not request_size.isdigit():
            raise click.ClickException(
                f"SAGEMAKER_MAX_REQUEST_SIZE must be a number of bytes, not {request_size!r}"
            )
        limits["max_body_bytes"] = int(request_size)
    return limits


def capture_config(
    metadata: ProjectMetadata | None,
    parameters: dict[str, Any] | None,
    *,
    enabled: bool | None = None,
    sampling_percentage: int | None = None,
    directory: Path | None = None,
) -> CaptureConfig:
    """The data capture settings: the parameter ``data_capture`` (``parameters_serving.yml``,
    from ``globals.yml``) when the project's parameters were read, the command line's options over
    it; a relative directory is taken from the project root."""
    configured = (parameters or {}).get(CAPTURE_PARAMS) or {}
    if not isinstance(configured, dict):
        raise click.ClickException(f"parameter {CAPTURE_PARAMS} must be a mapping")
    try:
        config = CaptureConfig.from_mapping(
            configured,
            enabled=enabled,
            sampling_percentage=sampling_percentage,
            directory=directory,
        )
    except (TypeError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    return dataclasses.replace(config, directory=resolve(metadata, config.directory))


def _endpoint_parameters(parameters: dict[str, Any] | None) -> dict[str, Any]:
    configured = (parameters or {}).get(ENDPOINT_PARAMS) or {}
    if not isinstance(configured, dict):
        raise click.ClickException(f"parameter {ENDPOINT_PARAMS} must be a mapping")
    return configured


def _parameter_endpoint_name(parameters: dict[str, Any] | None) -> str | None:
    return _endpoint_parameters(parameters).get("name")


def _configured_state(
    metadata: ProjectMetadata | None,
    parameters: dict[str, Any] | None,
    endpoint_name: str | None,
) -> tuple[Path, str | None]:
    """The endpoint state file and endpoint name from the parameters (``--endpoint-name`` wins)."""
    configured_endpoint = _endpoint_parameters(parameters)
    configured = configured_endpoint.get("state_file")
    if not configured:
        raise click.ClickException(
            f"no endpoint state file: set the parameter {ENDPOINT_PARAMS}.state_file "
            "(conf/base/parameters_deployment.yml) or pass --state or --model-dir"
        )
    return resolve(metadata, configured), endpoint_name or configured_endpoint.get("name")


def _rows_as_json(lines: list[str]) -> bytes:
    instances = []
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != len(READING_COLUMNS):
            # Numbered as the endpoint numbers CSV lines: the first row is line 1.
            raise click.ClickException(
                f"line {number} has {len(fields)} fields, expected {len(READING_COLUMNS)}: "
                + ",".join(CSV_FIELDS)
            )
        instance: dict[str, Any] = {"type": fields[0]}
        for column, field in zip(READING_COLUMNS[1:], fields[1:], strict=True):
            try:
                instance[column] = json.loads(field)
            except ValueError:
                instance[column] = field  # sent as text: the endpoint names the bad field
        instances.append(instance)
    return json.dumps({JSON_INSTANCES_KEY: instances}).encode()


def _request_body(rows: tuple[str, ...], content_type: str) -> bytes:
    text = "\n".join(rows) if rows else sys.stdin.read()
    if content_type == JSON_CONTENT_TYPE and text.lstrip().startswith("{"):
        return text.encode()  # already a JSON request
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise click.ClickException(
            "no rows: pass them as arguments or on stdin, one per line: " + ",".join(CSV_FIELDS)
        )
    if content_type == CSV_CONTENT_TYPE:
        return ("\n".join(lines) + "\n").encode()
    return _rows_as_json(lines)


@endpoint.command(name="invoke")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="Base URL of the endpoint.")
@click.option(
    "--endpoint-name",
    default=None,
    help="Call POST /endpoints/NAME/invocations (the SageMaker Runtime path) instead of "
    "POST /invocations.",
)
@click.option(
    "--content-type",
    type=click.Choice(SUPPORTED_CONTENT_TYPES),
    default=CSV_CONTENT_TYPE,
    show_default=True,
    help="Request format; CSV rows given with application/json are sent as JSON instances.",
)
@click.option("--accept", default=None, help="Response format (default: as the request).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
)
@click.argument("rows", nargs=-1)
def invoke_command(
    *,
    url: str,
    endpoint_name: str | None,
    content_type: str,
    accept: str | None,
    timeout: float,
    rows: tuple[str, ...],
) -> None:
    """Send ROWS (or stdin lines) to the endpoint and print its scores.

    A row is `Type,Air temperature [K],Process temperature [K],Rotational speed [rpm],Torque
    [Nm],Tool wear [min]`, e.g. `L,298.4,308.2,1582,70.7,216`.
    """
    body = _request_body(rows, content_type)
    target = urlsplit(url)
    if target.scheme != "http" or not target.hostname:
        raise click.ClickException(f"--url must be http://HOST[:PORT], not {url!r}")
    base = target.path.rstrip("/")
    path = (
        f"{base}/endpoints/{quote(endpoint_name, safe='')}/invocations"
        if endpoint_name
        else f"{base}/invocations"
    )
    headers = {"Content-Type": content_type}
    if accept:
        headers["Accept"] = accept
    connection = http.client.HTTPConnection(target.hostname, target.port or 80, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read().decode("utf-8", errors="replace")
    except OSError as error:
        raise click.ClickException(
            f"cannot reach the endpoint at {url}: {error}. Start it with `kedro endpoint serve`."
        ) from None
    finally:
        connection.close()
    if response.status != 200:
        raise click.ClickException(f"HTTP {response.status} {response.reason}: {answer.strip()}")
    version = response.getheader(MODEL_VERSION_HEADER)
    if version is not None:
        click.echo(f"model version {version}", err=True)
    event_id = response.getheader(EVENT_ID_HEADER)
    if event_id is not None:  # to report this request's ground truth later
        click.echo(f"capture event id {event_id}", err=True)
    click.echo(answer.rstrip("\n"))


if __name__ == "__main__":
    endpoint()
