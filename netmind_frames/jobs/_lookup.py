"""Find a shard's batch on the server through two channels, and say when neither can tell.

Channel one is the shard's key in the batch's ``metadata``: it works where the provider stores
and echoes metadata, which no public source promises for Netmind (batch-api.md §5.2b). Channel
two rests only on documented behaviour: the shard's input file is uploaded under a name made of
its key (:func:`file_name`), the File API lists files with their names, and a listed batch shows
its ``input_file_id``.

Each listed batch is then *ours* (a channel confirms it), *other* (a channel excludes it: an
``input_file_id`` that is not one of our files, or a metadata that lacks our key, since our
creates always send metadata) or *undetermined* (both ``metadata`` and ``input_file_id`` null).
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Literal

import openai

from ..transport._connection import Connection

log = logging.getLogger("netmind_frames")

FINGERPRINT_KEY = "netmind_frames_fingerprint"
#: How many of the newest batches a lookup reads (100 per page).
SCAN_LIMIT = 500
#: Errors after which a read-only lookup is worth another try.
TRANSIENT = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)
#: Whole lookups (each with the client's own retries) before giving up.
_LOOKUP_ATTEMPTS = 4

Verdict = Literal["ours", "other", "undetermined"]


def file_name(key: str) -> str:
    """The name a shard's input file is uploaded under: its full key, as Netmind's SDK allows.

    Netmind's SDK keeps a name's stem to ``[A-Za-z0-9_-]``, so a retry round's ``:rN`` is
    spelled ``-rN`` (a fingerprint is hex, so the name stays unambiguous).
    """
    return f"netmind_frames-{key.replace(':', '-')}.jsonl"


def classify(
    batch: Any, key: str, file_ids: Collection[str], *, file_decides: bool = False
) -> Verdict:
    """Whether ``batch`` is the one submitted for ``key`` (with one of ``file_ids``).

    ``file_decides``: a present ``input_file_id`` outweighs the metadata. Right after a create,
    the file it was sent with is known, and an older batch of the same key (a failed one, or
    one a ``resubmit`` replaces) must not pass for the new one.
    """
    file_id = getattr(batch, "input_file_id", None) or None
    metadata = getattr(batch, "metadata", None)
    by_file = None if file_id is None else file_id in file_ids
    by_metadata = None if metadata is None else metadata.get(FINGERPRINT_KEY) == key
    if by_file or (by_metadata and not (file_decides and by_file is False)):
        return "ours"
    if by_file is None and by_metadata is None:
        return "undetermined"
    return "other"


@dataclass(frozen=True)
class Sighting:
    """What a scan of the batch list saw: our batches (newest first), and how many it could
    not place."""

    ours: list[Any]
    undetermined: int


def scan(
    connection: Connection,
    key: str,
    file_ids: Collection[str],
    sleep: Callable[[float], None] = time.sleep,
    *,
    file_decides: bool = False,
) -> Sighting:
    """Classify the newest SCAN_LIMIT batches (see :func:`classify`)."""
    return sight(newest_batches(connection, sleep), key, file_ids, file_decides=file_decides)


def sight(
    batches: list[Any], key: str, file_ids: Collection[str], *, file_decides: bool = False
) -> Sighting:
    """Classify listed batches (see :func:`classify`)."""
    ours, undetermined = [], 0
    for batch in batches:
        verdict = classify(batch, key, file_ids, file_decides=file_decides)
        if verdict == "ours":
            ours.append(batch)
        elif verdict == "undetermined":
            undetermined += 1
    return Sighting(ours, undetermined)


def newest_batches(
    connection: Connection, sleep: Callable[[float], None] = time.sleep
) -> list[Any]:
    """The newest SCAN_LIMIT batches, newest first.

    The lookup only reads, so it is tried again (as a whole) after transient errors: on a
    flaky network, giving up here would abandon a submission that may be half done.
    """
    for attempt in range(_LOOKUP_ATTEMPTS):
        try:
            page = connection.client.batches.list(limit=100)
            return list(itertools.islice(page, SCAN_LIMIT))
        except TRANSIENT:
            if attempt == _LOOKUP_ATTEMPTS - 1:
                raise
            log.info("batch lookup failed; trying again")
            sleep(min(0.5 * 2**attempt, 8.0))
    raise AssertionError("unreachable")
