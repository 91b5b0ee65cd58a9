"""The functional core: ``batch_complete``, ``submit``, ``attach`` and ``to_jsonl``.

The accessor (``df.netmind``) and the CLI are thin shells over these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import openai
import pandas as pd

from ._config import MAX_BYTES, MAX_REQUESTS, resolve_settings
from ._connection import Connection, connect
from ._errors import InputError
from ._job import BatchJob
from ._journal import Journal
from ._options import JobOptions
from ._requests import RequestPlan, build_plan
from ._results import check_result_columns
from ._submit import FINGERPRINT_KEY, submit_plan

log = logging.getLogger("netmind_frames")

#: Metadata allows 16 pairs (batch-api.md §2.1); the library uses two of them.
_MAX_USER_METADATA = 14


def batch_complete(
    frame: pd.DataFrame,
    prompt: str | None = None,
    *,
    model: str,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    prefix: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    progress: bool = True,
    retries: int = 2,
    resubmit: bool = False,
    **params: Any,
) -> pd.DataFrame:
    """Run one chat completion per row through the Batch API and return the answers.

    Blocks until every batch is done. The input frame is not changed: a new frame comes back
    with the same rows, index and order, plus the result columns ``response``,
    ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``error_code``,
    ``error_message`` and ``status`` (``ok``, ``failed``, ``expired`` or ``cancelled``).

    Args:
        frame: the rows to send.
        prompt: a ``str.format`` template over column names, e.g. ``"Summarise: {text}"``
            (``{{`` and ``}}`` for literal braces). Or give ``prompt_column`` or
            ``messages_column`` instead.
        model: the model every request uses.
        prompt_column: a column whose cells are the whole user prompt.
        messages_column: a column whose cells are chat message lists
            (``[{"role": "user", "content": "..."}]``).
        system: a system message put before every prompt.
        custom_id_column: a column of unique ids (at most 64 characters of letters, digits
            and ``_.:-``) to use as ``custom_id``; by default the row position is used.
        prefix: put before every result column name, e.g. ``"nm_"``.
        api_key, base_url, client, provider, local: the connection (see the README's
            configuration table). ``local=True`` uses the embedded local batch server.
        max_requests, max_bytes: shard limits; the default byte limit is the provider's
            (Netmind 100 MB, OpenAI 200 MB).
        completion_window: only ``"24h"`` is accepted by the providers.
        metadata: extra batch metadata (string keys and values).
        poll_interval: the longest wait between two polls, in seconds.
        timeout: give up waiting after this many seconds (the batches keep running).
        progress: show a progress bar.
        retries: rounds of re-sending rows that failed for a retryable reason (5xx, 429,
            timeouts, ``batch_expired``, ``missing_result``) as new batches; 0 disables.
        resubmit: submit new batches even when identical ones were submitted before
            (by default, re-running the same call reattaches to them: you never pay twice).
        **params: any chat-completion parameter (``max_tokens``, ``temperature``,
            ``response_format``, ...), copied into every request body.

    Returns:
        A new DataFrame: the input's columns, then the result columns.

    Raises:
        InputError: bad input (named column or row), before anything is uploaded.
        ConfigurationError: no API key, or an invalid connection setting.
        BatchFailedError: a batch failed validation on the server.
        JobTimeoutError: ``timeout`` passed; the exception carries the job id.

    Example:
        >>> out = batch_complete(df, "Summarise: {text}", model="m", local=True, max_tokens=50)
        >>> out[["text", "response", "status"]]
    """
    job = submit(
        frame,
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        prefix=prefix,
        api_key=api_key,
        base_url=base_url,
        client=client,
        provider=provider,
        local=local,
        max_requests=max_requests,
        max_bytes=max_bytes,
        completion_window=completion_window,
        metadata=metadata,
        poll_interval=poll_interval,
        progress=progress,
        retries=retries,
        resubmit=resubmit,
        **params,
    )
    return job.result(timeout=timeout)


def submit(
    frame: pd.DataFrame,
    prompt: str | None = None,
    *,
    model: str,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    prefix: str = "",
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    completion_window: str = "24h",
    metadata: Mapping[str, str] | None = None,
    poll_interval: float = 30.0,
    progress: bool = True,
    retries: int = 2,
    resubmit: bool = False,
    **params: Any,
) -> BatchJob:
    """Upload the requests and create the batches; return a :class:`BatchJob` at once.

    Takes the arguments of :func:`batch_complete` (but ``timeout``, which goes to
    ``job.wait()`` / ``job.result()``).

    Example:
        >>> job = submit(df, "Summarise: {text}", model="m", local=True)
        >>> job.id, job.status
        >>> out = job.result()
    """
    _check_completion_window(completion_window)
    _check_retries(retries)
    settings = resolve_settings(
        api_key=api_key, base_url=base_url, provider=provider, client=client, local=local
    )
    check_result_columns(frame, prefix)
    options = JobOptions(
        model=model,
        max_bytes=max_bytes or settings.max_bytes,
        prompt=prompt,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        max_requests=max_requests,
        params=dict(params),
        prefix=prefix,
        completion_window=completion_window,
        metadata=_check_metadata(metadata),
        retries=retries,
    )
    plan = options.build(frame)
    connection = connect(settings, client)
    journal = Journal(settings.home)
    batch_ids = submit_plan(
        connection,
        journal,
        plan,
        completion_window=completion_window,
        metadata=options.metadata,
        resubmit=resubmit,
    )
    job = BatchJob(
        connection,
        journal,
        options,
        frame,
        batch_ids,
        plan=plan,
        poll_interval=poll_interval,
        progress=progress,
    )
    journal.save_job(job.id, settings.base_url, options.to_json())
    return job


def attach(
    job_id_or_batch_ids: str | Sequence[str],
    *,
    frame: pd.DataFrame,
    api_key: str | None = None,
    base_url: str | None = None,
    client: openai.OpenAI | None = None,
    provider: str | None = None,
    local: bool = False,
    poll_interval: float = 30.0,
    progress: bool = True,
    **options: Any,
) -> BatchJob:
    """Rebuild a job from its id (or its batch ids), in any process.

    On the machine that submitted the job, the journal knows the call's options, so the
    frame is all it needs. Elsewhere (or with the journal gone) pass the original call's
    options too (``prompt=``, ``model=``, ...). Either way the requests are rebuilt and each
    batch is matched to its rows by the fingerprint in the batch's metadata, so results are
    never joined to the wrong rows.

    Example:
        >>> job = attach("batch_abc", frame=df)
        >>> out = job.result()

    Raises:
        InputError: no options known for this job, or the batches were not submitted from
            this frame with these options.
    """
    ids = _split_job_id(job_id_or_batch_ids)
    settings = resolve_settings(
        api_key=api_key, base_url=base_url, provider=provider, client=client, local=local
    )
    journal = Journal(settings.home)
    job_options = _attach_options(journal, ",".join(ids), settings.max_bytes, options)
    plan = job_options.build(frame)
    connection = connect(settings, client)
    ordered = _match_batches_to_shards(connection, plan, ids)
    return BatchJob(
        connection,
        journal,
        job_options,
        frame,
        ordered,
        plan=plan,
        poll_interval=poll_interval,
        progress=progress,
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


def to_jsonl(
    frame: pd.DataFrame,
    path: str | Path | None = None,
    prompt: str | None = None,
    *,
    model: str,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    provider: str = "netmind",
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    **params: Any,
) -> bytes | Path:
    """Dry run: the exact JSONL bytes that would be uploaded (all shards, in order).

    Nothing is sent anywhere. With ``path``, the bytes are written there and the path is
    returned; without, the bytes are returned.

    Example:
        >>> print(to_jsonl(df, prompt="Summarise: {text}", model="m").decode())
    """
    if provider not in MAX_BYTES:
        raise InputError(f"provider must be 'netmind' or 'openai', not {provider!r}.")
    plan = build_plan(
        frame,
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        max_requests=max_requests,
        max_bytes=max_bytes or MAX_BYTES[provider],
        params=params,
    )
    data = b"".join(shard.data for shard in plan.shards)
    if path is None:
        return data
    target = Path(path)
    target.write_bytes(data)
    return target


def _match_batches_to_shards(
    connection: Connection, plan: RequestPlan, batch_ids: list[str]
) -> list[str]:
    by_fingerprint: dict[str, str] = {}
    for batch_id in batch_ids:
        batch = connection.client.batches.retrieve(batch_id)
        fingerprint = (batch.metadata or {}).get(FINGERPRINT_KEY)
        if fingerprint:
            by_fingerprint[fingerprint] = batch_id
    missing = [i for i, s in enumerate(plan.shards) if s.fingerprint not in by_fingerprint]
    if missing or len(batch_ids) != len(plan.shards):
        raise InputError(
            f"The batches {', '.join(batch_ids)} were not submitted from this frame with these "
            f"options ({len(missing)} of {len(plan.shards)} shards have no matching batch): "
            "pass the same frame, prompt, model and parameters as the original call."
        )
    return [by_fingerprint[s.fingerprint] for s in plan.shards]


def _split_job_id(job_id_or_batch_ids: str | Sequence[str]) -> list[str]:
    if isinstance(job_id_or_batch_ids, str):
        ids = [part.strip() for part in job_id_or_batch_ids.split(",")]
    else:
        ids = [str(part).strip() for part in job_id_or_batch_ids]
    ids = [i for i in ids if i]
    if not ids:
        raise InputError("attach needs a job id or at least one batch id.")
    return ids


def _check_completion_window(completion_window: str) -> None:
    if completion_window != "24h":
        raise InputError(
            f"completion_window must be '24h' (the only window the Batch API accepts), "
            f"not {completion_window!r}."
        )


def _check_retries(retries: int) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InputError(f"retries must be a whole number ≥ 0, not {retries!r}.")


def _check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata must be a dict of strings, not {type(metadata).__name__}.")
    if len(metadata) > _MAX_USER_METADATA:
        raise InputError(f"metadata takes at most {_MAX_USER_METADATA} pairs, got {len(metadata)}.")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(f"metadata keys and values must be strings: {key!r}.")
        if len(key) > 64 or len(value) > 512:
            raise InputError(f"metadata key {key!r}: keys ≤ 64 and values ≤ 512 characters.")
    return dict(metadata)
