"""The local executor of a pipeline definition on small hand-written definitions: no jobs run,
a scripted stand-in does what the job steps would do. Expressions, parameters, conditions and
Fail steps as SageMaker evaluates them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from predictive_maintenance.sagemaker.storage import DirectoryStore
from predictive_maintenance.sagemaker.workflow.executor import ExecutionError, PipelineExecutor

METRICS_URI = "Steps.evaluate.ProcessingOutputConfig.Outputs['metrics'].S3Output.S3Uri"
METRICS_FILE = {"Get": "Steps.evaluate.PropertyFiles.metrics"}


def json_get(path: str) -> dict[str, Any]:
    return {"Std:JsonGet": {"PropertyFile": METRICS_FILE, "Path": path}}


DEFINITION: dict[str, Any] = {
    "Version": "2020-12-01",
    "Parameters": [
        {"Name": "MinF1", "Type": "Float", "DefaultValue": 0.8},
        {"Name": "Rounds", "Type": "Integer", "DefaultValue": 10},
        {"Name": "Deploy", "Type": "Boolean", "DefaultValue": True},
        {"Name": "Prefix", "Type": "String", "DefaultValue": "s3://bucket/runs"},
    ],
    "Steps": [
        {
            "Name": "gate",
            "Type": "Condition",
            "Arguments": {
                "Conditions": [
                    {
                        "Type": "GreaterThanOrEqualTo",
                        "LeftValue": json_get("at_chosen_threshold.f1"),
                        "RightValue": {"Get": "Parameters.MinF1"},
                    }
                ],
                "IfSteps": [
                    {
                        "Name": "deploy",
                        "Type": "Processing",
                        "DependsOn": ["register"],
                        "Arguments": {},
                    },
                    {
                        "Name": "register",
                        "Type": "RegisterModel",
                        "Arguments": {"ModelDataUrl": {"Get": METRICS_URI}},
                    },
                ],
                "ElseSteps": [
                    {
                        "Name": "gate-failed",
                        "Type": "Fail",
                        "Arguments": {
                            "ErrorMessage": {
                                "Std:Join": {
                                    "On": " ",
                                    "Values": [
                                        "f1",
                                        json_get("at_chosen_threshold.f1"),
                                        "(minimum",
                                        {"Get": "Parameters.MinF1"},
                                        ")",
                                    ],
                                }
                            }
                        },
                    }
                ],
            },
        },
        {
            "Name": "evaluate",
            "Type": "Processing",
            "Arguments": {
                "Environment": {
                    "KEDRO_PARAM_0": {
                        "Std:Join": {
                            "On": "",
                            "Values": ['["deploy_model"]=', {"Get": "Parameters.Deploy"}],
                        }
                    },
                    "ROUNDS": {"Std:Join": {"On": "", "Values": [{"Get": "Parameters.Rounds"}]}},
                    "PIPELINE": {"Get": "Execution.PipelineName"},
                    "ARN": {"Get": "Execution.PipelineExecutionArn"},
                },
                "ProcessingOutputConfig": {
                    "Outputs": [
                        {
                            "OutputName": "metrics",
                            "S3Output": {
                                "S3Uri": {
                                    "Std:Join": {
                                        "On": "/",
                                        "Values": [
                                            {"Get": "Parameters.Prefix"},
                                            {"Get": "Execution.PipelineExecutionId"},
                                            "metrics",
                                        ],
                                    }
                                }
                            },
                        }
                    ]
                },
            },
            "PropertyFiles": [
                {"PropertyFileName": "metrics", "OutputName": "metrics", "FilePath": "metrics.json"}
            ],
        },
    ],
}


class ScriptedSteps:
    """Stands in for the job steps and the registration: records the resolved arguments and
    reports the properties (and property files) a real run would."""

    def __init__(self, metrics: dict[str, Any]) -> None:
        self.metrics = metrics
        self.ran: list[tuple[str, Any]] = []
        self.conditions: list[tuple[str, bool]] = []

    def handles(self, step: dict[str, Any]) -> bool:
        return step["Type"] in {"Processing", "RegisterModel"}

    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        arguments = executor.resolve(step["Arguments"], step["Name"])
        self.ran.append((step["Name"], arguments))
        properties: dict[str, Any] = {}
        for output in arguments.get("ProcessingOutputConfig", {}).get("Outputs", []):
            key = f"ProcessingOutputConfig.Outputs['{output['OutputName']}'].S3Output.S3Uri"
            properties[key] = output["S3Output"]["S3Uri"]
        if step.get("PropertyFiles"):
            executor.results[step["Name"]].property_files = {"metrics": self.metrics}
        if step["Type"] == "RegisterModel":
            properties["ModelPackageArn"] = "arn:model-package/1"
        return properties

    def after_condition(
        self, step: dict[str, Any], outcome: bool, executor: PipelineExecutor
    ) -> None:
        self.conditions.append((step["Name"], outcome))


GOOD_METRICS = {"roc_auc": 0.98, "at_chosen_threshold": {"f1": 0.9, "recall": 0.85}}


def executor_for(
    tmp_path: Path,
    definition: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[PipelineExecutor, ScriptedSteps]:
    native = ScriptedSteps(GOOD_METRICS if metrics is None else metrics)
    executor = PipelineExecutor(
        copy.deepcopy(DEFINITION if definition is None else definition),
        DirectoryStore(tmp_path),
        None,  # no job runs: every job step is scripted
        native=native,
        execution_id="exec-1",
        pipeline_name="export-tests",
        **options,
    )
    return executor, native


def test_the_true_branch_runs_in_dependency_order_with_expressions_resolved(tmp_path: Path):
    executor, native = executor_for(tmp_path)
    assert executor.run() == "Succeeded"

    # Steps wait for what they reference (evaluate is listed after the gate; deploy after
    # register through DependsOn).
    assert [name for name, _ in native.ran] == ["evaluate", "register", "deploy"]
    evaluate = dict(native.ran)["evaluate"]
    assert evaluate["Environment"] == {
        "KEDRO_PARAM_0": '["deploy_model"]=true',  # a Boolean joins as true/false
        "ROUNDS": "10",
        "PIPELINE": "export-tests",
        "ARN": "arn:aws:sagemaker:local:000000000000:pipeline/export-tests/execution/exec-1",
    }
    uri = "s3://bucket/runs/exec-1/metrics"
    assert evaluate["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == uri
    assert dict(native.ran)["register"] == {"ModelDataUrl": uri}
    assert native.conditions == [("gate", True)]
    assert executor.results["gate"].properties["Outcome"] is True
    assert executor.results["register"].properties["ModelPackageArn"] == "arn:model-package/1"
    assert "gate-failed" not in executor.results
    assert {result.status for result in executor.results.values()} == {"Succeeded"}


def test_the_false_branch_fails_the_execution_with_the_fail_steps_message(tmp_path: Path):
    executor, native = executor_for(tmp_path, parameters={"MinF1": "0.95"})
    assert executor.run() == "Failed"

    assert [name for name, _ in native.ran] == ["evaluate"]
    assert native.conditions == [("gate", False)]
    assert executor.results["gate"].status == "Succeeded"
    assert executor.results["gate"].properties["Outcome"] is False
    failed = executor.results["gate-failed"]
    assert failed.status == "Failed"
    assert failed.reason == "f1 0.9 (minimum 0.95 )"
    assert executor.failure_reason == "step gate-failed: f1 0.9 (minimum 0.95 )"
    assert "register" not in executor.results


def test_a_metric_at_the_minimum_passes_the_gate(tmp_path: Path):
    executor, _ = executor_for(tmp_path, parameters={"MinF1": 0.9})
    assert executor.run() == "Succeeded"


def test_parameters_are_typed_from_the_definition(tmp_path: Path):
    executor, _ = executor_for(
        tmp_path, parameters={"Rounds": "12", "Deploy": "False", "MinF1": "0.5"}
    )
    assert executor.parameters == {
        "MinF1": 0.5,
        "Rounds": 12,
        "Deploy": False,
        "Prefix": "s3://bucket/runs",
    }
    assert type(executor.parameters["Rounds"]) is int
    defaults, _ = executor_for(tmp_path)
    assert defaults.parameters == {
        "MinF1": 0.8,
        "Rounds": 10,
        "Deploy": True,
        "Prefix": "s3://bucket/runs",
    }


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [("Rounds", "1.5", "Integer"), ("Deploy", "yes", "Boolean"), ("MinF1", "high", "Float")],
)
def test_a_parameter_value_of_the_wrong_type_is_an_error(tmp_path: Path, name, value, kind):
    with pytest.raises(ExecutionError, match=f"parameter {name}: '{value}' is not a {kind}"):
        executor_for(tmp_path, parameters={name: value})


def test_an_unknown_parameter_is_an_error_naming_the_declared_ones(tmp_path: Path):
    with pytest.raises(ExecutionError, match=r"unknown parameter\(s\) Eta") as raised:
        executor_for(tmp_path, parameters={"Eta": "0.3", "Rounds": "3"})
    assert "Deploy, MinF1, Prefix, Rounds" in str(raised.value)


@pytest.mark.parametrize("kind", ["String", "Float"])
def test_a_parameter_without_default_or_value_is_an_error(tmp_path: Path, kind):
    definition = {"Parameters": [{"Name": "Required", "Type": kind}], "Steps": []}
    with pytest.raises(ExecutionError, match="parameter Required has no default"):
        PipelineExecutor(definition, DirectoryStore(tmp_path), None)
    executor = PipelineExecutor(
        definition, DirectoryStore(tmp_path), None, parameters={"Required": "7"}
    )
    assert executor.parameters == {"Required": "7" if kind == "String" else 7.0}


def test_expressions_that_cannot_be_resolved_name_where(tmp_path: Path):
    executor, _ = executor_for(tmp_path)
    with pytest.raises(ExecutionError, match=r"env\.X: no parameter Nope"):
        executor.resolve({"X": {"Get": "Parameters.Nope"}}, "env")
    with pytest.raises(ExecutionError, match=r"cannot resolve 'Foo\.Bar'"):
        executor.resolve({"Get": "Foo.Bar"}, "here")
    with pytest.raises(ExecutionError, match="has not succeeded"):
        executor.resolve({"Get": METRICS_URI}, "here")
    with pytest.raises(ExecutionError, match="is not a property file reference"):
        executor.resolve(
            {"Std:JsonGet": {"PropertyFile": {"Get": "Parameters.Prefix"}, "Path": "a"}}, "here"
        )
    assert (
        executor.resolve(
            {"Std:Join": {"On": ",", "Values": ["a", 1, 0.5, False, {"Get": "Parameters.Rounds"}]}}
        )
        == "a,1,0.5,false,10"
    )
    assert executor.resolve([{"Get": "Parameters.Deploy"}, "x"]) == [True, "x"]


def test_a_json_path_missing_from_the_property_file_fails_the_condition(tmp_path: Path):
    executor, native = executor_for(tmp_path, metrics={"roc_auc": 0.98})
    assert executor.run() == "Failed"
    assert executor.results["gate"].status == "Failed"
    assert "at_chosen_threshold.f1 is not in Steps.evaluate.PropertyFiles.metrics" in (
        executor.results["gate"].reason
    )
    assert native.conditions == []


def _condition_definition(*conditions: dict[str, Any]) -> dict[str, Any]:
    return {
        "Parameters": [{"Name": "Level", "Type": "Integer", "DefaultValue": 3}],
        "Steps": [
            {
                "Name": "check",
                "Type": "Condition",
                "Arguments": {"Conditions": list(conditions), "IfSteps": [], "ElseSteps": []},
            }
        ],
    }


LEVEL = {"Get": "Parameters.Level"}


@pytest.mark.parametrize(
    ("condition", "outcome"),
    [
        ({"Type": "Equals", "LeftValue": LEVEL, "RightValue": 3}, True),
        ({"Type": "GreaterThan", "LeftValue": LEVEL, "RightValue": 3}, False),
        ({"Type": "LessThan", "LeftValue": LEVEL, "RightValue": 4}, True),
        ({"Type": "LessThanOrEqualTo", "LeftValue": LEVEL, "RightValue": 2}, False),
        ({"Type": "In", "QueryValue": LEVEL, "Values": [1, 3]}, True),
        (
            {"Type": "Not", "Condition": {"Type": "Equals", "LeftValue": LEVEL, "RightValue": 3}},
            False,
        ),
        (
            {
                "Type": "Or",
                "Conditions": [
                    {"Type": "Equals", "LeftValue": LEVEL, "RightValue": 1},
                    {"Type": "Equals", "LeftValue": LEVEL, "RightValue": 3},
                ],
            },
            True,
        ),
    ],
)
def test_condition_types(tmp_path: Path, condition, outcome):
    executor, native = executor_for(tmp_path, _condition_definition(condition))
    assert executor.run() == "Succeeded"
    assert native.conditions == [("check", outcome)]


def test_conditions_are_all_required(tmp_path: Path):
    true = {"Type": "Equals", "LeftValue": LEVEL, "RightValue": 3}
    false = {"Type": "Equals", "LeftValue": LEVEL, "RightValue": 4}
    executor, native = executor_for(tmp_path, _condition_definition(true, false))
    executor.run()
    assert native.conditions == [("check", False)]


def test_unsupported_conditions_and_steps_fail_the_execution(tmp_path: Path):
    executor, _ = executor_for(
        tmp_path, _condition_definition({"Type": "Matches", "LeftValue": 1, "RightValue": 1})
    )
    assert executor.run() == "Failed"
    assert "condition type Matches is not supported" in executor.failure_reason

    lambda_step = {"Parameters": [], "Steps": [{"Name": "l", "Type": "Lambda", "Arguments": {}}]}
    executor, _ = executor_for(tmp_path, lambda_step)
    assert executor.run() == "Failed"
    assert executor.failure_reason.startswith("step l: ")
    assert "type Lambda is not supported" in executor.failure_reason

    incomparable = {"Type": "GreaterThan", "LeftValue": "a", "RightValue": 1}
    executor, _ = executor_for(tmp_path, _condition_definition(incomparable))
    assert executor.run() == "Failed"
    assert "cannot compare 'a' and 1" in executor.failure_reason


def test_a_step_waiting_on_a_step_that_never_runs_is_an_error(tmp_path: Path):
    definition = {
        "Parameters": [],
        "Steps": [
            {
                "Name": "orphan",
                "Type": "Processing",
                "Arguments": {"X": {"Get": "Steps.ghost.ProcessingJobName"}},
            }
        ],
    }
    executor, _ = executor_for(tmp_path, definition)
    with pytest.raises(ExecutionError, match="steps orphan wait on steps that never run"):
        executor.run()
