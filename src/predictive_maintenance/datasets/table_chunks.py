"""``TableChunksDataset``: a CSV or Parquet file of any size, read and written in bounded chunks.

Why not a kedro-datasets type: ``pandas.CSVDataset`` can read CSV in chunks (``chunksize``), but
``pandas.ParquetDataset`` and ``pandas.GenericDataset`` read a whole Parquet file into memory; none
of them can tell a row's line in the file (pandas skips blank lines and drops malformed ones, so
counting rows miscounts lines), and none appends the chunks a generator node yields: Kedro saves
every yielded chunk with ``save()``, and ``CSVDataset`` with ``mode: a`` would append to the last
run's file and repeat the header, while Parquet cannot be appended to at all.

Reading: :meth:`TableChunksDataset.load` returns a :class:`TableChunks`, which reads nothing until
it is iterated; each iteration reads the file from the start, one ``pyarrow.Table`` of at most
``chunk_rows`` rows at a time, so memory does not grow with the file. A CSV file comes as its
lines, undecoded as CSV (columns ``line``: the line in the file, first line = 1, and ``text``:
the line without its line end; a UTF-8 byte-order mark is dropped), so that the consumer parses
the fields with its own rules and names the line of any bad one. A Parquet file comes as its
columns plus ``line``: the row number, first row = 1.

Writing: the first ``save()`` of a dataset object replaces what the file held; every further one
appends a chunk (CSV: the header is written once; Parquet: a directory of ``part-NNNNN.parquet``
files, which pandas, pyarrow and Spark read as one table). Kedro makes new dataset objects for
every run, so each run writes afresh; ``release()`` also starts afresh.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from copy import deepcopy
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final, Literal

import fsspec
from kedro.io.core import AbstractDataset, DatasetError, get_protocol_and_path

if TYPE_CHECKING:  # pyarrow is imported when a file is read or written, not at ``kedro`` start-up
    import pandas as pd
    import pyarrow as pa

    # kedro-viz reads the name of preview()'s return annotation; the SageMaker jobs that import
    # this module have Kedro but not kedro-datasets.
    from kedro_datasets._typing import TablePreview

FileFormat = Literal["csv", "parquet"]
#: File name suffixes -> format, when the catalog entry names none.
SUFFIX_FORMATS: Final = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: Bytes read from a CSV file at a time (lines are then split in pyarrow, not in Python).
READ_BLOCK_BYTES: Final = 8 << 20
_BOM: Final = b"\xef\xbb\xbf"
PART_NAME: Final = "part-{:05d}.parquet"


def file_format_of(filepath: str, file_format: str | None = None) -> FileFormat:
    """``file_format`` if given, else the format the path's suffix names; a clear error if
    neither says."""
    if file_format is None:
        suffix = PurePosixPath(filepath).suffix.lower()
        if suffix not in SUFFIX_FORMATS:
            raise DatasetError(
                f"{filepath}: cannot tell the format from the suffix {suffix!r}; name the file "
                f"{' or '.join(sorted(SUFFIX_FORMATS))}, or set file_format: csv or parquet"
            )
        file_format = SUFFIX_FORMATS[suffix]
    if file_format not in ("csv", "parquet"):
        raise DatasetError(f"file_format must be 'csv' or 'parquet', not {file_format!r}")
    return file_format  # type: ignore[return-value]


@dataclass(frozen=True)
class TableChunks:
    """A file to be read chunk by chunk; iterating reads it (again) from the start."""

    filesystem: Any
    path: str
    file_format: FileFormat
    chunk_rows: int

    def __iter__(self) -> Iterator[pa.Table]:
        if self.file_format == "csv":
            return self._csv_chunks()
        return self._parquet_chunks()

    def __str__(self) -> str:
        return f"{self.path} ({self.file_format})"

    def total_rows(self) -> int:
        """Lines (CSV, counted by reading the file once) or rows (Parquet, from its footer)."""
        if self.file_format == "parquet":
            import pyarrow.parquet as pq  # noqa: PLC0415

            rows = 0
            for path in self._parquet_files():
                with self.filesystem.open(path, "rb") as file:
                    rows += pq.ParquetFile(file).metadata.num_rows
            return rows
        lines, last = 0, b"\n"
        with self.filesystem.open(self.path, "rb") as file:
            for block in iter(lambda: file.read(READ_BLOCK_BYTES), b""):
                lines += block.count(b"\n")
                last = block[-1:]
        return lines + (last != b"\n")

    def _parquet_files(self) -> list[str]:
        """The file, or the ``.parquet`` parts of a directory in name order."""
        if not self.filesystem.isdir(self.path):
            return [self.path]
        return sorted(self.filesystem.glob(f"{self.path}/*.parquet"))

    def _parquet_chunks(self) -> Iterator[pa.Table]:
        import numpy as np  # noqa: PLC0415
        import pyarrow as pa  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        first = 1
        for path in self._parquet_files():
            with self.filesystem.open(path, "rb") as file:
                for batch in pq.ParquetFile(file).iter_batches(batch_size=self.chunk_rows):
                    table = pa.Table.from_batches([batch])
                    lines = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
                    first += table.num_rows
                    yield table.append_column("line", lines)

    def _csv_chunks(self) -> Iterator[pa.Table]:
        import pyarrow as pa  # noqa: PLC0415

        pending: list[pa.Array] = []
        pending_rows = 0
        first_line = 1
        for lines in self._csv_lines():
            pending.append(lines)
            pending_rows += len(lines)
            while pending_rows >= self.chunk_rows:
                merged = pa.concat_arrays(pending)
                yield _lines_table(first_line, merged.slice(0, self.chunk_rows))
                first_line += self.chunk_rows
                rest = merged.slice(self.chunk_rows)
                pending, pending_rows = ([rest] if len(rest) else []), len(rest)
        if pending_rows:
            yield _lines_table(first_line, pa.concat_arrays(pending))

    def _csv_lines(self) -> Iterator[pa.Array]:
        """The file's lines as string arrays, block by block (LF or CRLF line ends)."""
        rest = b""
        with self.filesystem.open(self.path, "rb") as file:
            start = file.read(len(_BOM))
            rest = b"" if start == _BOM else start
            for block in iter(lambda: file.read(READ_BLOCK_BYTES), b""):
                data = rest + block
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                    continue
                yield _split_lines(data[:cut])
                rest = data[cut + 1 :]
        if rest:  # the last line, without a line end
            yield _split_lines(rest)


def _split_lines(data: bytes) -> pa.Array:
    """``data`` split at LF, a CR before the LF dropped, as UTF-8 text (bytes that are not UTF-8
    become U+FFFD, so the line is refused by whoever parses it, not the whole file)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    lines = pc.split_pattern(pa.array([data], pa.large_binary()), b"\n").flatten()
    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        text = pa.array(
            [line.decode("utf-8", "replace") for line in lines.to_pylist()], pa.large_string()
        )
    return pc.utf8_rtrim(text, characters="\r")


def _lines_table(first_line: int, text: pa.Array) -> pa.Table:
    import numpy as np  # noqa: PLC0415
    import pyarrow as pa  # noqa: PLC0415

    lines = pa.array(np.arange(first_line, first_line + len(text), dtype=np.int64))
    return pa.table({"line": lines, "text": text})


class Chunk:
    """One chunk for :meth:`TableChunksDataset.save`, which takes the table out of it.

    A generator node with several outputs yields tuples that Kedro splits with
    ``itertools.tee``; tee keeps every item of a block of 57 until the block is done, so the
    tables themselves would stay in memory for up to 57 chunks (measured: +45 MB per million
    rows). Yielding ``Chunk(table)`` leaves tee holding an empty box once the table is saved.
    """

    def __init__(self, table: pa.Table | pd.DataFrame) -> None:
        self._table: pa.Table | pd.DataFrame | None = table

    def take(self) -> pa.Table | pd.DataFrame:
        """The table, once; a second call is an error (the chunk was saved already)."""
        if self._table is None:
            raise DatasetError("this chunk was saved already")
        table, self._table = self._table, None
        return table


class TableChunksDataset(AbstractDataset["pa.Table | pd.DataFrame | Chunk", TableChunks]):
    """A CSV or Parquet file read and written in bounded chunks (see the module docstring).

    Example catalog entry::

        batch_readings:
          type: predictive_maintenance.datasets.table_chunks.TableChunksDataset
          filepath: data/15_batch/readings.csv      # or .parquet; or set file_format
          chunk_rows: 100000
    """

    def __init__(
        self,
        *,
        filepath: str,
        file_format: FileFormat | None = None,
        chunk_rows: int = 100_000,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates the dataset.

        Args:
            filepath: The file (CSV, or Parquet: a file or a directory of parts), optionally
                with a protocol (``s3://...``) for reading; writing needs a local path.
            file_format: ``csv`` or ``parquet``; by default from the suffix (``.csv``,
                ``.txt``, ``.parquet``, ``.pq``).
            chunk_rows: Rows (CSV: lines) per chunk read: what bounds the memory.
            credentials: Passed to the fsspec filesystem.
            fs_args: Passed to the fsspec filesystem.
            metadata: Free-form metadata (kedro-viz reads its ``kedro-viz`` key).
        """
        if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
            raise DatasetError(f"chunk_rows must be a positive integer, not {chunk_rows!r}")
        self._format = file_format_of(filepath, file_format)
        protocol, path = get_protocol_and_path(filepath)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self._path = path
        self._chunk_rows = chunk_rows
        self._parts = 0
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {
            "filepath": self._path,
            "protocol": self._protocol,
            "file_format": self._format,
            "chunk_rows": self._chunk_rows,
        }

    def load(self) -> TableChunks:
        if not self._fs.exists(self._path):
            raise DatasetError(f"{self._path} does not exist: no file to read")
        return TableChunks(self._fs, self._path, self._format, self._chunk_rows)

    def save(self, data: pa.Table | pd.DataFrame | Chunk) -> None:
        import pyarrow as pa  # noqa: PLC0415

        if isinstance(data, Chunk):
            data = data.take()
        if self._protocol != "file":
            raise DatasetError(
                f"{self._protocol}://{self._path}: chunks are appended, which needs a local file"
            )
        table = (
            data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
        )
        if self._format == "csv":
            self._save_csv(table)
        else:
            self._save_parquet(table)
        self._parts += 1

    def _save_csv(self, table: pa.Table) -> None:
        import pyarrow.csv as pa_csv  # noqa: PLC0415

        first = self._parts == 0
        with self._fs.open(self._path, "wb" if first else "ab") as file:
            if first:  # pyarrow would quote every name; a header as people write it
                header = io.StringIO()
                csv.writer(header, lineterminator="\n").writerow(table.column_names)
                file.write(header.getvalue().encode())
            if table.num_rows:
                options = pa_csv.WriteOptions(include_header=False, quoting_style="needed")
                pa_csv.write_csv(table, file, options)

    def _save_parquet(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq  # noqa: PLC0415

        if self._parts == 0:
            if self._fs.exists(self._path):
                self._fs.rm(self._path, recursive=True)
            self._fs.mkdirs(self._path, exist_ok=True)
        elif not table.num_rows:
            return  # the first part already holds the schema
        part = f"{self._path}/{PART_NAME.format(self._parts)}"
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        temporary = f"{part}.partial"
        with self._fs.open(temporary, "wb") as file:
            file.write(buffer.getvalue())
        self._fs.mv(temporary, part)

    def _release(self) -> None:
        self._parts = 0

    def _exists(self) -> bool:
        return bool(self._fs.exists(self._path))

    def preview(self, nrows: int = 10) -> TablePreview:
        """The first ``nrows`` rows as a table, for kedro-viz (none before the file exists)."""
        import pandas as pd  # noqa: PLC0415

        if not self._exists():
            return {"index": [], "columns": [], "data": []}
        if self._format == "csv":
            with self._fs.open(self._path, "rb") as file:
                frame = pd.read_csv(file, nrows=nrows, dtype=str, keep_default_na=False)
        else:
            first = next(iter(replace(self.load(), chunk_rows=nrows)), None)
            frame = pd.DataFrame() if first is None else first.to_pandas()
        return frame.head(nrows).to_dict(orient="split")
