"""Serving: the SageMaker model package, the inference handlers and the local endpoint.

This package file is copied into ``model.tar.gz`` next to :mod:`.inference`, which runs inside the
stock SageMaker XGBoost container: keep it free of imports (the container has no Kedro).
"""
