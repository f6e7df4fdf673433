"""``model.tar.gz`` as SageMaker expects it, built deterministically, and its safe extraction.

Layout (SageMaker extracts the archive to ``/opt/ml/model``)::

    xgboost-model                          the booster, UBJ (the file the XGBoost container loads)
    model_spec.json                        features, decision threshold, sha256 of xgboost-model,
                                           the calibration map, the failure-mode model's sha256...
    failure-mode-model                     optional: the failure-mode booster, UBJ
    model_card.json                        optional: the model card (its sha256 in the spec)
    code/inference.py                      SAGEMAKER_PROGRAM: re-exports model_fn, transform_fn
    code/predictive_maintenance/__init__.py
    code/predictive_maintenance/schema.py      the minimal copy of this package the handlers
    code/predictive_maintenance/features.py    import (copied from the installed sources, so the
    code/predictive_maintenance/integrity.py   container runs the very code training ran)
    code/predictive_maintenance/calibration.py
    code/predictive_maintenance/failure_modes.py
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import predictive_maintenance
from predictive_maintenance.integrity import sha256_hex, verify_sha256
from predictive_maintenance.sagemaker.archives import ArchiveError, build_tar_gz, extract_tar_gz
from predictive_maintenance.serving.contract import (
    CODE_DIR,
    FAILURE_MODE_MODEL_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    PROGRAM_FILE,
    SPEC_FILE,
)

#: Files of this package the inference code imports, relative to the package directory.
PACKAGE_FILES: Final = (
    "__init__.py",
    "schema.py",
    "features.py",
    "integrity.py",
    "calibration.py",  # numpy only: the calibration map the explained answer applies
    "failure_modes.py",  # numpy only: the failure-mode model's classes and answer
    "serving/__init__.py",
    "serving/contract.py",
    "serving/inference.py",
    "serving/requests.py",
)

#: Files an archive may carry beside the model and its spec (:func:`archive_files`).
EXTRA_FILES: Final = (FAILURE_MODE_MODEL_FILE, MODEL_CARD_FILE)

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


def archive_files(
    model_bytes: bytes,
    model_spec: dict[str, Any],
    extra_files: Mapping[str, bytes] | None = None,
) -> dict[str, bytes]:
    """The archive's files by path, after checking the spec describes ``model_bytes`` and the
    extra files (see :func:`build_model_archive`)."""
    expected = model_spec.get("model_sha256")
    if not isinstance(expected, str):
        raise ModelArchiveError("model_spec has no model_sha256: cannot vouch for the model")
    verify_sha256(model_bytes, expected, "model bytes against model_spec['model_sha256']")
    extras = dict(extra_files or {})
    spec = _spec_with_extras(model_spec, extras)
    spec_bytes = (json.dumps(spec, indent=2, sort_keys=True) + "\n").encode()
    files = {MODEL_FILE: bytes(model_bytes), SPEC_FILE: spec_bytes}
    files.update((name, bytes(extras[name])) for name in EXTRA_FILES if name in extras)
    files[f"{CODE_DIR}/{PROGRAM_FILE}"] = PROGRAM_SOURCE.encode()
    for name, content in _package_sources().items():
        files[f"{CODE_DIR}/predictive_maintenance/{name}"] = content
    return files


def _spec_with_extras(model_spec: dict[str, Any], extras: dict[str, bytes]) -> dict[str, Any]:
    """The spec the archive carries: ``model_spec``, plus the model card's sha256 when there is
    one, after checking each extra file is one the spec vouches for (or, the card, records)."""
    unknown = sorted(set(extras) - set(EXTRA_FILES))
    if unknown:
        raise ModelArchiveError(
            f"extra_files: {unknown[0]!r} is not a file a model archive carries; only "
            f"{list(EXTRA_FILES)}"
        )
    modes = model_spec.get("failure_modes")
    if FAILURE_MODE_MODEL_FILE in extras:
        if not isinstance(modes, Mapping) or not isinstance(modes.get("model_sha256"), str):
            raise ModelArchiveError(
                f"extra_files has {FAILURE_MODE_MODEL_FILE!r} but model_spec has no "
                "failure_modes.model_sha256: cannot vouch for it"
            )
        verify_sha256(
            extras[FAILURE_MODE_MODEL_FILE],
            modes["model_sha256"],
            f"{FAILURE_MODE_MODEL_FILE} against model_spec['failure_modes']['model_sha256']",
        )
    elif modes is not None:
        raise ModelArchiveError(
            f"model_spec describes a failure-mode model but extra_files has no "
            f"{FAILURE_MODE_MODEL_FILE!r}: the endpoint could not load it"
        )
    spec = dict(model_spec)
    if MODEL_CARD_FILE in extras:
        card = extras[MODEL_CARD_FILE]
        try:
            document = json.loads(card)
        except ValueError as error:
            raise ModelArchiveError(f"{MODEL_CARD_FILE} is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise ModelArchiveError(f"{MODEL_CARD_FILE} must hold a JSON object")
        digest = sha256_hex(bytes(card))
        if spec.setdefault("model_card_sha256", digest) != digest:
            raise ModelArchiveError(
                f"model_spec's model_card_sha256 {spec['model_card_sha256']!r} is not the "
                f"sha256 of the {MODEL_CARD_FILE} given ({digest})"
            )
    elif "model_card_sha256" in spec:
        raise ModelArchiveError(
            f"model_spec has a model_card_sha256 but extra_files has no {MODEL_CARD_FILE!r}"
        )
    return spec


def build_model_archive(
    model_bytes: bytes,
    model_spec: dict[str, Any],
    extra_files: Mapping[str, bytes] | None = None,
) -> bytes:
    """``model.tar.gz`` for the stock SageMaker XGBoost container in script mode.

    Args:
        model_bytes: The booster in UBJ (``Booster.save_raw("ubj")``).
        model_spec: The training pipeline's model spec; its ``model_sha256`` must be the digest of
            ``model_bytes``. A ``model_version`` key, if present, is what the container reports.
        extra_files: Optional files for the archive's root, by name: only
            :data:`~.contract.FAILURE_MODE_MODEL_FILE` (the failure-mode booster's UBJ, whose
            digest must be the spec's ``failure_modes.model_sha256``; required when the spec has
            ``failure_modes``) and :data:`~.contract.MODEL_CARD_FILE` (a JSON object; its
            sha256 is recorded in the archive's copy of the spec as ``model_card_sha256``).

    Returns:
        The gzipped tar, byte-identical for the same inputs and the same package sources.

    Raises:
        ChecksumMismatchError: ``model_spec["model_sha256"]`` is not the digest of the bytes, or
            ``failure_modes.model_sha256`` not that of the failure-mode model.
        ModelArchiveError: the spec has no ``model_sha256``; an extra file is unknown, not
            vouched for by the spec, missing though the spec names it, or (the card) not JSON.
    """
    return build_tar_gz(archive_files(model_bytes, model_spec, extra_files))


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
