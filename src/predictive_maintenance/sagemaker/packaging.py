"""The code a job runs: one package for training jobs (``sourcedir.tar.gz``, script mode) and
processing jobs (the same files, unpacked, as an input).

Layout::

    kedro_job_entry.py      the program: predictive_maintenance.sagemaker.job.main()
    pyproject.toml          the training toolkit pip-installs the code directory before running
    _kedro_job_build.py     the program; this in-tree build backend with no requirements makes
                            that install an offline no-op (a default setup.py would need
                            setuptools from an index under modern pip, and copy every file)
    kedro_jobs/<job>/job.json   the job specs of an exported pipeline
    <package>/...           every top-level package the nodes' functions live in, and the
                            bridge's own, copied from the importable sources

Built with :func:`~predictive_maintenance.sagemaker.archives.build_tar_gz`, so the same files
give a byte-identical archive and its sha256 can address it in S3 (uploaded once).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from predictive_maintenance.sagemaker.job import JOB_FILE

#: The script SageMaker runs (``sagemaker_program``, or the processing entrypoint).
ENTRY_SCRIPT: Final = "kedro_job_entry.py"
#: Where an exported pipeline's job specs live in the code package.
JOBS_DIR: Final = "kedro_jobs"
_BRIDGE_PACKAGE: Final = __name__.rpartition(".")[0]
_EXCLUDED_PARTS: Final = frozenset({"__pycache__"})
_EXCLUDED_SUFFIXES: Final = frozenset({".pyc", ".pyo"})

ENTRY_SOURCE: Final = f'''\
"""SageMaker job program: runs a group of Kedro nodes (written by {_BRIDGE_PACKAGE})."""

import pathlib
import sys

CODE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(CODE))

from {_BRIDGE_PACKAGE}.job import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], CODE))
'''

BUILD_BACKEND: Final = '''\
"""A PEP 517 backend that builds an empty wheel: the job runs from this directory, so the
training toolkit's ``pip install .`` has nothing to install and no build requirement to fetch."""

import base64
import hashlib
import os
import zipfile

NAME, VERSION = "kedro_job_code", "0"
_DIST_INFO = f"{NAME}-{VERSION}.dist-info"
_FILES = {
    "METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n",
    "WHEEL": (
        "Wheel-Version: 1.0\\nGenerator: kedro-job\\nRoot-Is-Purelib: true\\n"
        "Tag: py3-none-any\\n"
    ),
}


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        for file, text in _FILES.items():
            data = text.encode()
            wheel.writestr(f"{_DIST_INFO}/{file}", data)
            records.append(_record_line(f"{_DIST_INFO}/{file}", data))
        records.append(f"{_DIST_INFO}/RECORD,,")
        wheel.writestr(f"{_DIST_INFO}/RECORD", "\\n".join(records) + "\\n")
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []
'''

PYPROJECT: Final = """\
[build-system]
requires = []
build-backend = "_kedro_job_build"
backend-path = ["."]

[project]
name = "kedro_job_code"
version = "0"
"""


class PackagingError(ValueError):
    """A package to ship cannot be found as source files."""


def top_level_package(module: str) -> str:
    """``a.b.c`` -> ``a``."""
    return module.partition(".")[0]


def package_sources(package: str) -> dict[str, bytes]:
    """The files of an importable top-level package (or module) by archive path."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        raise PackagingError(f"cannot find package {package!r} to ship with the job")
    if spec.submodule_search_locations:
        files: dict[str, bytes] = {}
        for location in spec.submodule_search_locations:
            root = Path(location)
            for path in sorted(root.rglob("*")):
                relative = path.relative_to(root)
                if (
                    path.is_file()
                    and not _EXCLUDED_PARTS.intersection(relative.parts)
                    and path.suffix not in _EXCLUDED_SUFFIXES
                ):
                    files[f"{package}/{relative.as_posix()}"] = path.read_bytes()
        return files
    if spec.origin and spec.origin.endswith(".py"):
        return {f"{package}.py": Path(spec.origin).read_bytes()}
    raise PackagingError(f"{package!r} is not a source package (origin {spec.origin})")


def code_files(
    packages: Iterable[str], job_specs: Mapping[str, bytes] | None = None
) -> dict[str, bytes]:
    """The files of the code package by path (see the module docstring).

    Args:
        packages: Top-level packages of the nodes' functions (the bridge's own is added).
        job_specs: Job name -> ``job.json`` content, for an exported pipeline.
    """
    files = {
        ENTRY_SCRIPT: ENTRY_SOURCE.encode(),
        "pyproject.toml": PYPROJECT.encode(),
        "_kedro_job_build.py": BUILD_BACKEND.encode(),
    }
    for package in sorted({*packages, top_level_package(_BRIDGE_PACKAGE)}):
        files.update(package_sources(package))
    for job, content in (job_specs or {}).items():
        files[f"{JOBS_DIR}/{job}/{JOB_FILE}"] = content
    return files
