"""The SQLite journal behind exactly-once submission and reattaching.

Per shard (its fingerprint, for one base URL) it records the input file id, the batch id and the
last status seen, before and after each remote step, so a crashed or restarted process finds
the batch it already paid for. Per job it records the call's options (template, model,
parameters; never the API key, never any row's text), so ``BatchJob.attach(job_id, frame=df)``
needs nothing else. Per provider file (a job's inputs, its batches' output and error files) it
records the job, the kind and the size, so the files can be listed and deleted later
(``netmind-frames files``): the provider's storage is limited.

Every operation opens its own short transaction (``BEGIN IMMEDIATE``), so two processes, or two
threads, can share one journal. A shard being submitted is *claimed*: a second process that
wants the same shard waits for the claim to end instead of submitting it again.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..build._private import FILE_MODE, private_file, private_home

SCHEMA_VERSION = 1
# Tables are only ever added (CREATE TABLE IF NOT EXISTS), never changed: an older journal
# gains the new ones when it is opened, so SCHEMA_VERSION stays.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shards (
    base_url    TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    file_id     TEXT,
    batch_id    TEXT,
    status      TEXT,
    owner       TEXT,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (base_url, fingerprint)
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id     TEXT PRIMARY KEY,
    base_url   TEXT NOT NULL,
    options    TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_plans (
    job_id     TEXT PRIMARY KEY,
    base_url   TEXT NOT NULL,
    input      TEXT,
    n_rows     INTEGER NOT NULL,
    shard_keys TEXT NOT NULL,
    cancelled  INTEGER NOT NULL DEFAULT 0,
    local      INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    base_url   TEXT NOT NULL,
    file_id    TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    batch_id   TEXT,
    kind       TEXT NOT NULL,
    bytes      INTEGER,
    created_at REAL NOT NULL,
    deleted_at REAL,
    PRIMARY KEY (base_url, file_id)
);
"""

#: A claim whose owner stopped updating it for this long is taken over.
STALE_CLAIM_SECONDS = 600.0
#: How long a second process waits for another's claim before giving up.
CLAIM_WAIT_SECONDS = 900.0


@dataclass(frozen=True)
class JobRecord:
    """What the journal knows about one job: where it ran, what it read, its shards."""

    job_id: str
    base_url: str
    input: str | None
    """The input file's absolute path (None for an in-memory frame)."""
    n_rows: int
    shard_keys: tuple[str, ...]
    """The first-round shard fingerprints, in shard order."""
    cancelled: bool
    created_at: float
    local: bool = False
    """Submitted to the in-process local server (``local=True``), gone with its process."""


@dataclass(frozen=True)
class ShardRecord:
    """What the journal knows about one shard."""

    fingerprint: str
    file_id: str | None
    batch_id: str | None
    status: str | None


FileKind = Literal["input", "output", "error"]


@dataclass(frozen=True)
class StoredFile:
    """A file on the provider that one of this machine's jobs uploaded or produced."""

    base_url: str
    file_id: str
    job_id: str
    batch_id: str | None
    kind: FileKind
    """``input`` (uploaded requests), ``output`` or ``error`` (a batch's results)."""
    bytes: int | None
    """The size, when known (None: not downloaded by this machine)."""
    created_at: float
    """When the journal first learned of the file (seconds since the epoch)."""


class Journal:
    """The journal file ``journal-1.sqlite3`` under ``home``."""

    def __init__(
        self,
        home: Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        private_home(home)
        # The number is the schema's version: a release that changes the schema opens a new
        # file, so a journal written by another version can never break this one.
        self.path = home / f"journal-{SCHEMA_VERSION}.sqlite3"
        # os.urandom, as uuid4 draws it: importing uuid (and platform) slows `status`.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
        self._sleep = sleep
        self._clock = clock
        # Owner-only: the journal holds templates, input paths and ids. SQLite gives its -wal
        # and -shm files the database file's mode, so the file is made 0600 before it opens it.
        private_file(self.path)
        self._create()

    def _create(self) -> None:
        # Switching to WAL needs a moment alone with the file, and SQLite does not wait for
        # that: two processes opening a new journal at once retry instead.
        for attempt in range(50):
            db = sqlite3.connect(self.path, timeout=30.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                db.executescript(_SCHEMA)
                self._check_side_files()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
            finally:
                db.close()
            self._sleep(0.05)

    def _check_side_files(self) -> None:
        # SQLite creates -wal and -shm with the database's mode; a journal file made by an
        # older version (0644) would pass that on, so they are checked while they exist.
        for suffix in ("-wal", "-shm"):
            side = Path(f"{self.path}{suffix}")
            with contextlib.suppress(OSError):  # gone (no connection open) or not ours
                if stat.S_IMODE(side.stat().st_mode) & 0o077:
                    os.chmod(side, FILE_MODE)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r})"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        finally:
            db.close()

    # -- shards ---------------------------------------------------------------------------

    def shard(self, base_url: str, fingerprint: str) -> ShardRecord | None:
        """The record of one shard, or None."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT file_id, batch_id, status FROM shards "
                "WHERE base_url = ? AND fingerprint = ?",
                (base_url, fingerprint),
            ).fetchone()
        return None if row is None else ShardRecord(fingerprint, *row)

    def claim(self, base_url: str, fingerprint: str) -> ShardRecord:
        """Claim a shard for submission, or learn that it was submitted already.

        A record with a ``batch_id``: submitted already (no claim taken). Without one: this
        process now holds the claim, and ``file_id`` is set when an earlier attempt uploaded
        the file. While another live process holds the claim, waits for it.
        """
        deadline = self._clock() + CLAIM_WAIT_SECONDS
        while True:
            with self._transaction() as db:
                row = db.execute(
                    "SELECT file_id, batch_id, status, owner, updated_at FROM shards "
                    "WHERE base_url = ? AND fingerprint = ?",
                    (base_url, fingerprint),
                ).fetchone()
                if row is not None and row[1] is not None:
                    return ShardRecord(fingerprint, row[0], row[1], row[2])
                if row is None or self._may_take(row[3], row[4]) or self._clock() > deadline:
                    db.execute(
                        "INSERT INTO shards (base_url, fingerprint, file_id, owner, updated_at) "
                        "VALUES (?, ?, ?, ?, ?) ON CONFLICT (base_url, fingerprint) "
                        "DO UPDATE SET owner = excluded.owner, updated_at = excluded.updated_at",
                        (base_url, fingerprint, None, self.owner, self._clock()),
                    )
                    return ShardRecord(fingerprint, row[0] if row else None, None, None)
            self._sleep(0.5)

    def _may_take(self, owner: str | None, updated_at: float) -> bool:
        if owner is None or owner == self.owner:
            return True
        if self._clock() - updated_at > STALE_CLAIM_SECONDS:
            return True
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        return host == socket.gethostname() and pid.isdigit() and not _alive(int(pid))

    def claim_again(self, base_url: str, fingerprint: str) -> None:
        """Claim a shard whose recorded batch is gone or failed: it will be submitted anew."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET file_id = NULL, batch_id = NULL, status = NULL, owner = ?, "
                "updated_at = ? WHERE base_url = ? AND fingerprint = ?",
                (self.owner, self._clock(), base_url, fingerprint),
            )

    def record_upload(self, base_url: str, fingerprint: str, file_id: str) -> None:
        """The shard's input file is uploaded (the claim is refreshed)."""
        self._update(base_url, fingerprint, "file_id = ?, owner = ?", (file_id, self.owner))

    def record_batch(self, base_url: str, fingerprint: str, batch_id: str, status: str) -> None:
        """The shard's batch exists (created, or found on the server); the claim ends."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO shards (base_url, fingerprint, batch_id, status, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (base_url, fingerprint) DO UPDATE SET "
                "batch_id = excluded.batch_id, status = excluded.status, owner = NULL, "
                "updated_at = excluded.updated_at",
                (base_url, fingerprint, batch_id, status, self._clock()),
            )

    def record_status(self, base_url: str, batch_id: str, status: str) -> None:
        """The last status seen of a batch."""
        with self._transaction() as db:
            db.execute(
                "UPDATE shards SET status = ?, updated_at = ? WHERE base_url = ? AND batch_id = ?",
                (status, self._clock(), base_url, batch_id),
            )

    def release(self, base_url: str, fingerprint: str) -> None:
        """Give up a claim (submission failed): another process may try."""
        self._update(base_url, fingerprint, "owner = NULL", ())

    def _update(self, base_url: str, fingerprint: str, assignments: str, values: tuple) -> None:
        with self._transaction() as db:
            db.execute(
                f"UPDATE shards SET {assignments}, updated_at = ? "
                "WHERE base_url = ? AND fingerprint = ?",
                (*values, self._clock(), base_url, fingerprint),
            )

    # -- jobs -----------------------------------------------------------------------------

    def save_job(self, job_id: str, base_url: str, options: dict[str, Any]) -> None:
        """Remember the options a job was submitted with (JSON-serialisable values only).

        A re-run updates them but keeps ``created_at``: the job's first submission time."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (job_id, base_url, options, created_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (job_id) DO UPDATE SET base_url = excluded.base_url, "
                "options = excluded.options",
                (job_id, base_url, json.dumps(options, sort_keys=True), self._clock()),
            )

    def save_plan(
        self,
        job_id: str,
        base_url: str,
        input: str | None,
        n_rows: int,
        keys: list[str],
        *,
        local: bool = False,
    ) -> None:
        """Remember a job's shards (and input file), so it can be found by its id alone.

        A re-run (or a reattach) keeps ``created_at``: the job's first submission time."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO job_plans (job_id, base_url, input, n_rows, shard_keys, local, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET "
                "base_url = excluded.base_url, input = COALESCE(excluded.input, input), "
                "local = excluded.local",
                (job_id, base_url, input, n_rows, json.dumps(keys), int(local), self._clock()),
            )

    def job_of_batch(self, batch_id: str) -> str | None:
        """The id of the job one of whose first-round shards became ``batch_id``."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT fingerprint FROM shards WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            if row is None:
                return None
            found = db.execute(
                "SELECT job_id FROM job_plans WHERE instr(shard_keys, ?) > 0 "
                "ORDER BY created_at DESC",
                (json.dumps(row[0]),),
            ).fetchone()
        return None if found is None else str(found[0])

    def mark_cancelled(self, job_id: str) -> None:
        """The job was cancelled: its shards not yet submitted never will be."""
        with self._transaction() as db:
            db.execute("UPDATE job_plans SET cancelled = 1 WHERE job_id = ?", (job_id,))

    def job(self, job_id: str) -> JobRecord | None:
        """The record of one job, or None."""
        jobs = self._jobs("WHERE job_id = ?", (job_id,))
        return jobs[0] if jobs else None

    def recent_jobs(self, limit: int = 20) -> list[JobRecord]:
        """The newest jobs first."""
        return self._jobs("ORDER BY created_at DESC LIMIT ?", (limit,))

    def _jobs(self, where: str, values: tuple) -> list[JobRecord]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT job_id, base_url, input, n_rows, shard_keys, cancelled, created_at, "
                f"local FROM job_plans {where}",
                values,
            ).fetchall()
        return [
            JobRecord(
                r[0], r[1], r[2], int(r[3]), tuple(json.loads(r[4])), bool(r[5]), r[6], bool(r[7])
            )
            for r in rows
        ]

    def job_options(self, job_id: str) -> dict[str, Any] | None:
        """The options a job was submitted with, or None when the journal does not know it."""
        with self._transaction() as db:
            row = db.execute("SELECT options FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    # -- files on the provider ----------------------------------------------------------

    def record_file(
        self,
        base_url: str,
        file_id: str,
        job_id: str,
        kind: FileKind,
        *,
        batch_id: str | None = None,
        size: int | None = None,
    ) -> None:
        """Remember a provider file of a job (again: fills in a size or batch learned later)."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO files (base_url, file_id, job_id, batch_id, kind, bytes, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (base_url, file_id) DO UPDATE SET "
                "batch_id = COALESCE(excluded.batch_id, batch_id), "
                "bytes = COALESCE(excluded.bytes, bytes)",
                (base_url, file_id, job_id, batch_id, kind, size, self._clock()),
            )

    def mark_files_deleted(self, files: Sequence[tuple[str, str]]) -> None:
        """These files (``(base_url, file_id)``) are gone from the provider: they are listed
        no more. One transaction for all: each commit waits for the disk."""
        with self._transaction() as db:
            now = self._clock()
            db.executemany(
                "UPDATE files SET deleted_at = ? WHERE base_url = ? AND file_id = ?",
                [(now, base_url, file_id) for base_url, file_id in files],
            )

    def files(
        self,
        *,
        job_id: str | None = None,
        kinds: tuple[FileKind, ...] = ("input", "output", "error"),
        created_before: float | None = None,
    ) -> list[StoredFile]:
        """The files not deleted yet, oldest first, optionally of one job and older than a time."""
        where = ["deleted_at IS NULL", f"kind IN ({', '.join('?' * len(kinds))})"]
        values: list[Any] = list(kinds)
        if job_id is not None:
            where.append("job_id = ?")
            values.append(job_id)
        if created_before is not None:
            where.append("created_at < ?")
            values.append(created_before)
        with self._transaction() as db:
            rows = db.execute(
                "SELECT base_url, file_id, job_id, batch_id, kind, bytes, created_at FROM files "
                f"WHERE {' AND '.join(where)} ORDER BY created_at, file_id",
                values,
            ).fetchall()
        return [StoredFile(*row) for row in rows]


def partitioned_record(home: Path, job_id: str) -> Path:
    """Where the driver of a Dask or Spark job keeps its partitions' batches (not in the
    journal: each partition is a job of its own, journaled on the worker that ran it)."""
    return home / "partitioned" / f"{job_id}.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
