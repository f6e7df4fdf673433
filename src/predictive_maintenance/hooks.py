"""Project hooks."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

TIMINGS_FILE = Path("data") / "09_tracking" / "run_timings.json"


class NodeTimingHooks:
    """Records how long each node and the whole pipeline took.

    Writes ``data/09_tracking/run_timings.json`` after every successful run: the runner's wall time
    next to the sum of the nodes' own times, so catalog I/O and framework overhead show up as the
    difference (``benchmarks/kedro_run_timing.py`` reads it).
    """

    def __init__(self) -> None:
        self._project_path: Path | None = None
        self._pipeline_started = 0.0
        self._node_started: dict[str, float] = {}
        self._node_seconds: dict[str, float] = {}

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        self._project_path = Path(context.project_path)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        self._node_seconds.clear()
        self._pipeline_started = time.perf_counter()

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        started = self._node_started.pop(node.name, None)
        if started is not None:
            self._node_seconds[node.name] = time.perf_counter() - started

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any]) -> None:
        wall = time.perf_counter() - self._pipeline_started
        nodes_total = sum(self._node_seconds.values())
        logger.info(
            "Pipeline took %.2f s; its %d nodes %.2f s together (the rest is I/O and framework).",
            wall,
            len(self._node_seconds),
            nodes_total,
        )
        if self._project_path is None:
            return
        report = {
            "run_id": run_params.get("run_id"),
            "pipeline_name": run_params.get("pipeline_name"),
            "pipeline_wall_seconds": round(wall, 4),
            "nodes_total_seconds": round(nodes_total, 4),
            "nodes": {name: round(seconds, 4) for name, seconds in self._node_seconds.items()},
        }
        path = self._project_path / TIMINGS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
