"""Runs ``notebooks/01_explore_and_train.ipynb`` headless, top to bottom, on a copy of the project,
with ``notebooks/execute.py`` (what ``make notebook`` runs).

The notebook finds its project by walking up from its working directory, so the copied notebook,
run from the copy's ``notebooks/``, reads the copy's catalog: the real ``data/`` is never touched,
and the run does not depend on a previous ``kedro run``.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "01_explore_and_train.ipynb"
SUMMARY_KEY = "notebook_summary"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _load_script(path: Path) -> ModuleType:
    """``notebooks/execute.py`` is a script, not a package module: load it from its file."""
    spec = importlib.util.spec_from_file_location(f"notebook_script_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, tuple[int, int]]:
    return {
        path.relative_to(root).as_posix(): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(
        output.get("text", "")
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stdout"
    )


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(project_copy: Path, capsys: pytest.CaptureFixture[str]):
    notebooks = project_copy / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    copied = notebooks / NOTEBOOK.name
    notebook = nbformat.read(copied, as_version=4)
    # Which interpreter the kernel runs: the project's, whatever Jupyter kernels the machine has.
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    nbformat.write(notebook, copied)
    data_before = _files(project_copy / "data")
    executed = project_copy.parent / "executed"

    script = _load_script(notebooks / "execute.py")
    assert script.main([str(copied), "--output-dir", str(executed)]) == 0
    print(capsys.readouterr().out)

    notebook = nbformat.read(executed / NOTEBOOK.name, as_version=4)
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [
        (index, output.get("ename"), output.get("evalue"))
        for index, cell in enumerate(cells)
        for output in cell.outputs
        if output.get("output_type") == "error"
    ]
    assert errors == []
    assert Path(_stdout(cells[-1]).strip()) == Path(sys.executable)

    stdout = "".join(_stdout(cell) for cell in cells)
    assert f"project root: {project_copy.resolve()}\n" in stdout
    figures = sum(
        PLOTLY_MIME in output.get("data", {}) for cell in cells for output in cell.outputs
    )
    assert figures >= 10

    summary_lines = [line for line in stdout.splitlines() if line.startswith(f'{{"{SUMMARY_KEY}"')]
    assert len(summary_lines) == 1
    summary = json.loads(summary_lines[0])[SUMMARY_KEY]
    assert summary["rows"] == 10_000
    assert summary["failures"] == 339
    assert summary["failures_without_mode"] == 9
    assert summary["rnf_without_failure"] == 18
    assert summary["split_rows"] == {"train": 8000, "validation": 1000, "test": 1000}
    assert 0 < summary["threshold"] < 1
    assert summary["test_roc_auc"] > 0.9
    assert summary["test_pr_auc"] > 0.5
    assert summary["test_f1"] > 0.6

    assert _files(project_copy / "data") == data_before, "the notebook wrote into data/"


@pytest.mark.slow
def test_a_failing_cell_is_named_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0")]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(notebook, path)

    script = _load_script(NOTEBOOKS / "execute.py")
    assert script.main([str(path), "--output-dir", str(tmp_path / "out")]) == 1

    error = capsys.readouterr().err
    assert "broken.ipynb: code cell 2 failed: ZeroDivisionError: division by zero" in error
    executed = nbformat.read(tmp_path / "out" / "broken.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["ename"] == "ZeroDivisionError"
    assert nbformat.read(path, as_version=4).cells[1].outputs == [], "the source was modified"


def test_a_missing_notebook_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    script = _load_script(NOTEBOOKS / "execute.py")
    with pytest.raises(SystemExit) as exit_info:
        script.main([str(tmp_path / "nope.ipynb")])
    assert exit_info.value.code == 2
    assert "no such notebook" in capsys.readouterr().err
