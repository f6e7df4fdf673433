"""Fixtures of the monitoring tests: a baseline of real readings, and traffic held out of it."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from predictive_maintenance.pipelines.monitoring.nodes import create_data_quality_baseline
from predictive_maintenance.schema import RAW_TO_COLUMN
from tests.conftest import RAW_CSV


@pytest.fixture(scope="session")
def real_data() -> pd.DataFrame:
    """The data set with the project's column names."""
    return pd.read_csv(RAW_CSV).rename(columns=RAW_TO_COLUMN)


@pytest.fixture(scope="session")
def baseline_rows(real_data: pd.DataFrame) -> pd.DataFrame:
    """8,000 random rows as the training split has them (type only as type_code)."""
    rows = real_data.sample(n=8000, random_state=7)
    return rows.assign(type_code=rows["type"].map({"L": 0.0, "M": 1.0, "H": 2.0})).drop(
        columns="type"
    )


@pytest.fixture(scope="session")
def held_out(real_data: pd.DataFrame, baseline_rows: pd.DataFrame) -> pd.DataFrame:
    """The 2,000 rows the baseline never saw: undrifted traffic."""
    return real_data.drop(index=baseline_rows.index).reset_index(drop=True)


@pytest.fixture(scope="session")
def baseline(
    baseline_rows: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """statistics.json and constraints.json of ``baseline_rows``, by the project's node and
    parameters."""
    return create_data_quality_baseline(baseline_rows, parameters["data_quality_baseline"])


@pytest.fixture(scope="session")
def parameters() -> dict[str, Any]:
    """The project's base parameters, as ``kedro run`` loads them."""
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from tests.support.project import PROJECT_ROOT  # noqa: PLC0415

    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )
    return loader["parameters"]
