"""Runs ``notebooks/01_explore_and_train.ipynb`` headless, top to bottom, on a copy of the project.

The notebook finds its project by walking up from its working directory, so the copied notebook,
run from the copy's ``notebooks/``, reads the copy's catalog: the real ``data/`` is never touched,
and the run does not depend on a previous ``kedro run``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK = NOTEBOOKS / "01_explore_and_train.ipynb"
CELL_TIMEOUT_SECONDS = 120
SUMMARY_KEY = "notebook_summary"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


class _ThisInterpreterKernelSpecs(KernelSpecManager):
    """Resolves any kernel name to ipykernel run by this interpreter (the project's venv).

    A ``python3`` spec found elsewhere on the machine (user or system Jupyter paths) could start
    another Python without the project installed; this one cannot.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(resource_dir="", **get_kernel_dict())


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
def test_notebook_runs_top_to_bottom(project_copy: Path, monkeypatch: pytest.MonkeyPatch):
    notebooks = project_copy / "notebooks"
    shutil.copytree(NOTEBOOKS, notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    # A relative KEDRO_LOGGING_CONFIG (project root based) does not exist from the kernel's
    # working directory, notebooks/.
    configured = os.environ.get("KEDRO_LOGGING_CONFIG")
    if configured and not Path(configured).is_absolute():
        monkeypatch.setenv("KEDRO_LOGGING_CONFIG", str(project_copy / configured))
    data_before = _files(project_copy / "data")

    notebook = nbformat.read(notebooks / NOTEBOOK.name, as_version=4)
    notebook.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(
        notebook,
        km=KernelManager(kernel_name="python3", kernel_spec_manager=_ThisInterpreterKernelSpecs()),
        timeout=CELL_TIMEOUT_SECONDS,
        resources={"metadata": {"path": str(notebooks)}},
    )
    started = time.perf_counter()
    client.execute(cleanup_kc=True)  # we own the kernel manager, so shut the kernel down
    elapsed = time.perf_counter() - started
    print(f"notebook ran in {elapsed:.1f} s")

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
