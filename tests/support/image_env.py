"""The stand-in for the stock SageMaker XGBoost 3.0-5 image, for tests.

``deploy/image/xgboost-image-env`` builds a Python 3.10 environment with the image's pins and the
image's own open-source serving and training code (``deploy/image/sagemaker-xgboost-container``,
see its PROVENANCE.md). What runs inside a SageMaker job or endpoint is tested with that
interpreter, not with the project's own Python 3.11 environment.
"""

from __future__ import annotations

import os
import subprocess
from functools import cache
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TOOL = PROJECT_ROOT / "deploy" / "image" / "xgboost-image-env"
#: Where ``make image-env`` builds it (reused while the pins are unchanged).
DEFAULT_DESTINATION = PROJECT_ROOT / ".venv-image"


@cache
def _build() -> tuple[Path | None, str]:
    destination = Path(os.environ.get("XGBOOST_IMAGE_ENV", DEFAULT_DESTINATION))
    result = subprocess.run(
        ["bash", str(TOOL), str(destination)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        return None, (result.stderr or result.stdout).strip()[-2000:]
    return Path(result.stdout.strip().splitlines()[-1]), ""


def image_python() -> Path:
    """The stand-in's interpreter, built on first use. Without Python 3.10 on the machine the
    calling test is skipped, except in CI (``CI=true``), where that is a failure."""
    python, error = _build()
    if python is None:
        message = f"the SageMaker XGBoost image stand-in could not be built: {error}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python
