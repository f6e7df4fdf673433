"""Downloading the raw AI4I 2020 file from its published sources, checksum first.

These functions only fetch and check bytes; ``kedro data fetch`` (:mod:`predictive_maintenance.cli`)
reads the URLs and the expected sha256 from the project's parameters and saves the verified bytes
through the catalog. Nothing here writes a file, so a failed or mismatching download can never
touch the copy the project already has.
"""

from __future__ import annotations

import http.client
import io
import logging
import posixpath
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from predictive_maintenance import __version__
from predictive_maintenance.integrity import ChecksumMismatchError, sha256_hex, verify_sha256

logger = logging.getLogger(__name__)

#: Name of the CSV inside the UCI zip (and of the file itself).
RAW_MEMBER: Final = "ai4i2020.csv"
#: The data set's page, for downloading by hand.
UCI_PAGE: Final = "https://archive.ics.uci.edu/dataset/601"
DEFAULT_TIMEOUT_SECONDS: Final = 30.0
#: Refuse anything bigger: the CSV is ~0.5 MB, its zip less.
MAX_BYTES: Final = 64 * 1024 * 1024

_ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
_USER_AGENT: Final = f"predictive-maintenance/{__version__} (kedro data fetch; Python urllib)"


class SourceError(Exception):
    """One source could not deliver the file; ``network`` is True if it was not reachable."""

    def __init__(self, reason: str, *, network: bool = False) -> None:
        super().__init__(reason)
        self.network = network


@dataclass(frozen=True)
class FailedAttempt:
    """Why one URL did not yield the file."""

    url: str
    reason: str
    network: bool


class FetchError(Exception):
    """No URL yielded the expected file. The message lists every URL and why it failed."""

    def __init__(self, failures: Sequence[FailedAttempt]) -> None:
        self.failures = tuple(failures)
        lines = [f"  - {failure.url}: {failure.reason}" for failure in self.failures]
        super().__init__("could not fetch the raw data from any source:\n" + "\n".join(lines))

    @property
    def network(self) -> bool:
        """Whether at least one source failed because it could not be reached."""
        return any(failure.network for failure in self.failures)


@dataclass(frozen=True)
class FetchResult:
    """The bytes of the raw CSV and where they came from."""

    url: str
    data: bytes
    sha256: str
    #: True if ``sha256`` was checked against an expected value (False when none was given).
    verified: bool
    #: URLs tried before ``url`` and why they failed.
    failures: tuple[FailedAttempt, ...] = field(default=())


def download(url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> bytes:
    """The response body of a GET on ``url``.

    Raises:
        SourceError: on an HTTP error status (``network=False``), or if the server cannot be
            reached or the connection breaks (``network=True``).
    """
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    logger.info("Downloading %s (timeout %g s)...", url, timeout)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as error:
        raise SourceError(f"HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        raise SourceError(f"cannot connect: {error.reason}", network=True) from error
    except (TimeoutError, ConnectionError, http.client.HTTPException) as error:
        raise SourceError(
            f"connection failed: {type(error).__name__}: {error}", network=True
        ) from error
    except ValueError as error:  # malformed URL or unknown scheme
        raise SourceError(f"invalid URL: {error}") from error
    if len(body) > MAX_BYTES:
        raise SourceError(f"response is larger than {MAX_BYTES:,} bytes; not the AI4I 2020 file")
    logger.info("Received %s bytes from %s", f"{len(body):,}", url)
    return body


def is_zip(payload: bytes, url: str = "") -> bool:
    """Whether ``payload`` is (meant to be) a zip archive: by URL suffix or magic bytes."""
    path = urllib.parse.urlsplit(url).path
    return path.lower().endswith(".zip") or payload.startswith(_ZIP_MAGIC)


def extract_csv(payload: bytes, member: str = RAW_MEMBER) -> bytes:
    """The bytes of ``member`` in the zip archive ``payload``.

    The member is matched by its full name first, then by file name in any folder.

    Raises:
        SourceError: if ``payload`` is not a zip archive or has no such member.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            infos = [info for info in archive.infolist() if not info.is_dir()]
            match = next((info for info in infos if info.filename == member), None) or next(
                (info for info in infos if posixpath.basename(info.filename) == member), None
            )
            if match is None:
                names = [info.filename for info in infos]
                raise SourceError(f"zip archive has no member {member!r} (it holds {names})")
            if match.file_size > MAX_BYTES:
                raise SourceError(f"zip member {match.filename!r} is {match.file_size:,} bytes")
            return archive.read(match)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as error:
        raise SourceError(f"not a readable zip archive ({error})") from error


def fetch_verified(
    urls: Sequence[str],
    expected_sha256: str | None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    member: str = RAW_MEMBER,
) -> FetchResult:
    """Tries ``urls`` in order and returns the first file whose sha256 is ``expected_sha256``.

    A zip response yields its ``member``. With ``expected_sha256=None`` the first file any URL
    delivers is accepted (``FetchResult.verified`` is then False).

    Raises:
        FetchError: if no URL delivered the file, listing each URL and why.
    """
    if not urls:
        raise ValueError("no source URLs to fetch the raw data from")
    failures: list[FailedAttempt] = []
    for url in urls:
        try:
            payload = download(url, timeout)
            data = extract_csv(payload, member) if is_zip(payload, url) else payload
            if expected_sha256:
                digest = verify_sha256(data, expected_sha256, "downloaded file")
            else:
                digest = sha256_hex(data)
        except SourceError as error:
            failures.append(FailedAttempt(url, str(error), error.network))
        except ChecksumMismatchError as error:
            failures.append(FailedAttempt(url, f"checksum mismatch: {error}", network=False))
        else:
            logger.info("%s: %s bytes, sha256 %s", url, f"{len(data):,}", digest)
            return FetchResult(url, data, digest, bool(expected_sha256), tuple(failures))
        logger.warning("%s failed: %s", url, failures[-1].reason)
    raise FetchError(failures)


def failure_help(error: FetchError, destination: str) -> str:
    """The message for a failed fetch: every URL's failure and, if offline, what to do instead."""
    message = str(error)
    if error.network:
        message += (
            "\n\nThe sources could not be reached (offline, proxy or firewall?). You do not need"
            f" them: the copy committed at {destination} is the official file. To get it by hand,"
            f" download the data set from the UCI page {UCI_PAGE} and put ai4i2020.csv (unzipped)"
            f" at {destination}. Either way its sha256 is checked on every `kedro run`."
        )
    return message
