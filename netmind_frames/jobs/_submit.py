"""Exactly-once submission of shards: never pay twice for the same requests.

For each shard, in order: the journal (this machine), then the batches' ``metadata`` on the
server (a bounded scan of ``batches.list``, for when the journal is gone), and only then an
upload and a ``batches.create``. The create is sent without the SDK's automatic retries: after
an answer that was lost (timeout, 5xx, dropped connection), the fingerprint is looked up before
creating again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import openai

from .._timing import timed
from ..build._requests import RequestPlan
from ..transport._connection import Connection
from ._journal import Journal, ShardRecord

log = logging.getLogger("netmind_frames")

FINGERPRINT_KEY = "netmind_frames_fingerprint"
#: How many of the newest batches a lookup by fingerprint reads (100 per page).
SCAN_LIMIT = 500
_CREATE_ATTEMPTS = 6
#: Outcomes after which the batch may or may not exist on the server.
_UNKNOWN_OUTCOME = (openai.APIConnectionError, openai.InternalServerError)
_TRANSIENT = (*_UNKNOWN_OUTCOME, openai.RateLimitError)
#: Whole lookups by fingerprint (each with the client's own retries) before giving up.
_LOOKUP_ATTEMPTS = 4


def submit_plan(
    connection: Connection,
    journal: Journal,
    plan: RequestPlan,
    *,
    completion_window: str,
    metadata: Mapping[str, str],
    resubmit: bool = False,
    round_number: int = 0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Submit every shard of ``plan`` (or find it submitted already); return the batch ids.

    ``round_number`` tells retry rounds apart: a round that re-sends the same rows as an
    earlier one is a new submission, not the earlier one again.
    """
    return [
        submit_shard(
            connection,
            journal,
            shard,
            endpoint=plan.endpoint,
            index=index,
            total=len(plan.shards),
            key=shard_key(shard, round_number),
            completion_window=completion_window,
            metadata=metadata,
            resubmit=resubmit,
            sleep=sleep,
        )
        for index, shard in enumerate(plan.shards)
    ]


class ShardLike(Protocol):
    """What submission needs of a shard: its bytes (read only when uploading) and its key."""

    @property
    def data(self) -> bytes: ...

    @property
    def fingerprint(self) -> str: ...

    @property
    def n_requests(self) -> int: ...


def submit_shard(
    connection: Connection,
    journal: Journal,
    shard: ShardLike,
    *,
    endpoint: str,
    index: int,
    total: int,
    key: str,
    completion_window: str,
    metadata: Mapping[str, str],
    resubmit: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Submit one shard exactly once (journal, then metadata lookup, then create); its batch id.

    ``index`` (0-based) and ``total`` only label the batch (``netmind_frames_shard``).
    """
    base_url = connection.settings.base_url
    record = journal.claim(base_url, key)
    if record.batch_id:
        status = None if resubmit else _live_status(connection, record.batch_id)
        if status is not None and status != "failed":
            log.info(
                "shard %d: attached to batch %s (%s), from the journal",
                index + 1,
                record.batch_id,
                status,
            )
            journal.record_status(base_url, record.batch_id, status)
            return record.batch_id
        # Forced, gone, or failed validation (nothing ran, nothing billed): submit anew.
        journal.claim_again(base_url, key)
        record = ShardRecord(key, None, None, None)
    try:
        if not resubmit:
            found = find_batch(connection, key, sleep)
            if found is not None and found.status != "failed":
                log.info(
                    "shard %d: attached to batch %s (%s), found by fingerprint",
                    index + 1,
                    found.id,
                    found.status,
                )
                journal.record_batch(base_url, key, found.id, found.status)
                return str(found.id)
        metadata = {
            **metadata,
            FINGERPRINT_KEY: key,
            "netmind_frames_shard": f"{index + 1}/{total}",
        }
        body = {
            "input_file_id": record.file_id or _upload(connection, journal, shard, key),
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": metadata,
        }
        try:
            batch = _create_once(connection, key, body, sleep)
        except (openai.BadRequestError, openai.NotFoundError):
            if not record.file_id:
                raise
            # The file an earlier attempt uploaded is gone from the server: upload again.
            body["input_file_id"] = _upload(connection, journal, shard, key)
            batch = _create_once(connection, key, body, sleep)
    except BaseException:
        journal.release(base_url, key)
        raise
    journal.record_batch(base_url, key, batch.id, batch.status)
    log.info(
        "shard %d/%d: %d requests, file %s, created batch %s",
        index + 1,
        total,
        shard.n_requests,
        body["input_file_id"],
        batch.id,
    )
    return str(batch.id)


def shard_key(shard: ShardLike, round_number: int = 0) -> str:
    """The journal and metadata key of a shard: its fingerprint, marked with a retry round."""
    return shard.fingerprint if round_number == 0 else f"{shard.fingerprint}:r{round_number}"


def _upload(connection: Connection, journal: Journal, shard: ShardLike, key: str) -> str:
    with timed("upload"):
        name = f"netmind_frames-{shard.fingerprint[:16]}.jsonl"
        file_id = connection.files.upload(shard.data, name)
    journal.record_upload(connection.settings.base_url, key, file_id)
    return file_id


def _create_once(
    connection: Connection,
    fingerprint: str,
    body: dict[str, Any],
    sleep: Callable[[float], None],
) -> Any:
    """``batches.create`` without blind retries: after a lost answer, look before creating."""
    client = connection.client.with_options(max_retries=0)
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return client.batches.create(**body)
        except openai.RateLimitError:
            pass  # refused, so certainly not created
        except _UNKNOWN_OUTCOME as exc:
            log.info(
                "batch create: %s; looking for the batch before trying again", type(exc).__name__
            )
            found = find_batch(connection, fingerprint, sleep)
            if found is not None:
                return found
        if attempt == _CREATE_ATTEMPTS - 1:
            break
        sleep(min(0.5 * 2**attempt, 8.0))
    return client.batches.create(**body)  # the last try raises whatever it meets


def find_batch(
    connection: Connection, fingerprint: str, sleep: Callable[[float], None] = time.sleep
) -> Any | None:
    """The newest batch whose metadata carries ``fingerprint``, among the newest SCAN_LIMIT.

    The lookup only reads, so it is tried again (as a whole) after transient errors: on a
    flaky network, giving up here would abandon a submission that may be half done.
    """
    for attempt in range(_LOOKUP_ATTEMPTS):
        try:
            page = connection.client.batches.list(limit=100)
            for seen, batch in enumerate(page):
                if seen >= SCAN_LIMIT:
                    break
                if (batch.metadata or {}).get(FINGERPRINT_KEY) == fingerprint:
                    return batch
            return None
        except _TRANSIENT:
            if attempt == _LOOKUP_ATTEMPTS - 1:
                raise
            log.info("batch lookup failed; trying again")
            sleep(min(0.5 * 2**attempt, 8.0))
    return None


def _live_status(connection: Connection, batch_id: str) -> str | None:
    """The batch's status, or None when the server does not know it (any more)."""
    try:
        return str(connection.client.batches.retrieve(batch_id).status)
    except openai.NotFoundError:
        return None
