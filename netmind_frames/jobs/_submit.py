"""Exactly-once submission of shards: never pay twice for the same requests.

For each shard, in order: the journal (this machine), then the server, for when the journal is
gone: the batches whose ``metadata`` carries the shard's key or whose ``input_file_id`` is a
file uploaded under the shard's name (``_lookup``); and only then an upload and a
``batches.create``. The create is sent without the SDK's automatic retries: after an answer
that was lost (timeout, 5xx, dropped connection), the batch is looked for before creating
again. When neither channel can tell whether a batch exists for a file of ours (a provider that
shows neither metadata nor input_file_id), nothing is created: SubmissionUnknownError says how
to check, and ``resubmit=True`` accepts the risk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any, Protocol

import openai

from .._errors import SubmissionUnknownError
from .._timing import timed
from ..transport._connection import Connection
from ..transport._files import RemoteFile
from ._journal import Journal, ShardRecord
from ._lookup import FINGERPRINT_KEY, Sighting, file_name, newest_batches, scan, sight

log = logging.getLogger("netmind_frames")

_CREATE_ATTEMPTS = 6
#: Outcomes after which the batch may or may not exist on the server.
_UNKNOWN_OUTCOME = (openai.APIConnectionError, openai.InternalServerError)


class ShardLike(Protocol):
    """What submission needs of a shard: its spool file (streamed when uploading) and its key."""

    @property
    def path(self) -> Path: ...

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
    """Submit one shard exactly once (journal, then the server, then create); its batch id.

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
    file_id = record.file_id
    reused = False
    try:
        if not resubmit:
            # Batches first: a wrong key then fails as the SDK's AuthenticationError.
            listed = newest_batches(connection, sleep)
            named = connection.files.find(file_name(key))
            ours = {f.id for f in named} | ({file_id} if file_id else set())
            seen = sight(listed, key, ours)
            alive = [b for b in seen.ours if b.status != "failed"]
            if alive:
                log.info(
                    "shard %d: attached to batch %s (%s), found on the server",
                    index + 1,
                    alive[0].id,
                    alive[0].status,
                )
                journal.record_batch(base_url, key, alive[0].id, alive[0].status)
                return str(alive[0].id)
            if ours and seen.undetermined:
                # A file of ours exists, so an earlier attempt may have created a batch on it
                # that the server cannot show us: creating now might pay twice.
                raise _unknown(sorted(ours), seen, index, total, lost_answer=False)
            if file_id is None:
                file_id = _reusable(named, seen)
                if file_id is not None:
                    reused = True
                    journal.record_upload(base_url, key, file_id)
                    log.info("shard %d: reusing file %s, uploaded before", index + 1, file_id)
        metadata = {
            **metadata,
            FINGERPRINT_KEY: key,
            "netmind_frames_shard": f"{index + 1}/{total}",
        }
        body = {
            "input_file_id": file_id or _upload(connection, journal, shard, key),
            "endpoint": endpoint,
            "completion_window": completion_window,
            "metadata": metadata,
        }
        where = (index, total)
        try:
            batch = _create_once(connection, key, body, where, resubmit, sleep)
        except (openai.BadRequestError, openai.NotFoundError):
            if not file_id:
                raise
            # The file an earlier attempt uploaded is gone from the server (or never got its
            # bytes): upload again.
            body["input_file_id"] = _upload(connection, journal, shard, key)
            batch = _create_once(connection, key, body, where, resubmit, sleep)
        if reused and _failed_validation(connection, batch, sleep):
            # A process killed during an upload leaves a named file without its bytes (Netmind
            # lists no sizes to tell): the batch on it fails validation, where nothing runs and
            # nothing is billed. Upload the bytes and create again, once.
            log.info(
                "shard %d: the reused file %s had no requests; uploading again",
                index + 1,
                body["input_file_id"],
            )
            body["input_file_id"] = _upload(connection, journal, shard, key)
            batch = _create_once(connection, key, body, where, resubmit, sleep)
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
        file_id = connection.files.upload(shard.path, file_name(key))
    # Recorded before anything else can fail: a later run then knows the file is ours.
    journal.record_upload(connection.settings.base_url, key, file_id)
    return file_id


def _reusable(named: list[RemoteFile], seen: Sighting) -> str | None:
    """A file of ours with no batch that can be used instead of uploading again, or None.

    Files whose batch failed are left out (their bytes may be what failed). Netmind lists no
    sizes, and a file whose upload never finished is listed like one that has its bytes: with
    several such candidates, None (uploading again costs time, never money).
    """
    failed = {b.input_file_id for b in seen.ours}
    candidates = [f for f in named if f.id not in failed and f.bytes != 0]
    sized = [f for f in candidates if f.bytes is not None]
    if sized:
        return sized[0].id
    return candidates[0].id if len(candidates) == 1 else None


def _create_once(
    connection: Connection,
    key: str,
    body: dict[str, Any],
    where: tuple[int, int],
    resubmit: bool,
    sleep: Callable[[float], None],
) -> Any:
    """``batches.create`` without blind retries: after a lost answer, look before creating."""
    client = connection.client.with_options(max_retries=0)
    file_id = str(body["input_file_id"])
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return client.batches.create(**body)
        except openai.RateLimitError:
            pass  # refused, so certainly not created
        except _UNKNOWN_OUTCOME as exc:
            log.info(
                "batch create: %s; looking for the batch before trying again", type(exc).__name__
            )
            seen = scan(connection, key, {file_id}, sleep, file_decides=True)
            if seen.ours:
                return seen.ours[0]
            if seen.undetermined and not resubmit:
                raise _unknown([file_id], seen, *where, lost_answer=True) from exc
        if attempt == _CREATE_ATTEMPTS - 1:
            break
        sleep(min(0.5 * 2**attempt, 8.0))
    return client.batches.create(**body)  # the last try raises whatever it meets


def _unknown(
    file_ids: Collection[str], seen: Sighting, index: int, total: int, *, lost_answer: bool
) -> SubmissionUnknownError:
    files = ", ".join(file_ids)
    why = (
        "the answer to its batch create was lost"
        if lost_answer
        else "the file is on the provider from an earlier attempt"
    )
    message = (
        f"Shard {index + 1}/{total}: cannot tell whether a batch was created for the uploaded "
        f"file {files}: {why}, and the provider's batch list shows {seen.undetermined} "
        f"batch(es) with neither metadata nor input_file_id, which may or may not be it. "
        f"Nothing more was created. To check, look in the provider's batch list for a batch "
        f"with input_file_id {files} (`netmind-frames status JOB_ID` shows a job's batches; "
        f"`netmind-frames doctor --live` what the service reports). If there is none, run "
        f"again with resubmit=True (--resubmit on the CLI), which accepts the risk of paying "
        f"twice."
    )
    return SubmissionUnknownError(message, list(file_ids))


#: How long a batch created on a reused file is watched for failing validation.
_SETTLE_POLLS = (0.2, 0.5, 1.0, 2.0, 4.0)


def _failed_validation(connection: Connection, batch: Any, sleep: Callable[[float], None]) -> bool:
    """Whether ``batch`` failed validation within a few seconds (still validating: False)."""
    status = str(batch.status)
    for delay in _SETTLE_POLLS:
        if status != "validating" and status not in ("pending", "queued"):
            break
        sleep(delay)
        live = _live_status(connection, batch.id)
        if live is None:
            return False  # not shown (yet): the batch is followed as usual
        status = live
    return status == "failed"


def _live_status(connection: Connection, batch_id: str) -> str | None:
    """The batch's status, or None when the server does not know it (any more)."""
    try:
        return str(connection.client.batches.retrieve(batch_id).status)
    except openai.NotFoundError:
        return None
