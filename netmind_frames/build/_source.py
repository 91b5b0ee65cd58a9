"""Where a job's rows come from: an in-memory frame or table, or a Parquet, CSV or JSONL file
or a Parquet dataset, local or on object storage (:mod:`._storage_io` opens those).

:func:`as_source` takes what a caller holds: a pandas DataFrame (:class:`FrameSource`), or a
Polars DataFrame or LazyFrame, a ``pyarrow.Table`` or ``RecordBatchReader``
(:class:`TableSource`: the rows as one Arrow table, which the request builders read through a
pandas view of Arrow-backed columns, without copying them). A ``RecordBatchReader`` is
consumed batch by batch into an Arrow IPC spool file, read back memory-mapped (see
:func:`spooled`): a stream larger than memory never sits on the heap whole.

A source hands out its rows in fixed windows of ``chunk_rows`` (the last one shorter), the
same windows every time it is read: the shards of a chunk, hence their fingerprints, depend
only on the rows, never on how the file happens to be split into row groups. A Parquet file is
read record batch by record batch (only the columns asked for), so its size never decides the
memory used (a dataset is read file by file, in path order); CSV and JSONL are read whole.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa

from .._errors import ColumnError, InputError
from ._storage_io import local_path, open_reader
from ._views import is_view, large_from_view, large_type

#: Rows per chunk, rounded up to a multiple of ``max_requests`` so full shards stay full.
CHUNK_TARGET = 100_000


def chunk_rows_for(max_requests: int, chunk_rows: int | None = None) -> int:
    """The chunk size of a job: ``chunk_rows`` if given, else a multiple of ``max_requests``."""
    if chunk_rows is not None:
        return chunk_rows
    return max_requests * max(1, -(-CHUNK_TARGET // max_requests))


class FrameSource:
    """The rows of an in-memory DataFrame (chunks are views, never copies)."""

    path: Path | None = None
    location: str | None = None

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
    """The rows of a Parquet file or dataset (streamed), or a CSV or JSONL file (read whole).

    ``path`` is a local path or a URL (``s3://``, ``gs://``, ``az://``, ``abfs://``,
    ``file://``; see :mod:`._storage_io`): a directory is a Parquet dataset, a file's format is
    its extension. ``storage_options`` go to the storage library (never kept beyond it).
    ``location`` is what the journal records to read the input again: the path, or the URL.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        storage_options: Mapping[str, Any] | None = None,
        name: str = "input=",
    ) -> None:
        local = local_path(path)
        self.path: Path | None = None if local is None else local.resolve()
        self.location = str(path) if self.path is None else str(self.path)
        self._reader = open_reader(path, storage_options, name)
        self._table = self._reader.table
        self.schema = self._reader.schema
        self.n_rows = self._reader.n_rows

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self.schema.names)

    @property
    def display_name(self) -> str:
        """The input's name in messages: the file or directory name, or the URL."""
        return self.location if self.path is None else self.path.name

    def check_columns(self, names: Sequence[str]) -> None:
        """Raise :class:`ColumnError` naming the first of ``names`` the file lacks."""
        for name in names:
            if name not in self.schema.names:
                available = ", ".join(repr(c) for c in self.schema.names)
                raise ColumnError(
                    f"column {name!r} is not in {self.display_name}; available columns: "
                    f"{available}",
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
        pending: list[pa.RecordBatch] = []
        held = start = 0
        for batch in self._reader.batches(columns, batch_size=min(chunk_rows, 64 * 1024)):
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
        """``(first position, rows)`` per chunk: pandas views of the Arrow columns (no copy
        into Python objects), indexed by position in the file."""
        for start, table in self.tables(chunk_rows, columns):
            yield start, _arrow_view(table, start)


class TableSource:
    """The rows of an Arrow table, from a ``pyarrow.Table`` or a Polars frame.

    ``kind`` says what the caller gave and so what a result is returned as (``"arrow"``: a
    ``pyarrow.Table``; ``"polars"``: a Polars DataFrame); ``original`` is the caller's Polars
    DataFrame (collected, for a LazyFrame), whose columns the result keeps as they are.
    """

    path: Path | None = None
    location: str | None = None

    def __init__(
        self, table: pa.Table, kind: Literal["arrow", "polars"] = "arrow", original: Any = None
    ) -> None:
        self.table = table
        self.kind = kind
        self.original = original
        self.n_rows = table.num_rows
        self.schema = table.schema

    @property
    def columns(self) -> list[str]:
        """The column names."""
        return list(self.table.column_names)

    @property
    def frame(self) -> pd.DataFrame:
        """All rows as a pandas frame of Arrow-backed columns (no copy), RangeIndex."""
        return _arrow_view(self.table, 0)

    def tables(
        self, chunk_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pa.Table]]:
        """``(first position, rows)`` per chunk, as Arrow tables of ``columns`` (all if None)."""
        table = self.table if columns is None else self.table.select(list(columns))
        for start in range(0, self.n_rows, chunk_rows):
            yield start, table.slice(start, chunk_rows)

    def frames(
        self, chunk_rows: int, columns: Sequence[str] | None = None
    ) -> Iterator[tuple[int, pd.DataFrame]]:
        """``(first position, rows)`` per chunk: pandas views of all the Arrow columns (no
        copy; all, so a missing column's error lists every column), indexed by position."""
        for start, table in self.tables(chunk_rows):
            yield start, _arrow_view(table, start)


Source = FrameSource | FileSource | TableSource


def as_source(frame: Any) -> FrameSource | TableSource:
    """The source of a frame a caller passed: pandas, Polars (eager or lazy) or Arrow.

    A ``RecordBatchReader`` is spooled batch by batch (a job reads its rows again for retries
    and the join: see :func:`spooled`); a Polars LazyFrame is collected. Polars is never
    imported here: a Polars frame can only exist once the caller imported it.
    """
    if isinstance(frame, (FrameSource, TableSource)):
        return frame
    if isinstance(frame, pd.DataFrame):
        return FrameSource(frame)
    if isinstance(frame, pa.Table):
        return TableSource(_plain_strings(frame), "arrow")
    if isinstance(frame, pa.RecordBatchReader):
        return TableSource(spooled(frame), "arrow")
    polars = sys.modules.get("polars")
    if polars is not None:
        if isinstance(frame, polars.LazyFrame):
            frame = frame.collect()
        if isinstance(frame, polars.DataFrame):
            return TableSource(_polars_table(polars, frame), "polars", frame)
    raise InputError(
        "frame must be a pandas or Polars DataFrame (or LazyFrame), a pyarrow.Table or a "
        f"pyarrow.RecordBatchReader, not {type(frame).__name__}."
    )


def _plain_strings(table: pa.Table) -> pa.Table:
    """``table`` with string views as large strings (the request builders read those)."""
    for i, field in enumerate(table.schema):
        if str(field.type) == "string_view":
            table = table.set_column(i, _plain_field(field), large_from_view(table.column(i)))
    return table


def _polars_table(polars: Any, frame: Any) -> pa.Table:
    """A Polars DataFrame as Arrow, in the types of Polars' own ``to_arrow()``.

    That conversion copies every text column row by row into a ``large_string`` (the builders
    read those); most of a build's extra time over pandas went there. Instead, the frame is
    taken as Arrow views (no copy) and each text column converted by :func:`large_from_view`,
    which shares the bytes when they lie back to back, else lets Arrow's cast copy them once.
    Any other column whose type differs between the two (categoricals, text inside lists or
    structs) is converted by Polars as before.
    """
    level = getattr(polars, "CompatLevel", None)  # Polars >= 1.1
    if level is None or not hasattr(pa, "string_view"):  # pyarrow < 16 has no views
        return frame.to_arrow()
    wanted = frame.head(0).to_arrow().schema  # the types of Polars' own conversion
    table = frame.to_arrow(compat_level=level.newest())
    columns: dict[str, pa.ChunkedArray] = {}
    for field, column in zip(wanted, table.columns, strict=True):
        if column.type == field.type:
            columns[field.name] = column
        elif is_view(column.type) and large_type(column.type) == field.type:
            columns[field.name] = large_from_view(column)
    rest = [name for name in wanted.names if name not in columns]
    if rest:
        columns.update(zip(rest, frame.select(rest).to_arrow().columns, strict=True))
    return pa.Table.from_arrays([columns[name] for name in wanted.names], schema=wanted)


def spooled(reader: pa.RecordBatchReader, directory: str | None = None) -> pa.Table:
    """The rows of ``reader`` as a table memory-mapped from an Arrow IPC spool file.

    Each batch is written as it arrives and then dropped, so the stream is never held on the
    heap whole (``read_all`` would); the table's buffers point into the mapped file, which the
    operating system pages in and out. A job reads its rows more than once (retries, the
    join), which a stream cannot do. String views become large strings on the way. The file
    is removed once mapped (POSIX keeps a mapping alive), else when the table is collected.
    """
    schema = pa.schema(
        [_plain_field(f) for f in reader.schema], reader.schema.metadata
    )  # fmt: skip
    fd, name = tempfile.mkstemp(prefix="netmind-frames-", suffix=".arrow", dir=directory)
    os.close(fd)
    try:
        with pa.OSFile(name, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for batch in reader:
                writer.write_batch(batch if batch.schema.equals(schema) else batch.cast(schema))
        mapped = pa.memory_map(name, "r")
        table = pa.ipc.open_file(mapped).read_all()  # zero-copy: views into the mapping
    except BaseException:
        os.unlink(name)
        raise
    try:
        os.unlink(name)
    except OSError:  # Windows: a mapped file cannot be removed yet
        weakref.finalize(table, _remove, name)
    return table


def _remove(name: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name)


def _plain_field(field: pa.Field) -> pa.Field:
    if str(field.type) == "string_view":  # pa.types.is_string_view needs pyarrow 16
        return pa.field(field.name, pa.large_string(), field.nullable, field.metadata)
    return field


def _arrow_view(table: pa.Table, start: int) -> pd.DataFrame:
    """A pandas frame over ``table``'s Arrow columns (``pd.ArrowDtype``: no copy)."""
    frame = table.to_pandas(types_mapper=pd.ArrowDtype, ignore_metadata=True)
    frame.index = pd.RangeIndex(start, start + len(frame))
    return frame
