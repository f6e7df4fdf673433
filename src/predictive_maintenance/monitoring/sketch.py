"""The KLL quantile sketch of SageMaker Model Monitor's ``statistics.json``, and the distribution
a sketch (or, without one, its buckets) describes.

Model Monitor's analyzer (Deequ) writes ``distribution.kll.sketch.data`` as a list of compactors:
``data[h]`` holds items that each stand for ``2**h`` values of the data set. Reading that layout
(:func:`weighted_items`) is what lets the drift scores compare live traffic with a baseline made
by SageMaker as well as with one made here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def kll_compactors(values: np.ndarray, *, k: int, c: float, seed: int) -> list[list[float]]:
    """A KLL sketch of ``values``: compactor ``h`` holds items of weight ``2**h``.

    Compactor ``h`` of ``H`` holds at most ``max(2, ceil(k * c**(H - 1 - h)))`` items; a fuller
    one is sorted and every other item (from a seeded random offset) moves up a level, the
    compaction of Karnin, Lang and Liberty (2016). A data set of at most ``k`` values is kept
    whole (exact quantiles).

    Args:
        values: Finite numbers (NaNs must be removed by the caller).
        k: Capacity of the top compactor (SageMaker: 2048).
        c: Capacity ratio between neighbouring compactors (SageMaker: 0.64).
        seed: Seeds the compaction offsets, so a baseline is reproducible.
    """
    rng = np.random.default_rng(seed)
    levels: list[np.ndarray] = [np.sort(np.asarray(values, dtype=np.float64))]
    while True:
        height = len(levels)
        full = next((h for h in range(height) if len(levels[h]) > _capacity(h, height, k, c)), None)
        if full is None:
            break
        items = np.sort(levels[full])
        # An odd item out stays behind, so the total weight is kept exactly.
        kept, items = (items[-1:], items[:-1]) if len(items) % 2 else (items[:0], items)
        promoted = items[int(rng.integers(2)) :: 2]
        levels[full] = kept
        if full + 1 == height:
            levels.append(promoted)
        else:
            levels[full + 1] = np.concatenate([levels[full + 1], promoted])
    return [np.sort(level).tolist() for level in levels]


def _capacity(height: int, levels: int, k: int, c: float) -> int:
    return max(2, math.ceil(k * c ** (levels - 1 - height)))


def weighted_items(distribution: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their weights from a ``distribution.kll`` block of ``statistics.json``.

    The sketch's compactors when present; otherwise each bucket's count spread evenly over its
    range (at the bucket's lower and upper bounds and in between), which is all the buckets say.
    """
    kll = distribution.get("kll", distribution)
    data = (kll.get("sketch") or {}).get("data")
    if data:
        values = np.concatenate([np.asarray(level, dtype=np.float64) for level in data])
        weights = np.concatenate(
            [np.full(len(level), 2.0**height) for height, level in enumerate(data)]
        )
    else:
        values, weights = _bucket_items(kll.get("buckets") or [])
    if not len(values):
        raise ValueError("the distribution has neither a KLL sketch nor buckets")
    order = np.argsort(values, kind="stable")
    return values[order], weights[order]


def _bucket_items(buckets: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    points = 5  # per bucket: its bounds and three points between them
    values, weights = [], []
    for bucket in buckets:
        count = float(bucket["count"])
        if count > 0:
            values.append(np.linspace(bucket["lower_bound"], bucket["upper_bound"], points))
            weights.append(np.full(points, count / points))
    if not values:
        return np.empty(0), np.empty(0)
    return np.concatenate(values), np.concatenate(weights)


def cdf(values: np.ndarray, weights: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The share of the weight at or below each point of ``at`` (``values`` sorted)."""
    cumulative = np.concatenate([[0.0], np.cumsum(weights)])
    return cumulative[np.searchsorted(values, at, side="right")] / cumulative[-1]


def quantiles(values: np.ndarray, weights: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """The smallest value whose :func:`cdf` reaches each share (``values`` sorted)."""
    cumulative = np.cumsum(weights) / np.sum(weights)
    positions = np.searchsorted(cumulative, shares, side="left")
    return values[np.minimum(positions, len(values) - 1)]
