"""The export plan on small Kedro pipelines, the ``pipeline`` settings block, and the job side of
the job contract (parameter overrides, typed; reading a job's inputs). No SDK, no AWS: fast."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from kedro.pipeline import Pipeline, node

from predictive_maintenance.sagemaker.config import BridgeSettings, SageMakerConfigError
from predictive_maintenance.sagemaker.job import (
    VALUE_MANIFEST,
    JobError,
    apply_overrides,
    parameter_overrides,
    read_dataset,
    run_job,
    write_dataset,
    write_outputs,
)
from predictive_maintenance.sagemaker.jobs import job_spec
from predictive_maintenance.sagemaker.workflow.plan import (
    PROCESSING,
    TRAINING,
    PlanError,
    build_plan,
    data_name,
    dataset_dependencies,
    node_names,
)
from predictive_maintenance.sagemaker.workflow.settings import (
    PipelineSettings,
    parse_pipeline_settings,
)
from tests.sagemaker.export_nodes import (
    check_gate,
    combine,
    combine_three,
    passthrough,
    with_options,
)

BRIDGE = BridgeSettings(
    region="eu-west-1",
    bucket="export-tests",
    prefix="plan",
    execution_role_arn="arn:aws:iam::123456789012:role/ExportTests",
    remote_tags=frozenset({"remote"}),
    remote_names=frozenset({"fit_by_name"}),
)


def pipeline_settings(**block) -> PipelineSettings:
    return parse_pipeline_settings({"pipeline": {"name": "export-tests", **block}})


def training_pipeline(
    tags: dict[str, list[str]] | None = None, namespaces: dict[str, str] | None = None
) -> Pipeline:
    """raw -> prepare -> featurise -> train -> evaluate -> summarise (evaluate also reads the
    features)."""
    tags, namespaces = tags or {}, namespaces or {}

    def make(func, inputs, outputs, name):
        return node(
            func, inputs, outputs, name=name, tags=tags.get(name), namespace=namespaces.get(name)
        )

    return Pipeline(
        [
            make(with_options, ["raw", "params:prep"], "clean_rows", "prepare"),
            make(passthrough, "clean_rows", "features", "featurise"),
            make(with_options, ["features", "params:model.booster"], "model", "train"),
            make(combine, ["model", "features"], "metrics", "evaluate"),
            make(passthrough, "metrics", "summary", "summarise"),
        ]
    )


GATE_AND_REGISTRATION = {
    "catalog_datasets": ["registry", "endpoint"],
    "quality_gate": {"node": "check_gate", "metrics": "metrics", "minimums": "gate.minimums"},
    "register": {
        "node": "register",
        "model_data": "model_archive",
        "model_metrics": "metrics",
        "model_package_group": "export-tests",
    },
}


def deployment_pipeline(tags: dict[str, list[str]] | None = None) -> Pipeline:
    """The training pipeline plus packaging, a quality gate, registration and deployment."""
    tags = tags or {}
    return training_pipeline(tags) + Pipeline(
        [
            node(passthrough, "model", "model_archive", name="package"),
            node(check_gate, ["metrics", "params:gate.minimums"], "gate_report", name="check_gate"),
            node(
                combine_three,
                ["model_archive", "metrics", "gate_report"],
                "registry",
                name="register",
            ),
            node(with_options, ["registry", "params:deploy"], "endpoint", name="deploy"),
        ]
    )


# ---- one step per node ---------------------------------------------------------------------------
@pytest.mark.parametrize("group_by", ["namespace", "node"])
def test_one_step_per_node_without_namespaces_or_by_node(group_by):
    # By namespace (the default), a node without one is a step of its own; by node, always.
    settings = pipeline_settings(group_by=group_by)
    plan = build_plan(training_pipeline({"train": ["remote"]}), BRIDGE, settings)

    assert [step.name for step in plan.steps] == [
        "prepare",
        "featurise",
        "train",
        "evaluate",
        "summarise",
    ]
    assert all([n.name for n in step.nodes] == [step.name] for step in plan.steps)
    assert {step.name: step.kind for step in plan.steps} == {
        "prepare": PROCESSING,
        "featurise": PROCESSING,
        "train": TRAINING,
        "evaluate": PROCESSING,
        "summarise": PROCESSING,
    }
    assert {step.name: step.inputs for step in plan.steps} == {
        "prepare": {"raw": "raw"},
        "featurise": {"clean_rows": "clean_rows"},
        "train": {"features": "features"},
        "evaluate": {"model": "model", "features": "features"},
        "summarise": {"metrics": "metrics"},
    }
    # A dataset nothing reads (summary) is kept as a result of its step.
    assert {step.name: step.outputs for step in plan.steps} == {
        "prepare": {"clean_rows": "clean_rows"},
        "featurise": {"features": "features"},
        "train": {"model": "model"},
        "evaluate": {"metrics": "metrics"},
        "summarise": {"summary": "summary"},
    }
    assert plan.producers == {
        "clean_rows": "prepare",
        "features": "featurise",
        "model": "train",
        "metrics": "evaluate",
        "summary": "summarise",
    }
    assert plan.pipeline_inputs == ("raw",)
    assert {step.name: step.parameter_keys for step in plan.steps} == {
        "prepare": ("prep",),
        "featurise": (),
        "train": ("model",),
        "evaluate": (),
        "summarise": (),
    }
    assert dataset_dependencies(plan) == {
        "prepare": set(),
        "featurise": {"prepare"},
        "train": {"featurise"},
        "evaluate": {"train", "featurise"},
        "summarise": {"evaluate"},
    }
    assert plan.gate_node is plan.register_node is plan.gate_step is plan.register_step is None
    assert all(step.depends_on == () and step.catalog_datasets == () for step in plan.steps)


def test_group_by_node_splits_a_namespace_into_steps_named_after_the_nodes():
    pipeline = training_pipeline(namespaces={"prepare": "prep", "featurise": "prep"})
    by_node = build_plan(pipeline, BRIDGE, pipeline_settings(group_by="node"))
    assert [step.name for step in by_node.steps][:2] == ["prep-prepare", "prep-featurise"]
    assert by_node.producers["clean_rows"] == "prep-prepare"
    by_namespace = build_plan(pipeline, BRIDGE, pipeline_settings())
    assert by_namespace.steps[0].name == "prep"
    assert "clean_rows" not in by_namespace.producers


def test_training_steps_are_the_remote_nodes_by_tag_or_by_name():
    pipeline = training_pipeline({"train": ["remote"]}) + Pipeline(
        [node(passthrough, "features", "other_model", name="fit_by_name")]
    )
    kinds = {
        step.name: step.kind for step in build_plan(pipeline, BRIDGE, pipeline_settings()).steps
    }
    assert kinds["train"] == kinds["fit_by_name"] == TRAINING
    assert {name for name, kind in kinds.items() if kind == TRAINING} == {"train", "fit_by_name"}

    no_remote = build_plan(training_pipeline(), BRIDGE, pipeline_settings())
    assert {step.kind for step in no_remote.steps} == {PROCESSING}


def test_whole_parameters_input_means_every_parameter_key():
    pipeline = Pipeline(
        [
            node(with_options, ["raw", "parameters"], "out", name="everything"),
            node(with_options, ["raw", "params:a.b.c"], "out2", name="one_key"),
        ]
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings())
    assert plan.step("everything").parameter_keys == ("*",)
    assert plan.step("one_key").parameter_keys == ("a",)
    assert plan.pipeline_inputs == ("raw",)


def test_pipeline_inputs_are_the_datasets_nothing_makes():
    pipeline = Pipeline(
        [
            node(combine, ["raw_b", "raw_a"], "joined", name="join"),
            node(combine_three, ["joined", "raw_a", "params:x"], "out", name="use"),
            node(combine, ["service", "joined"], "out2", name="from_service"),
        ]
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(catalog_datasets=["service"]))
    assert plan.pipeline_inputs == ("raw_a", "raw_b")  # sorted; no parameter, no catalog dataset
    assert plan.step("use").inputs == {"joined": "joined", "raw_a": "raw_a"}
    assert "raw_a" not in plan.producers
    assert dataset_dependencies(plan)["use"] == {"join"}  # a pipeline input is no dependency


def test_input_and_output_names_are_safe_unique_and_avoid_reserved_names():
    taken: set[str] = set()
    assert data_name("code", taken) == "code-2"  # the processing step's code input
    assert data_name("kedro-job", taken) == "kedro-job-2"  # every job's spec input
    assert data_name("prep.features@pandas", taken) == "prep-features-pandas"
    assert data_name("Data", taken) == "Data"
    assert data_name("data", taken) == "data-2"  # unique regardless of case
    assert data_name("___", taken) == "data-3"
    assert len(data_name("x" * 100, set())) <= 64

    pipeline = Pipeline([node(combine, ["code", "Code"], "CODE", name="odd.names")])
    step = build_plan(pipeline, BRIDGE, pipeline_settings()).steps[0]
    assert step.name == "odd-names"
    names = [*step.inputs.values(), *step.outputs.values()]
    assert "code" not in names
    assert len({name.lower() for name in names}) == 3


# ---- grouping -----------------------------------------------------------------------------------
def test_group_by_namespace_merges_nodes_and_keeps_intermediate_datasets_inside():
    pipeline = training_pipeline(
        {"train": ["remote"]}, namespaces={"prepare": "prep", "featurise": "prep.inner"}
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(group_by="namespace"))

    assert [step.name for step in plan.steps] == ["prep", "train", "evaluate", "summarise"]
    prep = plan.step("prep")
    assert [n.name for n in prep.nodes] == ["prep.prepare", "prep.inner.featurise"]
    assert prep.kind == PROCESSING
    # clean_rows is made and read inside the step: neither an input nor an output of any step.
    assert prep.inputs == {"raw": "raw"}
    assert prep.outputs == {"features": "features"}
    assert "clean_rows" not in plan.producers
    assert all("clean_rows" not in step.inputs for step in plan.steps)
    assert prep.parameter_keys == ("prep",)
    assert dataset_dependencies(plan) == {
        "prep": set(),
        "train": {"prep"},
        "evaluate": {"train", "prep"},
        "summarise": {"evaluate"},
    }
    assert sorted(node_names(plan.steps)) == sorted(n.name for n in pipeline.nodes)


def test_a_group_with_a_remote_node_is_a_training_step():
    pipeline = training_pipeline(
        {"train": ["remote"]}, namespaces={"featurise": "fit", "train": "fit"}
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(group_by="namespace"))
    fit = plan.step("fit")
    assert fit.kind == TRAINING
    assert [n.name for n in fit.nodes] == ["fit.featurise", "fit.train"]
    # features is also read by evaluate, outside the group: it leaves the step.
    assert fit.outputs == {"features": "features", "model": "model"}
    assert plan.step("evaluate").inputs == {"model": "model", "features": "features"}
    assert dataset_dependencies(plan)["evaluate"] == {"fit"}


def test_group_by_tag_merges_the_nodes_of_each_group_tag():
    pipeline = training_pipeline(
        {"evaluate": ["reporting"], "summarise": ["reporting", "other"], "train": ["remote"]}
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(group_by="tag", group_tags=["reporting"]))

    assert [step.name for step in plan.steps] == ["prepare", "featurise", "train", "reporting"]
    reporting = plan.step("reporting")
    assert [n.name for n in reporting.nodes] == ["evaluate", "summarise"]
    assert reporting.inputs == {"model": "model", "features": "features"}
    assert reporting.outputs == {"summary": "summary"}  # metrics stays inside
    assert "metrics" not in plan.producers
    assert dataset_dependencies(plan)["reporting"] == {"train", "featurise"}


def test_group_tags_order_decides_between_two_group_tags():
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "a", name="first", tags=["x", "y"]),
            node(passthrough, "a", "b", name="second", tags=["y"]),
        ]
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(group_by="tag", group_tags=["y", "x"]))
    assert [(step.name, len(step.nodes)) for step in plan.steps] == [("y", 2)]


def test_a_grouping_that_makes_a_cycle_is_refused_naming_the_steps():
    # g = {prepare, evaluate}: g -> featurise -> train -> g.
    pipeline = training_pipeline({"prepare": ["g"], "evaluate": ["g"]})
    with pytest.raises(PlanError, match="cycle") as raised:
        build_plan(pipeline, BRIDGE, pipeline_settings(group_by="tag", group_tags=["g"]))
    message = str(raised.value)
    assert "pipeline.group_by tag" in message
    assert "between groups g, featurise, train:" in message
    assert "prepare" not in message  # names steps, not nodes
    assert "summarise" not in message  # after the cycle, not on it


def test_a_memory_only_dataset_may_not_cross_steps_but_may_stay_inside_one():
    pipeline = training_pipeline(namespaces={"prepare": "prep", "featurise": "prep"})
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(), memory_only={"clean_rows"})
    assert "clean_rows" not in plan.producers  # made and read inside step prep
    with pytest.raises(PlanError) as raised:
        build_plan(pipeline, BRIDGE, pipeline_settings(group_by="node"), memory_only={"clean_rows"})
    message = str(raised.value)
    assert message.startswith("pipeline.group_by node: dataset clean_rows is memory-only")
    assert "from group prep.prepare to group prep.featurise" in message


@pytest.mark.parametrize(
    ("group_by", "first", "second"),
    [
        ("node", {"name": "x", "namespace": "a"}, {"name": "a-x"}),  # a.x -> a-x
        ("namespace", {"name": "x", "namespace": "a-x"}, {"name": "a.x"}),  # group a-x, a.x
    ],
)
def test_two_groups_with_the_same_step_name_are_refused(group_by, first, second):
    pipeline = Pipeline(
        [node(passthrough, "raw", "a", **first), node(passthrough, "a", "b", **second)]
    )
    with pytest.raises(PlanError, match=r"two steps would share a name: \['a-x', 'a-x'\]"):
        build_plan(pipeline, BRIDGE, pipeline_settings(group_by=group_by))


# ---- catalog datasets, quality gate, registration ------------------------------------------------
def test_catalog_datasets_are_loaded_and_saved_in_the_step_not_passed_as_files():
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "service", name="save"),
            node(combine, ["service", "raw"], "out", name="load"),
        ]
    )
    plan = build_plan(pipeline, BRIDGE, pipeline_settings(catalog_datasets=["service"]))
    assert plan.step("save").catalog_datasets == plan.step("load").catalog_datasets == ("service",)
    assert plan.step("save").outputs == {}
    assert plan.step("load").inputs == {"raw": "raw"}
    assert "service" not in plan.producers
    assert plan.pipeline_inputs == ("raw",)


def test_a_catalog_dataset_between_job_steps_orders_the_steps():
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "service", name="save"),
            node(combine, ["service", "raw"], "out", name="load"),
        ]
    )
    settings = pipeline_settings(catalog_datasets=["service"])
    try:
        plan = build_plan(pipeline, BRIDGE, settings)
    except PlanError:  # refusing such a pipeline would be a fix too, if it names the dataset
        with pytest.raises(PlanError, match="service"):
            build_plan(pipeline, BRIDGE, settings)
        return
    assert "save" in plan.step("load").depends_on


def test_transcoded_datasets_are_refused_not_split_in_two():
    pipeline = Pipeline(
        [
            node(passthrough, "raw", "table@pandas", name="write"),
            node(passthrough, "table@spark", "out", name="read"),
        ]
    )
    with pytest.raises(PlanError, match=r"table@pandas, table@spark"):
        build_plan(pipeline, BRIDGE, pipeline_settings())


def test_quality_gate_and_registration_nodes_leave_the_job_steps():
    plan = build_plan(deployment_pipeline(), BRIDGE, pipeline_settings(**GATE_AND_REGISTRATION))

    assert plan.gate_node.name == plan.gate_step == "check_gate"
    assert plan.register_node.name == plan.register_step == "register"
    assert "check_gate" not in node_names(plan.steps)
    assert "register" not in node_names(plan.steps)
    # What only the special nodes read still leaves its step (the gate reads metrics as a
    # property file, registration the model archive).
    assert plan.producers["model_archive"] == "package"
    assert plan.producers["metrics"] == "evaluate"
    # deploy loads the registry registration saves: no data reference, a dependency instead.
    deploy = plan.step("deploy")
    assert deploy.depends_on == ("register",)
    assert deploy.inputs == {}
    assert deploy.outputs == {}
    assert deploy.catalog_datasets == ("endpoint", "registry")
    assert deploy.parameter_keys == ("deploy",)
    assert all(step.depends_on == () for step in plan.steps if step.name != "deploy")
    assert plan.pipeline_inputs == ("raw",)


def test_a_dataset_read_by_the_gate_leaves_its_group():
    tags = {"evaluate": ["reporting"], "summarise": ["reporting"]}
    plan = build_plan(
        deployment_pipeline(tags),
        BRIDGE,
        pipeline_settings(group_by="tag", group_tags=["reporting"], **GATE_AND_REGISTRATION),
    )
    assert plan.step("reporting").outputs == {"metrics": "metrics", "summary": "summary"}
    assert plan.producers["metrics"] == "reporting"


@pytest.mark.parametrize(
    ("dataset", "reader"), [("metrics", "check_gate"), ("model_archive", "register")]
)
def test_a_memory_only_dataset_may_not_cross_into_the_gate_or_registration(dataset, reader):
    settings = pipeline_settings(**GATE_AND_REGISTRATION)
    # Without summarise, metrics is read by the gate and registration only.
    pipeline = Pipeline([n for n in deployment_pipeline().nodes if n.name != "summarise"])
    assert build_plan(pipeline, BRIDGE, settings, memory_only={"raw"})  # made by no step
    with pytest.raises(PlanError) as raised:
        build_plan(pipeline, BRIDGE, settings, memory_only={dataset})
    message = str(raised.value)
    assert f"dataset {dataset} is memory-only" in message
    assert f"to the {reader} node's step" in message


def test_a_job_step_may_not_read_the_gate_output():
    pipeline = deployment_pipeline() + Pipeline(
        [node(passthrough, "gate_report", "copied_report", name="copy_report")]
    )
    with pytest.raises(PlanError, match=r"gate_report.*quality_gate.*copy_report"):
        build_plan(pipeline, BRIDGE, pipeline_settings(**GATE_AND_REGISTRATION))


def test_a_gate_node_outside_the_pipeline_is_left_out_and_registration_must_read_exported_data(
    caplog,
):
    # A partial pipeline (e.g. `--pipeline training`) has no gate: it is left out, with a warning.
    plan = build_plan(
        deployment_pipeline(),
        BRIDGE,
        pipeline_settings(
            **{
                **GATE_AND_REGISTRATION,
                "quality_gate": {**GATE_AND_REGISTRATION["quality_gate"], "node": "nope"},
            }
        ),
    )
    assert (plan.gate_node, plan.gate_step) == (None, None)
    assert "pipeline.quality_gate.node nope is not in this Kedro pipeline" in caplog.text
    # registration reads a pipeline input, which no step exports
    pipeline = Pipeline(
        [
            *[n for n in deployment_pipeline().nodes if n.name != "register"],
            node(
                combine_three,
                ["model_archive", "metrics", "external_spec"],
                "registry",
                name="register",
            ),
        ]
    )
    with pytest.raises(PlanError, match=r"external_spec, read by the register node"):
        build_plan(pipeline, BRIDGE, pipeline_settings(**GATE_AND_REGISTRATION))


def test_a_service_the_registration_reads_is_loaded_in_its_step_not_staged():
    """The registration node reads this run's MLflow run (``tracking_run``, a catalog service):
    RegisterModel needs no data of it, and nothing stages it as a pipeline input."""
    pipeline = Pipeline(
        [
            *[n for n in deployment_pipeline().nodes if n.name != "register"],
            node(
                combine_three,
                ["model_archive", "metrics", "tracking_run"],
                "registry",
                name="register",
            ),
        ]
    )
    settings = pipeline_settings(
        **{**GATE_AND_REGISTRATION, "catalog_datasets": ["registry", "endpoint", "tracking_run"]}
    )

    plan = build_plan(pipeline, BRIDGE, settings)

    assert plan.register_node.inputs == ["model_archive", "metrics", "tracking_run"]
    assert "tracking_run" not in plan.pipeline_inputs
    assert not any("tracking_run" in step.inputs for step in plan.steps)
    # Not a service: then it must be made by a step, and the error says where services go.
    with pytest.raises(PlanError, match=r"tracking_run, read by the register node.*catalog_data"):
        build_plan(pipeline, BRIDGE, pipeline_settings(**GATE_AND_REGISTRATION))


# ---- the pipeline settings block -----------------------------------------------------------------
def test_pipeline_settings_defaults():
    settings = pipeline_settings()
    assert settings.name == "export-tests"
    assert settings.group_by == "namespace"
    assert settings.group_tags == ()
    assert settings.kedro_pipeline == "__default__"
    assert settings.processing.instance_type == "ml.m5.large"
    assert settings.parameters == ()
    assert settings.catalog_datasets == ()
    assert settings.quality_gate is None
    assert settings.registration is None
    assert settings.endpoint_name is None


def test_pipeline_settings_bindings_and_key_paths():
    settings = pipeline_settings(
        parameters={
            "Eta": {"parameter": "xgboost.booster_params.eta"},
            "MinF1": {"parameter": ["quality_gate", "minimums", "at_chosen_threshold.f1"]},
            "InputDataUri": {"dataset": "ai4i2020_raw"},
            "TrainingInstanceType": {"setting": "training_instance_type"},
            "ApprovalStatus": {"parameter": "registration.approval_status"},
        },
        quality_gate={"node": "gate", "metrics": "metrics", "minimums": "quality_gate.minimums"},
        register={
            "node": "register",
            "model_data": "archive",
            "model_package_group": "group",
            "approval_status_parameter": "ApprovalStatus",
        },
    )
    bindings = {binding.name: binding for binding in settings.parameters}
    assert bindings["Eta"].kedro_parameter == ("xgboost", "booster_params", "eta")
    # A list of keys keeps a dotted key whole.
    assert bindings["MinF1"].kedro_parameter == (
        "quality_gate",
        "minimums",
        "at_chosen_threshold.f1",
    )
    assert bindings["InputDataUri"].dataset == "ai4i2020_raw"
    assert bindings["InputDataUri"].kedro_parameter is None
    assert bindings["TrainingInstanceType"].setting == "training_instance_type"
    assert settings.quality_gate.minimums == ("quality_gate", "minimums")
    assert settings.registration.content_types == ("text/csv",)
    assert settings.registration.inference_instances == ("ml.m5.large",)


@pytest.mark.parametrize(
    ("block", "names"),
    [
        ({"grup_by": "tag"}, ["grup_by", "in pipeline"]),
        ({"group_by": "module"}, ["pipeline.group_by", "namespace, tag, node"]),
        ({"group_by": 3}, ["pipeline.group_by"]),
        ({"group_tags": "reporting"}, ["pipeline.group_tags"]),
        ({"name": "my pipeline"}, ["pipeline.name", "'my pipeline'"]),
        ({"name": "p" * 65}, ["pipeline.name"]),
        ({"name": None}, ["pipeline.name"]),
        ({"processing": {"instance_typ": "ml.m5.large"}}, ["instance_typ", "pipeline.processing"]),
        ({"processing": {"instance_count": 0}}, ["pipeline.processing.instance_count"]),
        ({"parameters": {"Eta": "xgboost.eta"}}, ["pipeline.parameters.Eta"]),
        (
            {"parameters": {"Eta": {"parameter": "xgboost.eta", "dataset": "raw"}}},
            ["pipeline.parameters.Eta", "exactly one"],
        ),
        ({"parameters": {"Eta": {}}}, ["pipeline.parameters.Eta", "exactly one"]),
        ({"parameters": {"Eta": {"param": "xgboost.eta"}}}, ["param", "pipeline.parameters.Eta"]),
        ({"parameters": {"Eta": {"parameter": 5}}}, ["pipeline.parameters.Eta"]),
        ({"parameters": {"Eta": {"parameter": []}}}, ["pipeline.parameters.Eta"]),
        ({"parameters": {"Eta": {"dataset": 5}}}, ["pipeline.parameters.Eta"]),
        ({"parameters": {"Eta": {"setting": "gpu"}}}, ["pipeline.parameters.Eta.setting"]),
        ({"parameters": {"bad name": {"parameter": "x"}}}, ["pipeline.parameters.bad name"]),
        ({"parameters": {"E" * 65: {"parameter": "x"}}}, ["pipeline.parameters.EEE"]),
        (
            {"quality_gate": {"node": "g", "metrics": "m", "minimums": "q", "maximums": "x"}},
            ["maximums", "pipeline.quality_gate"],
        ),
        (
            {"quality_gate": {"node": "g", "metrics": "m", "minimums": 3}},
            ["pipeline.quality_gate.minimums"],
        ),
        (
            {"register": {"node": "r", "model_data": "a", "model_package_group": "g", "x": 1}},
            ["pipeline.register", "x"],
        ),
        (
            {
                "register": {
                    "node": "r",
                    "model_data": "a",
                    "model_package_group": "g",
                    "content_types": "text/csv",
                }
            },
            ["pipeline.register.content_types"],
        ),
        ({"catalog_datasets": "registry"}, ["pipeline.catalog_datasets"]),
        ({"endpoint_name": 5}, ["pipeline.endpoint_name"]),
    ],
)
def test_pipeline_settings_errors_name_the_key(block, names):
    with pytest.raises(SageMakerConfigError) as raised:
        parse_pipeline_settings({"pipeline": {"name": "export-tests", **block}})
    for name in names:
        assert name in str(raised.value)


def test_pipeline_settings_need_a_pipeline_block():
    with pytest.raises(SageMakerConfigError, match=r"pipeline\.name"):
        parse_pipeline_settings({})
    with pytest.raises(SageMakerConfigError, match="pipeline must be Mapping"):
        parse_pipeline_settings({"pipeline": ["name"]})


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"quality_gate": {"metrics": "m", "minimums": "q"}}, "pipeline.quality_gate.node"),
        (
            {"register": {"node": "r", "model_data": "a"}},
            "pipeline.register.model_package_group",
        ),
    ],
)
def test_a_missing_required_key_is_named(block, key):
    with pytest.raises(SageMakerConfigError, match=key.replace(".", r"\.")):
        parse_pipeline_settings({"pipeline": {"name": "export-tests", **block}})


# ---- the job: parameter overrides ----------------------------------------------------------------
def test_parameter_overrides_decode_key_paths_in_variable_order_and_keep_the_raw_value():
    environ = {
        "KEDRO_PARAM_10": '["deploy_model"]=false',
        "KEDRO_PARAM_2": '["quality_gate", "minimums", "at_chosen_threshold.f1"]=0.9',
        "KEDRO_PARAM_0": '["registration", "approval_status"]=Approved',
        "KEDRO_PARAM_1": '["xgboost", "booster_params", "max_depth"]=8',
        "PATH": "/usr/bin",
    }
    # The value's type comes from the Kedro parameter it overrides (apply_overrides), not from
    # the text: here every value is still the string SageMaker rendered.
    assert parameter_overrides(environ) == [
        ("KEDRO_PARAM_0", ["registration", "approval_status"], "Approved"),
        ("KEDRO_PARAM_1", ["xgboost", "booster_params", "max_depth"], "8"),
        ("KEDRO_PARAM_2", ["quality_gate", "minimums", "at_chosen_threshold.f1"], "0.9"),
        ("KEDRO_PARAM_10", ["deploy_model"], "false"),  # 10 after 2: numeric order
    ]
    assert parameter_overrides({"KEDRO_PARAM_0": '["note"]=a=b'}) == [
        ("KEDRO_PARAM_0", ["note"], "a=b")
    ]
    assert parameter_overrides({"KEDRO_PARAM_0": '["note"]='}) == [("KEDRO_PARAM_0", ["note"], "")]
    assert parameter_overrides({"PATH": "/usr/bin"}) == []


def test_apply_overrides_sets_existing_key_paths_only_typed_like_the_kedro_value():
    parameters = {
        "xgboost": {"booster_params": {"eta": 0.1, "max_depth": 6}},
        "quality_gate": {"minimums": {"at_chosen_threshold.f1": 0.8, "roc_auc": 0.95}},
        "deploy_model": True,
    }
    overrides = parameter_overrides(
        {
            "KEDRO_PARAM_0": '["xgboost", "booster_params", "eta"]=0.3',
            "KEDRO_PARAM_1": '["quality_gate", "minimums", "at_chosen_threshold.f1"]=0.5',
            "KEDRO_PARAM_2": '["deploy_model"]=false',
            "KEDRO_PARAM_3": '["xgboost", "booster_params", "etaa"]=1',  # a typo: not created
            "KEDRO_PARAM_4": '["xgboost", "booster_params", "max_depth"]=8',
        }
    )
    apply_overrides(parameters, overrides)
    assert parameters == {
        "xgboost": {"booster_params": {"eta": 0.3, "max_depth": 8}},
        "quality_gate": {"minimums": {"at_chosen_threshold.f1": 0.5, "roc_auc": 0.95}},
        "deploy_model": False,
    }
    assert type(parameters["xgboost"]["booster_params"]["max_depth"]) is int
    assert type(parameters["xgboost"]["booster_params"]["eta"]) is float


def test_an_override_of_another_jobs_parameter_does_not_stop_the_others():
    parameters = {"deploy_model": True, "xgboost": 3}
    apply_overrides(
        parameters,
        [
            ("KEDRO_PARAM_0", ["xgboost", "booster_params", "eta"], "0.3"),  # xgboost is no dict
            ("KEDRO_PARAM_1", ["registration", "approval_status"], "Approved"),  # not here
            ("KEDRO_PARAM_2", ["deploy_model"], "false"),
        ],
    )
    assert parameters == {"deploy_model": False, "xgboost": 3}


def test_a_bad_override_value_is_a_job_error_naming_the_variable_and_parameter():
    with pytest.raises(JobError, match=r"KEDRO_PARAM_0 \(parameter deploy_model\): 'maybe'"):
        apply_overrides(
            {"deploy_model": True},
            parameter_overrides({"KEDRO_PARAM_0": '["deploy_model"]=maybe'}),
        )


@pytest.mark.parametrize(
    "text",
    ["eta=0.3", '["eta"]0.3', '{"eta": 1}=0.3', '"eta"=0.3', "", '["eta"'],
)
def test_a_malformed_parameter_variable_is_a_job_error_naming_it(text):
    with pytest.raises(JobError, match="KEDRO_PARAM_4") as raised:
        parameter_overrides({"KEDRO_PARAM_0": '["a"]=1', "KEDRO_PARAM_4": text})
    assert "<JSON key path>=<value>" in str(raised.value)


def test_a_parameter_variable_with_a_bad_suffix_is_a_job_error_naming_it():
    with pytest.raises(JobError, match="KEDRO_PARAM_ETA"):
        parameter_overrides({"KEDRO_PARAM_ETA": '["eta"]=0.3'})


@pytest.mark.parametrize("rendered", ["False", "false"])
def test_run_job_applies_the_overrides_before_the_nodes_read_their_parameters(
    tmp_path: Path, rendered: str
):
    """A Boolean pipeline parameter rendered False reaches the node as False (not the truthy
    string "False")."""
    pipeline = Pipeline([node(with_options, ["raw", "params:deploy"], "decision", name="decide")])
    spec = job_spec(
        "decide",
        pipeline.nodes,
        inputs={"raw": "raw"},
        outputs={"decision": "decision"},
        parameters={"deploy": True},
    )
    spec = json.loads(json.dumps(spec))  # as the job reads it from job.json
    write_dataset([1, 2], tmp_path / "raw", "raw", "raw")

    outputs = run_job(spec, {"raw": tmp_path / "raw"}, {"KEDRO_PARAM_0": f'["deploy"]={rendered}'})

    assert outputs == {"decision": {"value": [1, 2], "options": False}}
    assert outputs["decision"]["options"] is False
    assert spec["parameters"] == {"deploy": True}  # the spec itself is left as it was
    assert run_job(spec, {"raw": tmp_path / "raw"}, {})["decision"]["options"] is True


# ---- the job: reading an input -------------------------------------------------------------------
def test_read_dataset_from_a_processing_output_directory(tmp_path: Path):
    value = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.9}}
    manifest = write_dataset(value, tmp_path / "metrics", "metrics", "metrics")
    assert manifest["codec"] == "json"
    assert manifest["dataset"] == "metrics"
    assert manifest["file"] == "metrics.json"
    assert (tmp_path / "metrics" / VALUE_MANIFEST).is_file()
    assert read_dataset(tmp_path / "metrics", "metrics") == value


def test_write_dataset_uses_a_fixed_file_name_where_the_consumer_needs_one(tmp_path: Path):
    manifest = write_dataset(
        b"archive", tmp_path / "model_archive", "model_archive", "model_archive", "model.tar.gz"
    )
    assert manifest["file"] == "model.tar.gz"
    assert sorted(p.name for p in (tmp_path / "model_archive").iterdir()) == [
        VALUE_MANIFEST,
        "model.tar.gz",
    ]
    assert read_dataset(tmp_path / "model_archive", "model_archive") == b"archive"


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def _training_outputs(
    tmp_path: Path, outputs: dict, names: dict, files: dict | None = None
) -> Path:
    """What a training job writes to SM_MODEL_DIR, as SageMaker returns it: one model.tar.gz in
    the channel of the job that reads it."""
    model_dir = tmp_path / "model"
    write_outputs({"outputs": names, "files": files or {}}, outputs, model_dir)
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "model.tar.gz").write_bytes(_tar_gz(model_dir))
    return channel


def test_read_dataset_from_a_training_jobs_model_archive(tmp_path: Path):
    channel = _training_outputs(
        tmp_path,
        {"model": b"\x00booster", "notes": ["a", 1]},
        {"model": "model", "notes": "notes"},
    )
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model", "notes"]
    assert (tmp_path / "model" / "notes" / VALUE_MANIFEST).is_file()

    assert read_dataset(channel, "model") == b"\x00booster"
    assert read_dataset(channel, "notes") == ["a", 1]
    with pytest.raises(JobError, match=r"input metrics: model\.tar\.gz does not hold it"):
        read_dataset(channel, "metrics")


def test_read_dataset_finds_the_dataset_by_its_manifest_not_by_the_output_name(tmp_path: Path):
    channel = _training_outputs(
        tmp_path, {"prep.features": [3]}, {"prep.features": "prep-features"}
    )
    assert read_dataset(channel, "prep.features") == [3]
    with pytest.raises(JobError, match="does not hold it"):
        read_dataset(channel, "prep-features")


def test_read_dataset_of_a_plain_archive_input_gives_its_bytes(tmp_path: Path):
    # A pipeline input that is an archive (no job wrote it: no manifests) is a plain file.
    content = tmp_path / "content"
    content.mkdir()
    (content / "xgboost-model").write_bytes(b"model")
    (tmp_path / "input").mkdir()
    archive = _tar_gz(content)
    (tmp_path / "input" / "model.tar.gz").write_bytes(archive)
    assert read_dataset(tmp_path / "input", "model") == archive


def test_read_dataset_from_a_job_archive_without_the_dataset_is_an_error(tmp_path: Path):
    content = tmp_path / "content"
    write_dataset({"a": 1}, content / "other", "other", "other")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "model.tar.gz").write_bytes(_tar_gz(content))
    with pytest.raises(JobError, match=r"input model: model\.tar\.gz does not hold it"):
        read_dataset(tmp_path / "input", "model")


def test_read_dataset_from_a_single_plain_file_gives_its_bytes(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "ai4i2020.csv").write_bytes(b"UDI,Type\r\n1,M\r\n")
    assert read_dataset(tmp_path / "raw", "ai4i2020_raw") == b"UDI,Type\r\n1,M\r\n"


def test_read_dataset_from_an_ambiguous_directory_is_an_error(tmp_path: Path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.csv").write_bytes(b"a")
    (tmp_path / "raw" / "b.csv").write_bytes(b"b")
    with pytest.raises(JobError, match=r"input raw_data: .* holds a\.csv, b\.csv"):
        read_dataset(tmp_path / "raw", "raw_data")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobError, match="holds nothing"):
        read_dataset(tmp_path / "empty", "raw_data")


def test_a_tampered_value_file_is_an_error_with_both_digests(tmp_path: Path):
    manifest = write_dataset(b"original bytes", tmp_path / "archive", "archive", "archive")
    path = tmp_path / "archive" / manifest["file"]
    path.write_bytes(b"tampered bytes")
    actual = hashlib.sha256(b"tampered bytes").hexdigest()
    with pytest.raises(JobError) as raised:
        read_dataset(tmp_path / "archive", "archive")
    message = str(raised.value)
    assert "input archive" in message
    assert actual in message
    assert manifest["sha256"] in message


def test_a_tampered_file_inside_a_model_archive_is_an_error(tmp_path: Path):
    model_dir = tmp_path / "model"
    write_outputs({"outputs": {"model": "model"}}, {"model": b"model"}, model_dir)
    manifest = json.loads((model_dir / "model" / VALUE_MANIFEST).read_text())
    (model_dir / "model" / manifest["file"]).write_bytes(b"other")
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "model.tar.gz").write_bytes(_tar_gz(model_dir))
    with pytest.raises(JobError, match=hashlib.sha256(b"other").hexdigest()):
        read_dataset(tmp_path / "input", "model")


def test_a_manifest_naming_a_missing_file_is_an_error(tmp_path: Path):
    write_dataset([1, 2], tmp_path / "values", "values", "values")
    manifest = json.loads((tmp_path / "values" / VALUE_MANIFEST).read_text())
    (tmp_path / "values" / manifest["file"]).unlink()
    with pytest.raises(JobError, match="is missing"):
        read_dataset(tmp_path / "values", "values")


def test_a_manifest_naming_a_file_outside_its_directory_is_an_error(tmp_path: Path):
    write_dataset([1, 2], tmp_path / "values", "values", "values")
    (tmp_path / "elsewhere.json").write_text("[1, 2]")
    path = tmp_path / "values" / VALUE_MANIFEST
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "file": "../elsewhere.json"}))
    with pytest.raises(JobError, match="is missing"):
        read_dataset(tmp_path / "values", "values")
