"""The HTTP API in front of the model endpoint: an AWS Lambda handler for API Gateway.

``handler(event, context)`` answers API Gateway HTTP API (payload 2.0) and REST API (payload
1.0) events; ``kedro api serve`` runs the same handler locally. Standard library and boto3 only:
the Lambda runtime provides both.
"""

from predictive_maintenance.api.handler import handler

__all__ = ["handler"]
