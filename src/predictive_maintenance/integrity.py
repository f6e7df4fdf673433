"""SHA-256 checks for files the project trusts: the raw data set and model artifacts."""

from __future__ import annotations

import hashlib
from pathlib import Path


class ChecksumMismatchError(ValueError):
    """Bytes differ from what their recorded SHA-256 says they should be."""


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 digest of a file, read in chunks (archives can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(data: bytes, expected: str, what: str) -> str:
    """Returns the digest of ``data``, or raises if it is not ``expected``.

    Args:
        data: The bytes to check.
        expected: Expected hex digest (case-insensitive).
        what: Names the bytes in the error message, e.g. a file path.
    """
    actual = sha256_hex(data)
    if actual != expected.strip().lower():
        raise ChecksumMismatchError(
            f"{what}: sha256 is {actual}, expected {expected.strip().lower()} "
            f"({len(data):,} bytes). The file is not the one this project was built for: "
            "restore it, or update the expected checksum if the change is intended."
        )
    return actual
