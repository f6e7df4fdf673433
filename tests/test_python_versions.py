"""Python 3.10 is a supported version: what runs in SageMaker jobs and endpoints runs on the stock
XGBoost image's Python 3.10, so the whole source tree keeps to 3.10's language and library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.project import PROJECT_ROOT

VERMIN = Path(sys.executable).with_name("vermin")


def test_src_needs_nothing_newer_than_python_3_10():
    result = subprocess.run(
        [str(VERMIN), "--no-tips", "--violations", "--target=3.10-", "src"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_project_declares_python_3_10_and_lints_for_it():
    pyproject = (PROJECT_ROOT / "pyproject.toml").read_text()

    assert 'requires-python = ">=3.10,' in pyproject
    assert 'target-version = "py310"' in pyproject
