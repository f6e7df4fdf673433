"""``sourcedir.tar.gz``: the code a node job runs, for the stock framework image's script mode.

Layout (SageMaker extracts it to ``/opt/ml/code`` and runs ``sagemaker_program`` from there)::

    kedro_node_entry.py        the program: calls this bridge's entry_point.main()
    requirements.txt           only if requirements are configured (the container pip-installs it)
    <package>/...              every top-level package the remote nodes' functions live in,
                               and the bridge's own, copied from the importable sources

Built with :func:`~predictive_maintenance.sagemaker.archives.build_tar_gz`, so unchanged code
gives a byte-identical archive and its sha256 can address it in S3 (uploaded once).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from predictive_maintenance.sagemaker.archives import build_tar_gz

#: The script SageMaker runs (``sagemaker_program``).
ENTRY_SCRIPT: Final = "kedro_node_entry.py"
_BRIDGE_PACKAGE: Final = __name__.rpartition(".")[0]
_EXCLUDED_PARTS: Final = frozenset({"__pycache__"})
_EXCLUDED_SUFFIXES: Final = frozenset({".pyc", ".pyo"})

ENTRY_SOURCE: Final = f'''\
"""SageMaker script-mode program: runs one Kedro node (written by {_BRIDGE_PACKAGE})."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from {_BRIDGE_PACKAGE}.entry_point import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


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


def source_files(
    packages: Iterable[str],
    requirements: Iterable[str] = (),
    extra_files: dict[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The files of ``sourcedir.tar.gz`` by path (see :func:`build_source_archive`)."""
    files = {ENTRY_SCRIPT: ENTRY_SOURCE.encode(), **(extra_files or {})}
    for package in sorted({*packages, top_level_package(_BRIDGE_PACKAGE)}):
        files.update(package_sources(package))
    requirements = list(requirements)
    if requirements:
        files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    return files


def build_source_archive(
    packages: Iterable[str],
    requirements: Iterable[str] = (),
    extra_files: dict[str, bytes] | None = None,
) -> bytes:
    """``sourcedir.tar.gz`` holding the entry script, ``packages``, the bridge itself,
    ``requirements.txt`` if any, and ``extra_files`` (path -> content)."""
    return build_tar_gz(source_files(packages, requirements, extra_files))
