"""The generic Kedro <-> Amazon SageMaker bridge.

Nothing here imports the project's pipelines, so the subpackage could ship as a Kedro plugin. The
SageMaker Python SDK is imported lazily, where it is needed: importing parts of it needs an AWS
region and costs seconds, which ``kedro run`` on the local path should never pay.
"""
