"""``kedro sagemaker run-local``'s stand-ins for what SageMaker does as a service.

A RegisterModel step, the quality gate's Condition step and the steps that load or save catalog
services (``pipeline.catalog_datasets``: the model registry, the endpoint) are run with the Kedro
nodes they were compiled from, in this process, against the environment's catalog: the model
lands in the local registry and the local endpoint's state, as with ``kedro run``. Their inputs
come from the execution's data (what earlier steps wrote), their parameters from Kedro with the
execution's pipeline parameters applied.

A Model step's model package (:meth:`KedroNativeSteps.model_package`) is described as
CreateModel finds it: an ARN through DescribeModelPackage (``--env sagemaker``: the SageMaker
registry); the empty name a local registry's version has (it has no ARNs) from the model-choice
JSON the name was read from, whose ``archive_uri``/``archive_sha256`` (:data:`ARCHIVE_URI_KEY`,
:data:`ARCHIVE_SHA256_KEY`, next to the transform's ``arn_path``) name the archive, served with
the environment the training export registers packages with (``pipeline.register.environment``)
on the image of the step that chose it. Either way the archive is checked against the sha256 the
model choice recorded and copied into the execution's data, where the Transform step reads it.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from predictive_maintenance.integrity import sha256_hex, verify_sha256
from predictive_maintenance.sagemaker.aws import client
from predictive_maintenance.sagemaker.job import (
    TRACKING_KEY,
    job_tracking,
    parameter_value,
    read_dataset,
)
from predictive_maintenance.sagemaker.jobs import upload_dataset
from predictive_maintenance.sagemaker.storage import (
    ObjectStore,
    S3Store,
    download_input,
    upload_bytes,
)
from predictive_maintenance.sagemaker.workflow.executor import (
    ExecutionError,
    ModelContainer,
    PipelineExecutor,
    output_property,
    processing_outputs,
)
from predictive_maintenance.sagemaker.workflow.plan import PROCESSING, is_parameter
from predictive_maintenance.sagemaker.workflow.settings import (
    ParameterBinding,
    parse_pipeline_settings,
)

logger = logging.getLogger(__name__)

#: Keys of the model-choice JSON (beside the package ARN) that name a local registry version's
#: archive and its sha256.
ARCHIVE_URI_KEY: Final = "archive_uri"
ARCHIVE_SHA256_KEY: Final = "archive_sha256"


class KedroNativeSteps:
    """Runs service steps with the project's nodes and catalog (see the module docstring)."""

    def __init__(
        self,
        export: Any,
        bindings: list[ParameterBinding],
        store: ObjectStore,
        services: Mapping[str, Callable[[PipelineExecutor], Any]] | None = None,
    ) -> None:
        self._export = export
        self._plan = export.plan
        self._bindings = bindings
        self._store = store
        self._memory: dict[str, Any] = {}  # outputs of nodes run here (the gate's report)
        self._catalog_steps = {step.name for step in self._plan.steps if step.catalog_datasets}
        #: catalog_datasets whose value comes from the execution, not the catalog (e.g. the
        #: execution's MLflow run for ``tracking_run``).
        self._services = dict(services or {})

    def handles(self, step: dict[str, Any]) -> bool:
        return step["Type"] == "RegisterModel" or step["Name"] in self._catalog_steps

    def run(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        if step["Type"] == "RegisterModel":
            if self._plan.register_node is None:
                raise ExecutionError(f"step {step['Name']}: no registration node is configured")
            self._run_nodes([self._plan.register_node], executor)
            return {"ModelPackageArn": f"local-registry:{step['Name']}"}
        return self._run_catalog_step(step, executor)

    def after_condition(
        self, step: dict[str, Any], outcome: bool, executor: PipelineExecutor
    ) -> None:
        if step["Name"] == self._plan.gate_step and outcome and self._plan.gate_node is not None:
            # The condition passed; the gate node writes the report registration records.
            self._run_nodes([self._plan.gate_node], executor)

    def model_package(
        self,
        name: str,
        container: Mapping[str, Any],
        step: dict[str, Any],
        executor: PipelineExecutor,
    ) -> ModelContainer:
        """The model package ``name``'s container (see the module docstring)."""
        read_from = executor.property_file(container.get("ModelPackageName"))
        choice = _parent(*read_from[1:]) if read_from else {}
        expected = choice.get(ARCHIVE_SHA256_KEY) or None
        if name:
            package = client("sagemaker", self._export.bridge.region).describe_model_package(
                ModelPackageName=name
            )
            found = package["InferenceSpecification"]["Containers"][0]
            logger.info("Model step %s: model package %s", step["Name"], name)
            return ModelContainer(
                image=found["Image"],
                model_data_url=self._model_data(found["ModelDataUrl"], expected, step, executor),
                environment=found.get("Environment", {}),
                model_data_sha256=expected,
            )
        if read_from is None or not choice.get(ARCHIVE_URI_KEY) or not expected:
            raise ExecutionError(
                f"step {step['Name']}: the model package name is empty and no model-choice JSON "
                f"names an archive ({ARCHIVE_URI_KEY}, {ARCHIVE_SHA256_KEY}) to make the model from"
            )
        # The archive first: a changed archive fails the step before anything else is looked up.
        model_data = self._model_data(str(choice[ARCHIVE_URI_KEY]), expected, step, executor)
        return ModelContainer(
            image=self._chooser_image(read_from[0], executor),
            model_data_url=model_data,
            environment=self._registered_environment(step),
            model_data_sha256=expected,
        )

    def _model_data(
        self, uri: str, expected: str | None, step: Mapping[str, Any], executor: PipelineExecutor
    ) -> str:
        """The archive at ``uri`` (a local path, the store, or S3), checked against ``expected``
        when the model choice recorded it, copied into the execution's data: the transform reads
        it from there, wherever the registry keeps it."""
        if not uri.startswith("s3://"):
            archive = Path(uri.removeprefix("file://")).read_bytes()
        else:
            store = self._store if self._store.exists(uri) else S3Store(self._export.bridge.region)
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "model.tar.gz"
                store.download_file(uri, path)
                archive = path.read_bytes()
        if expected:
            verify_sha256(archive, expected, uri)
        model_data = (
            f"{self._export.bridge.s3_root}/executions/{executor.execution_id}/"
            f"{step['Name']}/model.tar.gz"
        )
        upload_bytes(self._store, archive, model_data)
        logger.info(
            "Model step %s: model data %s (sha256 %s) copied to %s",
            step["Name"],
            uri,
            sha256_hex(archive)[:12],
            self._store.location(model_data),
        )
        return model_data

    def _registered_environment(self, step: Mapping[str, Any]) -> dict[str, str]:
        """The environment the training export registers model packages with."""
        context = self._export.context
        registration = None
        if context is not None:
            registration = parse_pipeline_settings(context.config_loader["sagemaker"]).registration
        if registration is None:
            raise ExecutionError(
                f"step {step['Name']}: a local registry version has no environment; "
                "pipeline.register.environment (sagemaker.yml) gives it"
            )
        return dict(registration.environment)

    @staticmethod
    def _chooser_image(producer: str, executor: PipelineExecutor) -> str:
        """The image of the job step that chose the model: the stock image packages run on."""
        for item in executor.definition["Steps"]:
            if item["Name"] == producer:
                image = item.get("Arguments", {}).get("AppSpecification", {}).get("ImageUri")
                if isinstance(image, str):
                    return image
        raise ExecutionError(f"step {producer} has no image to serve the model with")

    def _run_catalog_step(self, step: dict[str, Any], executor: PipelineExecutor) -> dict[str, Any]:
        """The step's nodes here; its file outputs written where the definition says, so later
        job steps read them as they would on SageMaker."""
        plan = self._plan.step(step["Name"])
        arguments = executor.resolve(step.get("Arguments", {}), step["Name"])
        inputs = {
            item["InputName"]: item["S3Input"]["S3Uri"]
            for item in arguments.get("ProcessingInputs", [])
            if "S3Input" in item
        }
        outputs = processing_outputs(arguments)
        step_inputs = {
            dataset: inputs[name] for dataset, name in plan.inputs.items() if name in inputs
        }
        # The step logs to MLflow as its job would (the execution's parent run, a nested run
        # named after the step), from the variables the definition gives it.
        exported = getattr(self._export, "tracking", None)
        tracking = job_tracking(
            {"job": step["Name"], TRACKING_KEY: exported.spec if exported is not None else None},
            executor.step_environment(arguments),
        )
        values = self._run_nodes(list(plan.nodes), executor, step_inputs, tracking)
        properties = {}
        for dataset, name in plan.outputs.items():
            if name not in outputs:  # the definition keeps it inside the step
                continue
            upload_dataset(self._store, values[dataset], dataset, name, outputs[name])
            properties[output_property(name)] = outputs[name]
        return properties

    # ---- helpers -------------------------------------------------------------------------------
    def _parameters(self, executor: PipelineExecutor) -> dict[str, Any]:
        parameters = copy.deepcopy(self._export.parameters)
        for binding in self._bindings:
            if binding.kedro_parameter is None or binding.name not in executor.parameters:
                continue
            target = parameters
            for key in binding.kedro_parameter[:-1]:
                target = target[key]
            target[binding.kedro_parameter[-1]] = executor.parameters[binding.name]
        return parameters

    def _load(
        self,
        dataset: str,
        parameters: Mapping[str, Any],
        executor: PipelineExecutor,
        step_inputs: Mapping[str, str],
    ) -> Any:
        if is_parameter(dataset):
            return parameter_value(parameters, dataset)
        if dataset in self._memory:
            return self._memory[dataset]
        if dataset in self._services:
            return self._services[dataset](executor)
        if dataset in self._export.settings.catalog_datasets:
            return self._export.context.catalog.load(dataset)
        # What the definition hands the step (a pipeline input, say), else what a step wrote.
        uri = step_inputs.get(dataset)
        producer = self._plan.producers.get(dataset)
        if uri is None:
            if producer is None or producer not in executor.results:
                raise ExecutionError(f"{dataset} was not written by any step of this execution")
            properties = executor.results[producer].properties
            producer_plan = self._plan.step(producer)
            if producer_plan.kind == PROCESSING:
                uri = properties[output_property(producer_plan.outputs[dataset])]
            else:
                uri = properties["ModelArtifacts.S3ModelArtifacts"]
        with tempfile.TemporaryDirectory() as directory:
            download_input(self._store, uri, Path(directory))
            return read_dataset(Path(directory), dataset)

    def _run_nodes(
        self,
        nodes: list[Any],
        executor: PipelineExecutor,
        step_inputs: Mapping[str, str] | None = None,
        tracking: Any | None = None,
    ) -> dict[str, Any]:
        """Runs ``nodes`` in order; returns the values they made that are not catalog services.
        With ``tracking`` (a job's MLflow tracking), logs as the job does, and ends its run."""
        parameters = self._parameters(executor)
        made: dict[str, Any] = {}
        if tracking is not None:  # what the step's job spec would carry: the keys its nodes read
            read = {d.removeprefix("params:").split(".")[0] for n in nodes for d in n.inputs}
            everything = any(dataset == "parameters" for n in nodes for dataset in n.inputs)
            tracking.log_parameters(
                {key: value for key, value in parameters.items() if everything or key in read}
            )
        try:
            for node in nodes:
                inputs = {
                    dataset: made[dataset]
                    if dataset in made
                    else self._load(dataset, parameters, executor, step_inputs or {})
                    for dataset in node.inputs
                }
                outputs = node.run(inputs)
                for dataset, value in outputs.items():
                    if dataset in self._export.settings.catalog_datasets:
                        self._export.context.catalog.save(dataset, value)
                    else:
                        made[dataset] = self._memory[dataset] = value
                if tracking is not None:
                    tracking.log_outputs(node.name, outputs)
                logger.info("kedro node %s: ran in this process (local stand-in)", node.name)
        except BaseException:
            if tracking is not None:
                tracking.finish(failed=True)
            raise
        if tracking is not None:
            tracking.finish(failed=False)
        return made


def _parent(document: Any, path: str) -> dict[str, Any]:
    """The object holding ``path``'s last key in ``document`` (``a.b`` -> ``document["a"]``)."""
    parent = document
    for key in path.split(".")[:-1]:
        parent = parent.get(key, {}) if isinstance(parent, dict) else {}
    return parent if isinstance(parent, dict) else {}
