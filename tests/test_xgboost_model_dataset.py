"""XGBoostModelDataset: XGBoost's own format, a sha256 sidecar, verified on every load."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb
from kedro.io import DatasetError
from kedro.io.core import Version

from predictive_maintenance.datasets import XGBoostModelDataset
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3))
    labels = (features[:, 0] + features[:, 1] > 0).astype(int)
    return xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "seed": 0, "nthread": 1},
        xgb.DMatrix(features, label=labels, feature_names=["a", "b", "c"]),
        num_boost_round=5,
    )


def _scores(model: xgb.Booster) -> np.ndarray:
    return model.predict(xgb.DMatrix(np.eye(3), feature_names=["a", "b", "c"]))


@pytest.mark.parametrize("model_format", ["ubj", "json"])
def test_round_trip_keeps_predictions_and_feature_names(tmp_path, booster, model_format):
    dataset = XGBoostModelDataset(
        filepath=str(tmp_path / f"model.{model_format}"), model_format=model_format
    )

    dataset.save(booster)
    loaded = dataset.load()

    np.testing.assert_array_equal(_scores(loaded), _scores(booster))
    assert loaded.feature_names == ["a", "b", "c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"model.{model_format}",
        f"model.{model_format}.sha256",
    ]


def test_sidecar_is_sha256sum_format(tmp_path, booster):
    path = tmp_path / "model.ubj"
    XGBoostModelDataset(filepath=str(path)).save(booster)

    digest, name = (tmp_path / "model.ubj.sha256").read_text().split()
    assert digest == sha256_hex(path.read_bytes())
    assert name == "model.ubj"


def test_json_format_is_plain_json_not_pickle(tmp_path, booster):
    path = tmp_path / "model.json"
    XGBoostModelDataset(filepath=str(path), model_format="json").save(booster)

    assert path.read_bytes().startswith(b"{")


def test_tampered_model_is_refused(tmp_path, booster):
    path = tmp_path / "model.ubj"
    dataset = XGBoostModelDataset(filepath=str(path))
    dataset.save(booster)
    tampered = bytearray(path.read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    path.write_bytes(bytes(tampered))

    with pytest.raises(DatasetError) as error:
        dataset.load()

    assert isinstance(error.value.__cause__, ChecksumMismatchError)
    assert str(path) in str(error.value)


def test_model_without_checksum_is_refused(tmp_path, booster):
    path = tmp_path / "model.ubj"
    dataset = XGBoostModelDataset(filepath=str(path))
    dataset.save(booster)
    (tmp_path / "model.ubj.sha256").unlink()

    with pytest.raises(DatasetError, match="missing or empty"):
        dataset.load()


def test_versioned_saves_keep_each_version(tmp_path, booster):
    first = XGBoostModelDataset(
        filepath=str(tmp_path / "model.ubj"), version=Version(None, "2026-01-01T00.00.00.000Z")
    )
    second = XGBoostModelDataset(
        filepath=str(tmp_path / "model.ubj"), version=Version(None, "2026-01-02T00.00.00.000Z")
    )
    first.save(booster)
    second.save(booster[:2])

    latest = XGBoostModelDataset(
        filepath=str(tmp_path / "model.ubj"), version=Version(None, None)
    ).load()

    assert latest.num_boosted_rounds() == 2
    pinned = XGBoostModelDataset(
        filepath=str(tmp_path / "model.ubj"), version=Version("2026-01-01T00.00.00.000Z", None)
    )
    assert pinned.load().num_boosted_rounds() == 5


def test_unknown_format_is_rejected(tmp_path):
    with pytest.raises(DatasetError, match="model_format"):
        XGBoostModelDataset(filepath=str(tmp_path / "model.bin"), model_format="pickle")
