"""Project commands for the ``kedro`` CLI.

Kedro adds the commands of the click group :func:`cli` to ``kedro`` when run inside this project
(see ``KedroCLI.project_groups``); a command named like one of Kedro's replaces it. Each area of
work is its own group: ``kedro data ...``, ``kedro model ...`` (:mod:`.registry.cli`),
``kedro endpoint ...`` (:mod:`.serving.cli`), ``kedro sagemaker ...`` (:mod:`.sagemaker.cli`),
``kedro api ...`` (:mod:`.api.cli`), ``kedro tracking ...`` (:mod:`.tracking.cli`);
``kedro serve`` (:mod:`.serving.stack`) starts the endpoint and the API together. Commands read
configuration only through a :class:`~kedro.framework.session.KedroSession`, so ``--env`` and
``conf/local`` overrides apply exactly as they do to ``kedro run``.

Every ``kedro`` command imports this module, so it imports nothing heavy: the groups other than
``data`` are loaded when they are used (Kedro's ``LazyGroup``), and ``run`` is Kedro's own command
with a quieter console (:mod:`.console`).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import CONTEXT_SETTINGS, LazyGroup, env_option
from kedro.framework.session import KedroSession
from kedro.framework.startup import ProjectMetadata, bootstrap_project
from kedro.io import DataCatalog, DatasetError
from kedro.utils import load_obj

from predictive_maintenance.console import LOG_FILE, UsageFailure, reporting_failures, show_detail
from predictive_maintenance.data_source import (
    DEFAULT_TIMEOUT_SECONDS,
    FetchError,
    failure_help,
    fetch_verified,
)
from predictive_maintenance.integrity import file_sha256, sha256_hex
from predictive_maintenance.pipeline_registry import pipeline_names
from predictive_maintenance.project_config import project_path

#: Catalog entry of the raw file, and its parameters.
RAW_DATASET = "ai4i2020_raw"
RAW_PARAMS = "raw_data"
_SHA256_PATTERN = re.compile(r"[0-9a-fA-F]{64}")


@click.group(
    context_settings=CONTEXT_SETTINGS,
    name="predictive-maintenance",
    cls=LazyGroup,
    lazy_subcommands={
        "model": "predictive_maintenance.registry.cli.model",
        "endpoint": "predictive_maintenance.serving.cli.endpoint",
        "serve": "predictive_maintenance.serving.stack.serve",
        "sagemaker": "predictive_maintenance.sagemaker.cli.sagemaker",
        "api": "predictive_maintenance.api.cli.api",
        "tracking": "predictive_maintenance.tracking.cli.tracking",
    },
)
def cli() -> None:
    """Commands of the predictive-maintenance project."""


def _check_pipelines(names: list[str]) -> None:
    known = pipeline_names()
    unknown = [name for name in names if name not in known and name != "__default__"]
    if unknown:
        raise UsageFailure(
            f"--pipelines: no pipeline named {', '.join(map(repr, unknown))}; the pipelines are "
            f"{', '.join(known)} (__default__, the default, runs them all)."
        )


def _check_runner(runner: str | None) -> None:
    if runner is None:
        return
    try:
        load_obj(runner, "kedro.runner")
    except (AttributeError, ImportError, ValueError) as error:
        raise UsageFailure(
            f"--runner {runner}: no such runner ({error}). Use SequentialRunner, ThreadRunner, "
            "ParallelRunner or a class path, e.g. predictive_maintenance.sagemaker.SageMakerRunner."
        ) from None


def _hidden(option: click.Parameter) -> click.Parameter:
    hidden = copy.copy(option)
    hidden.hidden = True
    return hidden


@cli.command(
    name="run",
    context_settings=CONTEXT_SETTINGS,
    params=[
        # Kedro's options; its deprecated --pipeline still works, but is no longer shown.
        *(_hidden(option) if option.name == "pipeline" else option for option in kedro_run.params),
        click.Option(
            ["-v", "--verbose"],
            is_flag=True,
            help=f"Show everything {LOG_FILE} gets (Kedro's dataset loads and saves...) and the "
            "traceback of a failure.",
        ),
    ],
)
def run(verbose: bool, **options: Any) -> Any:
    """Run the pipeline (Kedro's run, with a quieter console).

    The console shows one line per node (name and seconds) and the results; the detail goes to
    kedro.log. An expected failure (quality gate, AWS credentials, a misspelled pipeline or
    runner setting) is reported in one or two lines with a non-zero exit code; -v shows it all.
    """
    if verbose:
        show_detail()
    _check_pipelines(options["pipelines"] or ([options["pipeline"]] if options["pipeline"] else []))
    _check_runner(options["runner"])
    details = f"Full traceback: {LOG_FILE} (or kedro run -v)."
    with reporting_failures(verbose=verbose, details=details):
        return kedro_run.callback(**options)


@cli.group(name="data", context_settings=CONTEXT_SETTINGS)
def data() -> None:
    """Get and check the project's raw data."""


def _expected_sha256(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SHA256_PATTERN.fullmatch(value.strip()):
        raise click.ClickException(
            f"parameter {RAW_PARAMS}.sha256 must be 64 hex digits or null, not {value!r}"
        )
    return value.strip().lower()


def _load_current(catalog: DataCatalog) -> bytes | None:
    """The raw file's bytes as the catalog has them, or None if there is no (readable) file."""
    try:
        if not catalog.exists(RAW_DATASET):
            return None
        return catalog.load(RAW_DATASET)
    except DatasetError as error:
        click.echo(f"Cannot read the current raw file, fetching a new one: {error}", err=True)
        return None


@data.command(name="fetch")
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="URL",
    help=f"Source to download from; repeat to try several in order. Overrides the parameter "
    f"{RAW_PARAMS}.source_urls. A .zip (by suffix or content) yields its ai4i2020.csv.",
)
@env_option
@click.option(
    "--force",
    is_flag=True,
    help="Download even if the current file already has the expected sha256.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULT_TIMEOUT_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Network timeout per request.",
)
@click.pass_obj
def fetch(
    metadata: ProjectMetadata | None,
    urls: tuple[str, ...],
    env: str | None,
    force: bool,
    timeout: float,
) -> None:
    """Download the raw AI4I 2020 file into the catalog entry ai4i2020_raw.

    Each source is tried in order. The download's sha256 is checked against the parameter
    raw_data.sha256 before anything is written, so a failed or wrong download never touches the
    current file. Does nothing if the current file already has that checksum (unless --force).
    """
    path = project_path(metadata)
    bootstrap_project(path)
    with KedroSession.create(project_path=path, env=env) as session:
        context = session.load_context()
        # Not context.params: it turns a missing --env directory into empty parameters.
        raw_params = context.config_loader["parameters"].get(RAW_PARAMS) or {}
        expected = _expected_sha256(raw_params.get("sha256"))
        sources = list(urls) or list(raw_params.get("source_urls") or [])
        if not sources:
            raise click.ClickException(
                f"no source URLs: set the parameter {RAW_PARAMS}.source_urls or pass --url"
            )
        catalog_config = context.config_loader["catalog"]
        if RAW_DATASET not in catalog_config:
            raise click.ClickException(f"the catalog has no entry {RAW_DATASET!r}")
        destination = str(catalog_config[RAW_DATASET].get("filepath", RAW_DATASET))
        catalog = context.catalog

        current = _load_current(catalog)
        current_sha256 = None if current is None else sha256_hex(current)
        if current_sha256 is not None and not force:
            if expected is None:
                click.echo(
                    f"{destination} exists and {RAW_PARAMS}.sha256 is null, so there is no "
                    "checksum to compare it with; left as it is. Pass --force to replace it."
                )
                return
            if current_sha256 == expected:
                click.echo(f"{destination} is up to date (sha256 {expected}); nothing to download.")
                return
            click.echo(
                f"{destination} has sha256 {current_sha256}, expected {expected}: "
                "downloading it again."
            )

        try:
            result = fetch_verified(sources, expected, timeout)
        except FetchError as error:
            raise click.ClickException(failure_help(error, destination)) from None

        try:
            catalog.save(RAW_DATASET, result.data)
        except DatasetError as error:
            raise click.ClickException(
                f"downloaded and verified {result.url}, but saving to {destination} failed: {error}"
            ) from None

        saved = catalog.load(RAW_DATASET)
        if sha256_hex(saved) != result.sha256:
            raise click.ClickException(
                f"{destination} reads back with sha256 {sha256_hex(saved)} after saving "
                f"{result.sha256}; check the storage behind it"
            )
        click.echo(
            f"Saved {len(result.data):,} bytes from {result.url} to {destination} "
            f"(sha256 {result.sha256})."
        )
        if not result.verified:
            click.echo(
                f"{RAW_PARAMS}.sha256 is null, so the download was not verified. Record its "
                f"checksum to have it checked on every run:\n  {RAW_PARAMS}:\n"
                f"    sha256: {result.sha256}"
            )


@data.command(name="generate")
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="Number of rows (UDI 1..N).",
)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Same rows and seed, same data."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    metavar="PATH",
    help="File to write: .csv (the official raw layout, what ai4i2020_raw reads) or .parquet.",
)
def generate(rows: int, seed: int, output: str) -> None:
    """Write N rows of AI4I 2020-shaped data, made by the data set's generation rules.

    The failure modes follow the rules of the official file (HDF, PWF, OSF exactly; TWF and
    RNF at random), so larger data stays learnable; see predictive_maintenance.datagen.
    """
    import time  # noqa: PLC0415

    from predictive_maintenance.datagen import write  # noqa: PLC0415 -- numpy, pyarrow

    started = time.perf_counter()
    try:
        path = write(rows, seed, output)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Wrote {rows:,} rows (seed {seed}) to {path} ({path.stat().st_size:,} bytes, sha256 "
        f"{file_sha256(path)}) in {time.perf_counter() - started:.1f} s."
    )
