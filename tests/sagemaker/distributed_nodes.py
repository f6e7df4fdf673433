"""Node functions for the distributed-training tests, at module level so a job can import them."""

from __future__ import annotations

import pandas as pd


def check_torque(readings: pd.DataFrame) -> pd.DataFrame:
    """Fails on a negative torque, the way a node fails on bad data in its shard."""
    negative = readings.index[readings["torque_nm"] < 0]
    if len(negative):
        raise ValueError(f"torque_nm is negative in row {negative[0]}")
    return readings
