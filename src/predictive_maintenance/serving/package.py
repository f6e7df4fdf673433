"""``model.tar.gz`` as SageMaker expects it, built deterministically, and its safe extraction.

Layout (SageMaker extracts the archive to ``/opt/ml/model``)::

    xgboost-model                          the booster, UBJ (the file the XGBoost container loads)
    model_spec.json                        features, decision threshold, sha256 of xgboost-model...
    code/inference.py                      SAGEMAKER_PROGRAM: re-exports model_fn, transform_fn
    code/predictive_maintenance/__init__.py
    code/predictive_maintenance/schema.py      the minimal copy of this package the handlers
    code/predictive_maintenance/features.py    import (copied from the installed sources, so the
    code/predictive_maintenance/integrity.py   container runs the very code training ran)
    code/predictive_maintenance/serving/__init__.py
    code/predictive_maintenance/serving/contract.py
    code/predictive_maintenance/serving/inference.py
    code/predictive_maintenance/serving/requests.py

No ``code/requirements.txt``: the handlers need only numpy, pandas and xgboost, which the stock
container has. The same inputs give byte-identical archives (fixed order, modes, owners and
mtimes; gzip without name or time), so an archive's sha256 identifies its content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import predictive_maintenance
from predictive_maintenance.integrity import verify_sha256
from predictive_maintenance.sagemaker.archives import ArchiveError, build_tar_gz, extract_tar_gz
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
    "serving/requests.py",
)

#: ``code/inference.py``: the container imports it as the user module (``SAGEMAKER_PROGRAM``).
#: Only ``model_fn`` and ``transform_fn``: the XGBoost container refuses a module that also has
#: ``input_fn``, ``predict_fn`` or ``output_fn``, and without ``transform_fn`` it answers every bad
#: request with a 500.
PROGRAM_SOURCE: Final = '''\
"""SageMaker script-mode entry point: the handlers of predictive_maintenance.serving.inference."""

from predictive_maintenance.serving.inference import model_fn, transform_fn

__all__ = ["model_fn", "transform_fn"]
'''


class ModelArchiveError(ArchiveError):
    """An archive is not a model package or would write outside its destination."""


def _package_sources() -> dict[str, bytes]:
    package_dir = Path(predictive_maintenance.__file__).resolve().parent
    return {name: (package_dir / name).read_bytes() for name in PACKAGE_FILES}


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
    return build_tar_gz(archive_files(model_bytes, model_spec))


def extract_model_archive(archive: bytes, destination: Path) -> Path:
    """Extracts a model archive into ``destination`` (created if needed) and returns it.

    Only regular files and directories whose paths stay inside ``destination`` are accepted: no
    absolute paths, no ``..``, no links or devices. The result must hold ``xgboost-model`` and
    ``model_spec.json``; it is then a model directory for
    :func:`~predictive_maintenance.serving.inference.model_fn`.

    Raises:
        ModelArchiveError: the archive is unreadable, unsafe or not a model package.
    """
    try:
        root = extract_tar_gz(archive, destination, what="model archive")
    except ArchiveError as error:
        raise ModelArchiveError(str(error)) from error
    for required in (MODEL_FILE, SPEC_FILE):
        if not (root / required).is_file():
            raise ModelArchiveError(f"the model archive has no {required}")
    return destination
