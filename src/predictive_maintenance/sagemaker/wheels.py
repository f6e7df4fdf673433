"""The wheels a job ships for what the stock image lacks: no package index at job start.

A job in a VPC without internet access, or with network isolation, cannot ``pip install`` from
PyPI. Every job therefore gets a closed set of wheels for the image's Python and platform as its
``kedro-wheels`` input, which it installs with no index (:func:`~.job.install_shipped_wheels`).
The set is uploaded once under ``<prefix>/wheels/<key>/``, its key a hash of its content, so code
changes do not upload it again.

The set is the closure of ``job_environment.requirements`` over their dependencies, at the
versions installed in this environment (so a job runs what ``kedro run`` ran here), minus the
packages the image already has (``job_environment.image_packages``, whose versions must satisfy
what the closure asks of them). Wheels are downloaded for the image's Python and platform with
pip, once: they are kept in ``job_environment.wheel_cache`` under a key of everything that decides
them. A pure-Python package published only as a source archive is built into a wheel here.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.sagemaker.config import (
    CONFIG_FILE,
    JobEnvironment,
    SageMakerConfigError,
)
from predictive_maintenance.sagemaker.storage import ObjectStore, upload_bytes

logger = logging.getLogger(__name__)

#: Recorded in the cache beside the wheels once a download is complete.
_COMPLETE: Final = "wheels.json"


class WheelError(SageMakerConfigError):
    """The job environment's wheels cannot be resolved or downloaded (names the package)."""


def marker_environment(environment: JobEnvironment) -> dict[str, str]:
    """PEP 508 marker values of the image (CPython on x86-64 Linux)."""
    major, minor = environment.python_version.split(".")[:2]
    return {
        "python_version": f"{major}.{minor}",
        "python_full_version": f"{major}.{minor}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
    }


def _image_versions(environment: JobEnvironment) -> dict[str, str]:
    versions = {}
    for text in environment.image_packages:
        requirement = _requirement(text, "job_environment.image_packages")
        pinned = [spec.version for spec in requirement.specifier if spec.operator == "=="]
        if len(pinned) != 1:
            raise WheelError(
                f"{CONFIG_FILE}: job_environment.image_packages: {text!r} must pin one version "
                "(name==version)"
            )
        versions[canonicalize_name(requirement.name)] = pinned[0]
    return versions


def _requirement(text: str, where: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise WheelError(f"{CONFIG_FILE}: {where}: {text!r}: {error}") from None


@dataclass(frozen=True)
class _Release:
    """What the closure needs of one package: its version and what it requires."""

    version: str
    requires_python: str | None
    requires: list[str]


def _installed_release(name: str) -> _Release | None:
    try:
        distribution = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    return _Release(
        distribution.version,
        distribution.metadata.get("Requires-Python"),
        list(distribution.requires or []),
    )


def _target_arguments(environment: JobEnvironment) -> list[str]:
    """pip's options for the image's Python and platform, binary wheels only, no dependencies."""
    major, minor = environment.python_version.split(".")[:2]
    return [
        "--only-binary=:all:",
        "--no-deps",
        "--python-version",
        f"{major}.{minor}",
        "--implementation",
        "cp",
        *(item for platform in environment.platforms for item in ("--platform", platform)),
    ]


def _published_release(environment: JobEnvironment, name: str, version: str) -> _Release:
    """The metadata of ``name==version`` (``job_environment.versions``), which is not installed
    here: read from its wheel for the image, downloaded once and kept in the wheel cache."""
    cache = environment.wheel_cache.expanduser() / "metadata" / f"{name}-{version}.json"
    if cache.is_file():
        return _Release(**json.loads(cache.read_text()))
    with tempfile.TemporaryDirectory() as directory:
        result = _pip(
            ["download", *_target_arguments(environment), "--dest", directory, f"{name}=={version}"]
        )
        found = sorted(Path(directory).glob("*.whl"))
        if result.returncode != 0 or not found:
            raise WheelError(
                f"{CONFIG_FILE}: job_environment.versions: no wheel of {name}=={version} for "
                f"Python {environment.python_version}: {(result.stderr or '').strip()[-500:]}"
            )
        with zipfile.ZipFile(found[0]) as wheel:
            (member,) = [item for item in wheel.namelist() if item.endswith(".dist-info/METADATA")]
            metadata = email.parser.Parser().parsestr(wheel.read(member).decode())
    release = _Release(
        version, metadata.get("Requires-Python"), list(metadata.get_all("Requires-Dist") or [])
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(asdict(release), indent=2) + "\n")
    return release


def _release(
    environment: JobEnvironment, requirement: Requirement, wanted_by: str
) -> _Release | None:
    """The release of ``requirement``'s package the closure takes (None: not installed here),
    checked against what ``wanted_by`` asks of it."""
    name = canonicalize_name(requirement.name)
    chosen = environment.versions.get(name)
    if chosen is not None:
        release: _Release | None = _published_release(environment, name, chosen)
    else:
        release = _installed_release(requirement.name)
    if release is not None and not requirement.specifier.contains(
        release.version, prereleases=True
    ):
        where = "job_environment.versions gives" if chosen else "this environment has"
        raise WheelError(
            f"{wanted_by} needs {requirement}, but {where} {name} {release.version}: set "
            f"job_environment.versions.{name} to a version that fits"
        )
    return release


def resolve(environment: JobEnvironment) -> list[str]:
    """The closure as pins (``name==version``; a specifier for a package this environment does
    not have, e.g. a backport the image's older Python needs), sorted, image packages left out.

    A package's version is the one installed here, or ``job_environment.versions``' (whose
    requirements are read from its published wheel).

    Raises:
        WheelError: the image's version of a package, or the version chosen for it, does not
            satisfy what the closure asks.
    """
    image = _image_versions(environment)
    markers = marker_environment(environment)
    pins: dict[str, str] = {}
    visited: set[tuple[str, tuple[str, ...]]] = set()
    pending = [
        (_requirement(text, "job_environment.requirements"), "job_environment.requirements")
        for text in environment.requirements
    ]
    while pending:
        requirement, wanted_by = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in image:
            if not requirement.specifier.contains(image[name], prereleases=True):
                raise WheelError(
                    f"{wanted_by} needs {requirement}, but the image has {name} {image[name]}: "
                    "change job_environment.requirements or the image"
                )
            continue
        chosen = environment.versions.get(name)
        release = _release(environment, requirement, wanted_by)
        key = (name, tuple(sorted(requirement.extras)))
        if key in visited:
            continue
        visited.add(key)
        if release is None:
            pins.setdefault(name, f"{name}{requirement.specifier}")
            continue
        if (
            chosen is None
            and release.requires_python
            and not SpecifierSet(release.requires_python).contains(
                markers["python_full_version"], prereleases=True
            )
        ):
            # The version installed here needs a newer Python than the image's: pip picks the
            # newest that fits (e.g. what the lockfile resolves for that Python).
            pins[name] = f"{name}{requirement.specifier}"
        else:
            pins[name] = f"{name}=={release.version}"
        for text in release.requires:
            dependency = Requirement(text)
            extras = requirement.extras or {""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({**markers, "extra": extra}) for extra in extras
            ):
                pending.append((dependency, f"{name} {release.version}"))
    unused = sorted(set(environment.versions) - set(pins))
    if unused:
        logger.warning(
            "%s: job_environment.versions names %s, which the job environment does not need",
            CONFIG_FILE,
            ", ".join(unused),
        )
    return sorted(pins.values())


def _cache_key(environment: JobEnvironment, pins: list[str]) -> str:
    decided_by = {
        "pins": pins,
        "python": environment.python_version,
        "platforms": list(environment.platforms),
    }
    return sha256_hex(json.dumps(decided_by, sort_keys=True).encode())[:24]


def _pip(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *arguments, "--quiet", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    )


def _download(environment: JobEnvironment, pins: list[str], destination: Path) -> None:
    major, minor = environment.python_version.split(".")[:2]
    target = _target_arguments(environment)
    if _pip(["download", *target, "--dest", str(destination), *pins]).returncode == 0:
        return
    # One package without a wheel fails the whole call: find it, and build it if pure Python.
    for pin in pins:
        result = _pip(["download", *target, "--dest", str(destination), pin])
        if result.returncode == 0:
            continue
        built = _pip(["wheel", "--no-deps", "--wheel-dir", str(destination), pin])
        if built.returncode != 0:
            platforms = ", ".join(environment.platforms)
            reason = (result.stderr or built.stderr).strip()[-500:]
            raise WheelError(
                f"no wheel of {pin} for Python {major}.{minor} on {platforms}, and it does not "
                f"build here: {reason}"
            )
    for wheel in destination.glob("*.whl"):
        tags = parse_wheel_filename(wheel.name)[3]
        if not all(tag.platform == "any" for tag in tags) and not any(
            tag.platform in environment.platforms or tag.platform.startswith("manylinux")
            for tag in tags
        ):
            raise WheelError(
                f"{wheel.name} was built here for this machine, not for the image: only "
                "pure-Python packages can be built from source"
            )


def wheelhouse(environment: JobEnvironment) -> dict[str, bytes]:
    """The wheels to ship, by file name (downloaded once into the cache)."""
    pins = resolve(environment)
    if not pins:
        return {}
    directory = environment.wheel_cache.expanduser() / _cache_key(environment, pins)
    if not (directory / _COMPLETE).is_file():
        logger.info(
            "Downloading %d wheels for the job image (Python %s) into %s",
            len(pins),
            environment.python_version,
            directory,
        )
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory.parent))
        try:
            _download(environment, pins, staging)
            (staging / _COMPLETE).write_text(json.dumps({"pins": pins}, indent=2) + "\n")
            shutil.rmtree(directory, ignore_errors=True)
            staging.rename(directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return {path.name: path.read_bytes() for path in sorted(directory.glob("*.whl"))}


def wheels_key(wheels: Mapping[str, bytes]) -> str:
    """A short hash of a wheel set's names and contents: where it lives in S3."""
    listing = "".join(f"{name}:{sha256_hex(content)}\n" for name, content in sorted(wheels.items()))
    return sha256_hex(listing.encode())[:24]


def wheels_uri(s3_root: str, wheels: Mapping[str, bytes]) -> str | None:
    """``<s3 root>/wheels/<key>/`` for a non-empty wheel set."""
    return f"{s3_root}/wheels/{wheels_key(wheels)}/" if wheels else None


def upload_wheels(store: ObjectStore, uri: str | None, wheels: Mapping[str, bytes]) -> None:
    """Uploads the wheel set to ``uri`` unless it is there; its listing goes last, so its presence
    means the set is complete."""
    if uri is None or store.exists(f"{uri}{_COMPLETE}"):
        return
    for name, content in sorted(wheels.items()):
        upload_bytes(store, content, f"{uri}{name}")
    upload_bytes(store, json.dumps(sorted(wheels), indent=2).encode(), f"{uri}{_COMPLETE}")
    logger.info("Uploaded %d wheels for the job image to %s", len(wheels), store.location(uri))
