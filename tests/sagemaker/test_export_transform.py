"""The batch_scoring pipeline exported to SageMaker: a model-choice processing step, a Model step
(CreateModel from the registered model package) and a Transform step (Batch Transform).

The project's real definition is compiled once, offline, and checked against botocore's model of
CreateProcessingJob, CreateModel and CreateTransformJob and against the public pipeline-definition
schema (its known false errors named). What Batch Transform does with the model package (split
the file into lines, filter the columns, post mini-batches to the package's serving code, join
the answers to the input) is replayed here with the package's own handlers: its output is the
endpoint's CSV answer, the score the local batch_scoring pipeline gives each row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ParamValidationError
from botocore.validate import validate_parameters
from kedro.config import OmegaConfigLoader
from kedro.pipeline import Pipeline, node

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.pipelines.batch_scoring import create_pipeline
from predictive_maintenance.pipelines.batch_scoring.nodes import select_model
from predictive_maintenance.sagemaker.cli import Export
from predictive_maintenance.sagemaker.config import (
    BridgeSettings,
    SageMakerConfigError,
    parse_settings,
)
from predictive_maintenance.sagemaker.workflow.compiler import CodePackage
from predictive_maintenance.sagemaker.workflow.plan import PlanError, build_plan, effective_settings
from predictive_maintenance.sagemaker.workflow.settings import (
    parse_batch_pipeline_settings,
    settings_for,
)
from predictive_maintenance.serving.inference import model_fn, respond
from predictive_maintenance.serving.package import extract_model_archive
from predictive_maintenance.settings import CONFIG_LOADER_ARGS
from tests.pipelines.test_batch_scoring import small_archive
from tests.sagemaker import test_export_definition as definitions
from tests.sagemaker.export_nodes import combine, passthrough
from tests.support.project import PROJECT_ROOT, RAW_CSV

BRIDGE = BridgeSettings(
    region="eu-west-1",
    bucket="export-tests",
    prefix="transform",
    execution_role_arn="arn:aws:iam::123456789012:role/ExportTests",
)
TRANSFORM = {"node": "score", "input": "readings", "model": "chosen"}
#: The API operation of each step type of this definition, and the name SageMaker adds.
OPERATIONS = {
    "Processing": ("CreateProcessingJob", {"ProcessingJobName": "transform-test-processing"}),
    "Model": ("CreateModel", {"ModelName": "transform-test-model"}),
    "Transform": ("CreateTransformJob", {"TransformJobName": "transform-test-transform"}),
}


@pytest.fixture(scope="module")
def export() -> Export:
    """What ``kedro sagemaker compile --pipelines batch_scoring`` exports (``load_export``'s
    steps, with the project's config loader but without a whole KedroSession: seconds less)."""
    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS)
    config = loader["sagemaker"]
    bridge = parse_settings(config, PROJECT_ROOT)
    settings = settings_for(config, ["batch_scoring"])
    plan = build_plan(create_pipeline(), bridge, settings)
    settings = effective_settings(settings, plan)
    catalog = loader["catalog"]
    catalog_config = {name: catalog[name] for name in settings.catalog_datasets}
    return Export(bridge, settings, plan, dict(loader["parameters"]), catalog_config, None)


@pytest.fixture(scope="module")
def code(export: Export) -> CodePackage:
    return export.code()


@pytest.fixture(scope="module")
def definition(export: Export, code: CodePackage) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no credentials looked up there
        yield json.loads(export.compile(code))


@pytest.fixture(scope="module")
def steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["Name"]: step for step in definition["Steps"]}


@pytest.fixture(scope="module")
def sagemaker_model() -> Any:
    import botocore.session  # noqa: PLC0415

    return botocore.session.get_session().get_service_model("sagemaker")


# ---- the project's definition ------------------------------------------------------------------
def test_the_batch_export_is_a_pipeline_of_its_own(export: Export, definition: dict[str, Any]):
    assert export.settings.name == "predictive-maintenance-batch"
    assert [(step["Name"], step["Type"]) for step in definition["Steps"]] == [
        ("batch", "Processing"),
        ("batch-score_batch-model", "Model"),
        ("batch-score_batch", "Transform"),
    ]
    assert {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]} == {
        "ModelPackageArn": "",
        "BatchInputUri": f"{export.bridge.s3_root}/batch-input/",
        "TransformInstanceType": "ml.m5.large",
        "ProcessingInstanceType": "ml.m5.large",
    }
    # The file to score is already in S3: upsert stages nothing.
    assert export.plan.pipeline_inputs == ()
    # Without --pipelines the training export is untouched.
    batch = {"name": "batch", "kedro_pipeline": "batch_scoring"}
    config = {"pipeline": {"name": "training-export", "batch_pipeline": batch}}
    assert settings_for(config, None).name == "training-export"
    assert settings_for(config, ["__default__"]).name == "training-export"


def test_the_model_is_the_package_the_choice_step_names(
    export: Export, code: CodePackage, steps: dict[str, dict[str, Any]]
):
    choice = steps["batch"]
    assert choice["Description"] == "kedro nodes: batch.select_model"
    assert choice["PropertyFiles"] == [
        {
            "FilePath": "batch_model.json",
            "OutputName": "batch_model",
            "PropertyFileName": "batch_model",
        }
    ]
    # The ModelPackageArn parameter reaches the node as batch_scoring.model_package_arn.
    variables = choice["Arguments"]["Environment"]
    assert {
        "Std:Join": {
            "On": "",
            "Values": [
                '["batch_scoring", "model_package_arn"]=',
                {"Get": "Parameters.ModelPackageArn"},
            ],
        }
    } in variables.values()
    spec = json.loads(code.files["kedro_jobs/batch/job.json"])
    assert [item["node"] for item in spec["nodes"]] == ["batch.select_model"]
    assert list(spec["catalog"]) == ["model_registry"]

    model = steps["batch-score_batch-model"]["Arguments"]
    assert model["Containers"] == [
        {
            "ModelPackageName": {
                "Std:JsonGet": {
                    "Path": export.settings.transform.arn_path,
                    "PropertyFile": {"Get": "Steps.batch.PropertyFiles.batch_model"},
                }
            }
        }
    ]
    assert model["ExecutionRoleArn"] == export.bridge.execution_role_arn


def test_the_transform_reads_lines_and_joins_the_scores_to_the_input(
    export: Export, steps: dict[str, dict[str, Any]]
):
    transform = steps["batch-score_batch"]["Arguments"]
    assert transform["ModelName"] == {"Get": "Steps.batch-score_batch-model.ModelName"}
    assert transform["TransformInput"] == {
        "ContentType": "text/csv",
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": {"Get": "Parameters.BatchInputUri"}}
        },
        "SplitType": "Line",
    }
    output = transform["TransformOutput"]
    assert (output["Accept"], output["AssembleWith"]) == ("text/csv", "Line")
    assert output["S3OutputPath"]["Std:Join"]["Values"] == [
        export.bridge.s3_root,
        "executions",
        {"Get": "Execution.PipelineExecutionId"},
        "batch-score_batch",
    ]
    assert transform["DataProcessing"] == {
        "InputFilter": "$[2,3,4,5,6,7]",
        "JoinSource": "Input",
        "OutputFilter": "$[0,1,-1]",
    }
    assert transform["MaxPayloadInMB"] == 6  # the endpoint's request limit
    assert transform["TransformResources"]["InstanceType"] == {
        "Get": "Parameters.TransformInstanceType"
    }


def test_every_request_is_valid_for_the_api(definition: dict[str, Any], sagemaker_model: Any):
    parameters = {item["Name"]: item["DefaultValue"] for item in definition["Parameters"]}
    parameters["ModelPackageArn"] = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/g/1"
    for step in definition["Steps"]:
        operation, names = OPERATIONS[step["Type"]]
        request = {**definitions.concrete(step["Arguments"], parameters), **names}
        if step["Type"] == "Model":  # the JsonGet stands for the package's ARN
            request["Containers"][0]["ModelPackageName"] = parameters["ModelPackageArn"]
        if step["Type"] == "Transform":  # the Model step's ModelName
            request["ModelName"] = "transform-test-model"
        shape = sagemaker_model.operation_model(operation).input_shape
        try:
            validate_parameters(request, shape)
        except ParamValidationError as error:
            pytest.fail(f"step {step['Name']} ({operation}): {error}")
        assert list(definitions.constraint_errors(request, shape, operation)) == []
    broken = definitions.concrete(definition["Steps"][2]["Arguments"], parameters)
    broken["TransformInput"]["SplitType"] = "Lines"
    shape = sagemaker_model.operation_model("CreateTransformJob").input_shape
    assert list(definitions.constraint_errors(broken, shape, "CreateTransformJob")) != []


def test_the_definition_fails_the_public_schema_only_in_known_ways(
    definition: dict[str, Any], sagemaker_model: Any, monkeypatch: pytest.MonkeyPatch
):
    # The schema check explains API fields through the operation of each step type.
    for kind, operation in OPERATIONS.items():
        monkeypatch.setitem(definitions.OPERATIONS, kind, operation)
    errors = definitions.schema_errors(definition, sagemaker_model)
    assert errors.unexplained == []
    assert errors.kinds() <= definitions.KNOWN_FALSE_ERRORS
    assert definitions.TOP_LEVEL_FIELDS in errors.kinds()
    assert definitions.PROCESSING_PROPERTY_FILES in errors.kinds()


# ---- what Batch Transform does with the model package ------------------------------------------
def json_path_columns(expression: str, fields: list[str]) -> list[str]:
    """SageMaker's CSV JSONPath filters as this export uses them: ``$``, ``$[i,j,...]``."""
    if expression == "$":
        return fields
    indices = expression.removeprefix("$[").removesuffix("]").split(",")
    return [fields[int(index)] for index in indices]


def test_batch_transform_of_the_package_gives_the_endpoints_scores(export: Export, tmp_path: Path):
    """Replays the Transform step on the data set's first rows (headerless, 14 columns) with the
    handlers inside model.tar.gz, one MultiRecord mini-batch, and compares with the scores the
    endpoint gives the six readings of each row."""
    transform = export.settings.transform
    model = model_fn(extract_model_archive(small_archive(), tmp_path / "model"))
    rows = RAW_CSV.read_text(encoding="utf-8-sig").splitlines()[1:41]

    records = [row.split(",") for row in rows]
    body = "\n".join(",".join(json_path_columns(transform.input_filter, r)) for r in records)
    status, answer, content_type = respond(
        model, body.encode(), transform.content_type, transform.accept
    )
    assert (status, content_type) == (200, "text/csv")
    scores = answer.decode().splitlines()
    joined = [[*record, score] for record, score in zip(records, scores, strict=True)]
    output = [json_path_columns(transform.output_filter, fields) for fields in joined]

    assert [fields[:2] for fields in output] == [record[:2] for record in records]
    for record, fields in zip(records, output, strict=True):
        reading = ",".join(record[2:8])
        endpoint = respond(model, reading.encode(), "text/csv", "text/csv")[1].decode().strip()
        assert fields[2] == endpoint


def test_the_choice_step_writes_the_arn_where_the_model_step_reads_it(
    export: Export, tmp_path: Path
):
    arn = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/predictive-maintenance/1"
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(small_archive())
    registry = {
        "group": "predictive-maintenance",
        "versions": [
            {
                "version": 1,
                "approval_status": "Approved",
                "archive_uri": str(archive),
                "archive_sha256": sha256_hex(archive.read_bytes()),
                "model_package_arn": arn,
            }
        ],
    }
    chosen = select_model(registry, {"model_version": None, "model_package_arn": ""})
    assert chosen[export.settings.transform.arn_path] == arn


# ---- plan and settings -------------------------------------------------------------------------
def batch_settings(**transform: Any) -> Any:
    return parse_batch_pipeline_settings(
        {
            "pipeline": {
                "name": "export-tests",
                "batch_pipeline": {
                    "name": "export-tests-batch",
                    "kedro_pipeline": "batch",
                    "transform": {**TRANSFORM, **transform},
                },
            }
        }
    )


def scoring_pipeline(*extra: Any) -> Pipeline:
    return Pipeline(
        [
            node(passthrough, "registry", "chosen", name="choose"),
            node(combine, ["readings", "chosen"], "scores", name="score"),
            *extra,
        ]
    )


def test_the_transform_node_leaves_the_job_steps():
    plan = build_plan(scoring_pipeline(), BRIDGE, batch_settings())
    assert [step.name for step in plan.steps] == ["choose"]
    assert (plan.transform_node.name, plan.transform_step) == ("score", "score")
    assert plan.pipeline_inputs == ("registry",)  # staged; readings is the transform's input
    assert plan.producers == {"chosen": "choose"}


def test_a_transform_node_must_read_only_its_input_and_model():
    reading_more = Pipeline(
        [
            node(passthrough, "registry", "chosen", name="choose"),
            node(
                lambda readings, chosen, extra: None,
                ["readings", "chosen", "extra"],
                "scores",
                name="score",
            ),
        ]
    )
    with pytest.raises(PlanError, match="reads extra; a Batch Transform reads only"):
        build_plan(reading_more, BRIDGE, batch_settings())
    read_later = scoring_pipeline(node(passthrough, "scores", "report", name="report"))
    with pytest.raises(
        PlanError, match="scores, made by the transform node, is read by step report"
    ):
        build_plan(read_later, BRIDGE, batch_settings())
    made = Pipeline([node(passthrough, "raw", "readings", name="make"), *scoring_pipeline().nodes])
    with pytest.raises(PlanError, match="transform input readings is made by a node"):
        build_plan(made, BRIDGE, batch_settings())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split_type": "Lines"}, r"transform.split_type must be one of None, Line"),
        ({"join_source": "Output"}, r"transform.join_source must be one of None, Input"),
        ({"max_payload_mb": 200}, r"max_payload_mb must be 0-100"),
        ({"instance_count": 0}, r"instance_count must be at least 1"),
        ({"filter": "$"}, r"unknown key\(s\) filter in pipeline.batch_pipeline.transform"),
        ({"node": None}, r"transform.node must be str"),
    ],
)
def test_transform_settings_errors_name_the_key(change: dict[str, Any], message: str):
    with pytest.raises(SageMakerConfigError, match=message):
        batch_settings(**change)
