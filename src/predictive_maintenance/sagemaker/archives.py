"""Deterministic ``.tar.gz`` archives and their safe extraction.

SageMaker moves code and models as gzipped tars (``sourcedir.tar.gz``, ``model.tar.gz``). Built
here, the same files give byte-identical archives (fixed order, modes, owners and mtimes; gzip
without name or time), so an archive's sha256 identifies its content and can address it in S3.
Standard library only: the job entry script imports this module inside the container.
"""

from __future__ import annotations

import gzip
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Final

#: Fixed metadata of every archive member (1980-01-01, the ZIP epoch, rather than 1970).
_MTIME: Final = 315_532_800
_FILE_MODE: Final = 0o644
_DIR_MODE: Final = 0o755
_GZIP_LEVEL: Final = 9


class ArchiveError(ValueError):
    """An archive is unreadable, or a member would be written outside its destination."""


def _member(name: str, size: int = 0, *, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = _DIR_MODE if directory else _FILE_MODE
    info.size = 0 if directory else size
    info.mtime = _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def build_tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A gzipped tar of ``files`` (archive path -> content), byte-identical for the same input."""
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


def directory_files(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` by its POSIX path relative to ``root``."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def extract_tar_gz(archive: bytes, destination: Path, *, what: str = "archive") -> Path:
    """Extracts a gzipped tar into ``destination`` (created if needed) and returns it.

    Only regular files and directories whose paths stay inside ``destination`` are accepted: no
    absolute paths, no ``..``, no links or devices.

    Raises:
        ArchiveError: the archive is unreadable or unsafe; ``what`` names it in the message.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root, what)
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(f"cannot extract the {what}: {error}") from error
    return destination


def _check_member(member: tarfile.TarInfo, root: Path, what: str) -> None:
    name = member.name
    if not (member.isfile() or member.isdir()):
        raise ArchiveError(f"{what} member {name!r} is not a regular file or directory")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or "\\" in name:
        raise ArchiveError(f"{what} member {name!r} has an unsafe path")
    target = (root / path).resolve()
    if target != root and root not in target.parents:
        raise ArchiveError(f"{what} member {name!r} would land outside {root}")
