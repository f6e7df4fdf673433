"""The ``kedro`` executable, for the tests whose subject is the command line itself.

Such a test runs ``kedro`` as a user does, in a project copy (:mod:`tests.support.project`):
:func:`kedro` for a command that finishes, :func:`launch` for one that keeps running (a server, or
two commands side by side). Everything else runs in this process: a command with
:func:`invoke` (Kedro's CLI object, no process start), a whole-project run with
:func:`run_session`, a pipeline slice with ``SequentialRunner``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

#: The ``kedro`` executable of this environment (the one ``make install`` puts in .venv/bin).
KEDRO = str(Path(sys.executable).with_name("kedro"))
#: Kedro's telemetry prompt off, plain output, lines wide enough that nothing a test looks for is
#: wrapped.
_QUIET = {"KEDRO_DISABLE_TELEMETRY": "true", "NO_COLOR": "1", "COLUMNS": "250"}


#: As on a fresh machine: no AWS credentials or configuration from anywhere (and no
#: instance-metadata lookup, so nothing leaves 127.0.0.1), the project's own logging configuration.
_FRESH = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def environment(extra: Mapping[str, str] | None = None, fresh: bool = False) -> dict[str, str]:
    """This process's environment (read now, so ``monkeypatch.setenv`` applies) with
    :data:`_QUIET`, then ``extra``. ``fresh``: without AWS settings and KEDRO_LOGGING_CONFIG
    first (:data:`_FRESH`)."""
    base = dict(os.environ)
    if fresh:
        base = {
            name: value
            for name, value in base.items()
            if not name.startswith("AWS_") and name != "KEDRO_LOGGING_CONFIG"
        }
        base.update(_FRESH)
    return {**base, **_QUIET, **(extra or {})}


def kedro(
    project: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    fresh: bool = False,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``kedro ARGS`` in ``project`` (environment: :func:`environment`); its exit code and
    output, never raising for a failure."""
    return subprocess.run(
        [KEDRO, *args],
        cwd=project,
        env=environment(env, fresh),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def launch(
    project: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    fresh: bool = False,
    **popen: Any,
) -> subprocess.Popen:
    """``kedro ARGS`` started in ``project`` (stdout and stderr piped as text unless ``popen``
    says otherwise); the caller waits for it or stops it."""
    options = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([KEDRO, *args], cwd=project, env=environment(env, fresh), **options)


def _enter(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``project`` as the working directory. Bootstrapping a project (which Kedro's CLI and
    session do) puts its ``src`` on ``sys.path`` and ``PYTHONPATH``: both are restored when the
    test ends, so no later test or subprocess imports this copy's code."""
    monkeypatch.chdir(project)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))


def invoke(
    project: Path, monkeypatch: pytest.MonkeyPatch, *args: str, catch_exceptions: bool = False
) -> Result:
    """``kedro ARGS`` in this process, in ``project``, through the same CLI object the
    executable builds (Kedro's commands and the project's)."""
    from kedro.framework.cli.cli import KedroCLI  # noqa: PLC0415

    _enter(project, monkeypatch)
    return CliRunner().invoke(KedroCLI(project), list(args), catch_exceptions=catch_exceptions)


def run_session(
    project: Path, monkeypatch: pytest.MonkeyPatch, **run_options: Any
) -> dict[str, Any]:
    """Runs ``project`` in this process as ``kedro run`` does (a ``KedroSession`` of the project,
    its settings, hooks and catalog), for tests whose subject is what the pipeline does rather
    than the command line. ``runtime_params`` goes to the session, the rest to ``session.run``.
    """
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    _enter(project, monkeypatch)
    bootstrap_project(project)
    runtime_params = run_options.pop("runtime_params", None)
    with KedroSession.create(project_path=project, runtime_params=runtime_params) as session:
        return session.run(**run_options)
