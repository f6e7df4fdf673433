"""``kedro serve``: the local endpoint and the HTTP API together, announced when both answer.

Starts ``kedro endpoint serve`` and ``kedro api serve`` as child processes (as they run apart:
each its own process, the API calling the endpoint over HTTP), then prints
``ready at http://127.0.0.1:3000 (endpoint http://127.0.0.1:8080)`` once the endpoint's
``GET /ping`` answers 200 and the API's ``GET /health`` answers ``{"status": "ok", ...}``. While
the endpoint has no model (nothing deployed yet), it says so and how to deploy one; the endpoint
picks a deployment up without a restart, and the ready line follows.

Ctrl-C (or SIGTERM) stops both and exits 0. If either child stops on its own, the other is
stopped and the command exits 1, naming the one that stopped. Both ports are checked before
anything starts, so a taken port fails at once with one line naming it.

Run it without Kedro's CLI as ``python -m predictive_maintenance.serving.stack``. Importing this
module stays cheap (standard library and click): every ``kedro`` command imports the CLI.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import click
from kedro.framework.cli.utils import CONTEXT_SETTINGS, env_option
from kedro.framework.startup import ProjectMetadata

from predictive_maintenance.project_config import project_path
from predictive_maintenance.serving.cli import capture_arguments, capture_options
from predictive_maintenance.serving.contract import PING_PATH
from predictive_maintenance.serving.ports import ListenError, check_free

HEALTH_PATH = "/health"
#: How often the children are checked and, until ready, the readiness probed.
POLL_SECONDS = 0.2
#: One readiness probe's limit (the endpoint accepts connections while it loads a model).
PROBE_TIMEOUT_SECONDS = 2.0
#: After Ctrl-C, how long the children (which got it too) may take to stop on their own, and
#: after SIGTERM, how long before SIGKILL.
GRACE_SECONDS = 5.0
_ANY_ADDRESS = {"", "0.0.0.0", "::"}


@dataclass
class _Child:
    name: str  # "the endpoint", "the API"
    url: str
    process: subprocess.Popen


class _Stopped(Exception):
    """A child stopped on its own."""

    def __init__(self, child: _Child, code: int) -> None:
        super().__init__(child.name)
        self.child = child
        self.code = code


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in _ANY_ADDRESS else host


def _get(url: str, path: str) -> tuple[int, bytes] | None:
    """``(status, body)`` of ``GET url+path``, or None if nothing answers (yet)."""
    host_port = url.removeprefix("http://")
    host, _, port = host_port.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=PROBE_TIMEOUT_SECONDS)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _endpoint_status(url: str) -> int | None:
    answer = _get(url, PING_PATH)
    return None if answer is None else answer[0]


def _api_healthy(url: str) -> bool:
    answer = _get(url, HEALTH_PATH)
    if answer is None or answer[0] != 200:
        return False
    try:
        return json.loads(answer[1]).get("status") == "ok"
    except (ValueError, AttributeError):
        return False


def _start(name: str, url: str, arguments: list[str], cwd: Path) -> _Child:
    command = [sys.executable, "-m", "kedro", *arguments]
    return _Child(name, url, subprocess.Popen(command, cwd=cwd))


def _stop(children: list[_Child], *, interrupted: bool) -> None:
    """Stops every child still running: after Ctrl-C they got the signal too, so they have
    :data:`GRACE_SECONDS` to stop on their own; then SIGTERM, then SIGKILL."""
    if interrupted:
        _wait(children, GRACE_SECONDS)
    for child in children:
        if child.process.poll() is None:
            child.process.terminate()
    _wait(children, GRACE_SECONDS)
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def _wait(children: list[_Child], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for child in children:
        with suppress(subprocess.TimeoutExpired):
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))


def _watch(children: list[_Child], endpoint: _Child, api: _Child, hint: str) -> None:
    """Announces readiness once, then watches the children until one stops (raises)."""
    ready = hinted = False
    while True:
        for child in children:
            code = child.process.poll()
            if code is not None:
                raise _Stopped(child, code)
        if not ready:
            status = _endpoint_status(endpoint.url)
            if status == 200 and _api_healthy(api.url):
                click.echo(f"ready at {api.url} (endpoint {endpoint.url})")
                ready = True
            elif status == 503 and not hinted:
                click.echo(hint, err=True)
                hinted = True
        time.sleep(POLL_SECONDS)


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM stops the command as Ctrl-C does (children stopped, exit 0)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command(name="serve", context_settings=CONTEXT_SETTINGS)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--endpoint-port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port of the model endpoint (`kedro endpoint serve`).",
)
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=3000,
    show_default=True,
    help="Port of the HTTP API and its web client (`kedro api serve`).",
)
@capture_options
@env_option
@click.pass_obj
def serve(
    metadata: ProjectMetadata | None,
    *,
    host: str,
    endpoint_port: int,
    api_port: int,
    data_capture: bool | None,
    capture_sampling: int | None,
    capture_dir: Path | None,
    env: str | None,
) -> None:
    """Serve the model endpoint and the HTTP API with its web client; Ctrl-C stops both.

    Prints "ready at URL" once the endpoint's /ping and the API's /health answer. The endpoint
    serves what the deployment pipeline deployed (data/11_endpoints/), and switches when a new
    deployment is made.
    """
    if endpoint_port == api_port:
        raise click.UsageError("--endpoint-port and --api-port must differ")
    for port, option in ((endpoint_port, "--endpoint-port"), (api_port, "--api-port")):
        try:
            check_free(host, port, option=option)
        except ListenError as error:
            raise click.ClickException(str(error)) from None
    cwd = project_path(metadata)
    address = _client_host(host)
    endpoint_url = f"http://{address}:{endpoint_port}"
    api_url = f"http://{address}:{api_port}"
    env_arguments = ["--env", env] if env else []
    deploy = "kedro run --nodes deploy.select_deployment" + (f" --env {env}" if env else "")
    hint = (
        f"waiting: the endpoint has no model yet. Deploy one (`kedro model list` shows what is "
        f"deployed; `kedro model approve N`, then `{deploy}`): the endpoint loads it without a "
        "restart."
    )
    click.echo(
        f"starting the endpoint ({endpoint_url}) and the API ({api_url}); Ctrl-C stops both",
        err=True,
    )
    children: list[_Child] = []
    interrupted = False
    with _sigterm_interrupts():
        try:
            endpoint = _start(
                "the endpoint",
                endpoint_url,
                [
                    "endpoint",
                    "serve",
                    "--host",
                    host,
                    "--port",
                    str(endpoint_port),
                    *capture_arguments(data_capture, capture_sampling, capture_dir),
                    *env_arguments,
                ],
                cwd,
            )
            children.append(endpoint)
            api = _start(
                "the API",
                api_url,
                [
                    "api",
                    "serve",
                    "--host",
                    host,
                    "--port",
                    str(api_port),
                    "--endpoint-url",
                    endpoint_url,
                    *env_arguments,
                ],
                cwd,
            )
            children.append(api)
            _watch(children, endpoint, api, hint)
        except KeyboardInterrupt:
            interrupted = True
        except _Stopped as stopped:
            others = [child for child in children if child is not stopped.child]
            raise click.ClickException(
                f"{stopped.child.name} stopped (exit code {stopped.code}), so "
                f"{' and '.join(child.name for child in others) or 'nothing else'} "
                f"{'was' if len(others) == 1 else 'were'} stopped too"
            ) from None
        finally:
            _stop(children, interrupted=interrupted)
    click.echo("stopped the endpoint and the API", err=True)


if __name__ == "__main__":
    serve()
