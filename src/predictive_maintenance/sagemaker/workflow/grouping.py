"""Which Kedro nodes run together as one SageMaker job: a pure function of the pipeline.

Inside a group, data passes in memory; a dataset one group makes and another reads crosses a job
boundary and is persisted (S3 on AWS, files locally). Groups are:

- ``namespace`` (default): the node's top-level namespace (``evaluate.score_test_set`` ->
  ``evaluate``); a node without one is a group of its own;
- ``tag``: the first of ``group_tags`` the node has, else a group of its own;
- ``node``: one group per node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from typing import Any, Final

GROUP_BY: Final = ("namespace", "tag", "node")


class GroupingError(ValueError):
    """The grouping cannot be run as jobs (a cycle between groups, a memory-only dataset across
    a boundary); the message names the groups and datasets."""


def group_key(node: Any, group_by: str, group_tags: Iterable[str] = ()) -> str:
    """The group ``node`` belongs to."""
    if group_by == "namespace" and node.namespace:
        return node.namespace.split(".")[0]
    if group_by == "tag":
        for tag in group_tags:
            if tag in node.tags:
                return tag
    return node.name


def group_nodes(
    nodes: Iterable[Any],
    group_by: str = "namespace",
    group_tags: Iterable[str] = (),
    memory_only: Collection[str] = (),
) -> dict[str, list[Any]]:
    """Groups ``nodes`` (in Kedro's topological order); returns group -> its nodes, groups in an
    order where every group comes after those it reads from.

    Raises:
        GroupingError: a group reads from a group that reads from it, or a ``memory_only``
            dataset would have to cross from one group to another.
    """
    if group_by not in GROUP_BY:
        raise GroupingError(f"group_by must be one of {', '.join(GROUP_BY)}, not {group_by!r}")
    tags = list(group_tags)
    groups: dict[str, list[Any]] = defaultdict(list)
    for node in nodes:
        groups[group_key(node, group_by, tags)].append(node)
    producer = {
        dataset: key
        for key, members in groups.items()
        for node in members
        for dataset in node.outputs
    }
    edges: dict[str, set[str]] = defaultdict(set)
    for key, members in groups.items():
        for node in members:
            for dataset in node.inputs:
                source = producer.get(dataset)
                if source is None or source == key:
                    continue
                if dataset in memory_only:
                    raise GroupingError(
                        f"dataset {dataset} is memory-only (its catalog entry is a "
                        f"MemoryDataset) but would cross from group {source} to group {key} "
                        f"(node {node.name}): group them together, or give it a file dataset"
                    )
                edges[source].add(key)
    order = _topological(list(groups), edges)
    return {key: groups[key] for key in order}


def _topological(groups: list[str], edges: dict[str, set[str]]) -> list[str]:
    """Kahn's algorithm, taking the first-seen ready group each time (stable for a pipeline)."""
    indegree = dict.fromkeys(groups, 0)
    for targets in edges.values():
        for target in targets:
            indegree[target] += 1
    order, waiting = [], list(groups)
    while ready := [group for group in waiting if indegree[group] == 0]:
        order.append(ready[0])
        waiting.remove(ready[0])
        for target in edges.get(ready[0], ()):
            indegree[target] -= 1
    if waiting:
        # Kahn's algorithm leaves the groups on a cycle and those after one; name only the first.
        cyclic = [group for group in waiting if group in _reachable(edges, edges.get(group, ()))]
        raise GroupingError(
            f"the grouping makes a cycle between groups {', '.join(cyclic)}: one reads what "
            "another makes and the other way round; group differently (e.g. group_by: node)"
        )
    return order


def _reachable(edges: dict[str, set[str]], start: Iterable[str]) -> set[str]:
    """The groups reachable from ``start`` (included)."""
    seen: set[str] = set()
    pending = list(start)
    while pending:
        group = pending.pop()
        if group not in seen:
            seen.add(group)
            pending.extend(edges.get(group, ()))
    return seen
