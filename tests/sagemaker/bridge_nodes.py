"""Node functions the SageMaker bridge tests run as training jobs.

Module-level functions, so a job can import them by name (``tests.sagemaker.bridge_nodes:...``)
from the shipped ``tests`` package. Nothing is imported at module level: a job pays for pandas,
numpy or XGBoost only if its node needs them, and the module imports nothing a training
container lacks (no Kedro, no boto3).
"""

from __future__ import annotations

import time
from typing import Any


def scale_total(numbers: list[float], factor: float) -> float:
    """List inputs (a dataset and a parameter); one output."""
    return sum(numbers) * factor


def summarise(numbers: list[float], label: str) -> list[Any]:
    """Two outputs as a list: JSON data and bytes."""
    return [{"label": label, "count": len(numbers)}, f"{label}:{max(numbers)}".encode()]


def split_readings(frame: Any, limits: dict[str, float], weights: Any) -> dict[str, Any]:
    """Keyword inputs (a data frame, a parameter, an array); dict outputs of every kind."""
    mask = frame["torque"] > limits["torque"]
    return {
        "high": frame[mask],
        "low": frame[~mask],
        "weighted": frame[["torque", "speed"]].to_numpy() @ weights,
        "counts": {"high": int(mask.sum()), "low": int((~mask).sum())},
    }


def count_items(values: list[int], extra: int) -> dict[str, int]:
    """A parameter too large for a hyperparameter, and a small one."""
    return {"count": len(values), "total": sum(values) + extra}


def remember(value: Any) -> None:
    """No outputs."""
    print(f"remembered {value!r}", flush=True)


def remember_all(*values: Any) -> None:
    """Any number of inputs, no outputs."""
    print(f"remembered {len(values)} values", flush=True)


def identify(value: Any) -> dict[str, Any]:
    """The value and the name of its type (what a job made of a parameter)."""
    return {"type": type(value).__name__, "value": value}


def explode(value: Any) -> Any:
    """Fails the way a node function can."""
    raise ValueError(f"bad reading {value!r}")


def sleep_for(seconds: float) -> float:
    """Runs for ``seconds`` (longer than a test waits)."""
    print(f"sleeping {seconds} s", flush=True)
    time.sleep(seconds)
    return seconds


def echo(first: Any, second: Any) -> list[Any]:
    """Two dataset inputs back as two outputs."""
    return [first, second]


def train_booster(frame: Any, rounds: int) -> list[Any]:
    """What a training node does: a data frame in; an XGBoost model and its scores out."""
    import xgboost as xgb  # noqa: PLC0415 -- only this node needs XGBoost

    features = frame[["torque", "speed"]]
    matrix = xgb.DMatrix(features, label=frame["failure"])
    booster = xgb.train(
        {"objective": "binary:logistic", "max_depth": 2, "nthread": 1, "seed": 0},
        matrix,
        num_boost_round=rounds,
    )
    return [booster, booster.predict(xgb.DMatrix(features))]
