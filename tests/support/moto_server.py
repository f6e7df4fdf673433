"""moto in server mode, the AWS endpoint of the tests, plus the SageMaker calls moto 5.2 lacks.

moto records SageMaker resources but has no UpdateEndpoint; this adds it (point the endpoint at
the new config, as SageMaker does once a blue/green update completes) and then runs moto's own
server. Request shapes are still validated by botocore in the client under test.

    python tests/support/moto_server.py PORT
"""

from __future__ import annotations

import sys

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint
from moto.sagemaker.responses import SageMakerResponse
from moto.server import main


def update_endpoint(self: SageMakerResponse) -> ActionResult:
    backend = self.sagemaker_backend
    name = self._get_param("EndpointName")
    config_name = self._get_param("EndpointConfigName")
    if name not in backend.endpoints:
        raise ValidationError(message=f"Could not find endpoint '{name}'.")
    config = backend.describe_endpoint_config(config_name)
    old = backend.endpoints[name]
    backend.endpoints[name] = FakeEndpoint(
        account_id=backend.account_id,
        region_name=backend.region_name,
        endpoint_name=name,
        endpoint_config_name=config_name,
        production_variants=config["ProductionVariants"],
        data_capture_config=config["DataCaptureConfig"],
        tags=old.tags,
    )
    return ActionResult({"EndpointArn": old.arn})


SageMakerResponse.update_endpoint = update_endpoint

if __name__ == "__main__":
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
