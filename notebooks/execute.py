"""Runs the project's notebooks headless, top to bottom, against the project's catalog.

``make notebook`` calls it; so does ``tests/test_notebook.py`` (on a copy of the project). Each
notebook runs with its own directory as working directory, so Kedro's IPython extension finds the
project one level up and ``catalog`` is the project's catalog. The stored notebook is never
modified: the executed copy, with every output, is written to ``--output-dir``.

    python notebooks/execute.py [NOTEBOOK ...] [--output-dir DIR] [--timeout SECONDS]

Exit status: 0 when every cell of every notebook ran, 1 when a cell raised (its notebook, cell
number and error are printed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from ipykernel.kernelspec import get_kernel_dict
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = Path(__file__).resolve().parent
PROJECT_ROOT = NOTEBOOKS.parent
DEFAULT_OUTPUT_DIR = PROJECT_ROOT / "data" / "08_reporting" / "notebooks"
DEFAULT_TIMEOUT_SECONDS = 120


class ThisInterpreterKernelSpecs(KernelSpecManager):
    """Resolves any kernel name to ipykernel run by this interpreter (the project's venv).

    A ``python3`` spec found elsewhere on the machine (user or system Jupyter paths) could start
    another Python without the project installed; this one cannot.
    """

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return KernelSpec(resource_dir="", **get_kernel_dict())


def execute(
    notebook: nbformat.NotebookNode, working_dir: Path, timeout: int = DEFAULT_TIMEOUT_SECONDS
) -> None:
    """Executes ``notebook`` in place, cell by cell, in ``working_dir``.

    Raises:
        CellExecutionError: the first cell that raised, with its traceback.
    """
    env = dict(os.environ)
    env.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    # A relative KEDRO_LOGGING_CONFIG is relative to the project root, which the kernel (started
    # in the notebook's directory) would not find.
    configured = env.get("KEDRO_LOGGING_CONFIG")
    if configured and not Path(configured).is_absolute():
        env["KEDRO_LOGGING_CONFIG"] = str(working_dir.parent / configured)
    # Unix sockets, not loopback TCP: nothing else on the machine can talk to the kernel.
    sockets = tempfile.mkdtemp(prefix="notebook-kernel-")
    kernel_manager = KernelManager(
        kernel_name="python3",
        kernel_spec_manager=ThisInterpreterKernelSpecs(),
        transport="ipc",
        ip=str(Path(sockets) / "kernel"),
    )
    client = NotebookClient(
        notebook,
        km=kernel_manager,
        timeout=timeout,
        resources={"metadata": {"path": str(working_dir)}},
    )
    try:
        # We own the kernel manager, so the kernel is shut down with the client.
        client.execute(cleanup_kc=True, env=env)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)


def _failed_cell(notebook: nbformat.NotebookNode) -> tuple[int, str] | None:
    """The 1-based number of the first code cell with an error output, and the error."""
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    for number, cell in enumerate(code_cells, start=1):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return number, f"{output.get('ename')}: {output.get('evalue')}"
    return None


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "notebooks",
        nargs="*",
        type=Path,
        help="notebooks to run (default: every notebooks/*.ipynb)",
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT_DIR)
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_SECONDS, help="per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")

    args.output_dir.mkdir(parents=True, exist_ok=True)
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        output = args.output_dir / path.name
        started = time.perf_counter()
        try:
            execute(notebook, path.resolve().parent, args.timeout)
        except CellExecutionError:
            nbformat.write(notebook, output)
            number, error = _failed_cell(notebook) or (0, "unknown error")
            print(
                f"{_shown(path)}: code cell {number} failed: {error}\n"
                f"  the executed notebook, with the traceback, is in {_shown(output)}",
                file=sys.stderr,
            )
            return 1
        nbformat.write(notebook, output)
        cells = sum(cell.cell_type == "code" for cell in notebook.cells)
        seconds = time.perf_counter() - started
        print(f"{_shown(path)}: {cells} code cells ran in {seconds:.1f} s -> {_shown(output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
