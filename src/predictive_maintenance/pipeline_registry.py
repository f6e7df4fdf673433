"""Project pipelines."""

from __future__ import annotations

import pkgutil

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from predictive_maintenance import pipelines as pipelines_package


def pipeline_names() -> list[str]:
    """The names :func:`register_pipelines` registers besides ``__default__``: the packages under
    ``pipelines/``, as Kedro's ``find_pipelines`` finds them, without importing them."""
    return sorted(
        module.name for module in pkgutil.iter_modules(pipelines_package.__path__) if module.ispkg
    )


def register_pipelines() -> dict[str, Pipeline]:
    """Registers every pipeline under ``pipelines/``; ``__default__`` runs them all in order."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values())
    return pipelines
