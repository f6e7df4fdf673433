"""Bad input to ``kedro sagemaker``: each a one-line error naming what is wrong, raised before
anything is uploaded (or any AWS client made).

The commands run in this process (click's runner) in one copy of the project, whose
``conf/base/sagemaker.yml`` each test edits (and the fixture restores). Everything that would
touch S3 or SageMaker is replaced by a recorder; a control test shows the recorder sees the
uploads of a good upsert.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from kedro.pipeline import Pipeline, node

from predictive_maintenance import pipeline_registry
from predictive_maintenance.sagemaker import cli
from predictive_maintenance.sagemaker.workflow.compiler import CodePackage
from tests.sagemaker.export_nodes import passthrough
from tests.support.project import copy_project

CONFIG = Path("conf/base/sagemaker.yml")


@dataclass
class Recorder:
    """Stands in for everything that reaches S3 or SageMaker; records each use."""

    calls: list[str] = field(default_factory=list)

    def __call__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return self.service(name)

        return record

    def service(self, name: str) -> Any:
        recorder = self

        class Service:
            def __getattr__(self, method: str) -> Any:
                def call(*args: Any, **kwargs: Any) -> dict[str, str]:
                    recorder.calls.append(f"{name}.{method}")
                    return {"PipelineArn": "arn:aws:sagemaker:eu-west-1:1:pipeline/recorded"}

                return call

        return Service()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return copy_project(tmp_path_factory.mktemp("bad-input") / "project")


@pytest.fixture
def recorder(project, monkeypatch) -> Iterator[Recorder]:
    """cwd in the project copy; uploads, AWS clients and the code package recorded."""
    from kedro.framework.project import pipelines  # noqa: PLC0415

    config = project / CONFIG
    original = config.read_text()
    recorded = Recorder()
    monkeypatch.chdir(project)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("S3Store", "DirectoryStore", "stage", "upload_bytes", "client"):
        monkeypatch.setattr(cli, name, recorded(name))

    def no_code_package(*args: Any, **kwargs: Any) -> CodePackage:
        recorded.calls.append("build_code_package")
        root = "s3://predictive-maintenance-artifacts/predictive-maintenance/runner/code/abc"
        return CodePackage({}, b"", "abc", f"{root}/sourcedir.tar.gz", f"{root}/tree/", {}, None)

    monkeypatch.setattr(cli, "build_code_package", no_code_package)
    monkeypatch.setattr(cli, "compile_definition", lambda *args, **kwargs: '{"Steps": []}\n')
    try:
        yield recorded
    finally:
        config.write_text(original)
        # Later tests load the project's own pipelines again, not one patched in here.
        pipelines.configure("predictive_maintenance.pipeline_registry")


def edit_config(project: Path, old: str, new: str) -> None:
    config = project / CONFIG
    text = config.read_text()
    assert text.count(old) == 1, old
    config.write_text(text.replace(old, new))


def sagemaker(*args: str) -> Result:
    return CliRunner().invoke(cli.sagemaker, list(args), catch_exceptions=False)


def refused(result: Result) -> str:
    """The one-line error of a refused command."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


def test_control_a_good_upsert_reaches_the_recorder(recorder):
    result = sagemaker("upsert")

    assert result.exit_code == 0, result.output
    assert "Updated pipeline arn:aws:sagemaker" in result.output
    assert recorder.calls[:3] == ["build_code_package", "S3Store", "stage"]
    assert "client.update_pipeline" in recorder.calls


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("bucket: ${globals:sagemaker.bucket}\n", "bucket"),
        ("execution_role_arn: ${globals:sagemaker.execution_role_arn}\n", "execution_role_arn"),
    ],
)
def test_a_missing_required_key_is_named_by_compile_and_upsert(project, recorder, line, key):
    edit_config(project, line, "")
    output = project / "out" / "pipeline.json"

    compiled = sagemaker("compile", "--output", str(output))
    upserted = sagemaker("upsert")

    for result in (compiled, upserted):
        assert refused(result) == f"Error: conf/<env>/sagemaker.yml: {key} is required"
    assert not output.parent.exists()
    assert recorder.calls == []


def test_an_empty_required_key_is_named_too(project, recorder):
    edit_config(project, "bucket: ${globals:sagemaker.bucket}", 'bucket: ""')
    assert refused(sagemaker("upsert")) == "Error: conf/<env>/sagemaker.yml: bucket is required"
    assert recorder.calls == []


def test_grouping_by_node_is_refused_naming_the_memory_only_dataset(project, recorder):
    """raw_readings is a MemoryDataset in the catalog: by node it would cross from the ingest
    step to the validation step."""
    edit_config(project, "  group_by: namespace\n", "  group_by: node\n")

    error = refused(sagemaker("upsert"))

    assert "pipeline.group_by node: dataset raw_readings is memory-only" in error
    assert "from group prepare.ingest_raw_data to group prepare.validate_raw_readings" in error
    assert "give it a file dataset" in error
    assert recorder.calls == []


def test_a_grouping_cycle_is_refused_naming_the_groups(project, recorder, monkeypatch):
    """A pipeline whose group tag g takes its first and third node: g -> second -> g."""
    cyclic = Pipeline(
        [
            node(passthrough, "raw", "one", name="first", tags=["g"]),
            node(passthrough, "one", "two", name="second"),
            node(passthrough, "two", "three", name="third", tags=["g"]),
        ]
    )
    register = pipeline_registry.register_pipelines
    monkeypatch.setattr(
        pipeline_registry, "register_pipelines", lambda: {**register(), "cyclic": cyclic}
    )
    edit_config(
        project, "group_by: namespace\n  group_tags: []", "group_by: tag\n  group_tags: [g]"
    )

    error = refused(sagemaker("upsert", "--pipelines", "cyclic"))

    assert "pipeline.group_by tag: the grouping makes a cycle between groups g, second:" in error
    assert recorder.calls == []


@pytest.mark.skipif(sys.version_info[:2] == (3, 10), reason="this Python is the image's")
def test_run_local_refuses_a_python_that_is_not_the_images(project, recorder, tmp_path):
    definition = tmp_path / "pipeline.json"
    definition.write_text('{"Parameters": [], "Steps": []}')
    version = "{}.{}".format(*sys.version_info[:2])

    error = refused(sagemaker("run-local", str(definition), "--python", sys.executable))

    assert f"--python {sys.executable}:" in error
    assert "Python 3.10" in error
    assert f"this is {version}" in error
    assert recorder.calls == []  # not even the code package was built
