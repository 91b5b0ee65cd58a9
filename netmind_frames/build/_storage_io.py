"""Where a file lives: a local path, or a URL on object storage (``s3://``, ``gs://``,
``az://``/``abfs://``, ``file://``), read through fsspec.

:func:`open_reader` opens a Parquet file, a Parquet dataset (a directory of Parquet files,
hive-partitioned or not: ``region=eu/part-0.parquet`` gives a ``region`` column) or a CSV or
JSONL file, local or remote, and hands out its rows as record batches in a fixed order, one
file at a time, so memory never holds more than a batch of one file.

fsspec and the storage libraries (s3fs, gcsfs, adlfs) are the optional extra ``[cloud]``,
imported only for a URL: a local path needs neither. Credentials come from the storage
library's usual environment (``AWS_*`` variables, profiles, instance roles) or the caller's
``storage_options``; they are handed to the library and never kept, logged or recorded here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .._errors import InputError

PARQUET = (".parquet", ".pq")
CSV = (".csv",)
JSONL = (".jsonl", ".ndjson")

#: The schemes read through fsspec, and the library each needs.
REMOTE = {
    "s3": "s3fs",
    "s3a": "s3fs",
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
CLOUD_EXTRA = "the cloud extra (from a clone of the repository, pip install -e '.[cloud]')"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def label(name: str, location: str | Path) -> str:
    """How an error names the argument: ``input='s3://b/k'`` (a Python keyword, ending in
    ``=``) or ``IN s3://b/k`` (the CLI's)."""
    return f"{name}{str(location)!r}" if name.endswith("=") else f"{name} {location}"


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``scheme://...``), not a local path."""
    return isinstance(location, str) and _SCHEME.match(location) is not None


def local_path(location: str | Path) -> Path | None:
    """The local path of ``location`` (a path, or a ``file://`` URL); None for remote URLs."""
    if not is_url(location):
        return Path(location)
    parts = urlsplit(str(location))
    if parts.scheme.lower() != "file":
        return None
    if parts.netloc not in ("", "localhost"):
        raise InputError(f"{location}: a file:// URL names a local path (file:///abs/path)")
    return Path(unquote(parts.path))


@dataclass(frozen=True)
class Remote:
    """A URL on object storage: its fsspec filesystem and the path inside it."""

    url: str
    fs: Any  # fsspec.AbstractFileSystem (an optional dependency: not imported for typing)
    path: str

    def child(self, name: str) -> Remote:
        """The location ``name`` inside this one (a key under this prefix)."""
        return Remote(f"{self.url.rstrip('/')}/{name}", self.fs, f"{self.path.rstrip('/')}/{name}")


def remote(
    url: str, storage_options: Mapping[str, Any] | None = None, name: str = "input="
) -> Remote:
    """The filesystem of ``url`` (``s3://bucket/key``...), or an :class:`InputError` naming
    ``name`` (the argument or flag) when the URL is malformed or its library is missing."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if "@" in parts.netloc and scheme in REMOTE and ":" in parts.netloc.split("@")[0]:
        raise InputError(
            f"{name.rstrip('=')}: put credentials in the environment or storage_options, not in "
            "the URL"
        )
    if scheme not in REMOTE:
        known = ", ".join(f"{s}://" for s in ("s3", "gs", "az", "abfs", "file"))
        raise InputError(f"{label(name, url)}: unknown storage scheme {scheme}:// (use {known})")
    if not parts.netloc:
        raise InputError(f"{label(name, url)}: the URL names no bucket or container")
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{label(name, url)}: reading {scheme}:// needs {CLOUD_EXTRA}") from None
    try:
        fs, path = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    except ImportError:
        raise InputError(
            f"{label(name, url)}: {scheme}:// needs {REMOTE[scheme]}: {CLOUD_EXTRA}"
        ) from None
    except (TypeError, ValueError) as exc:  # a bad storage option
        raise InputError(f"{label(name, url)}: {type(exc).__name__}: {exc}") from None
    return Remote(url, fs, str(path))


def storage_error(name: str, location: str, exc: BaseException) -> InputError:
    """``exc`` (from the storage library) as an error naming the argument, in one line."""
    what = str(exc) or type(exc).__name__
    if isinstance(exc, FileNotFoundError):
        what = "no such file, directory, bucket or container"
    elif isinstance(exc, PermissionError):
        what = f"access denied ({what}); check the storage credentials"
    return InputError(f"{label(name, location)}: {' '.join(what.split())}")


class Reader:
    """The rows of one input, as record batches in a fixed order.

    ``table`` is the whole input when it was read whole (CSV, JSONL); else None, and
    :meth:`batches` streams it.
    """

    schema: pa.Schema
    n_rows: int
    table: pa.Table | None = None

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        """The rows in order, ``columns`` only (all if None), at most ``batch_size`` at once."""
        raise NotImplementedError


class _ParquetFileReader(Reader):
    """One local Parquet file (as the CLI has always read it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with pq.ParquetFile(path) as file:
            self.schema = file.schema_arrow
            self.n_rows = file.metadata.num_rows

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        with pq.ParquetFile(self.path) as file:
            yield from file.iter_batches(batch_size=batch_size, columns=columns)


class _DatasetReader(Reader):
    """A Parquet dataset (a directory, local or remote) or a remote Parquet file, file by file
    in path order; hive partition keys (``key=value`` directories) become columns."""

    def __init__(self, source: str, filesystem: Any, directory: bool) -> None:
        self.dataset = ds.dataset(
            source,
            filesystem=filesystem,
            format="parquet",
            partitioning="hive" if directory else None,
        )
        self.schema = self.dataset.schema
        self.n_rows = self.dataset.count_rows()

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        names = list(self.schema.names if columns is None else columns)
        for fragment in self.dataset.get_fragments():  # in path order: the same every time
            yield from fragment.to_batches(
                schema=self.schema,
                columns=names,
                batch_size=batch_size,
                batch_readahead=1,  # one batch ahead, not 16: memory stays at a batch or two
                fragment_readahead=1,
                use_threads=False,
            )


class _TextReader(Reader):
    """A CSV or JSONL file, read whole (as text: "0001" stays "0001")."""

    def __init__(self, file: Any, suffix: str) -> None:
        if suffix in CSV:
            frame = pd.read_csv(file, dtype=str)
        else:
            frame = pd.read_json(file, lines=True, dtype=False)
        self.table = pa.Table.from_pandas(frame, preserve_index=False)
        self.schema = self.table.schema
        self.n_rows = self.table.num_rows

    def batches(self, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
        assert self.table is not None
        table = self.table if columns is None else self.table.select(list(columns))
        yield from table.to_batches(max_chunksize=batch_size)


def open_reader(
    location: str | Path,
    storage_options: Mapping[str, Any] | None = None,
    name: str = "input=",
) -> Reader:
    """A reader of ``location``: a local path or ``file://`` URL (no fsspec needed), or a
    remote URL. A directory is a Parquet dataset; a file's format is its extension."""
    path = local_path(location)
    if path is not None:
        return _open_local(path, str(location), name)
    url = str(location)
    where = remote(url, storage_options, name)
    try:
        if where.fs.isdir(where.path):
            return _DatasetReader(where.path, where.fs, directory=True)
        if not where.fs.isfile(where.path):
            raise InputError(f"{label(name, url)}: no such file or directory")
        suffix = _suffix(url, name)
        if suffix in PARQUET:
            return _DatasetReader(where.path, where.fs, directory=False)
        with where.fs.open(where.path, "rb") as file:
            return _TextReader(file, suffix)
    except InputError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise storage_error(name, url, exc) from None


def _open_local(path: Path, shown: str, name: str) -> Reader:
    if path.is_dir():
        if not any(path.rglob("*.parquet")) and not any(path.rglob("*.pq")):
            raise InputError(f"{label(name, shown)}: a directory with no Parquet files")
        return _DatasetReader(str(path.resolve()), None, directory=True)
    suffix = _suffix(shown, name)
    if not path.is_file():
        raise InputError(f"{shown}: no such file")
    if suffix in PARQUET:
        return _ParquetFileReader(path.resolve())
    return _TextReader(path, suffix)


def _suffix(location: str, name: str) -> str:
    suffix = Path(urlsplit(location).path if is_url(location) else location).suffix.lower()
    if suffix not in (*PARQUET, *CSV, *JSONL):
        raise InputError(
            f"{location}: unknown input format {suffix!r} (use .parquet, .csv or .jsonl, "
            "or a directory of Parquet files)"
        )
    return suffix
