"""Builds the HTTP API's Lambda package: the handler's modules from ``src/``, nothing else.

The handler (``predictive_maintenance.api.handler``) needs only the standard library, boto3 (which
the Lambda Python runtime provides) and a handful of this project's modules: those are copied into
``deploy/api/build/`` (the template's ``CodeUri``; git-ignored by the ``build/`` rule of the
project's ``.gitignore``), with no dependency to install. ``sam deploy`` zips that directory as is.

The copy is checked: every ``predictive_maintenance`` import in a copied module (including the
ones inside functions) must resolve to a copied module, so a new import in the handler fails the
build instead of the first request on AWS.

Usage (from the project root)::

    python deploy/api/build.py               # -> deploy/api/build/
    python deploy/api/build.py --out DIR     # anywhere else (the tests use this)
"""

from __future__ import annotations

import argparse
import ast
import shutil
import sys
from pathlib import Path
from typing import Final

HERE: Final = Path(__file__).resolve().parent
SRC: Final = HERE.parents[1] / "src"
DEFAULT_OUT: Final = HERE / "build"
PACKAGE: Final = "predictive_maintenance"

#: The modules the handler imports, directly or not (paths relative to ``src/``).
MODULES: Final = (
    "predictive_maintenance/__init__.py",
    "predictive_maintenance/schema.py",
    "predictive_maintenance/serving/__init__.py",
    "predictive_maintenance/serving/contract.py",
    "predictive_maintenance/serving/requests.py",
    "predictive_maintenance/serving/openapi.py",
    "predictive_maintenance/api/__init__.py",
    "predictive_maintenance/api/handler.py",
    "predictive_maintenance/api/openapi.py",
)
#: The web client's files, served by the handler at ``/`` and ``/static/...``.
STATIC_DIR: Final = "predictive_maintenance/api/static"


class BuildError(RuntimeError):
    """The package would not run: a module or file is missing."""


def package_files(src: Path = SRC) -> list[str]:
    """The files of the package, relative to ``src``: :data:`MODULES` and the static files."""
    static = sorted(
        path.relative_to(src).as_posix()
        for path in (src / STATIC_DIR).iterdir()
        if path.is_file() and not path.name.startswith(".")
    )
    if not static:
        raise BuildError(f"no files in {src / STATIC_DIR}")
    return [*MODULES, *static]


def _module_name(relative: str) -> str:
    parts = relative.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(path: Path, module: str) -> set[str]:
    """Project modules ``path`` imports (absolute or relative, at any depth in the code)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.add(target)
            # ``from package import name``: name may be a submodule.
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {name for name in found if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def check_imports(src: Path = SRC, modules: tuple[str, ...] = MODULES) -> None:
    """Raises :class:`BuildError` if one of ``modules`` imports a project module left out."""
    copied = {_module_name(relative) for relative in modules}
    missing: set[str] = set()
    for relative in modules:
        for name in _imported_modules(src / relative, _module_name(relative)):
            # The module and every package on the way (no namespace packages), where they exist:
            # ``from package import name`` may name an attribute rather than a module.
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):
                candidate = ".".join(parts[:depth])
                file = src.joinpath(*parts[:depth])
                exists = file.with_suffix(".py").is_file() or (file / "__init__.py").is_file()
                if exists and candidate not in copied:
                    missing.add(f"{relative} imports {candidate}")
    if missing:
        raise BuildError("add to MODULES in deploy/api/build.py: " + "; ".join(sorted(missing)))


def build(out: Path = DEFAULT_OUT, src: Path = SRC) -> list[Path]:
    """Writes the package into ``out`` (replacing ``out/predictive_maintenance``); its files."""
    files = package_files(src)
    check_imports(src)
    out = out.resolve()
    if out == src.resolve() or src.resolve() in out.parents:
        raise BuildError(f"refusing to build into the source tree: {out}")
    shutil.rmtree(out / PACKAGE, ignore_errors=True)  # stale modules from an earlier build
    written = []
    for relative in files:
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / relative, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"the build directory (default: {DEFAULT_OUT.relative_to(HERE.parents[1])})",
    )
    args = parser.parse_args(argv)
    try:
        written = build(args.out)
    except BuildError as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    size = sum(path.stat().st_size for path in written)
    print(f"{len(written)} files ({size / 1024:.0f} KiB) in {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
