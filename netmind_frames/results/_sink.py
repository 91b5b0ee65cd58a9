"""Where joined rows go: one Parquet file, or a dataset (a directory of part files), local or
on object storage.

A :class:`ParquetSink` checks its target when made (before anything is uploaded or paid for),
takes the joined windows one by one, and writes them under a temporary name next to the
target: a single file through one ``ParquetWriter``; a dataset as one part file per window
(``part-00000.parquet``...), each written as its window finishes. :meth:`ParquetSink.commit`
then moves the result into place (a local rename; on object storage a copy per object, and a
``_SUCCESS`` marker last for a dataset), and :meth:`ParquetSink.abort` removes what was
written: a failed run leaves no partial OUT.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .._errors import InputError
from ..build._storage_io import Remote, label, local_path, remote, storage_error

#: The marker a committed dataset on object storage ends with (Hadoop's, which Spark reads).
SUCCESS = "_SUCCESS"


class ParquetSink:
    """A Parquet file or dataset being written; OUT appears only on :meth:`commit`.

    ``target`` is a local path or a URL (``s3://``, ``gs://``, ``az://``, ``abfs://``,
    ``file://``); ``dataset=True`` makes it a directory of part files; ``storage_options`` go
    to the storage library; ``name`` is the argument or flag errors name. ``check=False``
    skips the checks of the target (a local file written as it always was: the errors are
    then the writer's own).
    """

    def __init__(
        self,
        target: str | Path,
        *,
        dataset: bool = False,
        storage_options: Mapping[str, Any] | None = None,
        name: str = "output=",
        check: bool = True,
    ) -> None:
        self.target = str(target)
        self.dataset = dataset
        self.name = name
        self._local = local_path(target)
        self._remote: Remote | None = None
        if self._local is None:
            self._remote = remote(self.target, storage_options, name)
        self._writer: pq.ParquetWriter | None = None
        self._stream: Any = None
        self._parts = 0
        self._tmp = self._temporary_name()
        if self._local is not None:
            self._remove_stale_temporaries(self._local)
        if check:
            self._check()

    # -- checks, before anything is paid for -----------------------------------------------

    def _check(self) -> None:
        if self._local is not None:
            self._check_local(self._local)
        else:
            assert self._remote is not None
            try:
                self._check_remote(self._remote)
            except InputError:
                raise
            except OSError as exc:
                raise storage_error(self.name, self.target, exc) from None

    def _check_local(self, path: Path) -> None:
        folder = path.parent
        if not folder.is_dir():
            raise InputError(
                f"{label(self.name, self.target)}: the directory {folder} does not exist"
            )
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(
                f"{label(self.name, self.target)}: the directory {folder} is not writable"
            )
        if self.dataset:
            if path.is_file():
                raise InputError(
                    f"{label(self.name, self.target)} is a file, not a dataset directory"
                )
            if path.is_dir() and any(path.iterdir()):
                raise InputError(
                    f"{label(self.name, self.target)}: the directory exists and is not empty "
                    "(remove it or choose another)"
                )
        elif path.is_dir():
            raise InputError(f"{label(self.name, self.target)} is a directory")

    def _check_remote(self, where: Remote) -> None:
        bucket = where.path.split("/", 1)[0]
        if not where.fs.exists(bucket):
            raise InputError(
                f"{label(self.name, self.target)}: no such bucket or container {bucket!r}"
            )
        if self.dataset:
            if where.fs.isfile(where.path):
                raise InputError(f"{label(self.name, self.target)} is a file, not a dataset prefix")
            if where.fs.isdir(where.path) and where.fs.ls(where.path, detail=False):
                raise InputError(
                    f"{label(self.name, self.target)}: the prefix exists and is not empty "
                    "(remove it or choose another)"
                )
        elif where.fs.isdir(where.path):
            raise InputError(f"{label(self.name, self.target)} is a directory (prefix), not a file")

    # -- writing ----------------------------------------------------------------------------

    def _temporary_name(self) -> str:
        """A hidden sibling of the target (dataset readers skip names starting with ``.``)."""
        leaf = self.target.rstrip("/").rsplit("/", 1)[-1]
        hidden = f".{leaf}.{os.getpid()}.tmp"
        if self._local is not None:
            return str(self._local.with_name(hidden))
        assert self._remote is not None
        return f"{self._remote.path.rstrip('/').rsplit('/', 1)[0]}/{hidden}"

    @staticmethod
    def _remove_stale_temporaries(target: Path) -> None:
        """Remove what a killed writer of ``target`` left (its process is gone): a job's OUT
        is written while its batches run, so a kill can come mid-write."""
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            pid = leftover.name[len(target.name) + 2 : -len(".tmp")]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)

    def write(self, table: pa.Table) -> None:
        """Write one window: appended to the file, or as the dataset's next part file.

        An ``OSError`` names OUT, never the temporary name (a caller tells the user what to
        fix, and the temporary name is gone by then)."""
        try:
            self._write(table)
        except OSError as exc:
            raise OSError(exc.errno, self._reason(exc)) from exc

    def _reason(self, exc: OSError) -> str:
        # Arrow's messages quote the file then add "Detail: [errno 21] Is a directory".
        text = (exc.strerror or str(exc)).split("Detail: ")[-1]
        return text.replace(self._tmp, self._location)

    @property
    def _location(self) -> str:
        return str(self._local) if self._local is not None else self._remote.path  # type: ignore[union-attr]

    def _write(self, table: pa.Table) -> None:
        if self.dataset:
            part = f"{self._tmp}/part-{self._parts:05d}.parquet"
            if self._remote is None:
                Path(self._tmp).mkdir(exist_ok=True)
                pq.write_table(table, part)
            else:
                with self._remote.fs.open(part, "wb") as stream:
                    pq.write_table(table, stream)
            self._parts += 1
            return
        if self._writer is None:
            if self._remote is None:
                self._writer = pq.ParquetWriter(self._tmp, table.schema)
            else:
                self._stream = self._remote.fs.open(self._tmp, "wb")
                self._writer = pq.ParquetWriter(self._stream, table.schema)
        self._writer.write_table(table)

    def commit(self) -> None:
        """Move what was written into place: OUT appears, complete."""
        self._close()
        if self.dataset and self._parts == 0:
            return  # no rows, no dataset (a file sink with no rows writes no file either)
        if self._remote is None:
            os.replace(self._tmp, str(self._local))
            return
        fs, target = self._remote.fs, self._remote.path.rstrip("/")
        if not self.dataset:
            fs.mv(self._tmp, target)
            return
        for number in range(self._parts):
            leaf = f"part-{number:05d}.parquet"
            fs.mv(f"{self._tmp}/{leaf}", f"{target}/{leaf}")
        fs.pipe(f"{target}/{SUCCESS}", b"")
        with contextlib.suppress(FileNotFoundError):
            fs.rm(self._tmp, recursive=True)

    def abort(self) -> None:
        """Remove what was written; OUT stays as it was."""
        with contextlib.suppress(Exception):
            self._close()
        if self._remote is None:
            tmp = Path(self._tmp)
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            return
        with contextlib.suppress(OSError):
            if self._remote.fs.exists(self._tmp):
                self._remote.fs.rm(self._tmp, recursive=True)

    def _close(self) -> None:
        writer, stream = self._writer, self._stream
        self._writer = self._stream = None
        if writer is not None:
            writer.close()
        if stream is not None:
            stream.close()

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if kind is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (one we may not signal runs too)."""
    if os.name == "nt":  # signal 0 there is CTRL_C_EVENT, not a check: assume it runs
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True
