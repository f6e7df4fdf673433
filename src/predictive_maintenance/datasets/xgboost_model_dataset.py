"""``XGBoostModelDataset``: an XGBoost Booster in XGBoost's own UBJ/JSON format, sha256-checked.

No Python object serialisation: the model is written with ``Booster.save_raw`` (UBJ or JSON,
the formats XGBoost promises to load across versions and the SageMaker XGBoost container reads),
and a ``<file>.sha256`` sidecar in ``sha256sum`` format is written beside it. Loading re-hashes the
bytes and refuses a model whose digest differs.
"""

from __future__ import annotations

import uuid
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any, Literal

import fsspec
import xgboost as xgb
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from predictive_maintenance.integrity import sha256_hex, verify_sha256

CHECKSUM_SUFFIX = ".sha256"


class XGBoostModelDataset(AbstractVersionedDataset[xgb.Booster, xgb.Booster]):
    """Loads and saves an ``xgboost.Booster`` with a sha256 sidecar, on any fsspec filesystem.

    Example catalog entry::

        model:
          type: predictive_maintenance.datasets.XGBoostModelDataset
          filepath: data/06_models/model.ubj
    """

    def __init__(
        self,
        *,
        filepath: str,
        model_format: Literal["ubj", "json"] = "ubj",
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            filepath: Model file path, optionally with a protocol (``s3://bucket/model.ubj``).
            model_format: ``ubj`` (binary, compact) or ``json`` (readable).
            version: Kedro dataset version, when the catalog entry sets ``versioned: true``.
            credentials: Passed to the fsspec filesystem.
            fs_args: Passed to the fsspec filesystem.
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        if model_format not in ("ubj", "json"):
            raise DatasetError(f"model_format must be 'ubj' or 'json', got {model_format!r}")
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self._model_format = model_format
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._filepath,
            "protocol": self._protocol,
            "model_format": self._model_format,
            "version": self._version,
        }

    def load(self) -> xgb.Booster:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        model_bytes = self._fs.cat_file(load_path)
        try:
            recorded = self._fs.cat_file(load_path + CHECKSUM_SUFFIX).decode().split()[0]
        except (FileNotFoundError, IndexError) as error:
            raise DatasetError(
                f"{load_path}{CHECKSUM_SUFFIX} is missing or empty: refusing to load a model "
                "whose integrity cannot be checked"
            ) from error
        verify_sha256(model_bytes, recorded, load_path)
        booster = xgb.Booster()
        booster.load_model(bytearray(model_bytes))
        return booster

    def save(self, data: xgb.Booster) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        model_bytes = bytes(data.save_raw(raw_format=self._model_format))
        checksum_line = f"{sha256_hex(model_bytes)}  {PurePosixPath(save_path).name}\n".encode()
        # Write both files under temporary names first, so a crash never leaves a model next to a
        # checksum of another one; a reader sees the old pair, the new pair, or a clear mismatch.
        token = uuid.uuid4().hex
        staged = [
            (f"{save_path}.{token}.tmp", save_path, model_bytes),
            (
                f"{save_path}{CHECKSUM_SUFFIX}.{token}.tmp",
                save_path + CHECKSUM_SUFFIX,
                checksum_line,
            ),
        ]
        for temporary, _, payload in staged:
            self._fs.pipe_file(temporary, payload)
        for temporary, final, _ in staged:
            self._fs.mv(temporary, final)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(load_path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
