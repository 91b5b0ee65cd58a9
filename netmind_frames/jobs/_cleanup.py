"""Housekeeping of the provider files this machine's jobs left: ``netmind-frames files``.

The journal knows each job's input files (uploaded) and result files (output and error), with
sizes where this machine saw them. Listing reads only the journal; deleting asks the server
first whether a file's batch still runs, and leaves those.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from .._errors import InputError
from ..transport._config import resolve_home, resolve_settings
from ..transport._connection import Connection, connect
from ._journal import Journal, StoredFile
from ._rounds import TERMINAL_STATUSES
from ._storage import delete_stored


@dataclass(frozen=True)
class Cleanup:
    """What ``delete_known`` did: the files deleted, and those left with the reason why."""

    deleted: list[StoredFile]
    left: list[tuple[StoredFile, str]]


def known_files(
    job_id: str | None = None, older_than_days: float | None = None
) -> list[StoredFile]:
    """The provider files this machine's journal knows and has not deleted, oldest first.

    ``job_id``: only that job's; ``older_than_days``: only those the journal learned of at
    least that many days ago.
    """
    if older_than_days is not None and not (
        isinstance(older_than_days, (int, float)) and 0 <= older_than_days < float("inf")
    ):
        raise InputError(f"older_than_days must be a number of days >= 0, not {older_than_days!r}")
    journal = Journal(resolve_home())
    before = None if older_than_days is None else time.time() - older_than_days * 86400
    return journal.files(job_id=job_id, created_before=before)


def delete_known(files: Sequence[StoredFile], **connection: Any) -> Cleanup:
    """Delete ``files`` (from :func:`known_files`) on their providers.

    Files of a batch still running are left (asked of the server now), and so are those of
    jobs that ran on an in-process local server (gone with its process). ``connection``
    (``provider=``, ``api_key=``) applies to every base URL.
    """
    journal = Journal(resolve_home())
    deleted: list[StoredFile] = []
    left: list[tuple[StoredFile, str]] = []
    by_base: dict[str, list[StoredFile]] = {}
    for stored in files:
        record = journal.job(stored.job_id)
        if record is not None and record.local:
            left.append((stored, "its job ran on a local server that stopped with its process"))
        else:
            by_base.setdefault(stored.base_url, []).append(stored)
    for base_url, group in by_base.items():
        conn = connect(resolve_settings(**{**connection, "base_url": base_url}))
        running = _running_batches(conn, {f.batch_id for f in group if f.batch_id})
        ready = []
        for stored in group:
            if stored.batch_id in running:
                left.append((stored, f"batch {stored.batch_id} is {running[stored.batch_id]}"))
            else:
                ready.append(stored)
        gone = delete_stored(conn, journal, ready)
        deleted += gone
        left += [(f, "deletion failed (see the log)") for f in ready if f not in gone]
    return Cleanup(deleted, left)


def _running_batches(connection: Connection, batch_ids: set[str]) -> dict[str, str]:
    """The batches of ``batch_ids`` that are not terminal now, with their status."""
    running = {}
    for batch_id in sorted(batch_ids):
        try:
            status = str(connection.client.batches.retrieve(batch_id).status)
        except openai.NotFoundError:
            continue  # the batch is gone: nothing reads its files any more
        if status not in TERMINAL_STATUSES:
            running[batch_id] = status
    return running
