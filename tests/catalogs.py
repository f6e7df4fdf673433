"""In-memory catalogs for running pipeline slices with ``SequentialRunner``."""

from __future__ import annotations

from typing import Any

from kedro.io import AbstractDataset, DataCatalog, MemoryDataset


def memory_catalog(datasets: dict[str, Any], parameters: dict[str, Any]) -> DataCatalog:
    """A catalog holding ``datasets`` and every parameter as ``params:...`` entries."""
    entries = {name: MemoryDataset(data) for name, data in datasets.items()}
    for key, value in parameters.items():
        entries[f"params:{key}"] = MemoryDataset(value)
        if isinstance(value, dict):
            entries.update(
                {f"params:{key}.{sub}": MemoryDataset(item) for sub, item in value.items()}
            )
    return DataCatalog(entries)


class RecordingDataset(MemoryDataset):
    """Keeps what was saved to it, even after the runner releases it (``None`` if never saved)."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: Any = None

    def save(self, data: Any) -> None:
        self.saved = data
        super().save(data)


class ValueDataset(AbstractDataset):
    """Loads a fixed value, ``None`` included (a MemoryDataset holding None cannot be loaded),
    e.g. the ``tracking_run`` dataset's; read-only."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def load(self) -> Any:
        return self._value

    def save(self, data: Any) -> None:
        raise NotImplementedError("read-only")

    def _describe(self) -> dict[str, Any]:
        return {"value": self._value}
