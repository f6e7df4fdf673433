"""Review of the SageMaker Pipelines export: each test pins down one bug (xfail until fixed).

Fast: hand-written definitions, small Kedro pipelines, no job runs, no SDK.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner
from kedro.pipeline import Pipeline, node

from predictive_maintenance.sagemaker import cli
from predictive_maintenance.sagemaker.config import BridgeSettings
from predictive_maintenance.sagemaker.job import JOB_INPUT, apply_overrides, parameter_overrides
from predictive_maintenance.sagemaker.local import (
    LocalJobError,
    LocalTrainingJobs,
    _container_path,
    _prepare_tree,
)
from predictive_maintenance.sagemaker.storage import DirectoryStore, upload_bytes
from predictive_maintenance.sagemaker.workflow.compiler import CodePackage
from predictive_maintenance.sagemaker.workflow.executor import ExecutionError, PipelineExecutor
from predictive_maintenance.sagemaker.workflow.local_native import KedroNativeSteps
from predictive_maintenance.sagemaker.workflow.plan import build_plan
from tests.sagemaker.export_nodes import combine, combine_three, passthrough
from tests.sagemaker.test_export_executor import (
    DEFINITION,
    GOOD_METRICS,
    ScriptedSteps,
    executor_for,
    json_get,
)
from tests.sagemaker.test_export_plan import (
    BRIDGE,
    GATE_AND_REGISTRATION,
    pipeline_settings,
    training_pipeline,
)

EVALUATE: dict[str, Any] = copy.deepcopy(DEFINITION["Steps"][1])  # writes the metrics file


def gate_definition(
    path: str,
    if_steps: list[dict[str, Any]],
    else_steps: list[dict[str, Any]] | None = None,
    *others: dict[str, Any],
) -> dict[str, Any]:
    """evaluate -> gate (f1 at ``path`` >= MinF1) -> if/else branches, plus ``others``."""
    return {
        "Parameters": copy.deepcopy(DEFINITION["Parameters"]),
        "Steps": [
            copy.deepcopy(EVALUATE),
            {
                "Name": "gate",
                "Type": "Condition",
                "Arguments": {
                    "Conditions": [
                        {
                            "Type": "GreaterThanOrEqualTo",
                            "LeftValue": json_get(path),
                            "RightValue": {"Get": "Parameters.MinF1"},
                        }
                    ],
                    "IfSteps": if_steps,
                    "ElseSteps": else_steps or [],
                },
            },
            *others,
        ],
    }


# ---- executor: expressions -----------------------------------------------------------------------
def test_json_get_follows_list_indexes(tmp_path: Path):
    metrics = {"thresholds": [{"f1": 0.9}, {"f1": 0.1}]}
    executor, native = executor_for(
        tmp_path, gate_definition("thresholds[0].f1", []), metrics=metrics
    )
    assert executor.run() == "Succeeded"
    assert native.conditions == [("gate", True)]


# ---- executor: condition branches ----------------------------------------------------------------
def test_a_branch_step_may_read_another_branch_step(tmp_path: Path):
    register = {"Name": "register", "Type": "RegisterModel", "Arguments": {}}
    deploy = {
        "Name": "deploy",
        "Type": "Processing",
        "Arguments": {"ModelPackage": {"Get": "Steps.register.ModelPackageArn"}},
    }
    executor, native = executor_for(
        tmp_path, gate_definition("at_chosen_threshold.f1", [register, deploy])
    )
    assert executor.run() == "Succeeded"
    assert [name for name, _ in native.ran] == ["evaluate", "register", "deploy"]


def test_a_step_after_the_branch_not_taken_is_skipped(tmp_path: Path):
    register = {"Name": "register", "Type": "RegisterModel", "Arguments": {}}
    after = {"Name": "after", "Type": "Processing", "DependsOn": ["register"], "Arguments": {}}
    executor, native = executor_for(
        tmp_path,
        gate_definition("at_chosen_threshold.f1", [register], [], after),
        parameters={"MinF1": "0.99"},  # the gate takes the (empty) else branch
    )
    assert executor.run() == "Succeeded"
    assert native.conditions == [("gate", False)]
    assert "register" not in executor.results
    assert "after" not in executor.results


# ---- executor: failures in step threads ----------------------------------------------------------
class FailingRegistration(ScriptedSteps):
    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        if step["Type"] == "RegisterModel":
            raise RuntimeError("the registry is unavailable")  # e.g. the Kedro node raised
        return super().run(step, executor)


def test_an_exception_in_a_step_fails_that_step_and_the_execution(tmp_path: Path):
    native = FailingRegistration(GOOD_METRICS)
    executor = PipelineExecutor(
        copy.deepcopy(DEFINITION), DirectoryStore(tmp_path), None, native=native
    )
    try:
        status = executor.run()
    finally:
        states = {name: result.status for name, result in executor.results.items()}
    assert status == "Failed", states
    assert states["register"] == "Failed"
    assert "the registry is unavailable" in executor.failure_reason
    assert "deploy" not in states


def test_long_step_names_get_distinct_job_names(tmp_path: Path):
    # The default execution id (local-YYYYmmdd-HHMMSS) leaves 41 characters for the step name.
    executor = PipelineExecutor({"Parameters": [], "Steps": []}, DirectoryStore(tmp_path), None)
    first = executor._job_name({"Name": "feature_engineering-build_model_input_table_for_training"})
    second = executor._job_name({"Name": "feature_engineering-build_model_input_table_for_scoring"})
    assert len(first) <= 63
    assert len(second) <= 63
    assert first != second


# ---- run-local: catalog (native) steps -----------------------------------------------------------
class FakeCatalog:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    def load(self, name: str) -> Any:
        return self.data[name]

    def save(self, name: str, value: Any) -> None:
        self.data[name] = value


class JobsAndCatalogSteps:
    """Catalog steps through KedroNativeSteps; job steps only resolve their arguments."""

    def __init__(self, native: KedroNativeSteps) -> None:
        self.native = native

    def handles(self, step: dict[str, Any]) -> bool:
        return True

    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        if self.native.handles(step):
            return self.native.run(step, executor)
        executor.resolve(step["Arguments"], step["Name"])
        return {}

    def after_condition(self, step: Any, outcome: bool, executor: Any) -> None:
        pass


def native_executor(tmp_path: Path, pipeline: Pipeline, steps: list[dict[str, Any]]):
    settings = pipeline_settings(catalog_datasets=["registry"])
    plan = build_plan(pipeline, BRIDGE, settings)
    store = DirectoryStore(tmp_path / "store")
    export = SimpleNamespace(
        plan=plan,
        settings=settings,
        parameters={},
        context=SimpleNamespace(catalog=FakeCatalog({"registry": {"version": 3}})),
    )
    native = JobsAndCatalogSteps(KedroNativeSteps(export, [], store))
    definition = {"Parameters": [], "Steps": steps}
    return PipelineExecutor(definition, store, None, native=native, execution_id="exec-1"), plan


def test_a_job_step_can_read_a_file_output_of_a_catalog_step(tmp_path: Path):
    pipeline = Pipeline(
        [
            node(passthrough, "registry", "report", name="describe"),
            node(passthrough, "report", "summary", name="summarise"),
        ]
    )
    uri = "s3://bucket/exec-1/describe/report"
    describe = {
        "Name": "describe",
        "Type": "Processing",
        "Arguments": {
            "ProcessingOutputConfig": {
                "Outputs": [{"OutputName": "report", "S3Output": {"S3Uri": uri}}]
            }
        },
    }
    reference = "Steps.describe.ProcessingOutputConfig.Outputs['report'].S3Output.S3Uri"
    summarise = {
        "Name": "summarise",
        "Type": "Processing",
        "Arguments": {
            "ProcessingInputs": [{"InputName": "report", "S3Input": {"S3Uri": {"Get": reference}}}]
        },
    }
    executor, plan = native_executor(tmp_path, pipeline, [describe, summarise])
    assert plan.step("describe").outputs == {"report": "report"}
    assert executor.run() == "Succeeded", executor.failure_reason


def test_a_catalog_step_can_read_a_pipeline_input(tmp_path: Path):
    pipeline = Pipeline([node(combine, ["registry", "raw"], "report", name="describe")])
    executor, plan = native_executor(
        tmp_path,
        pipeline,
        [
            {
                "Name": "describe",
                "Type": "Processing",
                "Arguments": {
                    "ProcessingInputs": [
                        {"InputName": "raw", "S3Input": {"S3Uri": "s3://bucket/inputs/raw/"}}
                    ]
                },
            }
        ],
    )
    assert plan.pipeline_inputs == ("raw",)
    assert plan.step("describe").inputs == {"raw": "raw"}
    upload_bytes(executor.store, b"a,b\n1,2\n", "s3://bucket/inputs/raw/raw.csv")
    assert executor.run() == "Succeeded", executor.failure_reason


# ---- plan ----------------------------------------------------------------------------------------
def test_a_pipeline_without_the_gate_and_registration_nodes_can_be_planned():
    plan = build_plan(training_pipeline(), BRIDGE, pipeline_settings(**GATE_AND_REGISTRATION))
    assert plan.gate_node is plan.register_node is None
    assert [step.name for step in plan.steps] == [
        "prepare",
        "featurise",
        "train",
        "evaluate",
        "summarise",
    ]


@pytest.mark.filterwarnings("ignore:One or more dataset names contain")
def test_training_channels_have_distinct_directories_and_variables():
    pipeline = Pipeline(
        [
            node(
                combine_three,
                ["raw.data", "raw_data", "RAW_DATA"],
                "model",
                name="fit",
                tags=["remote"],
            )
        ]
    )
    step = build_plan(pipeline, BRIDGE, pipeline_settings()).step("fit")
    assert step.kind == "training"
    channels = [*step.inputs.values(), JOB_INPUT]
    # /opt/ml/input/data/<channel> and the toolkit's SM_CHANNEL_<CHANNEL> (hyphens kept).
    assert len(set(channels)) == 4, step.inputs
    assert len({f"SM_CHANNEL_{name.upper()}" for name in channels}) == 4, step.inputs


# ---- the job -------------------------------------------------------------------------------------
def test_a_string_parameter_stays_a_string():
    parameters = {"registration": {"label": "v1", "note": "n"}}
    apply_overrides(
        parameters,
        parameter_overrides(
            {
                "KEDRO_PARAM_0": '["registration", "label"]=2024',
                "KEDRO_PARAM_1": '["registration", "note"]=null',
            }
        ),
    )
    assert parameters == {"registration": {"label": "2024", "note": "null"}}


# ---- local backend -------------------------------------------------------------------------------
def test_a_training_channel_may_name_a_single_object(tmp_path: Path):
    store = DirectoryStore(tmp_path / "store")
    uri = "s3://bucket/exec-1/train/job/output/model.tar.gz"
    upload_bytes(store, b"archive", uri)
    request = {
        "HyperParameters": {},
        "InputDataConfig": [
            {
                "ChannelName": "model",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
            }
        ],
    }
    tree = _prepare_tree(tmp_path / "work", request, store)
    assert (tree["data"] / "model" / "model.tar.gz").read_bytes() == b"archive"


@pytest.mark.parametrize(
    "local_path", ["/opt/ml/processing/../../../../escaped", "/opt/ml/../../outside"]
)
def test_a_local_path_cannot_leave_the_job_tree(tmp_path: Path, local_path: str):
    root = tmp_path / "job" / "opt" / "ml"
    try:
        mapped = _container_path(root, local_path)
    except LocalJobError:
        return
    assert root.resolve() in mapped.resolve().parents


def test_every_container_path_in_the_arguments_is_mapped(tmp_path: Path):
    jobs = LocalTrainingJobs(DirectoryStore(tmp_path / "store"))
    command = jobs._processing_command(
        tmp_path / "opt" / "ml",
        {
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/entry.py"],
            "ContainerArguments": ["--output-dir=/opt/ml/processing/output"],
        },
    )
    assert not any(part.startswith("--output-dir=/opt/ml/") for part in command), command


# ---- cli -----------------------------------------------------------------------------------------
class FlakyStore(DirectoryStore):
    """Fails one upload (a dropped connection), once."""

    def __init__(self, root: Path, fail_on: str) -> None:
        super().__init__(root)
        self.fail_on = fail_on

    def upload_file(self, path: Path, uri: str) -> None:
        if self.fail_on and uri.endswith(self.fail_on):
            self.fail_on = ""
            raise ConnectionError(f"upload of {uri} interrupted")
        super().upload_file(path, uri)


def test_an_interrupted_code_upload_is_completed_next_time(tmp_path: Path):
    root = "s3://bucket/prefix/code/abc"
    code = CodePackage(
        files={"a.py": b"a", "b.py": b"b"},
        archive=b"archive",
        sha256="abc",
        archive_uri=f"{root}/sourcedir.tar.gz",
        tree_uri=f"{root}/tree/",
        wheels={},
        wheels_uri=None,
    )
    export = SimpleNamespace(plan=SimpleNamespace(pipeline_inputs=()), bridge=BRIDGE)
    store = FlakyStore(tmp_path / "store", fail_on="tree/b.py")
    with pytest.raises(ConnectionError):
        cli.stage(export, code, store)
    cli.stage(export, code, store)  # the retry
    assert store.exists(f"{root}/tree/a.py")
    assert store.exists(f"{root}/tree/b.py")


def test_run_local_reports_an_unknown_parameter_as_a_cli_error(tmp_path: Path, monkeypatch):
    bridge = BridgeSettings(
        region="eu-west-1",
        bucket="bucket",
        prefix="prefix",
        execution_role_arn="arn:aws:iam::123456789012:role/R",
        local_store_directory=tmp_path / "store",
    )
    root = f"{bridge.s3_root}/code/abc"
    code = CodePackage({}, b"", "abc", f"{root}/sourcedir.tar.gz", f"{root}/tree/", {}, None)
    export = SimpleNamespace(
        bridge=bridge,
        settings=pipeline_settings(),
        parameters={},
        plan=SimpleNamespace(steps=()),
        code=lambda: code,
        tracking=None,  # compiled without mlflow.tracking_server_arn
    )
    monkeypatch.setattr(cli, "load_export", lambda env, pipeline: export)
    monkeypatch.setattr(cli, "stage", lambda *args: None)
    definition = tmp_path / "pipeline.json"
    definition.write_text(f'{{"Parameters": [], "Steps": [], "Code": "{code.tree_uri}"}}')

    result = CliRunner().invoke(
        cli.sagemaker, ["run-local", str(definition), "--parameters", "Unknown=1"]
    )

    assert not isinstance(result.exception, ExecutionError), result.exception
    assert result.exit_code == 1
    assert "unknown parameter(s) Unknown" in result.output


def test_errors_already_turns_configuration_errors_into_cli_errors():
    """Control for the test above: ValueErrors do become one-line CLI errors."""
    with pytest.raises(click.ClickException, match="bad value"), cli._errors():
        raise ValueError("bad value")
