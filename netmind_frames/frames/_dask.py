"""``ddf.netmind`` on Dask DataFrames: a thin adapter over the partition core (``_partitions``).

The work splits as the core's docstring says: a validation pass over every partition on the
workers (nothing is uploaded until every partition's rows passed the pandas path's checks),
then build + upload + create on the workers, partition by partition, in waves that keep at
most ``max_concurrent_batches`` batches of the whole job running; the wait on the driver (one
poller, one progress bar); and the download + parse + join on the workers again, as a lazy
``map_partitions`` whose result has the input's partitions, divisions and index plus the result
columns with the pandas path's dtypes (``meta`` is known without computing anything).

Each partition is computed three times (validation, submission, join): ``persist()`` a frame
whose source is costly to read first. This module imports Dask, so it is imported only once
``ddf.netmind`` is first used (:mod:`._register` registers a stand-in when ``dask.dataframe``
is imported).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import dask
    import dask.dataframe as dd
except ImportError as exc:  # pragma: no cover - the hook imports this only with Dask present
    raise ImportError(
        "Dask DataFrames need the dask extra: from a clone of the repository, "
        "pip install -e '.[dask]'"
    ) from exc

import openai
import pandas as pd

from .._errors import InputError
from ..jobs._options import JobOptions
from ..transport._config import MAX_CONCURRENT_BATCHES, MAX_REQUESTS
from ._accessor import _arguments
from ._api import Mode
from ._partitions import (
    PartitionCall,
    PartitionedJob,
    PartitionPlan,
    Ticket,
    join_partition,
    make_call,
    result_meta,
    submit_partition,
    validate_partition,
)

__all__ = ["DaskJob", "DaskNetmind"]


class DaskJob(PartitionedJob):
    """The batches of one call over a Dask DataFrame: ``wait()``, then ``result()``.

    Its ``id`` is derived from the partitions' rows and options; the driver's journal maps
    it to every partition's batches, so the same call again (in any process on this machine)
    reattaches instead of paying again.
    """

    def __init__(
        self,
        frame: dd.DataFrame,
        call: PartitionCall,
        options: JobOptions,
        plans: list[PartitionPlan],
        waiting: Mapping[str, Any],
    ) -> None:
        super().__init__(call, plans, waiting)
        self._frame = frame
        self._meta = result_meta(frame._meta, options)

    @property
    def meta(self) -> pd.DataFrame:
        """The result's ``meta``: the input's columns plus the result columns, empty."""
        return self._meta

    def result(self, timeout: float | None = None) -> dd.DataFrame:
        """Wait if needed; the lazy result: the input's partitions, divisions and index plus
        the result columns, joined on the workers when computed."""
        by_number = self._tickets_by_number(timeout)
        return self._frame.map_partitions(
            _join, self._call, by_number, meta=self._meta, transform_divisions=False
        )

    def _submit_wave(self, wave: list[tuple[PartitionPlan, int]]) -> list[Ticket]:
        parts = self._frame.to_delayed()
        submit = dask.delayed(submit_partition, pure=False)
        tasks = [submit(parts[plan.number], self._call, plan, shards) for plan, shards in wave]
        return list(dask.compute(*tasks))


def _join(
    frame: pd.DataFrame,
    call: PartitionCall,
    tickets: Mapping[int, Ticket],
    partition_info: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    assert partition_info is not None  # Dask passes it to a function that names it
    return join_partition(frame, call, tickets[int(partition_info["number"])])


def _submit(frame: dd.DataFrame, prompt: str | None, kwargs: dict[str, Any]) -> DaskJob:
    """Check the call on the driver, validate every partition, then submit the first wave."""
    sample = frame._meta_nonempty.iloc[:1]  # one row: a column-level check sees no duplicates
    call, options = make_call(sample, prompt, kwargs, engine="Dask")
    parts = frame.to_delayed()
    check = dask.delayed(validate_partition, pure=True)
    plans = list(dask.compute(*[check(p, call, i, len(parts)) for i, p in enumerate(parts)]))
    if not any(p.n_rows for p in plans):
        raise InputError("the input is empty: there is nothing to send")
    return DaskJob(frame, call, options, plans, kwargs).start()


class DaskNetmind:
    """Batch LLM completions over the rows of a Dask DataFrame: ``ddf.netmind.batch_complete(...)``.

    The methods take the pandas accessor's arguments; those a partitioned job cannot honour
    (``client=``, ``local=True``, ``mode='sync'``, ``resubmit=True``, ``max_cost=``) raise
    ``InputError`` saying so. The result is a lazy Dask DataFrame.

    Example:
        >>> import dask.dataframe as dd, netmind_frames
        >>> out = ddf.netmind.batch_complete("Say {text}", model="m", base_url=url)
        >>> out.compute()
    """

    def __init__(self, frame: dd.DataFrame) -> None:
        self._frame = frame

    def batch_complete(
        self,
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
    ) -> dd.DataFrame:
        """Run one chat completion per row; block until every batch is done; return the lazy
        result (see :func:`netmind_frames.batch_complete` for the arguments)."""
        kwargs = _arguments(locals())
        job = _submit(self._frame, kwargs.pop("prompt"), kwargs)
        return job.result(timeout=timeout)

    def submit(
        self,
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
    ) -> DaskJob:
        """Validate every partition, submit the first wave and return a :class:`DaskJob`."""
        kwargs = _arguments(locals())
        return _submit(self._frame, kwargs.pop("prompt"), kwargs)

    def batch_embed(
        self,
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
    ) -> dd.DataFrame:
        """Embed every row's text (see :func:`netmind_frames.batch_embed`); the lazy result."""
        kwargs = _arguments(locals())
        kwargs["embed_column"] = kwargs.pop("column")
        return _submit(self._frame, None, kwargs).result(timeout=timeout)
