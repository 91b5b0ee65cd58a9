"""A table that lives in a file, a Parquet dataset or object storage, answered into another.

:func:`batch_complete_file` is the Python form of ``netmind-frames complete IN OUT``: the rows
are streamed window by window from ``input`` (a local path or a URL), and the joined result
is written to ``output`` as one Parquet file or, with ``dataset=True``, a directory of part
files, under a temporary name moved into place at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..build._source import FileSource
from ..jobs._checks import check_timeout
from ..results._sink import ParquetSink
from ._api import Mode, _submit_source, _sync_source, use_sync

#: Keywords of a batch submission that sync mode does not take.
_BATCH_ONLY = (
    "completion_window",
    "metadata",
    "poll_interval",
    "resubmit",
    "max_concurrent_batches",
    "keep_files",
    "prices",
    "max_cost",
)


def batch_complete_file(
    input: str | Path,
    output: str | Path,
    prompt: str | None = None,
    *,
    dataset: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    mode: Mode = "batch",
    max_concurrency: int = 8,
    sync_threshold: int | None = None,
    timeout: float | None = None,
    **kwargs: Any,
) -> dict[str, int]:
    """Run one request per row of a file or dataset and write its rows plus the answers.

    The same call as :func:`batch_complete` (the same keywords: ``model=``, ``max_tokens=``,
    ``schema=``, ``embed_column=`` for embeddings, ``chunk_rows=`` for the window size...),
    for a table too large for memory or kept in object storage. Blocks until every batch is
    done; re-running the same call reattaches to its batches (never pays twice).

    Args:
        input: a Parquet, CSV or JSONL file, or a directory of Parquet files (a dataset;
            hive partitions such as ``region=eu/`` come back as columns); a local path or a
            URL: ``s3://``, ``gs://``, ``az://``/``abfs://`` (the extra ``[cloud]``:
            ``pip install -e '.[cloud]'``) or ``file://``. Parquet is streamed
            window by window: memory does not grow with the input.
        output: where the input's columns, in order, plus the result columns go: a Parquet
            file, or with ``dataset=True`` a directory (prefix) of part files
            ``part-00000.parquet``..., one per window. Local path or URL, as ``input``. It
            appears only when complete: written under a temporary name, then moved (on
            object storage a dataset then gets a ``_SUCCESS`` marker); a failure leaves no
            partial output.
        prompt: the template over column names, as in :func:`batch_complete`.
        dataset: write ``output`` as a directory of part files (must not exist or be empty).
        storage_options: credentials and settings for the storage library (e.g. s3fs's
            ``{"key": ..., "secret": ..., "endpoint_url": ...}``); by default its usual
            environment (``AWS_*`` variables, profiles, roles). Never logged or recorded.
        mode, max_concurrency, sync_threshold, timeout: as in :func:`batch_complete`.
        **kwargs: every other keyword of :func:`batch_complete`.

    Returns:
        The number of rows of each status, e.g. ``{"ok": 1000}``.

    Raises:
        InputError: a bad ``input=``, ``output=`` or other argument (a missing bucket, an
            unknown URL scheme, a missing extra), before anything is uploaded.

    Example:
        >>> batch_complete_file("s3://bucket/reviews/", "s3://bucket/answers/", dataset=True,
        ...                     prompt="Summarise: {text}", model="m", max_tokens=50)
    """
    # Both ends are checked before anything is uploaded or paid for.
    ParquetSink(output, dataset=dataset, storage_options=storage_options, name="output=")
    source = FileSource(input, storage_options=storage_options, name="input=")
    if use_sync(mode, max_concurrency, sync_threshold, lambda: source.n_rows):
        sync_kwargs = {k: v for k, v in kwargs.items() if k not in _BATCH_ONLY}
        run = _sync_source(source, prompt, max_concurrency=max_concurrency, **sync_kwargs)
        return run.to_parquet(output, dataset=dataset, storage_options=storage_options)
    check_timeout(timeout)
    job = _submit_source(source, prompt, **kwargs)
    return job.to_parquet(output, timeout, dataset=dataset, storage_options=storage_options)
