"""Results joined back onto the input, written to Parquet chunk by chunk.

The input is read again window by window (all its columns, as Arrow), each window gets its
chunk's result columns appended, and the joined window is written with one
``pyarrow.parquet.ParquetWriter`` (or as one part file per window, for a dataset): memory
holds one chunk, whatever the file's size. A :class:`ParquetSink` writes next to OUT under a
temporary name and moves it into place at the end, so OUT is either complete or untouched.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from .._timing import timed
from ..build._prefetch import prefetched
from ..build._source import FileSource, FrameSource, Source, TableSource
from ..build._storage_io import is_url
from ..results._results import RESULT_COLUMNS
from ..results._sink import ParquetSink
from ..results._structured import typed_arrow
from ._options import JobOptions


def write_joined(
    source: FileSource | TableSource,
    chunk_rows: int,
    results_of: Callable[[int], pa.Table],
    sink: ParquetSink,
    prefix: str = "",
    columns: Sequence[str] = RESULT_COLUMNS,
    extra_columns: Callable[[pa.Table], dict[str, pa.Array]] | None = None,
) -> Counter[str]:
    """Write ``source``'s rows, in order, plus the result columns to ``sink`` (committed at
    the end, or removed on an error); count the statuses.

    ``results_of(chunk number)`` gives the chunk's result table (RESULT_COLUMNS, chunk order);
    ``extra_columns(results)``, when given, adds more columns after them (structured outputs).
    """
    counts: Counter[str] = Counter()
    # The next window and its results are read while this one is joined and written. The
    # sink commits when every window is written, else removes them: never a partial OUT.
    tables = source.tables(chunk_rows)
    joined = ((table, results_of(number)) for number, (_, table) in enumerate(tables))
    windows = prefetched(joined, "netmind-frames-write")
    with sink, contextlib.closing(windows):
        for number, (table, results) in enumerate(windows):
            with timed("join"):
                if results.num_rows != table.num_rows:
                    name = "the input" if source.location is None else source.location
                    raise InputError(
                        f"{name} changed since the job was submitted: chunk "
                        f"{number} has {table.num_rows} rows, the results {results.num_rows}"
                    )
                for name in columns:
                    table = table.append_column(prefix + name, results.column(name))
                extra = {} if extra_columns is None else extra_columns(results)
                for name, values in extra.items():
                    table = table.append_column(prefix + name, values)
                for item in pc.value_counts(results.column("status")).to_pylist():
                    counts[str(item["values"])] += int(item["counts"])
            with timed("write"):
                sink.write(table)
    return counts


def write_result(
    path: str | Path,
    source: Source,
    chunk_rows: int,
    results_of: Callable[[int], pa.Table],
    options: JobOptions,
    frame_result: Callable[[], pd.DataFrame],
    *,
    dataset: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """A job's joined rows to ``path`` (a local path or a URL; with ``dataset=True`` a
    directory of part files, one per window); the count of each status.

    From a file: chunk by chunk (:func:`write_joined`, memory stays flat); from an Arrow
    table or a Polars frame the same way, so the file has the schema the CLI writes. From a
    pandas frame: the whole ``frame_result()``, which is in memory already.
    """
    plain = not dataset and not is_url(path)  # a local file, written as it always was
    sink = ParquetSink(
        path, dataset=dataset, storage_options=storage_options, name="path=", check=not plain
    )
    if isinstance(source, FrameSource):
        out = frame_result()
        with timed("write"):
            if plain:
                out.to_parquet(path)
            else:
                with sink:
                    sink.write(pa.Table.from_pandas(out))  # the index kept, as to_parquet does
        return dict(Counter(out[options.prefix + "status"].astype(str)))
    spec = options.output
    counts = write_joined(
        source,
        chunk_rows,
        results_of,
        sink,
        options.prefix,
        columns=options.result_columns,
        extra_columns=None if spec is None else (lambda t: typed_arrow(t, spec)),
    )
    return dict(counts)
