"""A partitioned dataset that may be empty.

kedro-datasets' ``PartitionedDataset`` raises ``DatasetError("No partitions found")`` on an empty
or missing directory. For the monitoring pipeline that is a normal state, not a broken catalog:
no ground truth has been reported yet (label metrics are skipped, the report says so), or nothing
has been captured yet (the pipeline says how to turn capture on, rather than Kedro naming a
directory). Everything else is ``PartitionedDataset``'s own behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class OptionalPartitionedDataset(PartitionedDataset):
    """``partitions.PartitionedDataset`` that loads as ``{}`` when there is no partition."""

    def load(self) -> dict[str, Callable[[], Any]]:
        self._invalidate_caches()
        if not self._list_partitions():
            return {}
        return super().load()
