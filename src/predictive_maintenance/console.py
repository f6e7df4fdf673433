"""What a person sees on the console, and what goes to the log file only.

``conf/logging.yml`` sends the project's own INFO messages (one line per node, the results) and
every library's warnings and errors to the console, and all that plus Kedro's INFO messages to
``kedro.log``. This module adds what a logging configuration cannot say:

* **Expected failures** (the quality gate refusing a model, no AWS credentials, a wrong runner
  setting...) become one or two lines naming the cause and the fix, and a non-zero exit code,
  instead of a traceback. The traceback still goes to the log file, and ``kedro run -v`` shows it;
  Kedro's own report of the failed node goes to the log file only.
* ``kedro run -v`` turns the console's detail (Kedro's dataset load/save lines) back on.

Only the standard library and click at import: every ``kedro`` command imports this module.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import click

#: Its records go to the log file only (conf/logging.yml): tracebacks of expected failures.
FAILURE_LOGGER = "predictive_maintenance.failures"
#: Where conf/logging.yml writes the detail; named in failure messages.
LOG_FILE = "kedro.log"
#: Kedro's own report of a failed run (the node's error, which nodes did not run), by the modules
#: that log it: the report of an expected failure says it all, so it is kept off the console.
_REPORTERS = ("kedro.pipeline.node", "kedro.runner.runner")

_failure_logger = logging.getLogger(FAILURE_LOGGER)


class UsageFailure(click.ClickException):
    """Bad command-line input, reported in one line (click's UsageError adds the usage text)."""

    exit_code = 2


def _console_handlers() -> list[logging.Handler]:
    """Every configured handler that writes to the console: not to a file (Kedro's RichHandler is
    no StreamHandler)."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers: dict[int, logging.Handler] = {}
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if not isinstance(handler, logging.FileHandler | logging.NullHandler):
                handlers[id(handler)] = handler
    return list(handlers.values())


def show_detail() -> None:
    """``-v``: the console shows every INFO message again (Kedro's dataset load/save lines...)."""
    for handler in _console_handlers():
        if handler.level > logging.INFO:
            handler.setLevel(logging.INFO)


class _HoldKedroFailureReport(logging.Filter):
    """Keeps Kedro's failure report off one console handler until it is known whether it is
    needed (:meth:`release` prints it after all)."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler
        self.held: list[logging.LogRecord] = []
        handler.addFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        sources = (getattr(sys.modules.get(name), "__file__", None) for name in _REPORTERS)
        if record.pathname not in sources:
            return True
        self.held.append(record)
        return False

    def remove(self) -> None:
        self.handler.removeFilter(self)

    def release(self) -> None:
        self.remove()
        for record in self.held:
            self.handler.handle(record)
        self.held.clear()


def _loaded_class(module: str, name: str) -> type[BaseException] | None:
    """``module.name`` if ``module`` is imported already, else None: an error can only be an
    instance of a loaded class, and not importing keeps reporting a failure instant (botocore,
    the deployment nodes' xgboost)."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


_AWS_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)
_AWS_FIX = (
    "Configure AWS credentials (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY), or stay local: no --env sagemaker, --runner-params backend=local."
)


#: Failures of the on-demand pipelines whose message says all there is to say.
_PIPELINE_FAILURES: Final = (
    ("predictive_maintenance.pipelines.monitoring.nodes", "MonitoringAlarm"),
    ("predictive_maintenance.pipelines.monitoring.nodes", "NoCapturedDataError"),
    ("predictive_maintenance.pipelines.batch_scoring.nodes", "ModelChoiceError"),
    ("predictive_maintenance.pipelines.batch_scoring.chunks", "BatchInputError"),
)


def _describe(error: BaseException) -> click.ClickException | None:  # noqa: PLR0911
    """The one- or two-line report of ``error`` itself, if it is an expected failure."""
    quality_gate = _loaded_class(
        "predictive_maintenance.pipelines.deployment.nodes", "QualityGateError"
    )
    if quality_gate is not None and isinstance(error, quality_gate):
        return click.ClickException(
            f"{error}\nImprove the model (conf/base/parameters_training.yml) or review "
            "quality_gate.minimums (conf/base/parameters_deployment.yml)."
        )
    for module, name in _PIPELINE_FAILURES:
        expected = _loaded_class(module, name)
        if expected is not None and isinstance(error, expected):
            return click.ClickException(str(error))
    runner_params = _loaded_class("predictive_maintenance.sagemaker.runner", "RunnerParamsError")
    if runner_params is not None and isinstance(error, runner_params):
        return UsageFailure(str(error))
    sagemaker_config = _loaded_class(
        "predictive_maintenance.sagemaker.config", "SageMakerConfigError"
    )
    if sagemaker_config is not None and isinstance(error, sagemaker_config):
        return click.ClickException(str(error))
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is None:
        return None
    no_credentials = (
        botocore.NoCredentialsError,
        botocore.PartialCredentialsError,
        botocore.CredentialRetrievalError,
    )
    if isinstance(error, no_credentials):
        return click.ClickException(f"no usable AWS credentials: {error}\n{_AWS_FIX}")
    if isinstance(error, botocore.NoRegionError):
        return click.ClickException(
            "no AWS region: set sagemaker.region in conf/base/globals.yml (or "
            "conf/local/globals.yml), or AWS_DEFAULT_REGION."
        )
    if isinstance(error, botocore.EndpointConnectionError):
        return click.ClickException(
            f"cannot reach AWS: {error}\nCheck the network, the region and AWS_ENDPOINT_URL."
        )
    if isinstance(error, botocore.ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        if code in _AWS_CREDENTIAL_CODES:
            return click.ClickException(f"AWS refused the credentials: {error}\n{_AWS_FIX}")
        if code.startswith("AccessDenied"):
            return click.ClickException(
                f"AWS denied an operation: {error}\nGrant it to your identity: "
                "deploy/iam/operator.json lists what the commands need (deploy/iam/README.md)."
            )
    return None


def expected_failure(error: BaseException) -> click.ClickException | None:
    """The report of an expected failure anywhere in ``error``'s chain (Kedro wraps a dataset's
    error in DatasetError, a node's in its own), or None for anything else."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        report = _describe(current)
        if report is not None:
            return report
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def reporting_failures(
    *, verbose: bool = False, details: str = f"Details: {LOG_FILE}."
) -> Iterator[None]:
    """Turns an expected failure raised inside into its one- or two-line report (exit code 1, or
    2 for bad command-line input), ending with ``details``; with ``verbose``, lets it through
    with its traceback. Either way the traceback goes to the log file, as does that of any other
    error (which is let through). Click's own exceptions pass untouched.

    Kedro's report of a failed run (the node's error, the nodes that did not run) reaches the
    console only if the failure is not an expected one; the log file always has it.
    """
    holds = [] if verbose else [_HoldKedroFailureReport(h) for h in _console_handlers()]

    def release() -> None:
        for hold in holds:
            hold.release()

    try:
        yield
    except (click.exceptions.ClickException, click.exceptions.Abort, click.exceptions.Exit):
        release()
        raise
    except Exception as error:
        report = expected_failure(error)
        what = "expected failure" if report is not None else "unexpected error"
        _failure_logger.error("%s: %s", what, error, exc_info=error)
        if report is None or verbose:
            release()
            raise
        report.message = f"{report.message.rstrip('.')}. {details}"
        raise report from None
    else:
        release()
    finally:
        for hold in holds:
            hold.remove()


class ReportingGroup(click.Group):
    """A click group whose commands report expected failures in one or two lines."""

    def invoke(self, ctx: click.Context) -> Any:
        with reporting_failures():
            return super().invoke(ctx)
