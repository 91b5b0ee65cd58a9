"""Re-attaching to a job by its id (or its batch ids), in any process: what the job needs.

``find_job`` resolves everything a ``BatchJob`` is rebuilt from (options, input, connection)
and ``known_batches`` checks the rebuilt job against the id and returns its batches; the job
class puts them together (``BatchJob.attach``), so this module never imports it. Also the
journal record that makes re-attaching by the id alone possible (``remember``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import openai

from .._errors import ConfigurationError, InputError
from ..build._source import FileSource, Source, as_source
from ..transport._config import resolve_home, resolve_settings, running_local_base_url
from ..transport._connection import Connection, connect
from ._journal import JobRecord, Journal
from ._options import JobOptions
from ._submit import FINGERPRINT_KEY


class JobLike(Protocol):
    """What the journal records of a job."""

    @property
    def id(self) -> str: ...

    @property
    def n_rows(self) -> int: ...

    @property
    def shard_keys(self) -> list[str]: ...


def remember(
    journal: Journal, job: JobLike, base_url: str, options: JobOptions, source: Source, local: bool
) -> None:
    """Record the job in the journal: its options, its input file, its shards."""
    journal.save_job(job.id, base_url, options.to_json())
    journal.save_plan(
        job.id,
        base_url,
        source.location,
        job.n_rows,
        job.shard_keys,
        local=local,
    )


@dataclass(frozen=True)
class FoundJob:
    """Everything a job is rebuilt from, resolved from its id, the journal and the caller."""

    job_id: str
    ids: list[str]
    journal: Journal
    connection: Connection
    options: JobOptions
    source: Source
    local: bool


def find_job(
    job_id_or_batch_ids: str | Sequence[str],
    *,
    frame: Any = None,
    input: str | Path | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    **options: Any,
) -> FoundJob:
    """Resolve what the job ``job_id_or_batch_ids`` is rebuilt from (see ``BatchJob.attach``).

    Raises:
        InputError: no options known for this job, or no rows to rebuild it from.
        ConfigurationError: the job ran on another process's local server (``local=True``).
    """
    ids = _split_job_id(job_id_or_batch_ids)
    journal = Journal(resolve_home())
    job_id = ids[0] if len(ids) == 1 and ids[0].startswith("job-") else None
    if job_id is None:
        job_id = journal.job_of_batch(ids[0]) or ",".join(ids)
    record = journal.job(job_id)
    if record is not None and record.local and not local:
        if record.base_url != running_local_base_url():
            raise ConfigurationError(
                f"job {job_id} ran on the local batch server of the process that submitted "
                "it (local=True), which stopped with that process, and its batches with it. "
                "Run the job again; for jobs that outlive a process, run `netmind-frames "
                "serve` and pass its base_url=."
            )
        local = True  # this process's own local server: it is still there
    if base_url is None and client is None and not local and record is not None:
        base_url = record.base_url  # where the job was submitted, unless told otherwise
    settings = resolve_settings(
        api_key=api_key, base_url=base_url, provider=provider, client=client, local=local
    )
    return FoundJob(
        job_id=job_id,
        ids=ids,
        journal=journal,
        connection=connect(settings, client),
        options=_attach_options(journal, job_id, settings.max_bytes, options),
        source=_attach_source(frame, input, record),
        local=local,
    )


def known_batches(found: FoundJob, job: JobLike) -> list[str | None]:
    """The rebuilt job's batches (None: not submitted yet), after checking it is the job the
    caller named; ``InputError`` when its rows or options make another job."""
    if found.job_id.startswith("job-") and job.id != found.job_id:
        raise InputError(
            f"job {found.job_id} was not submitted from this input with these options (they "
            f"make job {job.id}): pass the same frame, prompt, model and parameters as the "
            "original call."
        )
    if found.job_id.startswith("job-"):
        base_url = found.connection.settings.base_url
        known = [found.journal.shard(base_url, key) for key in job.shard_keys]
        return [None if r is None else r.batch_id for r in known]
    return list(_match_batches_to_shards(found.connection, job.shard_keys, found.ids))


def _attach_source(frame: Any, input: str | Path | None, record: JobRecord | None) -> Source:
    if frame is not None:
        return as_source(frame)
    if input is not None:
        return FileSource(input)
    if record is not None and record.input:
        return FileSource(record.input)
    raise InputError(
        "attach needs the job's rows: pass frame=df (or the input file, input='in.parquet')."
    )


def _attach_options(
    journal: Journal, job_id: str, max_bytes: int, given: dict[str, Any]
) -> JobOptions:
    """The job's options: the journal's record, overridden by what the caller passed."""
    known = set(JobOptions.__dataclass_fields__)
    stored = journal.job_options(job_id) or {}
    params = dict(stored.get("params", {}))
    merged = {**stored}
    for key, value in given.items():
        if key in known:
            merged[key] = value
        else:
            params[key] = value  # like batch_complete: unknown keywords are request params
    merged["params"] = params
    merged["max_bytes"] = merged.get("max_bytes") or max_bytes
    if "model" not in merged:
        raise InputError(
            f"The journal has no record of job {job_id}: pass the original call's options "
            "too, e.g. attach(job_id, frame=df, prompt='...', model='...')."
        )
    return JobOptions.from_json(merged)


def _match_batches_to_shards(
    connection: Connection, keys: Sequence[str], batch_ids: list[str]
) -> list[str]:
    by_fingerprint: dict[str, str] = {}
    for batch_id in batch_ids:
        batch = connection.client.batches.retrieve(batch_id)
        fingerprint = (batch.metadata or {}).get(FINGERPRINT_KEY)
        if fingerprint:
            by_fingerprint[fingerprint] = batch_id
    missing = [i for i, key in enumerate(keys) if key not in by_fingerprint]
    if missing or len(batch_ids) != len(keys):
        raise InputError(
            f"The batches {', '.join(batch_ids)} were not submitted from this frame with these "
            f"options ({len(missing)} of {len(keys)} shards have no matching batch): "
            "pass the same frame, prompt, model and parameters as the original call."
        )
    return [by_fingerprint[key] for key in keys]


def _split_job_id(job_id_or_batch_ids: str | Sequence[str]) -> list[str]:
    if isinstance(job_id_or_batch_ids, str):
        ids = [part.strip() for part in job_id_or_batch_ids.split(",")]
    else:
        ids = [str(part).strip() for part in job_id_or_batch_ids]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError("attach needs a job id or at least one batch id.")
    return ids
