"""Module-level node functions for the runner's tests: a job imports them by module path."""

from __future__ import annotations

import time

import pandas as pd


def scale(readings: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Multiplies every reading by ``factor``."""
    return readings * factor


def total(scaled: pd.DataFrame) -> float:
    """The sum of every value."""
    return float(scaled.to_numpy().sum())


def reject(readings: pd.DataFrame) -> pd.DataFrame:
    """Fails the way a node fails on bad data."""
    print(f"checking {len(readings)} rows", flush=True)
    raise ValueError("torque_nm is negative in row 7")


def wait(readings: pd.DataFrame, seconds: float) -> pd.DataFrame:
    """Takes ``seconds``, then returns its input."""
    print("waiting", flush=True)
    time.sleep(seconds)
    return readings
