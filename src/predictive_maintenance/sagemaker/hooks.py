"""Hands the ``sagemaker`` configuration to :class:`SageMakerRunner` through Kedro's hooks.

A runner gets no Kedro context, only the hook manager; this hook reads the configuration with
the project's own config loader once the context exists (before the runner runs) and keeps it
for the runner to find. Register it in ``settings.py``::

    HOOKS = (SageMakerHooks(),)
    CONFIG_LOADER_ARGS = {"config_patterns": {"sagemaker": ["sagemaker*", "sagemaker*/**"]}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from predictive_maintenance.sagemaker.config import (
    CONFIG_FILE,
    BridgeSettings,
    SageMakerConfigError,
    parse_settings,
)


class SageMakerHooks:
    """Reads ``conf/<env>/sagemaker.yml`` through the config loader when the context is made."""

    def __init__(self) -> None:
        self._config: dict[str, Any] | None = None
        self._project_path: Path | None = None
        self._problem: str | None = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)
        try:
            self._config = dict(context.config_loader["sagemaker"])
            self._problem = None
        except MissingConfigException:
            self._config = None
            self._problem = f"no {CONFIG_FILE} found for environment {context.env or 'local'}"
        except KeyError:
            self._config = None
            self._problem = (
                'the config loader has no "sagemaker" pattern: add CONFIG_LOADER_ARGS = '
                '{"config_patterns": {"sagemaker": ["sagemaker*", "sagemaker*/**"]}} to settings.py'
            )

    def settings(self) -> BridgeSettings:
        """The checked settings of the current session.

        Raises:
            SageMakerConfigError: no configuration was read, or it is invalid.
        """
        if self._config is None or self._project_path is None:
            raise SageMakerConfigError(
                self._problem or "no Kedro context was created (is the project's session running?)"
            )
        return parse_settings(self._config, self._project_path)
