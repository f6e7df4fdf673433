"""Fixtures for pipeline tests."""

from __future__ import annotations

from typing import Any

import pytest
from kedro.config import OmegaConfigLoader

from tests.support.project import PROJECT_ROOT


@pytest.fixture(scope="session")
def parameters() -> dict[str, Any]:
    """The project's base parameters, loaded the way ``kedro run`` loads them."""
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )
    return loader["parameters"]
