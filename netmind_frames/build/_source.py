"""Where a job's rows come from: an in-memory frame, or a Parquet, CSV or JSONL file.

A source hands out its rows in fixed windows of ``chunk_rows`` (the last one shorter), the
same windows every time it is read: the shards of a chunk, hence their fingerprints, depend
only on the rows, never on how the file happens to be split into row groups. A Parquet file is
read record batch by record batch (only the columns asked for), so its size never decides the
memory used; CSV and JSONL are read whole.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .._errors import ColumnError, InputError

#: Rows per chunk, rounded up to a multiple of ``max_requests`` so full shards stay full.
CHUNK_TARGET = 200_000

_PARQUET = (".parquet", ".pq")
_CSV = (".csv",)
_JSONL = (".jsonl", ".ndjson")


def chunk_rows_for(max_requests: int, chunk_rows: int | None = None) -> int:
    """The chunk size of a job: ``chunk_rows`` if given, else a multiple of ``max_requests``."""
    if chunk_rows is not None:
        return chunk_rows
    return max_requests * max(1, -(-CHUNK_TARGET // max_requests))


class FrameSource:
    """The rows of an in-memory DataFrame (chunks are views, never copies)."""

    path: Path | None = None

    def __init__(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise InputError(f"frame must be a pandas DataFrame, not {type(frame).__name__}.")
        self.frame = frame
        self.n_rows = len(frame)

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return [str(c) for c in self.frame.columns]

    def frames(
        self, chunk_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(first position, rows)`` per chunk; the frame's own index is kept."""
        for start in range(0, self.n_rows, chunk_rows):
            yield start, self.frame.iloc[start : start + chunk_rows]


class FileSource:
    """The rows of a Parquet (streamed), CSV or JSONL file (read whole), chosen by extension."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        suffix = self.path.suffix.lower()
        if suffix not in (*_PARQUET, *_CSV, *_JSONL):
            raise InputError(
                f"{path}: unknown input format {suffix!r} (use .parquet, .csv or .jsonl)"
            )
        if not self.path.is_file():
            raise InputError(f"{path}: no such file")
        self._parquet = suffix in _PARQUET
        self._table: pa.Table | None = None
        if self._parquet:
            with pq.ParquetFile(self.path) as file:
                self.schema = file.schema_arrow
                self.n_rows = file.metadata.num_rows
        else:
            self._table = _read_text_table(self.path, suffix)
            self.schema = self._table.schema
            self.n_rows = self._table.num_rows

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self.schema.names)

    def check_columns(self, names: Sequence[str]) -> None:
        """Raise :class:`ColumnError` naming the first of ``names`` the file lacks."""
        for name in names:
            if name not in self.schema.names:
                available = ", ".join(repr(c) for c in self.schema.names)
                raise ColumnError(
                    f"column {name!r} is not in {self.path.name}; available columns: {available}",
                    column=name,
                )

    def tables(
        self, chunk_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.Table]]:
        """``(first position, rows)`` per chunk, as Arrow tables of ``columns`` (all if None)."""
        if self._table is not None:
            table = self._table if columns is None else self._table.select(list(columns))
            for start in range(0, self.n_rows, chunk_rows):
                yield start, table.slice(start, chunk_rows)
            return
        with pq.ParquetFile(self.path) as file:
            pending: list[pa.RecordBatch] = []
            held = start = 0
            batches = file.iter_batches(batch_size=min(chunk_rows, 64 * 1024), columns=columns)
            for batch in batches:
                pending.append(batch)
                held += batch.num_rows
                while held >= chunk_rows:
                    table = pa.Table.from_batches(pending)
                    yield start, table.slice(0, chunk_rows).combine_chunks()
                    rest = table.slice(chunk_rows)
                    pending = rest.to_batches() if rest.num_rows else []
                    held -= chunk_rows
                    start += chunk_rows
            if held:
                yield start, pa.Table.from_batches(pending).combine_chunks()

    def frames(
        self, chunk_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(first position, rows)`` per chunk as pandas, indexed by position in the file."""
        for start, table in self.tables(chunk_rows, columns):
            frame = table.to_pandas(ignore_metadata=True)
            frame.index = pd.RangeIndex(start, start + len(frame))
            yield start, frame


Source = FrameSource | FileSource


def _read_text_table(path: Path, suffix: str) -> pa.Table:
    if suffix in _CSV:
        frame = pd.read_csv(path, dtype=str)  # as text: "0001" stays "0001"
    else:
        frame = pd.read_json(path, lines=True, dtype=False)  # dtype=False: "0001" stays text
    return pa.Table.from_pandas(frame, preserve_index=False)
