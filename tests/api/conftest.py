"""Fixtures of the HTTP API: a real local model endpoint (in-process, on 127.0.0.1) and the API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from predictive_maintenance.api.handler import Api, ApiSettings
from predictive_maintenance.serving.server import EndpointServer
from tests.serving.conftest import (  # noqa: F401 -- fixtures, shared with the endpoint's tests
    insight_loaded_model,
    insight_model,
    insight_model_dir,
    loaded_model,
    model_dir,
    training_run,
)

ENDPOINT_NAME = "predictive-maintenance"
MODEL_VERSION = 7


@pytest.fixture(autouse=True, scope="module")
def _aws_placeholders() -> Iterator[None]:
    """boto3 signs every request; the local endpoint checks no signature. Module-scoped, so it is
    in place before a module's servers: an API creates its boto3 client (and so resolves its
    credentials) when it is constructed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "local")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "local")
        patch.delenv("AWS_SESSION_TOKEN", raising=False)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        patch.setenv("AWS_CONFIG_FILE", "/dev/null")
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        yield


@pytest.fixture(scope="module")
def endpoint(loaded_model) -> Iterator[EndpointServer]:  # noqa: F811
    """`kedro endpoint serve`'s server with the trained model as version 7."""
    with EndpointServer(
        ("127.0.0.1", 0),
        model=loaded_model.with_version(MODEL_VERSION),
        endpoint_name=ENDPOINT_NAME,
    ) as running:
        yield running.start()


def make_api(endpoint_url: str, **settings) -> Api:
    return Api(
        ApiSettings(
            endpoint_name=settings.pop("endpoint_name", ENDPOINT_NAME),
            runtime_endpoint_url=endpoint_url,
            region="eu-west-1",
            **settings,
        )
    )


@pytest.fixture
def api(endpoint) -> Api:
    return make_api(endpoint.url)


@pytest.fixture(scope="module")
def insight_endpoint(insight_loaded_model) -> Iterator[EndpointServer]:  # noqa: F811
    """The endpoint serving the model with its calibration, failure-mode model and card."""
    with EndpointServer(
        ("127.0.0.1", 0),
        model=insight_loaded_model.with_version(MODEL_VERSION),
        endpoint_name=ENDPOINT_NAME,
    ) as running:
        yield running.start()


@pytest.fixture
def insight_api(insight_endpoint) -> Api:
    return make_api(insight_endpoint.url)
