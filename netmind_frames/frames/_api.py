"""The functional core: ``batch_complete``, ``submit``, ``attach`` and ``to_jsonl``.

The accessor (``df.netmind``) and the CLI are thin shells over these functions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import openai
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import InputError
from ..build._requests import EMBEDDINGS_ENDPOINT, build_plan, check_custom_ids
from ..build._source import FileSource, FrameSource, Source, TableSource, as_source
from ..jobs._attach import remember
from ..jobs._checks import (
    check_completion_window,
    check_connection_types,
    check_flags,
    check_metadata,
    check_model,
    check_positive,
    check_retries,
    check_seconds,
    check_timeout,
)
from ..jobs._job import BatchJob
from ..jobs._journal import Journal
from ..jobs._options import JobOptions
from ..jobs._sync import SyncRun
from ..results._embeddings import check_embedding_columns
from ..results._results import check_result_columns
from ..results._schema import output_schema, response_format_for
from ..transport._config import (
    MAX_BYTES,
    MAX_CONCURRENT_BATCHES,
    MAX_REQUESTS,
    Settings,
    provider_for,
    resolve_settings,
)
from ..transport._connection import Connection, connect
from ..transport._models import warn_unlisted_models
from ._estimate import Estimate, check_max_cost, estimate_source
from ._typing import frame_function

log = logging.getLogger("netmind_frames")

#: Reattach to a job by its id, in any process: the same as ``BatchJob.attach``.
attach = BatchJob.attach

Mode = Literal["batch", "sync", "auto"]

#: What the entry points take: a pandas or Polars DataFrame, a Polars LazyFrame (collected),
#: a ``pyarrow.Table`` or ``RecordBatchReader`` (spooled batch by batch). The result is of the
#: same kind: pandas for pandas, Polars for Polars, a ``pyarrow.Table`` for Arrow (a type
#: checker sees it too: see :mod:`._typing`).
Frame = Any


@frame_function
def batch_complete(
    frame: Frame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
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
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **params: Any,
) -> Any:
    """Run one chat completion per row through the Batch API and return the answers.

    Blocks until every batch is done. The input frame is not changed: a new frame comes back
    with the same rows, index and order, plus the result columns ``response``,
    ``finish_reason``, ``prompt_tokens``, ``completion_tokens``, ``error_code``,
    ``error_message`` and ``status`` (``ok``, ``failed``, ``expired`` or ``cancelled``).

    Args:
        frame: the rows to send: a pandas or Polars DataFrame, a Polars LazyFrame (collected
            first), a ``pyarrow.Table`` or a ``pyarrow.RecordBatchReader`` (spooled batch by batch).
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
        api_key, base_url, client, provider, local: the connection (see the
            configuration table in docs/configuration.md). ``local=True`` uses the embedded
            local batch server.
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
        max_concurrent_batches: batches of this job running at once; further shards are
            submitted as earlier ones finish.
        keep_files: keep the job's input files on the provider. By default they are deleted
            once the result is built (the provider's storage is limited: Netmind gives 100 GB
            per organization); the output and error files stay either way.
        mode: ``"batch"`` (default), ``"sync"``: the same requests sent to the synchronous
            ``/chat/completions`` endpoint, ``max_concurrency`` at a time, for quick
            iteration on a few rows; it costs what the synchronous API costs (**twice the
            Batch API's price**), gives the same result columns, statuses and typed schema
            columns, and keeps no journal (nothing to reattach: re-running sends every row
            again). ``"auto"``: sync when the frame has at most ``sync_threshold`` rows,
            batch otherwise. In sync mode the batch-only options (``max_bytes``,
            ``completion_window``, ``metadata``, ``poll_interval``, ``timeout``,
            ``resubmit``, ``max_concurrent_batches``, ``keep_files``) do not apply; the
            client's own retries handle 429 (honouring ``Retry-After``), 5xx and dropped
            connections, then ``retries`` rounds re-send rows that still failed for a
            retryable reason.
        max_concurrency: requests in flight at once in sync mode (default 8).
        sync_threshold: for ``mode="auto"``: the most rows sent in sync mode (required).
        prices: token prices per model, US dollars per million tokens:
            ``{"model": {"input": 0.09, "output": 0.09}}`` (the batch rates; the synchronous
            rates are ``sync_input``/``sync_output`` when given, else twice the batch rates),
            or a JSON file of them. Default: ``NETMIND_FRAMES_HOME/prices.json`` if it exists.
            Used by the summary logged at the end (``job.summary()``) and by ``max_cost``;
            no price is ever invented: without one, tokens only.
        max_cost: refuse to submit (``InputError``, before any upload) when the cost may
            exceed this many US dollars at the batch rate: the approximate prompt tokens plus
            rows times ``max_tokens``, priced with ``prices`` (see :func:`estimate`). Needs
            ``max_tokens`` and a price for ``model``.
        **params: any chat-completion parameter (``max_tokens``, ``temperature``,
            ``response_format``, ...), copied into every request body.

    Returns:
        A new frame of the input's kind (pandas; Polars for Polars; a ``pyarrow.Table`` for
        Arrow): the input's columns, then the result columns. Polars and Arrow get native
        types: text ``String``/``large_string``, token counts ``Int64``, schema enums as
        ``Enum``/dictionary in the schema's order, arrays as lists, objects as structs.

    Raises:
        InputError: bad input (named column or row), before anything is uploaded.
        ConfigurationError: no API key, or an invalid connection setting.
        BatchFailedError: a batch failed validation on the server.
        JobTimeoutError: ``timeout`` passed; the exception carries the job id.

    Example:
        >>> out = batch_complete(df, "Summarise: {text}", model="m", local=True, max_tokens=50)
        >>> out[["text", "response", "status"]]
        >>> batch_complete(df.head(5), "Summarise: {text}", model="m", mode="sync")
    """
    source = as_source(frame)
    if use_sync(mode, max_concurrency, sync_threshold, lambda: source.n_rows):
        run = _sync_source(
            source,
            prompt,
            max_concurrency=max_concurrency,
            model=model,
            prompt_column=prompt_column,
            messages_column=messages_column,
            system=system,
            custom_id_column=custom_id_column,
            model_column=model_column,
            params_column=params_column,
            schema=schema,
            prefix=prefix,
            api_key=api_key,
            base_url=base_url,
            client=client,
            provider=provider,
            local=local,
            max_requests=max_requests,
            max_bytes=max_bytes,
            progress=progress,
            retries=retries,
            **params,
        )
        return run.result()
    check_timeout(timeout)  # before anything is uploaded
    job = submit(
        source,
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        schema=schema,
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
        max_concurrent_batches=max_concurrent_batches,
        keep_files=keep_files,
        prices=prices,
        max_cost=max_cost,
        **params,
    )
    return job.result(timeout=timeout)


def submit(
    frame: Frame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
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
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
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
    return _submit_source(
        as_source(frame),
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        schema=schema,
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
        max_concurrent_batches=max_concurrent_batches,
        keep_files=keep_files,
        prices=prices,
        max_cost=max_cost,
        **params,
    )


@frame_function
def batch_embed(
    frame: Frame,
    column: str,
    *,
    model: str | None = None,
    model_column: str | None = None,
    custom_id_column: str | None = None,
    params_column: str | None = None,
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
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    **params: Any,
) -> Any:
    """Embed the text of every row through ``/v1/embeddings`` batches.

    Returns a new frame: the input's rows, index and order, plus ``embedding`` (a float32
    NumPy array per row, ``None`` where missing; ``np.stack(out["embedding"])`` is the
    matrix), ``prompt_tokens``, ``error_code``, ``error_message`` and ``status``. The
    connection, limits, retries and exactly-once guarantees are those of
    :func:`batch_complete`; ``**params`` (e.g. ``dimensions``) go into every request.

    Netmind lists batch embeddings as "coming soon": with provider ``netmind`` (its base URL,
    or ``local=True``, which emulates it) this raises :class:`InputError` before anything is
    uploaded; ``mode="sync"`` embeds through Netmind's synchronous endpoint instead. Another
    provider that rejects the endpoint raises :class:`InputError` saying so, before any batch
    runs.

    ``mode``, ``max_concurrency`` and ``sync_threshold`` are those of :func:`batch_complete`:
    ``mode="sync"`` posts each row's request to the synchronous ``/embeddings`` endpoint
    (the synchronous price; no journal).

    Example:
        >>> out = batch_embed(df, "text", model="BAAI/bge-m3", base_url=openai_compatible_url)
        >>> matrix = np.stack(out["embedding"])
    """
    source = as_source(frame)
    if use_sync(mode, max_concurrency, sync_threshold, lambda: source.n_rows):
        run = _sync_source(
            source,
            None,
            max_concurrency=max_concurrency,
            embed_column=column,
            model=model,
            model_column=model_column,
            custom_id_column=custom_id_column,
            params_column=params_column,
            prefix=prefix,
            api_key=api_key,
            base_url=base_url,
            client=client,
            provider=provider,
            local=local,
            max_requests=max_requests,
            max_bytes=max_bytes,
            progress=progress,
            retries=retries,
            **params,
        )
        return run.result()
    check_timeout(timeout)  # before anything is uploaded
    try:
        job = _submit_source(
            source,
            None,
            embed_column=column,
            model=model,
            model_column=model_column,
            custom_id_column=custom_id_column,
            params_column=params_column,
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
            max_concurrent_batches=max_concurrent_batches,
            keep_files=keep_files,
            **params,
        )
    except openai.BadRequestError as exc:
        if EMBEDDINGS_ENDPOINT not in str(exc):
            raise
        raise InputError(
            f"This provider does not accept {EMBEDDINGS_ENDPOINT} batches (Netmind lists "
            f"batch embeddings as coming soon). The server said: {exc}"
        ) from exc
    return job.result(timeout=timeout)


def estimate(
    frame: pd.DataFrame,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
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
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **params: Any,
) -> Estimate:
    """What :func:`batch_complete` with these arguments would send and cost; sends nothing.

    Takes the arguments of :func:`batch_complete` (so a call becomes its estimate by changing
    its name); the connection and waiting ones change nothing here but ``base_url`` /
    ``provider``, which decide the shard size. The requests are built exactly as the call
    would build them and counted: rows, shards, bytes, the approximate prompt tokens (request
    bytes / 4, said in ``prompt_tokens_rule``), the most completion tokens (rows times
    ``max_tokens``; None without it) and, with ``prices`` (or
    ``NETMIND_FRAMES_HOME/prices.json``) for ``model``, the cost range at the batch rate and
    the upper bound at the synchronous rate. ``print(est)`` shows it; ``est.as_dict()``.

    Example:
        >>> est = estimate(df, "Summarise: {text}", model="m", max_tokens=50,
        ...                prices={"m": {"input": 0.1, "output": 0.2}})
        >>> print(est)
    """
    return _estimate_source(
        FrameSource(frame),
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        schema=schema,
        base_url=base_url,
        provider=provider,
        max_requests=max_requests,
        max_bytes=max_bytes,
        prices=prices,
        max_cost=max_cost,
        **params,
    )


def estimate_file(path: str | Path, prompt: str | None = None, **kwargs: Any) -> Estimate:
    """Like :func:`estimate`, for a Parquet, CSV or JSONL file read chunk by chunk."""
    return _estimate_source(FileSource(path), prompt, **kwargs)


def _estimate_source(
    source: Source,
    prompt: str | None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
    base_url: str | None = None,
    provider: str | None = None,
    max_requests: int = MAX_REQUESTS,
    max_bytes: int | None = None,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **params: Any,
) -> Estimate:
    check_model(model, model_column)
    params, schema_json, _ = _with_schema(schema, params)
    options = JobOptions(
        model=model,
        max_bytes=MAX_BYTES[provider_for(provider, base_url)] if max_bytes is None else max_bytes,
        prompt=prompt,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        schema=schema_json,
        max_requests=max_requests,
        params=dict(params),
    )
    found = estimate_source(source, options, prices)
    check_max_cost(max_cost, found)
    return found


def submit_file(
    path: str | Path,
    prompt: str | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> BatchJob:
    """Like :func:`submit`, for a Parquet, CSV or JSONL file or a Parquet dataset (a local
    path or a URL, see :func:`batch_complete_file`) streamed chunk by chunk.

    The journal records the file's path or URL (never ``storage_options``), so the job can
    be reattached by its id alone (``netmind-frames wait JOB``). ``job.to_parquet(out)``
    writes the joined result.
    """
    source = FileSource(path, storage_options=storage_options)
    return _submit_source(source, prompt, **kwargs)


def sync_file(
    path: str | Path,
    prompt: str | None = None,
    *,
    max_concurrency: int = 8,
    storage_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> SyncRun:
    """Like :func:`submit_file`, in sync mode: ``run.to_parquet(out)`` sends the rows to the
    synchronous endpoint and writes the joined result (see ``mode`` of
    :func:`batch_complete`)."""
    check_positive("max_concurrency", max_concurrency)
    source = FileSource(path, storage_options=storage_options)
    return _sync_source(source, prompt, max_concurrency=max_concurrency, **kwargs)


@dataclass(frozen=True)
class _Prepared:
    """A call's checked settings and options, and its connection: ready to send."""

    settings: Settings
    options: JobOptions
    connection: Connection


def _submit_source(
    source: Source,
    prompt: str | None = None,
    *,
    local: bool = False,
    poll_interval: float = 30.0,
    progress: bool = True,
    resubmit: bool = False,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    keep_files: bool = False,
    prices: Mapping[str, Any] | str | Path | None = None,
    max_cost: float | None = None,
    **kwargs: Any,
) -> BatchJob:
    check_positive("max_concurrent_batches", max_concurrent_batches)
    check_seconds("poll_interval", poll_interval)
    check_flags(progress=progress, resubmit=resubmit, keep_files=keep_files)
    ready = _prepare(source, prompt, local=local, **kwargs)
    if max_cost is not None:  # before anything is uploaded
        check_max_cost(max_cost, estimate_source(source, ready.options, prices))
    if kwargs.get("embed_column") is None:  # the documented list is of chat models
        models = _models(source, kwargs.get("model"), kwargs.get("model_column"))
        warn_unlisted_models(ready.settings.provider, models)  # before anything is uploaded
    journal = Journal(ready.settings.home)
    job = BatchJob(
        ready.connection,
        journal,
        ready.options,
        source,
        poll_interval=poll_interval,
        progress=progress,
        max_concurrent_batches=max_concurrent_batches,
        keep_files=keep_files,
        resubmit=resubmit,
        local=local,
        prices=prices,
    )
    remember(journal, job, ready.settings.base_url, ready.options, source, local)
    return job.start()


def _models(source: Source, model: str | None, model_column: str | None) -> set[str]:
    """Every model a job's requests name: ``model`` and the model column's distinct values."""
    models = {model} if isinstance(model, str) else set()
    if model_column is None or model_column not in source.columns:
        return models  # a missing column is the build's error to report
    if isinstance(source, FrameSource):
        values = source.frame[model_column].dropna().unique()
        return models | {v for v in values if isinstance(v, str)}
    for _, table in source.tables(1 << 20, [model_column]):
        column = table.column(0)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            models.update(v for v in pc.unique(column).to_pylist() if v is not None)
    return models


def _sync_source(
    source: Source,
    prompt: str | None = None,
    *,
    max_concurrency: int,
    progress: bool = True,
    **kwargs: Any,
) -> SyncRun:
    """The call's rows, ready to run against the synchronous endpoint (no journal)."""
    ready = _prepare(source, prompt, batches=False, **kwargs)
    return SyncRun(
        ready.connection,
        ready.options,
        source,
        max_concurrency=max_concurrency,
        progress=progress,
    )


def use_sync(
    mode: Any, max_concurrency: Any, sync_threshold: Any, n_rows: Callable[[], int]
) -> bool:
    """Whether a call runs in sync mode (``n_rows()`` is asked only for ``"auto"``);
    InputError for a bad combination."""
    if mode not in ("batch", "sync", "auto"):
        raise InputError(f"mode must be 'batch', 'sync' or 'auto', not {mode!r}.")
    check_positive("max_concurrency", max_concurrency)
    if sync_threshold is not None:
        if isinstance(sync_threshold, bool) or not isinstance(sync_threshold, int):
            raise InputError(f"sync_threshold must be a whole number, not {sync_threshold!r}.")
        if sync_threshold < 0:
            raise InputError(f"sync_threshold must be ≥ 0, not {sync_threshold!r}.")
    if mode == "auto":
        if sync_threshold is None:
            raise InputError(
                "mode='auto' needs sync_threshold=N: the most rows to send synchronously "
                "(at twice the price); larger frames go through the Batch API."
            )
        return n_rows() <= sync_threshold
    return mode == "sync"


def _prepare(
    source: Source,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
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
    retries: int = 2,
    chunk_rows: int | None = None,
    embed_column: str | None = None,
    batches: bool = True,
    **params: Any,
) -> _Prepared:
    check_completion_window(completion_window)
    check_retries(retries)
    check_positive("max_requests", max_requests)
    check_connection_types(prefix, api_key, base_url, client, local)
    if chunk_rows is not None:
        check_positive("chunk_rows", chunk_rows)
    settings = resolve_settings(
        api_key=api_key, base_url=base_url, provider=provider, client=client, local=local
    )
    if source.n_rows == 0:
        raise InputError("the input is empty: there is nothing to send")
    check_model(model, model_column)
    params, schema_json, schema_model = _with_schema(schema, params)
    fields = () if schema_json is None else output_schema(schema_model or schema_json).columns
    if embed_column is None:
        check_result_columns(pd.DataFrame(columns=source.columns), prefix, fields)
    else:
        check_embedding_columns(pd.DataFrame(columns=source.columns), prefix)
    options = JobOptions(
        model=model,
        max_bytes=settings.max_bytes if max_bytes is None else max_bytes,
        prompt=prompt,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        schema=schema_json,
        schema_model=schema_model,
        max_requests=max_requests,
        params=params,
        prefix=prefix,
        completion_window=completion_window,
        metadata=check_metadata(metadata),
        retries=retries,
        chunk_rows=chunk_rows,
        embed_column=embed_column,
    )
    if custom_id_column is not None and isinstance(source, (FrameSource, TableSource)):
        # Ids are checked per chunk while building; a duplicate across chunks only here.
        check_custom_ids(source.frame, custom_id_column)
    if embed_column is not None and batches and settings.provider == "netmind":
        # After the checks of the caller's own arguments, before anything is uploaded.
        raise InputError(_no_netmind_embedding_batches(local))
    return _Prepared(settings, options, connect(settings, client))


def _no_netmind_embedding_batches(local: bool) -> str:
    """Why an embeddings job stops before its upload on Netmind, and what to do instead.

    An error rather than a warning: Netmind's batch guide lists ``/v1/embeddings`` as "coming
    soon" and its batch create refuses it, so going on would upload a file (up to 100 MB a
    shard, kept on the user's storage) only to fail at the create. A user whose endpoint does
    run embedding batches says so with ``provider="openai"``.
    """
    head = (
        f"local=True emulates Netmind, which does not run {EMBEDDINGS_ENDPOINT} batches yet"
        if local
        else f"Netmind (provider 'netmind') does not run {EMBEDDINGS_ENDPOINT} batches yet"
    )
    other = (
        "point base_url= at a local server's OpenAI dialect instead of local=True "
        "(LocalBatchServer.openai_base_url, or the 'OpenAI base URL' netmind-frames serve prints)"
        if local
        else "if your endpoint's OpenAI-compatible Batch API does run embeddings, pass "
        "provider='openai'"
    )
    return (
        f"{head} (its batch guide lists them as coming soon), so nothing was uploaded. Use "
        f"mode='sync' for the synchronous embeddings endpoint (the synchronous price), or {other}."
    )


def to_jsonl(
    frame: Frame,
    path: str | Path | None = None,
    prompt: str | None = None,
    *,
    model: str | None = None,
    prompt_column: str | None = None,
    messages_column: str | None = None,
    system: str | None = None,
    custom_id_column: str | None = None,
    model_column: str | None = None,
    params_column: str | None = None,
    schema: Any = None,
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
    if prompt is None and isinstance(path, str) and "{" in path:
        raise InputError(
            f"to_jsonl's first argument is the file path, and {path!r} looks like a template: "
            "pass it as prompt=..."
        )
    check_model(model, model_column)
    params, _, _ = _with_schema(schema, params)
    plan = build_plan(
        as_source(frame).frame,
        prompt,
        model=model,
        prompt_column=prompt_column,
        messages_column=messages_column,
        system=system,
        custom_id_column=custom_id_column,
        model_column=model_column,
        params_column=params_column,
        max_requests=max_requests,
        max_bytes=MAX_BYTES[provider] if max_bytes is None else max_bytes,
        params=params,
    )
    data = b"".join(shard.data for shard in plan.shards)
    if path is None:
        return data
    target = Path(path)
    target.write_bytes(data)
    return target


def _with_schema(
    schema: Any, params: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None, Any]:
    """The request parameters with ``response_format`` for ``schema``; the JSON Schema the
    answers are checked against (kept in the journal); the pydantic model, if one was given.
    """
    if schema is None:
        return dict(params), None, None
    if "response_format" in params:
        raise InputError("pass schema= or response_format=, not both.")
    spec = output_schema(schema)  # raises InputError for a schema it cannot use
    document = spec.model.model_json_schema() if spec.model is not None else dict(schema)
    return {**params, "response_format": response_format_for(schema)}, document, spec.model
