"""The SageMaker bridge's parts, one at a time: codecs, archives, the directory store, settings,
the code package, job names and function paths."""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
import tarfile
import types
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from predictive_maintenance.sagemaker import codecs
from predictive_maintenance.sagemaker.archives import ArchiveError, build_tar_gz, extract_tar_gz
from predictive_maintenance.sagemaker.codecs import CodecError, read_value, write_value
from predictive_maintenance.sagemaker.config import (
    BridgeSettings,
    JobEnvironment,
    NetworkSettings,
    SageMakerConfigError,
    TrainingJobSettings,
    parse_settings,
)
from predictive_maintenance.sagemaker.jobs import RemoteNodeError, function_path, job_name
from predictive_maintenance.sagemaker.packaging import (
    BUILD_BACKEND,
    ENTRY_SCRIPT,
    ENTRY_SOURCE,
    JOBS_DIR,
    PYPROJECT,
    PackagingError,
    code_files,
)
from predictive_maintenance.sagemaker.storage import DirectoryStore
from tests.sagemaker import bridge_nodes
from tests.support.project import PROJECT_ROOT

#: SageMaker's rule for a training job name (CreateTrainingJob's TrainingJobName).
JOB_NAME_RULE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
BRIDGE_SOURCES = PROJECT_ROOT / "src" / "predictive_maintenance" / "sagemaker"


def _round_trip(value, directory: Path, what: str = "output value"):
    codec, path = write_value(value, directory, "value", what)
    return codec, path, read_value(codec.name, path, what)


def _tar_members(archive: bytes) -> dict[str, bytes | None]:
    """Archive path -> content (None for directories)."""
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        return {
            member.name: tar.extractfile(member).read() if member.isfile() else None
            for member in tar.getmembers()
        }


# ---- codecs ------------------------------------------------------------------------------------
READINGS = pd.DataFrame(
    {
        "torque": np.array([42.8, 70.7, 3.8], dtype="float32"),
        "speed": np.array([1551, 1582, 2861], dtype="int16"),
        "type": pd.Categorical(["M", "L", "H"], categories=["L", "M", "H"], ordered=True),
        "failed": [False, True, False],
        "tool_wear": pd.array([0, None, 216], dtype="Int64"),
        "note": ["ok", None, "worn"],
        "taken": pd.to_datetime(["2020-01-01 10:00", "2020-01-02 11:30", "2020-01-03 12:45"]),
    },
    index=pd.Index([17, 3, 2048], name="udi"),
)


@pytest.mark.parametrize(
    "frame",
    [
        READINGS,
        READINGS.set_index(["type", "speed"]),
        READINGS.assign(taken=READINGS["taken"].dt.tz_localize("Europe/Berlin")).set_index("taken"),
        READINGS.reset_index(drop=True).set_axis(pd.RangeIndex(10, 16, 2)),
        READINGS.drop(columns="type").iloc[:0],  # (empty categoricals lose categories)
    ],
    ids=["int-index", "multi-index", "datetime-tz-index", "range-index", "empty"],
)
def test_data_frames_round_trip_as_parquet_with_index_and_dtypes(frame, tmp_path):
    codec, path, back = _round_trip(frame, tmp_path)

    assert (codec.name, path.name) == ("parquet", "value.parquet")
    assert path.read_bytes()[:4] == b"PAR1"
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    assert back.index.names == frame.index.names


def _small_booster() -> tuple[xgb.Booster, xgb.DMatrix]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 3)).astype(np.float32)
    labels = (features[:, 0] + features[:, 1] > 0).astype(np.float32)
    matrix = xgb.DMatrix(features, label=labels, feature_names=["torque", "speed", "wear"])
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1, "seed": 0},
        matrix,
        num_boost_round=5,
    )
    return booster, matrix


def test_boosters_round_trip_as_ubj_with_identical_predictions(tmp_path):
    booster, matrix = _small_booster()

    codec, path, back = _round_trip(booster, tmp_path)

    assert (codec.name, path.name) == ("xgboost-ubj", "value.ubj")
    assert path.read_bytes()[:1] == b"{"  # UBJSON object, not the legacy binary or pickle
    assert isinstance(back, xgb.Booster)
    assert back.feature_names == ["torque", "speed", "wear"]
    assert back.num_boosted_rounds() == 5
    np.testing.assert_array_equal(back.predict(matrix), booster.predict(matrix))


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype="<u2").reshape(3, 4),
        np.asfortranarray(np.linspace(0.0, 1.0, 6, dtype=np.float32).reshape(2, 3)),
        np.array(3.5),
        np.array([True, False]),
        np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
        np.array(["L", "M", "H"]),
        np.zeros(2, dtype=[("torque", "<f4"), ("speed", "<i2")]),
        np.empty((0, 3)),
    ],
    ids=[
        "uint16",
        "fortran-float32",
        "0-d",
        "bool",
        "datetime64",
        "unicode",
        "structured",
        "empty",
    ],
)
def test_numpy_arrays_round_trip_as_npy(array, tmp_path):
    codec, path, back = _round_trip(array, tmp_path)

    assert (codec.name, path.name) == ("npy", "value.npy")
    assert path.read_bytes()[:6] == b"\x93NUMPY"
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert back.flags.f_contiguous == array.flags.f_contiguous
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("value", [b"\x00\xffraw\n", bytearray(b"\x01\x02"), b""])
def test_bytes_round_trip_unchanged(value, tmp_path):
    codec, path, back = _round_trip(value, tmp_path)

    assert (codec.name, path.name) == ("bytes", "value.bin")
    assert path.read_bytes() == bytes(value)
    assert back == bytes(value)
    assert type(back) is bytes


@pytest.mark.parametrize(
    "value",
    [
        {"max_depth": 4, "eta": 0.3, "features": ["torque", "speed"], "note": "ü", "off": None},
        [1, 2.5, True, None, {"nested": []}],
        "text",
        7,
        None,
        {},
    ],
)
def test_plain_json_round_trips_as_json(value, tmp_path):
    codec, path, back = _round_trip(value, tmp_path)

    assert (codec.name, path.name) == ("json", "value.json")
    assert json.loads(path.read_text()) == value
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (np.array([1, "a", None], dtype=object), "numpy.ndarray"),
        ((1, 2), "builtins.tuple"),
        (float("nan"), "builtins.float"),
        ({"max_depth": float("nan")}, "builtins.dict"),
        ({"torque", "speed"}, "builtins.set"),
        ({1: "integer keys"}, "builtins.dict"),
        ({"nested": (1, 2)}, "builtins.dict"),
        (pd.Series([1, 2]), "pandas.Series"),
    ],
    ids=["object-array", "tuple", "nan", "nan-inside", "set", "int-keys", "nested-tuple", "series"],
)
def test_values_without_an_open_format_are_rejected_by_name(value, type_name, tmp_path):
    with pytest.raises(CodecError) as caught:
        codecs.codec_for(value, "output failure_scores")
    message = str(caught.value)
    assert message.startswith(f"output failure_scores is a {type_name},")
    assert "parquet, xgboost-ubj, plotly-json, npy, bytes, json" in message

    with pytest.raises(CodecError, match="output failure_scores"):
        write_value(value, tmp_path, "value", "output failure_scores")
    assert list(tmp_path.iterdir()) == []


def _pickled_object_array(path: Path) -> None:
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)


@pytest.mark.parametrize(
    ("codec_name", "file_name", "corrupt"),
    [
        ("parquet", "readings.parquet", lambda path: path.write_bytes(b"PAR1 truncated")),
        ("xgboost-ubj", "model.ubj", lambda path: path.write_bytes(b"not a model")),
        ("npy", "scores.npy", lambda path: path.write_bytes(b"\x93NUMPY broken")),
        ("npy", "objects.npy", _pickled_object_array),
        ("json", "params.json", lambda path: path.write_text('{"max_depth": 4,')),
        ("bytes", "missing.bin", lambda path: None),
    ],
    ids=["parquet", "ubj", "npy", "npy-pickle", "json", "missing-file"],
)
def test_read_value_of_a_corrupt_file_names_it(codec_name, file_name, corrupt, tmp_path):
    path = tmp_path / file_name
    corrupt(path)

    with pytest.raises(CodecError) as caught:
        read_value(codec_name, path, "input model_input")

    message = str(caught.value)
    assert message.startswith(f"input model_input: cannot read {file_name} as {codec_name}: ")


def test_an_unknown_codec_is_named(tmp_path):
    path = tmp_path / "value.pkl"
    path.write_bytes(b"")
    with pytest.raises(CodecError, match=r"unknown codec 'pickle' \(known: parquet, "):
        read_value("pickle", path, "input x")


# ---- archives ----------------------------------------------------------------------------------
FILES = {
    "kedro_value.json": b'{"dataset": "model"}\n',
    "code/pkg/__init__.py": b"",
    "code/pkg/module.py": b"VALUE = 1\n",
    "model.ubj": bytes(range(256)),
}


def test_archives_are_byte_identical_for_the_same_files(tmp_path):
    archive = build_tar_gz(FILES)

    assert build_tar_gz(dict(reversed(FILES.items()))) == archive
    assert build_tar_gz({**FILES, "model.ubj": b"other"}) != archive
    assert archive[4:8] == b"\0\0\0\0"  # no timestamp in the gzip header
    assert gzip.decompress(archive)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = tar.getmembers()
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {
        (315_532_800, 0, 0, "", "")
    }
    assert {m.name: m.mode for m in members if m.isdir()} == {"code": 0o755, "code/pkg": 0o755}
    assert {m.mode for m in members if m.isfile()} == {0o644}

    extracted = extract_tar_gz(archive, tmp_path / "out")
    assert {
        path.relative_to(extracted).as_posix(): path.read_bytes()
        for path in extracted.rglob("*")
        if path.is_file()
    } == FILES


def _hostile_archive(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        safe = tarfile.TarInfo("safe.txt")
        safe.size = 2
        tar.addfile(safe, io.BytesIO(b"ok"))
        if kind in {"symlink", "hardlink"}:
            link = tarfile.TarInfo("link")
            link.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            link.linkname = "/etc/passwd" if kind == "symlink" else "safe.txt"
            tar.addfile(link)
        else:
            name = {
                "dotdot": "../escaped.txt",
                "nested-dotdot": "inner/../../escaped.txt",
                "absolute": "/tmp/escaped.txt",
                "backslash": "..\\escaped.txt",
            }[kind]
            member = tarfile.TarInfo(name)
            member.size = 4
            tar.addfile(member, io.BytesIO(b"evil"))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kind", "member"),
    [
        ("dotdot", "../escaped.txt"),
        ("nested-dotdot", "inner/../../escaped.txt"),
        ("absolute", "/tmp/escaped.txt"),
        ("backslash", "..\\escaped.txt"),
        ("symlink", "link"),
        ("hardlink", "link"),
    ],
)
def test_extraction_refuses_unsafe_members_before_writing_anything(kind, member, tmp_path):
    destination = tmp_path / "deep" / "model"

    with pytest.raises(ArchiveError) as caught:
        extract_tar_gz(_hostile_archive(kind), destination, what="s3://b/model.tar.gz")

    assert str(caught.value).startswith(f"s3://b/model.tar.gz member {member!r} ")
    assert list(destination.iterdir()) == []  # not even the safe member
    assert not (tmp_path / "deep" / "escaped.txt").exists()


def test_an_unreadable_archive_is_named(tmp_path):
    with pytest.raises(ArchiveError, match=r"cannot extract the s3://b/x\.tar\.gz: "):
        extract_tar_gz(b"not gzip at all", tmp_path, what="s3://b/x.tar.gz")
    truncated = build_tar_gz(FILES)[:40]
    with pytest.raises(ArchiveError, match="cannot extract the archive"):
        extract_tar_gz(truncated, tmp_path / "t")


# ---- the directory store -----------------------------------------------------------------------
@pytest.fixture
def store(tmp_path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "s3")


def _file(tmp_path: Path, content: bytes, name: str = "source") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_directory_store_uploads_downloads_and_lists(store, tmp_path):
    store.upload_file(_file(tmp_path, b"first"), "s3://bucket/jobs/a/input/x.json")
    store.upload_file(_file(tmp_path, b"second"), "s3://bucket/jobs/a/output/model.tar.gz")
    store.upload_file(_file(tmp_path, b"other"), "s3://other/jobs/a/x")
    store.upload_file(_file(tmp_path, b"replaced"), "s3://bucket/jobs/a/input/x.json")

    assert (tmp_path / "s3" / "bucket" / "jobs" / "a" / "input" / "x.json").read_bytes() == (
        b"replaced"
    )
    assert store.exists("s3://bucket/jobs/a/input/x.json")
    assert not store.exists("s3://bucket/jobs/a/input/y.json")
    assert not store.exists("s3://bucket/jobs/a/input")  # a "directory" is no object
    assert store.list_keys("s3://bucket/jobs") == [
        "s3://bucket/jobs/a/input/x.json",
        "s3://bucket/jobs/a/output/model.tar.gz",
    ]
    assert store.list_keys("s3://bucket/jobs/a/out") == ["s3://bucket/jobs/a/output/model.tar.gz"]
    assert store.list_keys("s3://bucket/nothing") == []
    assert store.list_keys("s3://missing-bucket/") == []

    target = tmp_path / "down" / "loaded" / "model.tar.gz"
    store.download_file("s3://bucket/jobs/a/output/model.tar.gz", target)
    assert target.read_bytes() == b"second"
    with pytest.raises(FileNotFoundError, match=r"s3://bucket/jobs/a/none does not exist"):
        store.download_file("s3://bucket/jobs/a/none", tmp_path / "none")


def test_directory_store_never_lists_staging_files(store, tmp_path):
    store.upload_file(_file(tmp_path, b"done"), "s3://bucket/p/done.bin")
    # What an upload interrupted between write and rename leaves behind.
    (tmp_path / "s3" / "bucket" / "p" / ".staging-abc123").write_bytes(b"half")

    assert store.list_keys("s3://bucket/p") == ["s3://bucket/p/done.bin"]
    assert store.list_keys("s3://bucket/p/.staging") == []
    assert len(list((tmp_path / "s3" / "bucket" / "p").iterdir())) == 2


@pytest.mark.parametrize(
    "uri",
    [
        "s3://bucket/../../outside.txt",
        "s3://bucket/a/../../../outside.txt",
        "s3://../outside.txt",
        "s3://..",
    ],
)
def test_directory_store_refuses_uris_outside_its_root(uri, store, tmp_path):
    (tmp_path / "outside.txt").write_bytes(b"secret")
    source = _file(tmp_path, b"x")

    for operation in (
        lambda: store.path_of(uri),
        lambda: store.exists(uri),
        lambda: store.upload_file(source, uri),
        lambda: store.download_file(uri, tmp_path / "stolen"),
    ):
        with pytest.raises(ValueError, match="points outside the store"):
            operation()
    assert (tmp_path / "outside.txt").read_bytes() == b"secret"
    assert not (tmp_path / "stolen").exists()


@pytest.mark.parametrize("uri", ["file:///etc/passwd", "bucket/key", "s3:///key"])
def test_directory_store_takes_s3_uris_only(uri, store):
    with pytest.raises(ValueError, match="is not an s3://bucket/prefix URI"):
        store.path_of(uri)


def test_directory_store_does_not_list_outside_its_root(store, tmp_path):
    (tmp_path / "outside.txt").write_bytes(b"secret")
    store.upload_file(_file(tmp_path, b"x"), "s3://bucket/key")

    try:
        listed = store.list_keys("s3://../")
    except ValueError:
        listed = []
    assert listed == []


def test_directory_store_lists_a_folder_prefix_without_its_siblings(store, tmp_path):
    store.upload_file(_file(tmp_path, b"a"), "s3://bucket/input/a/a.json")
    store.upload_file(_file(tmp_path, b"ab"), "s3://bucket/input/ab/ab.json")

    assert store.list_keys("s3://bucket/input/a/") == ["s3://bucket/input/a/a.json"]


# ---- settings ----------------------------------------------------------------------------------
MINIMAL = {"bucket": "artifacts", "execution_role_arn": "arn:aws:iam::1:role/sm"}


def test_settings_defaults(tmp_path):
    settings = parse_settings(MINIMAL, tmp_path)

    assert settings == BridgeSettings(
        region=None,
        bucket="artifacts",
        prefix="",
        execution_role_arn="arn:aws:iam::1:role/sm",
        job_environment=settings.job_environment,  # checked below
    )
    assert settings.training_job == TrainingJobSettings(
        instance_type="ml.m5.xlarge",
        instance_count=1,
        volume_size_gb=30,
        max_runtime_seconds=3600,
        framework="xgboost",
        framework_version="3.0-5",
        image_uri=None,
        environment={},
    )
    assert settings.job_environment == JobEnvironment(
        requirements=(),
        image_packages=(),
        python_version="3.10",
        platforms=("manylinux2014_x86_64",),
        wheel_cache=Path.home() / ".cache" / "kedro-sagemaker" / "wheels",  # expanded
    )
    assert settings.network == NetworkSettings(
        enable_network_isolation=False, subnets=(), security_group_ids=()
    )
    assert (settings.poll_seconds, settings.local_poll_seconds) == (10.0, 0.5)
    assert settings.local_store_directory is None
    assert settings.s3_root == "s3://artifacts"
    assert not settings.is_remote("train_model", ["training"])
    assert settings.job_settings("train_model", ["training"]) == settings.training_job


def test_settings_read_every_key(tmp_path):
    settings = parse_settings(
        {
            **MINIMAL,
            "region": "eu-west-1",
            "prefix": "/projects/pm/",
            "remote_nodes": {"tags": ["remote"], "names": ["train_model"]},
            "training_job": {
                "instance_type": "ml.c5.2xlarge",
                "instance_count": 1,
                "volume_size_gb": 50,
                "max_runtime_seconds": 600,
                "framework": "sklearn",
                "framework_version": "1.2-1",
                "image_uri": "1.dkr.ecr.eu-west-1.amazonaws.com/custom:1",
                "environment": {"OMP_NUM_THREADS": "2"},
            },
            "job_environment": {
                "requirements": ["pyarrow>=15", "plotly"],
                "image_packages": ["numpy==2.1.0"],
                "python_version": "3.12",
                "platforms": ["manylinux_2_28_x86_64"],
                "wheel_cache": "cache/wheels",
            },
            "network": {
                "enable_network_isolation": True,
                "subnets": ["subnet-0a", "subnet-0b"],
                "security_group_ids": ["sg-01"],
            },
            "local": {"store_directory": "data/s3", "poll_seconds": 0.1},
            "poll_seconds": 30,
        },
        tmp_path,
    )

    assert settings.region == "eu-west-1"
    assert settings.s3_root == "s3://artifacts/projects/pm"
    assert settings.local_store_directory == tmp_path / "data" / "s3"
    assert (settings.poll_seconds, settings.local_poll_seconds) == (30.0, 0.1)
    assert settings.job_environment == JobEnvironment(
        requirements=("pyarrow>=15", "plotly"),
        image_packages=("numpy==2.1.0",),
        python_version="3.12",
        platforms=("manylinux_2_28_x86_64",),
        wheel_cache=tmp_path / "cache" / "wheels",  # relative to the project
    )
    assert settings.network == NetworkSettings(
        enable_network_isolation=True,
        subnets=("subnet-0a", "subnet-0b"),
        security_group_ids=("sg-01",),
    )
    assert settings.training_job.environment == {"OMP_NUM_THREADS": "2"}
    assert settings.training_job.image_uri.endswith("/custom:1")
    assert settings.is_remote("train_model", [])
    assert settings.is_remote("evaluate", ["other", "remote"])
    assert not settings.is_remote("evaluate", ["other"])


@pytest.mark.parametrize(
    ("config", "where", "key"),
    [
        ({"buckets": "x"}, "the top level", "buckets"),
        ({"remote_nodes": {"tag": ["remote"]}}, "remote_nodes", "tag"),
        ({"training_job": {"instance": "ml.m5.large"}}, "training_job", "instance"),
        ({"local": {"directory": "data"}}, "local", "directory"),
        (
            {"node_overrides": {"train": {"instance_typo": "x"}}},
            "node_overrides.train",
            "instance_typo",
        ),
        ({"node_overrides": {"tag:gpu": {"gpus": 1}}}, "node_overrides.tag:gpu", "gpus"),
        # requirements moved to job_environment: the old place is an error, not ignored.
        ({"training_job": {"requirements": ["scipy"]}}, "training_job", "requirements"),
        ({"job_environment": {"requirement": ["scipy"]}}, "job_environment", "requirement"),
        ({"network": {"vpc": "vpc-1"}}, "network", "vpc"),
    ],
)
def test_unknown_keys_are_named_with_their_block(config, where, key, tmp_path):
    with pytest.raises(SageMakerConfigError) as caught:
        parse_settings({**MINIMAL, **config}, tmp_path)

    message = str(caught.value)
    assert message.startswith("conf/<env>/sagemaker.yml: ")
    assert f"unknown key(s) {key} in {where} (known: " in message


@pytest.mark.parametrize(
    ("config", "pattern"),
    [
        ({"bucket": 7}, "bucket must be str, got int 7"),
        ({"region": ["eu-west-1"]}, "region must be str or NoneType"),
        ({"prefix": 1}, "prefix must be str"),
        ({"remote_nodes": ["train"]}, "remote_nodes must be Mapping"),
        ({"remote_nodes": {"tags": "remote"}}, "remote_nodes.tags must be list, got str"),
        ({"remote_nodes": {"names": {"a": 1}}}, "remote_nodes.names must be list"),
        ({"training_job": "big"}, "training_job must be Mapping"),
        ({"training_job": {"instance_count": "2"}}, "training_job.instance_count must be int"),
        ({"training_job": {"instance_count": True}}, "training_job.instance_count must be int"),
        ({"training_job": {"volume_size_gb": 2.5}}, "training_job.volume_size_gb must be int"),
        ({"training_job": {"max_runtime_seconds": 0}}, "max_runtime_seconds must be at least 1"),
        ({"training_job": {"instance_count": -1}}, "instance_count must be at least 1"),
        ({"training_job": {"image_uri": 5}}, "training_job.image_uri must be str or NoneType"),
        (
            {"job_environment": {"requirements": "xgboost"}},
            "job_environment.requirements must be list or tuple, got str",
        ),
        (
            {"job_environment": {"requirements": [1]}},
            r"job_environment.requirements\[\] must be str",
        ),
        ({"job_environment": ["kedro"]}, "job_environment must be Mapping"),
        ({"job_environment": {"image_packages": "numpy"}}, "job_environment.image_packages must"),
        ({"job_environment": {"platforms": [3]}}, r"job_environment.platforms\[\] must be str"),
        (  # what YAML makes of an unquoted 3.10
            {"job_environment": {"python_version": 3.1}},
            "job_environment.python_version must be str, got float 3.1",
        ),
        (
            {"job_environment": {"python_version": "python3.10"}},
            "job_environment.python_version must be like 3.10",
        ),
        ({"job_environment": {"wheel_cache": 1}}, "job_environment.wheel_cache must be str"),
        ({"network": True}, "network must be Mapping"),
        (
            {"network": {"enable_network_isolation": "yes"}},
            "network.enable_network_isolation must be bool, got str 'yes'",
        ),
        ({"network": {"subnets": "subnet-1"}}, "network.subnets must be list or tuple"),
        (
            {"network": {"subnets": ["subnet-1"], "security_group_ids": [7]}},
            r"network.security_group_ids\[\] must be str",
        ),
        ({"training_job": {"environment": ["A=1"]}}, "training_job.environment must be Mapping"),
        ({"training_job": {"environment": {"A": 1}}}, "training_job.environment.A must be str"),
        ({"node_overrides": ["train"]}, "node_overrides must be Mapping"),
        ({"node_overrides": {"train": "ml.m5.large"}}, "node_overrides.train must be Mapping"),
        ({"local": "data"}, "local must be Mapping"),
        ({"local": {"store_directory": 3}}, "local.store_directory must be str"),
        ({"local": {"poll_seconds": None}}, "local.poll_seconds must be int or float"),
        ({"poll_seconds": "fast"}, "poll_seconds must be int or float, got str 'fast'"),
        ({"bucket": ""}, "bucket is required"),
        ({"execution_role_arn": None}, "execution_role_arn is required"),
    ],
)
def test_wrong_types_are_named(config, pattern, tmp_path):
    with pytest.raises(SageMakerConfigError, match=pattern):
        parse_settings({**MINIMAL, **config}, tmp_path)


def test_missing_required_keys_are_named(tmp_path):
    with pytest.raises(SageMakerConfigError, match="bucket is required"):
        parse_settings({"execution_role_arn": "r"}, tmp_path)
    with pytest.raises(SageMakerConfigError, match="execution_role_arn is required"):
        parse_settings({"bucket": "b"}, tmp_path)


@pytest.mark.parametrize(
    "network",
    [
        {"subnets": ["subnet-0a"]},
        {"subnets": ["subnet-0a"], "security_group_ids": []},
        {"security_group_ids": ["sg-01"]},
    ],
)
def test_a_vpc_needs_both_subnets_and_security_groups(network, tmp_path):
    with pytest.raises(SageMakerConfigError) as caught:
        parse_settings({**MINIMAL, "network": network}, tmp_path)

    message = str(caught.value)
    assert message.startswith("conf/<env>/sagemaker.yml: ")
    assert "network.subnets and network.security_group_ids go together" in message


def test_network_isolation_alone_needs_no_vpc(tmp_path):
    settings = parse_settings({**MINIMAL, "network": {"enable_network_isolation": True}}, tmp_path)

    assert settings.network == NetworkSettings(enable_network_isolation=True)


def test_node_overrides_apply_tags_in_sorted_order_then_the_name(tmp_path):
    settings = parse_settings(
        {
            **MINIMAL,
            "training_job": {"instance_type": "ml.m5.large", "volume_size_gb": 10},
            "node_overrides": {
                # Written out of order on purpose: the order in the file does not count.
                "train_model": {"environment": {"FROM": "name"}, "max_runtime_seconds": 90},
                "tag:zeta": {"instance_type": "ml.c5.xlarge", "environment": {"FROM": "zeta"}},
                "tag:alpha": {
                    "instance_type": "ml.m5.2xlarge",
                    "max_runtime_seconds": 60,
                    "environment": {"FROM": "alpha"},
                },
                "tag:unused": {"instance_type": "ml.p3.2xlarge"},
            },
        },
        tmp_path,
    )

    trained = settings.job_settings("train_model", ["zeta", "alpha", "other"])
    assert trained.instance_type == "ml.c5.xlarge"  # zeta after alpha
    assert trained.max_runtime_seconds == 90  # the name after every tag
    assert trained.environment == {"FROM": "name"}
    assert trained.volume_size_gb == 10  # untouched keys from training_job
    assert trained.instance_count == 1

    tagged = settings.job_settings("evaluate", ("alpha",))
    assert (tagged.instance_type, tagged.max_runtime_seconds, tagged.environment) == (
        "ml.m5.2xlarge",
        60,
        {"FROM": "alpha"},
    )
    assert settings.job_settings("train_model", []) == TrainingJobSettings(
        instance_type="ml.m5.large",
        volume_size_gb=10,
        max_runtime_seconds=90,
        environment={"FROM": "name"},
    )
    assert settings.job_settings("plain", ["other"]) == settings.training_job
    assert settings.training_job.instance_type == "ml.m5.large"  # overrides copy, never mutate


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (
            {"tag:never_used": {"instance_count": 0}},
            r"node_overrides\.tag:never_used\.instance_count",
        ),
        (
            {"no_such_node": {"environment": {"A": 3}}},
            r"node_overrides\.no_such_node\.environment\.A must be str",
        ),
        ({"train": None}, r"node_overrides\.train must be Mapping"),
    ],
)
def test_invalid_overrides_are_rejected_at_parse_time(overrides, pattern, tmp_path):
    with pytest.raises(SageMakerConfigError, match=pattern):
        parse_settings({**MINIMAL, "node_overrides": overrides}, tmp_path)


# ---- the code package --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def code_members() -> dict[str, bytes | None]:
    return _tar_members(build_tar_gz(code_files(["tests"])))


SPECS = {"train": b'{"job": "train"}\n', "evaluate": b'{"job": "evaluate"}\n'}


def test_code_package_is_deterministic():
    first = build_tar_gz(code_files(["tests"], SPECS))

    assert build_tar_gz(code_files(["tests", "tests"], dict(SPECS))) == first
    assert build_tar_gz(code_files(["tests"])) != first


def test_code_package_holds_the_entry_script_the_build_backend_the_package_and_the_bridge(
    code_members,
):
    assert code_members[ENTRY_SCRIPT] == ENTRY_SOURCE.encode()
    assert ENTRY_SCRIPT == "kedro_job_entry.py"
    assert "from predictive_maintenance.sagemaker.job import main" in ENTRY_SOURCE
    assert code_members["pyproject.toml"] == PYPROJECT.encode()
    assert code_members["_kedro_job_build.py"] == BUILD_BACKEND.encode()
    assert 'build-backend = "_kedro_job_build"' in PYPROJECT
    assert "requirements.txt" not in code_members  # nothing is installed from an index
    node_module = Path(bridge_nodes.__file__)
    assert code_members["tests/sagemaker/bridge_nodes.py"] == node_module.read_bytes()
    for name in ("__init__.py", "job.py", "codecs.py", "archives.py"):
        shipped = code_members[f"predictive_maintenance/sagemaker/{name}"]
        assert shipped == (BRIDGE_SOURCES / name).read_bytes()
    assert code_members["predictive_maintenance/integrity.py"] is not None  # job.py needs it
    assert code_members["tests/__init__.py"] is not None
    assert not [name for name in code_members if name.startswith(("wheels", JOBS_DIR))]
    top_level = {ENTRY_SCRIPT, "pyproject.toml", "_kedro_job_build.py"}
    assert all(
        name in top_level or name.split("/")[0] in {"tests", "predictive_maintenance"}
        for name in code_members
    )


def test_code_package_ships_job_specs_where_the_job_looks_and_no_wheels():
    files = code_files(["tests"], SPECS)

    assert not [name for name in files if name.endswith(".whl")]  # their own input
    assert files[f"{JOBS_DIR}/train/job.json"] == SPECS["train"]
    assert files["kedro_jobs/evaluate/job.json"] == SPECS["evaluate"]
    assert not [name for name in files if name.endswith("requirements.txt")]


def test_the_code_directory_builds_offline_as_an_empty_wheel(tmp_path):
    """The training toolkit runs ``pip install .`` in the code directory: with the in-tree build
    backend that needs no index, no setuptools and installs nothing but metadata."""
    code = tmp_path / "code"
    for name, content in code_files(["tests"]).items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_bytes(content)

    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-index",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(tmp_path / "wheels"),
            str(code),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "wheels").iterdir()
    assert wheel.name == "kedro_job_code-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record = archive.read("kedro_job_code-0.dist-info/RECORD").decode()
        metadata = archive.read("kedro_job_code-0.dist-info/METADATA").decode()
        for line in record.splitlines():
            path, digest, size = line.split(",")
            if digest:
                data = archive.read(path)
                expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                assert digest == f"sha256={expected.decode()}", path
                assert int(size) == len(data)
    assert sorted(names) == [
        "kedro_job_code-0.dist-info/METADATA",
        "kedro_job_code-0.dist-info/RECORD",
        "kedro_job_code-0.dist-info/WHEEL",
    ]
    assert "Name: kedro_job_code" in metadata


def test_code_package_leaves_out_bytecode(code_members, tmp_path, monkeypatch):
    package = tmp_path / "shipped_pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "sub" / "__pycache__").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "nodes.py").write_text("def f():\n    return 1\n")
    (package / "defaults.json").write_text("{}")
    (package / "stale.pyc").write_bytes(b"\0")
    (package / "old.pyo").write_bytes(b"\0")
    (package / "__pycache__" / "nodes.cpython-311.pyc").write_bytes(b"\0")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "single_module.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    members = _tar_members(build_tar_gz(code_files(["shipped_pkg", "single_module"])))

    assert {name for name in members if name.startswith("shipped_pkg")} == {
        "shipped_pkg",
        "shipped_pkg/__init__.py",
        "shipped_pkg/defaults.json",
        "shipped_pkg/nodes.py",
        "shipped_pkg/sub",
        "shipped_pkg/sub/__init__.py",
    }
    assert members["single_module.py"] == b"X = 1\n"
    for names in (members, code_members):
        assert not [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]


def test_a_package_that_cannot_be_found_is_named():
    with pytest.raises(PackagingError, match="cannot find package 'no_such_package_here'"):
        code_files(["no_such_package_here"])


# ---- job names and function paths --------------------------------------------------------------
@pytest.mark.parametrize(
    "node_name",
    [
        "train_model",
        "training.train_model",
        "a" * 200,
        "x" + "-" * 70 + "y",
        "Split data (80/20) -> train & test!",
        "---",
        "ünïcode_nödé",
        "",
        "9lives",
        "n" * 41 + "_tail",
    ],
)
def test_job_names_follow_sagemakers_rule(node_name):
    name = job_name(node_name)

    assert JOB_NAME_RULE.fullmatch(name), name
    assert len(name) <= 63
    assert re.search(r"-\d{8}-\d{6}-[0-9a-f]{4}$", name)


def test_job_names_keep_a_readable_node_name():
    assert job_name("training.train_model").startswith("training-train-model-")
    assert job_name("---").startswith("kedro-job-")
    assert job_name("train.train_model").startswith("train-train-model-")


class _CallableNode:
    def __call__(self, x):
        return x


def _closure_maker():
    def inner(x):
        return x

    return inner


@pytest.mark.parametrize(
    "function",
    [
        lambda x: x,
        functools.partial(bridge_nodes.scale_total, factor=2),
        _closure_maker(),
        # A copy that claims the name of a module-level function but is another object.
        types.FunctionType(bridge_nodes.scale_total.__code__, vars(bridge_nodes), "scale_total"),
        _CallableNode(),
    ],
    ids=["lambda", "partial", "closure", "impostor", "callable-instance"],
)
def test_function_path_rejects_what_a_job_cannot_import(function):
    with pytest.raises(RemoteNodeError) as caught:
        function_path("my_node", function)

    message = str(caught.value)
    assert message.startswith("node my_node: its function ")
    assert "needs a module-level function (no lambda, partial or closure)" in message


def test_function_path_of_a_module_level_function():
    assert (
        function_path("n", bridge_nodes.scale_total) == "tests.sagemaker.bridge_nodes:scale_total"
    )
