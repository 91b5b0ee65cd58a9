"""Provider storage is not ours to fill: the journal's record of a job's files, and deleting them.

Netmind gives an organization 100 GB of file storage in all. A job's input files are of no use
once its result is written (the batches are done, the answers are on disk), so they are
deleted then, unless the caller keeps them (``keep_files=True``); its output and error files
stay, so ``netmind-frames result JOB`` still works. A deletion that fails is logged and never
fails the job: ``netmind-frames files --delete`` tries again later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._errors import FileTransferError
from ..transport._connection import Connection
from ._journal import Journal, StoredFile

log = logging.getLogger("netmind_frames")

#: Files deleted at once.
DELETES = 4


def remember_input(
    connection: Connection,
    journal: Journal,
    job_id: str,
    key: str,
    batch: Any | None = None,
    size: int | None = None,
) -> None:
    """Record the input file of the shard ``key`` (the journal's upload, or the batch's)."""
    base_url = connection.settings.base_url
    shard = journal.shard(base_url, key)
    file_id = (shard.file_id if shard else None) or getattr(batch, "input_file_id", None)
    if not file_id:
        return  # not known here (Netmind's create answer has none): the next poll tells
    batch_id = getattr(batch, "id", None) or (shard.batch_id if shard else None)
    journal.record_file(base_url, file_id, job_id, "input", batch_id=batch_id, size=size)


def remember_results(
    connection: Connection,
    journal: Journal,
    job_id: str,
    batch: Any,
    sizes: dict[str, int] | None = None,
) -> None:
    """Record a terminal batch's output and error files (``sizes``: by file id, if known)."""
    for kind, file_id in (("output", batch.output_file_id), ("error", batch.error_file_id)):
        if file_id:
            journal.record_file(
                connection.settings.base_url,
                file_id,
                job_id,
                kind,  # type: ignore[arg-type]
                batch_id=batch.id,
                size=(sizes or {}).get(file_id),
            )


def delete_stored(
    connection: Connection, journal: Journal, files: Sequence[StoredFile]
) -> list[StoredFile]:
    """Delete ``files`` on the provider, logging each failure; the ones now gone.

    A file that was gone already counts as deleted: the journal stops listing it either way.
    """

    def delete(stored: StoredFile) -> FileTransferError | None:
        try:
            connection.files.delete(stored.file_id)
        except FileTransferError as exc:
            return exc
        return None

    # Each delete is a round trip: a few at once, and the journal written from this thread.
    with ThreadPoolExecutor(DELETES, thread_name_prefix="netmind-frames-delete") as pool:
        outcomes = list(pool.map(delete, files))
    gone = []
    for stored, exc in zip(files, outcomes, strict=True):
        if exc is not None:
            log.warning(
                "could not delete %s file %s of job %s (%s); `netmind-frames files --delete` "
                "tries again",
                stored.kind,
                stored.file_id,
                stored.job_id,
                exc,
            )
            continue
        gone.append(stored)
    if gone:
        journal.mark_files_deleted([(stored.base_url, stored.file_id) for stored in gone])
    return gone
