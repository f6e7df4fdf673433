"""``model.tar.gz`` as SageMaker expects it, built deterministically, and its safe extraction.

Layout (SageMaker extracts the archive to ``/opt/ml/model``)::

    xgboost-model                          the booster, UBJ (the file the XGBoost container loads)
    model_spec.json                        features, decision threshold, sha256 of xgboost-model...
    code/inference.py                      SAGEMAKER_PROGRAM: re-exports the four handlers
    code/predictive_maintenance/__init__.py
    code/predictive_maintenance/schema.py      the minimal copy of this package the handlers
    code/predictive_maintenance/features.py    import (copied from the installed sources, so the
    code/predictive_maintenance/integrity.py   container runs the very code training ran)
    code/predictive_maintenance/serving/__init__.py
    code/predictive_maintenance/serving/contract.py
    code/predictive_maintenance/serving/inference.py

No ``code/requirements.txt``: the handlers need only numpy, pandas and xgboost, which the stock
container has. The same inputs give byte-identical archives (fixed order, modes, owners and
mtimes; gzip without name or time), so an archive's sha256 identifies its content.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any, Final

import predictive_maintenance
from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.serving.contract import CODE_DIR, MODEL_FILE, PROGRAM_FILE, SPEC_FILE

#: Files of this package the inference code imports, relative to the package directory.
PACKAGE_FILES: Final = (
    "__init__.py",
    "schema.py",
    "features.py",
    "integrity.py",
    "serving/__init__.py",
    "serving/contract.py",
    "serving/inference.py",
)

#: ``code/inference.py``: the container imports it as the user module (``SAGEMAKER_PROGRAM``).
PROGRAM_SOURCE: Final = '''\
"""SageMaker script-mode entry point: the handlers of predictive_maintenance.serving.inference."""

from predictive_maintenance.serving.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
'''

#: Fixed metadata of every archive member (1980-01-01, the ZIP epoch, rather than 1970).
_MTIME: Final = 315_532_800
_FILE_MODE: Final = 0o644
_DIR_MODE: Final = 0o755
_GZIP_LEVEL: Final = 9


class ModelArchiveError(ValueError):
    """An archive is not a model package or would write outside its destination."""


def _package_sources() -> dict[str, bytes]:
    package_dir = Path(predictive_maintenance.__file__).resolve().parent
    return {name: (package_dir / name).read_bytes() for name in PACKAGE_FILES}


def _member(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = _DIR_MODE if directory else _FILE_MODE
    info.size = 0 if directory else size
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def archive_files(model_bytes: bytes, model_spec: dict[str, Any]) -> dict[str, bytes]:
    """The archive's files by path, after checking the spec describes ``model_bytes``."""
    expected = model_spec.get("model_sha256")
    if not isinstance(expected, str):
        raise ModelArchiveError("model_spec has no model_sha256: cannot vouch for the model")
    verify_sha256(model_bytes, expected, "model bytes against model_spec['model_sha256']")
    spec_bytes = (json.dumps(model_spec, indent=2, sort_keys=True) + "\n").encode()
    files = {MODEL_FILE: bytes(model_bytes), SPEC_FILE: spec_bytes}
    files[f"{CODE_DIR}/{PROGRAM_FILE}"] = PROGRAM_SOURCE.encode()
    for name, content in _package_sources().items():
        files[f"{CODE_DIR}/predictive_maintenance/{name}"] = content
    return files


def build_model_archive(model_bytes: bytes, model_spec: dict[str, Any]) -> bytes:
    """``model.tar.gz`` for the stock SageMaker XGBoost container in script mode.

    Args:
        model_bytes: The booster in UBJ (``Booster.save_raw("ubj")``).
        model_spec: The training pipeline's model spec; its ``model_sha256`` must be the digest of
            ``model_bytes``. A ``model_version`` key, if present, is what the container reports.

    Returns:
        The gzipped tar, byte-identical for the same inputs and the same package sources.

    Raises:
        ChecksumMismatchError: ``model_spec["model_sha256"]`` is not the digest of the bytes.
        ModelArchiveError: the spec has no ``model_sha256``.
    """
    files = archive_files(model_bytes, model_spec)
    directories = sorted(
        {str(parent) for name in files for parent in PurePosixPath(name).parents} - {"."}
    )
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in directories:
            tar.addfile(_member(directory, directory=True))
        for name in sorted(files, key=lambda path: (path.count("/"), path)):
            tar.addfile(_member(name, len(files[name])), io.BytesIO(files[name]))
    gzip_buffer = io.BytesIO()
    with gzip.GzipFile(
        filename="", mode="wb", fileobj=gzip_buffer, compresslevel=_GZIP_LEVEL, mtime=0
    ) as gz:
        gz.write(tar_buffer.getvalue())
    return gzip_buffer.getvalue()


def extract_model_archive(archive: bytes, destination: Path) -> Path:
    """Extracts a model archive into ``destination`` (created if needed) and returns it.

    Only regular files and directories whose paths stay inside ``destination`` are accepted: no
    absolute paths, no ``..``, no links or devices. The result must hold ``xgboost-model`` and
    ``model_spec.json``; it is then a model directory for
    :func:`~predictive_maintenance.serving.inference.model_fn`.

    Raises:
        ModelArchiveError: the archive is unreadable, unsafe or not a model package.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root)
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ModelArchiveError(f"cannot extract the model archive: {error}") from error
    for required in (MODEL_FILE, SPEC_FILE):
        if not (root / required).is_file():
            raise ModelArchiveError(f"the model archive has no {required}")
    return destination


def _check_member(member: tarfile.TarInfo, root: Path) -> None:
    name = member.name
    if not (member.isfile() or member.isdir()):
        raise ModelArchiveError(f"archive member {name!r} is not a regular file or directory")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ModelArchiveError(f"archive member {name!r} has an unsafe path")
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ModelArchiveError(f"archive member {name!r} would land outside {root}")
