"""Node functions of the small Kedro pipelines the export tests plan and run.

Module-level functions, so a node description can name them by path
(``tests.sagemaker.export_nodes:...``). Nothing is imported at module level.
"""

from __future__ import annotations

from typing import Any


def passthrough(value: Any) -> Any:
    """One input, one output."""
    return value


def with_options(value: Any, options: Any) -> Any:
    """A dataset and a parameter."""
    return {"value": value, "options": options}


def combine(left: Any, right: Any) -> list[Any]:
    """Two inputs, one output."""
    return [left, right]


def combine_three(first: Any, second: Any, third: Any) -> list[Any]:
    """Three inputs, one output."""
    return [first, second, third]


def fork(value: Any) -> list[Any]:
    """One input, two outputs."""
    return [value, value]


def check_gate(metrics: dict[str, float], minimums: dict[str, float]) -> dict[str, Any]:
    """The quality gate's node: passes if every metric reaches its minimum."""
    return {"passed": all(metrics[name] >= value for name, value in minimums.items())}
