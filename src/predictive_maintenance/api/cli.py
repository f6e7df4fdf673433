"""``kedro api serve``: the HTTP API and the web client on this machine."""

from __future__ import annotations

import logging
import os

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option
from kedro.framework.startup import ProjectMetadata

from predictive_maintenance.project_config import project_parameters
from predictive_maintenance.serving.cli import ENDPOINT_PARAMS, serving_limits
from predictive_maintenance.serving.ports import ListenError, listen


@click.group(name="api", context_settings=CONTEXT_SETTINGS)
def api() -> None:
    """The HTTP API (API Gateway + Lambda) in front of the model endpoint."""


@api.command(name="serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=3000, show_default=True)
@click.option(
    "--endpoint-url",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="SageMaker Runtime to call: `kedro endpoint serve`'s, or https://runtime.sagemaker."
    "REGION.amazonaws.com for a real endpoint.",
)
@click.option(
    "--endpoint-name", default=None, help=f"Default: the parameter {ENDPOINT_PARAMS}.name."
)
@click.option("--api-key", envvar="API_KEY", default=None, help="Require this x-api-key.")
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    help="An origin allowed to call the API from a browser (repeatable; * for any).",
)
@env_option
@click.pass_obj
def serve_command(
    metadata: ProjectMetadata | None,
    *,
    host: str,
    port: int,
    endpoint_url: str,
    endpoint_name: str | None,
    api_key: str | None,
    cors_origins: tuple[str, ...],
    env: str | None,
) -> None:
    """Serve the Lambda handler (POST /predict, GET /health) and the web client (GET /).

    Each request is turned into an API Gateway v2 event, as `sam local start-api` does. Stop with
    Ctrl-C.
    """
    from predictive_maintenance.api.handler import Api, ApiSettings  # noqa: PLC0415

    if endpoint_name is None:
        parameters = project_parameters(metadata, env).get(ENDPOINT_PARAMS) or {}
        endpoint_name = parameters.get("name") if isinstance(parameters, dict) else None
    configured_limits = serving_limits(metadata, env, "api")
    # The local endpoint does not check signatures, but boto3 signs every request.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    settings = ApiSettings(
        endpoint_name=endpoint_name,
        runtime_endpoint_url=endpoint_url,
        api_key=api_key or None,  # an empty --api-key "$API_KEY" means no key, as on Lambda
        cors_origins=tuple(origin.strip() for origin in cors_origins if origin.strip()),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
    )
    logging.getLogger("predictive_maintenance").setLevel(logging.INFO)
    try:
        listener = listen(host, port)
    except ListenError as error:
        raise click.ClickException(str(error)) from None
    # uvicorn loads here, once the port is known to be free.
    from predictive_maintenance.api.server import ApiServer, api_limits  # noqa: PLC0415

    try:
        server = ApiServer(Api(settings), listener=listener, limits=api_limits(configured_limits))
    except ValueError as error:
        listener.close()
        raise click.ClickException(str(error)) from None
    click.echo(
        f"API on {server.url}/ (web client at /, docs at /openapi.json), "
        f"calling endpoint {endpoint_name} at {endpoint_url}",
        err=True,
    )
    try:
        server.serve_forever()
    finally:
        server.close()
