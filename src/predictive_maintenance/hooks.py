"""Project hooks."""

from __future__ import annotations

import logging
import time
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

#: Catalog entry the timings are saved to (skipped if the catalog has none).
TIMINGS_DATASET = "run_timings"


class NodeTimingHooks:
    """Reports each node's time on the console and records the run's timings.

    Logs one line per node (its name and seconds) and, at the end, the pipeline's wall time. Saves
    the catalog entry ``run_timings`` after every successful run: when the pipeline started (epoch
    seconds, so a benchmark can tell the start-up from the pipeline), the runner's wall time next to
    the sum of the nodes' own times, so catalog I/O and framework overhead show up as the difference
    (``benchmarks/kedro_run_timing.py`` reads it).
    """

    def __init__(self) -> None:
        self._pipeline_started = 0.0
        self._pipeline_started_at = 0.0
        self._node_started: dict[str, float] = {}
        self._node_seconds: dict[str, float] = {}

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any) -> None:
        self._node_seconds.clear()
        self._pipeline_started_at = time.time()
        self._pipeline_started = time.perf_counter()
        names = ", ".join(run_params.get("pipeline_names") or ["__default__"])
        count = len(pipeline.nodes)
        logger.info("Running %d node%s of %s", count, "" if count == 1 else "s", names)

    @hook_impl
    def before_node_run(self, node: Any) -> None:
        self._node_started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        started = self._node_started.pop(node.name, None)
        if started is not None:
            seconds = time.perf_counter() - started
            self._node_seconds[node.name] = seconds
            logger.info("  %-40s %6.2f s", node.name, seconds)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        wall = time.perf_counter() - self._pipeline_started
        nodes_total = sum(self._node_seconds.values())
        count = len(self._node_seconds)
        logger.info(
            "Pipeline took %.2f s; its %d node%s %.2f s together (the rest is I/O and framework).",
            wall,
            count,
            "" if count == 1 else "s",
            nodes_total,
        )
        if TIMINGS_DATASET not in catalog:
            return
        catalog.save(
            TIMINGS_DATASET,
            {
                "run_id": run_params.get("run_id"),
                "pipelines": run_params.get("pipeline_names"),
                "pipeline_started_at": round(self._pipeline_started_at, 4),
                "pipeline_wall_seconds": round(wall, 4),
                "nodes_total_seconds": round(nodes_total, 4),
                "nodes": {name: round(seconds, 4) for name, seconds in self._node_seconds.items()},
            },
        )
