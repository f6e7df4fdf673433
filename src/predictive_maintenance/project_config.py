"""The project's configuration as the project's own CLI commands see it.

``kedro data``, ``kedro model`` and ``kedro endpoint`` read settings the way ``kedro run`` does:
through a :class:`~kedro.framework.session.KedroSession`'s config loader, so that ``--env`` and
``conf/local`` apply. Kedro is imported on demand: every ``kedro`` command imports the CLI modules.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from kedro.framework.startup import ProjectMetadata


def project_path(metadata: ProjectMetadata | None) -> Path:
    """The project root Kedro found (or the working directory's nearest project)."""
    from kedro.utils import find_kedro_project  # noqa: PLC0415 - on demand, see module doc

    if metadata is not None:
        return Path(metadata.project_path)
    return find_kedro_project(Path.cwd()) or Path.cwd()


@contextmanager
def quiet_kedro() -> Iterator[None]:
    """Keeps Kedro's INFO messages and its config deprecation notice out of a command's output.

    The project's logging goes to stdout, where they would corrupt ``kedro model show --json``.
    """
    logger = logging.getLogger("kedro")
    level = logger.level
    logger.setLevel(max(logging.WARNING, logger.getEffectiveLevel()))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"register_new_resolver\(\) is deprecated", category=UserWarning
            )
            yield
    finally:
        logger.setLevel(level)


def project_config(
    metadata: ProjectMetadata | None, env: str | None, *keys: str
) -> dict[str, dict[str, Any]]:
    """The project's configuration for ``env``, by key (``parameters``, ``catalog``...).

    Read through one session's config loader; a missing env directory is a ClickException. (Not
    ``context.params``: it turns a missing ``--env`` directory into empty parameters, and it
    imports every pipeline to validate them.)
    """
    from kedro.config import MissingConfigException  # noqa: PLC0415
    from kedro.framework.session import KedroSession  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    path = project_path(metadata)
    bootstrap_project(path)
    with quiet_kedro(), KedroSession.create(project_path=path, env=env) as session:
        loader = session.load_context().config_loader
        configuration = {}
        for key in keys:
            try:
                configuration[key] = loader[key]
            except MissingConfigException as error:
                raise click.ClickException(f"cannot read the {key}: {error}") from None
        return configuration


def project_parameters(metadata: ProjectMetadata | None, env: str | None) -> dict[str, Any]:
    """The project's parameters for ``env`` (see :func:`project_config`)."""
    return project_config(metadata, env, "parameters")["parameters"]


def resolve(metadata: ProjectMetadata | None, path: str | Path) -> Path:
    """``path`` from the configuration, relative paths taken from the project root."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else project_path(metadata) / candidate
