"""Jobs by id without their rows: status, cancel and the list of recent jobs (for the CLI).

These read the journal (a job's shards and their batches) and ask the server about the
batches; they never rebuild requests, so they are cheap however large the job's input.
``job_shards`` (``netmind-frames status``) reads the batches with plain GETs and imports
neither openai nor pandas: the command starts in a fraction of a second. Cancelling needs the
openai client, imported when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._errors import ConfigurationError, InputError
from ..transport._batch_get import read_batches
from ..transport._config import Settings, resolve_home, resolve_settings
from ._batch_status import NOT_SUBMITTED, note_status
from ._journal import JobRecord, Journal, partitioned_record


@dataclass(frozen=True)
class ShardState:
    """One first-round shard of a job: its batch (None: not submitted yet) and status (the
    provider's, verbatim; ``not_submitted`` or ``cancelled`` for a shard without a batch)."""

    index: int
    batch_id: str | None
    status: str
    completed: int
    failed: int
    total: int


def job_record(job_id: str) -> tuple[Journal, JobRecord]:
    """The journal and its record of ``job_id``; ``InputError`` when it has none."""
    home = resolve_home()
    journal = Journal(home)
    record = journal.job(job_id)
    driver_record = partitioned_record(home, job_id)
    if record is None and driver_record.exists():
        raise InputError(
            f"{job_id} is a Dask or Spark job (its driver keeps {driver_record}), not a job "
            "of this journal: wait for it, "
            "cancel it or get its result from Python with the job's wait(), cancel() or "
            "result(); the same submit call again gives that job back without paying again"
        )
    if record is None:
        raise InputError(
            f"no job {job_id} in the journal ({journal.path}); `netmind-frames list` shows "
            "the known jobs"
        )
    return journal, record


def job_shards(job_id: str, **connection: Any) -> tuple[JobRecord, list[ShardState]]:
    """The journal's record of a job and each shard's batch status, fetched now."""
    journal, record = job_record(job_id)
    settings = _settings(record, connection)
    shards = [journal.shard(record.base_url, key) for key in record.shard_keys]
    batch_ids = [s.batch_id for s in shards if s is not None and s.batch_id]
    batches = iter(read_batches(settings, batch_ids))
    states = []
    for index, shard in enumerate(shards):
        if shard is None or shard.batch_id is None:
            status = "cancelled" if record.cancelled else NOT_SUBMITTED
            states.append(ShardState(index, None, status, 0, 0, 0))
            continue
        batch = next(batches)
        journal.record_status(record.base_url, batch.id, note_status(batch.status))
        states.append(
            ShardState(index, batch.id, batch.status, batch.completed, batch.failed, batch.total)
        )
    return record, states


def cancel_job(
    job_id: str, timeout: float | None = None, poll_interval: float = 5.0, **connection: Any
) -> list[ShardState]:
    """Cancel a job's running batches, mark it so no more shards are submitted, and wait
    until every batch is terminal (``JobTimeoutError`` after ``timeout`` seconds); the final
    shard states."""
    # Imported here: they bring openai, which `status` (this module's other user) avoids.
    from ..transport._connection import connect
    from ._cancel import cancel_by_id
    from ._checks import check_timeout

    check_timeout(timeout)
    journal, record = job_record(job_id)
    journal.mark_cancelled(job_id)
    client = connect(_settings(record, dict(connection))).client
    shards = (journal.shard(record.base_url, key) for key in record.shard_keys)
    batch_ids = [s.batch_id for s in shards if s is not None and s.batch_id]
    cancel_by_id(client, batch_ids, job_id=job_id, poll_interval=poll_interval, timeout=timeout)
    return job_shards(job_id, **connection)[1]


def _settings(record: JobRecord, connection: dict[str, Any]) -> Settings:
    if record.local:
        raise ConfigurationError(
            f"job {record.job_id} ran on the local batch server of the process that submitted "
            "it (local=True), which stopped with that process"
        )
    base_url = connection.pop("base_url", None) or record.base_url
    return resolve_settings(base_url=base_url, **connection)
