"""``kedro serve`` (serving/stack.py): endpoint and API together, ready only when both answer.

The command under test runs as a subprocess (it starts and stops its own children); the servers
are real, on free ports of 127.0.0.1, in a copy of the project.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.serving.endpoint import write_endpoint_state
from predictive_maintenance.serving.stack import GRACE_SECONDS, serve
from tests.support.net import free_port
from tests.support.project import copy_project

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads /proc for child processes")

STATE = Path("data/11_endpoints/predictive-maintenance.json")
ENV = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "300"}


class Stack:
    """``python -m predictive_maintenance.serving.stack`` in its own session (so a Ctrl-C can be
    sent to its process group, as a terminal does), with its output read line by line."""

    def __init__(self, project: Path) -> None:
        self.endpoint_port, self.api_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "predictive_maintenance.serving.stack",
                "--endpoint-port",
                str(self.endpoint_port),
                "--api-port",
                str(self.api_port),
            ],
            cwd=project,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[tuple[str, str]] = queue.Queue()
        self.seen: list[tuple[str, str]] = []
        for name, stream in (("stdout", self.process.stdout), ("stderr", self.process.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream) -> None:
        for line in stream:
            self.lines.put((name, line.rstrip("\n")))

    def wait_for_line(self, stream: str, text: str, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if line[0] == stream and text in line[1]:
                return line[1]
        raise AssertionError(f"no {stream} line with {text!r} in {timeout} s: {self.seen}")

    def output(self, stream: str) -> list[str]:
        """Every line of ``stream`` so far (after the process ended: all of them)."""
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return [line for name, line in self.seen if name == stream]

    def children(self) -> dict[str, int]:
        """The endpoint's and the API's process ids, from /proc."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue
            if parent == self.process.pid and b"serve" in command:
                found[command[command.index(b"serve") - 1].decode()] = int(entry.name)
        return found

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def get(port: int, path: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def is_free(port: int) -> bool:
    """Nothing listens on ``port`` (a server could bind it: SO_REUSEADDR, as servers set it)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def deploy(project: Path, archive: bytes) -> None:
    """What the deployment pipeline writes: the archive and the endpoint state naming it."""
    (project / "data" / "model.tar.gz").write_bytes(archive)
    write_endpoint_state(
        project / STATE,
        {
            "endpoint_name": "predictive-maintenance",
            "model_group": "predictive-maintenance",
            "model_version": 3,
            "model_archive": "data/model.tar.gz",
            "model_archive_sha256": sha256_hex(archive),
            "deployed_at": datetime.now(timezone.utc).isoformat(),
        },
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("stack") / "project")


def test_ready_only_once_both_serve_and_a_dying_child_stops_everything(project, training_run):
    (project / STATE).unlink(missing_ok=True)  # nothing deployed yet
    stack = Stack(project)
    try:
        # Both run, but the endpoint has no model: no ready line, a hint instead.
        stack.wait_for_line("stderr", "waiting: the endpoint has no model yet")
        assert get(stack.endpoint_port, "/ping")[0] == 503
        assert not any("ready at" in line for line in stack.output("stdout"))

        deploy(project, training_run.full.archive)
        ready = stack.wait_for_line("stdout", "ready at")
        # At the moment it says so, both answer.
        ping, health = get(stack.endpoint_port, "/ping"), get(stack.api_port, "/health")

        children = stack.children()
        os.kill(children["endpoint"], signal.SIGKILL)
        code = stack.process.wait(timeout=30)
    finally:
        stack.stop()

    assert ready == (
        f"ready at http://127.0.0.1:{stack.api_port} "
        f"(endpoint http://127.0.0.1:{stack.endpoint_port})"
    )
    assert ping == (200, {"status": "ready", "model_version": 3})
    assert (health[0], health[1]["status"]) == (200, "ok")
    assert set(children) == {"endpoint", "api"}
    assert code == 1
    assert stack.output("stderr")[-1] == (
        "Error: the endpoint stopped (exit code -9), so the API was stopped too"
    )
    assert is_free(stack.api_port)
    assert is_free(stack.endpoint_port)
    assert not any("Traceback" in line for line in stack.output("stderr"))


def test_ctrl_c_stops_both(project, training_run):
    deploy(project, training_run.full.archive)
    stack = Stack(project)
    try:
        stack.wait_for_line("stdout", "ready at")
        children = stack.children()
        os.killpg(stack.process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        interrupted = time.monotonic()
        code = stack.process.wait(timeout=30)
        stopping = time.monotonic() - interrupted
    finally:
        stack.stop()

    assert code == 0, stack.output("stderr")
    # The children stopped on the Ctrl-C themselves: nothing waited out the grace period.
    assert stopping < GRACE_SECONDS, stopping
    assert stack.output("stderr")[-1] == "stopped the endpoint and the API"
    for pid in children.values():
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert is_free(stack.api_port)
    assert is_free(stack.endpoint_port)
    assert not any("Traceback" in line for line in stack.output("stderr"))


@pytest.mark.parametrize("taken", ["--endpoint-port", "--api-port"])
def test_a_taken_port_fails_at_once_naming_it(taken):
    ports = {"--endpoint-port": free_port(), "--api-port": free_port()}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", ports[taken]))
        listener.listen()

        result = CliRunner().invoke(
            serve, [argument for pair in ports.items() for argument in map(str, pair)]
        )

    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot listen on 127.0.0.1:{ports[taken]}: address already in use; stop what "
        f"listens there or choose another port with {taken}\n"
    )
