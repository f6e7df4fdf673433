"""Where job inputs, code and artifacts live: Amazon S3, or a local directory standing in for it.

Both stores take ``s3://bucket/key`` URIs, so a job request reads the same whichever backs it. The
directory store maps ``s3://bucket/key`` to ``<root>/bucket/key``: the ``local`` backend uses it
when no AWS endpoint is wanted, and a user can browse a job's inputs and ``model.tar.gz`` there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from predictive_maintenance.sagemaker.aws import client, split_s3_prefix, split_s3_uri

_STAGING_PREFIX = ".staging-"


class ObjectStore(Protocol):
    """The few S3 operations jobs need."""

    def upload_file(self, path: Path, uri: str) -> None: ...

    def download_file(self, uri: str, path: Path) -> None: ...

    def exists(self, uri: str) -> bool: ...

    def list_keys(self, uri: str) -> list[str]:
        """URIs of every object under the prefix ``uri``, sorted."""
        ...

    def location(self, uri: str) -> str:
        """Where ``uri`` is, as a person finds it: the URI, or the local path behind it."""
        ...


class S3Store:
    """Amazon S3 (or any ``AWS_ENDPOINT_URL``) through boto3."""

    def __init__(self, region: str | None = None, s3_client: Any = None) -> None:
        self._s3 = s3_client or client("s3", region)

    def upload_file(self, path: Path, uri: str) -> None:
        bucket, key = split_s3_uri(uri)
        self._s3.upload_file(str(path), bucket, key)

    def download_file(self, uri: str, path: Path) -> None:
        bucket, key = split_s3_uri(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._s3.download_file(bucket, key, str(path))

    def exists(self, uri: str) -> bool:
        bucket, key = split_s3_uri(uri)
        try:
            self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    def list_keys(self, uri: str) -> list[str]:
        bucket, prefix = split_s3_prefix(uri)
        paginator = self._s3.get_paginator("list_objects_v2")
        keys = [
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        return [f"s3://{bucket}/{key}" for key in sorted(keys)]

    def location(self, uri: str) -> str:
        return uri


class DirectoryStore:
    """A local directory standing in for S3: ``s3://bucket/key`` is ``root/bucket/key``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def path_of(self, uri: str) -> Path:
        bucket, key = split_s3_uri(uri)
        path = (self.root / bucket / key).resolve()
        if self.root not in path.parents:
            raise ValueError(f"{uri!r} points outside the store at {self.root}")
        return path

    def location(self, uri: str) -> str:
        return f"{self.path_of(uri)}{'/' if uri.endswith('/') else ''}"

    def upload_file(self, path: Path, uri: str) -> None:
        target = self.path_of(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, as S3 does: a reader never sees half an object.
        with (
            tempfile.NamedTemporaryFile(
                dir=target.parent, prefix=_STAGING_PREFIX, delete=False
            ) as staging,
            Path(path).open("rb") as source,
        ):
            shutil.copyfileobj(source, staging)
        os.replace(staging.name, target)

    def download_file(self, uri: str, path: Path) -> None:
        source = self.path_of(uri)
        if not source.is_file():
            raise FileNotFoundError(f"{uri} does not exist (looked in {source})")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)

    def exists(self, uri: str) -> bool:
        return self.path_of(uri).is_file()

    def list_keys(self, uri: str) -> list[str]:
        bucket, prefix = split_s3_prefix(uri)
        bucket_root = (self.root / bucket).resolve()
        if self.root not in bucket_root.parents:
            raise ValueError(f"{uri!r} points outside the store at {self.root}")
        if not bucket_root.is_dir():
            return []
        keys = (
            path.relative_to(bucket_root).as_posix()
            for path in bucket_root.rglob("*")
            if path.is_file() and not path.name.startswith(_STAGING_PREFIX)
        )
        return sorted(f"s3://{bucket}/{key}" for key in keys if key.startswith(prefix))


def upload_bytes(store: ObjectStore, data: bytes, uri: str) -> None:
    """Uploads ``data`` as the object ``uri``."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "object"
        path.write_bytes(data)
        store.upload_file(path, uri)


def download_input(store: ObjectStore, uri: str, directory: Path) -> None:
    """An S3Prefix input: the one object ``uri`` names, or everything under it."""
    directory.mkdir(parents=True, exist_ok=True)
    if store.exists(uri):
        store.download_file(uri, directory / uri.rstrip("/").rsplit("/", 1)[-1])
    elif not download_prefix(store, uri, directory):
        raise FileNotFoundError(f"nothing at {uri}")


def download_prefix(store: ObjectStore, uri: str, directory: Path) -> list[Path]:
    """Downloads every object under ``uri`` into ``directory``, keeping relative paths."""
    prefix = uri.rstrip("/") + "/"
    paths = []
    for key_uri in store.list_keys(prefix):
        relative = key_uri[len(prefix) :]
        target = (directory / relative).resolve()
        if directory.resolve() not in target.parents:
            raise ValueError(f"{key_uri} would land outside {directory}")
        store.download_file(key_uri, target)
        paths.append(target)
    return paths
