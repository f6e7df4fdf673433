"""Project pipelines."""

from __future__ import annotations

import pkgutil
from typing import Final

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from predictive_maintenance import pipelines as pipelines_package


def pipeline_names() -> list[str]:
    """The names :func:`register_pipelines` registers besides ``__default__``: the packages under
    ``pipelines/``, as Kedro's ``find_pipelines`` finds them, without importing them."""
    return sorted(
        module.name for module in pkgutil.iter_modules(pipelines_package.__path__) if module.ispkg
    )


#: What ``kedro run`` runs with no ``--pipeline``: raw data to a deployed model. ``monitoring`` and
#: ``batch_scoring`` run on demand, on data that arrives later (captured traffic, a fleet's file).
DEFAULT_PIPELINES: Final = ("data_engineering", "training", "deployment")


def register_pipelines() -> dict[str, Pipeline]:
    """Registers every pipeline under ``pipelines/``; ``__default__`` runs
    :data:`DEFAULT_PIPELINES` in order."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (pipelines[name] for name in DEFAULT_PIPELINES if name in pipelines), Pipeline([])
    )
    return pipelines
