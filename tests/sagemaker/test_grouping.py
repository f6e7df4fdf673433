"""Which Kedro nodes run together as one SageMaker job: ``group_nodes``, a pure function of the
nodes. Tiny pipelines of module-level functions; no settings, no SDK."""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline, node

from predictive_maintenance.sagemaker.workflow.grouping import (
    GROUP_BY,
    GroupingError,
    group_key,
    group_nodes,
)
from tests.sagemaker.export_nodes import combine, passthrough


def grouped(pipeline: Pipeline, group_by: str = "namespace", **options) -> dict[str, list[str]]:
    """group -> the names of its nodes, in the order group_nodes returns them."""
    groups = group_nodes(pipeline.nodes, group_by, **options)
    return {key: [n.name for n in members] for key, members in groups.items()}


def chain(*names: str, **node_options) -> Pipeline:
    """raw -> names[0] -> names[1] -> ...: each node reads what the one before made."""
    nodes, source = [], "raw"
    for name in names:
        options = node_options.get(name, {})
        nodes.append(node(passthrough, source, f"{name}_out", name=name, **options))
        source = f"{name}_out"
    return Pipeline(nodes)


# ---- namespace -----------------------------------------------------------------------------------
def test_namespace_groups_by_the_top_level_namespace():
    pipeline = chain(
        "load",
        "clean",
        "fit",
        "score",
        load={"namespace": "prep"},
        clean={"namespace": "prep.inner.deeper"},  # nested: still the top-level namespace
        fit={"namespace": "model"},
        score={"namespace": "model.eval"},
    )
    assert grouped(pipeline) == {
        "prep": ["prep.load", "prep.inner.deeper.clean"],
        "model": ["model.fit", "model.eval.score"],
    }
    assert group_key(pipeline.nodes[1], "namespace") == "prep"


def test_a_node_without_a_namespace_is_a_group_of_its_own():
    pipeline = chain(
        "load",
        "clean",
        "report",
        "publish",
        load={"namespace": "prep"},
        clean={"namespace": "prep"},
    )
    assert grouped(pipeline) == {
        "prep": ["prep.load", "prep.clean"],
        "report": ["report"],
        "publish": ["publish"],
    }


def test_namespace_is_the_default_grouping():
    pipeline = chain("a", "b", a={"namespace": "x"}, b={"namespace": "x"})
    assert list(group_nodes(pipeline.nodes)) == ["x"]


# ---- tag -----------------------------------------------------------------------------------------
def test_tag_groups_by_the_first_matching_group_tag_in_group_tags_order():
    # Independent nodes (each reads raw), so any grouping is acyclic.
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "a", name="first", tags=["x", "y"]),
            node(passthrough, "raw", "b", name="second", tags=["y"]),
            node(passthrough, "raw", "c", name="third", tags=["x"]),
            node(passthrough, "raw", "d", name="fourth", tags=["z"]),  # not a group tag
        ]
    )
    by_y_first = grouped(pipeline, "tag", group_tags=["y", "x"])
    assert {key: sorted(names) for key, names in by_y_first.items()} == {
        "y": ["first", "second"],
        "x": ["third"],
        "fourth": ["fourth"],
    }
    by_x_first = grouped(pipeline, "tag", group_tags=["x", "y"])
    assert {key: sorted(names) for key, names in by_x_first.items()} == {
        "x": ["first", "third"],
        "y": ["second"],
        "fourth": ["fourth"],
    }


def test_tag_grouping_ignores_namespaces_and_no_group_tags_means_one_group_per_node():
    pipeline = chain("a", "b", a={"namespace": "n", "tags": ["t"]}, b={"namespace": "n"})
    assert grouped(pipeline, "tag", group_tags=["t"]) == {"t": ["n.a"], "n.b": ["n.b"]}
    assert grouped(pipeline, "tag") == {"n.a": ["n.a"], "n.b": ["n.b"]}


# ---- node ----------------------------------------------------------------------------------------
def test_node_grouping_makes_one_group_per_node_whatever_its_namespace_or_tags():
    pipeline = chain(
        "a", "b", "c", a={"namespace": "n", "tags": ["t"]}, b={"namespace": "n", "tags": ["t"]}
    )
    assert grouped(pipeline, "node", group_tags=["t"]) == {
        "n.a": ["n.a"],
        "n.b": ["n.b"],
        "c": ["c"],
    }


# ---- order ---------------------------------------------------------------------------------------
def test_groups_come_after_the_groups_they_read_from():
    # A valid topological order of the nodes in which group x is seen first, though x reads
    # from y (x.x2 reads q, which y makes): y's job must run first.
    x1 = node(passthrough, "raw", "p", name="x1", namespace="x")
    y1 = node(passthrough, "raw", "q", name="y1", namespace="y")
    x2 = node(combine, ["p", "q"], "r", name="x2", namespace="x")
    z1 = node(passthrough, "r", "s", name="z1", namespace="z")
    groups = group_nodes([x1, y1, x2, z1])
    assert list(groups) == ["y", "x", "z"]
    assert [n.name for n in groups["x"]] == ["x.x1", "x.x2"]  # nodes keep their order


def test_independent_groups_keep_the_order_they_are_first_seen_in():
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "a", name="a1", namespace="alpha"),
            node(passthrough, "raw", "b", name="b1", namespace="beta"),
            node(combine, ["a", "b"], "c", name="c1", namespace="gamma"),
        ]
    )
    groups = list(group_nodes(pipeline.nodes))
    assert groups[-1] == "gamma"
    assert set(groups[:2]) == {"alpha", "beta"}
    assert list(group_nodes(list(pipeline.nodes))) == groups  # deterministic


# ---- refusals ------------------------------------------------------------------------------------
def test_a_cycle_between_groups_is_refused_naming_the_groups_on_it():
    # g = {first, third}: g -> second -> g. "after" reads from g, but is not on the cycle.
    pipeline = chain(
        "first", "second", "third", "after", first={"tags": ["g"]}, third={"tags": ["g"]}
    )
    with pytest.raises(GroupingError, match="cycle") as raised:
        group_nodes(pipeline.nodes, "tag", group_tags=["g"])
    message = str(raised.value)
    assert "between groups g, second:" in message
    assert "after" not in message
    assert "first" not in message  # groups are named, not their nodes
    # A grouping that separates them is fine.
    assert list(group_nodes(pipeline.nodes, "node")) == ["first", "second", "third", "after"]


@pytest.mark.filterwarnings("ignore:Namespace 'one' is interrupted")
def test_a_cycle_through_three_groups_names_all_three():
    pipeline = chain(
        "a",
        "b",
        "c",
        "d",
        a={"namespace": "one"},
        b={"namespace": "two"},
        c={"namespace": "three"},
        d={"namespace": "one"},
    )
    with pytest.raises(GroupingError, match="cycle between groups one, two, three:"):
        group_nodes(pipeline.nodes)


def test_a_memory_only_dataset_crossing_groups_is_refused_naming_it_and_both_groups():
    pipeline = chain("make", "use", make={"namespace": "maker"}, use={"namespace": "user"})
    with pytest.raises(GroupingError) as raised:
        group_nodes(pipeline.nodes, memory_only={"make_out"})
    message = str(raised.value)
    assert "dataset make_out is memory-only" in message
    assert "from group maker to group user" in message
    assert "node user.use" in message
    # Other memory-only datasets, or none crossing, are fine.
    assert list(group_nodes(pipeline.nodes, memory_only={"raw", "use_out"})) == ["maker", "user"]


def test_a_memory_only_dataset_inside_one_group_is_fine():
    pipeline = chain("make", "use", "next", make={"namespace": "g"}, use={"namespace": "g"})
    groups = group_nodes(pipeline.nodes, memory_only={"make_out"})
    assert [[n.name for n in members] for members in groups.values()] == [
        ["g.make", "g.use"],
        ["next"],
    ]
    # By node, the same dataset would cross.
    with pytest.raises(GroupingError, match=r"from group g\.make to group g\.use"):
        group_nodes(pipeline.nodes, "node", memory_only={"make_out"})


def test_an_unknown_group_by_is_refused_naming_the_choices():
    pipeline = chain("a")
    with pytest.raises(GroupingError, match=r"one of namespace, tag, node, not 'module'"):
        group_nodes(pipeline.nodes, "module")
    assert GROUP_BY == ("namespace", "tag", "node")


def test_no_nodes_no_groups():
    assert group_nodes([]) == {}
