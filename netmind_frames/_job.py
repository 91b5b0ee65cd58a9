"""BatchJob: the batches of one call, polled together, with one progress bar.

A job is the set of batches (one per shard) that one ``submit`` created. Its id is their batch
ids joined by commas, so any process can rebuild the job from the id alone. Rows that fail for
a reason worth retrying are sent again, as new batches, in up to ``retries`` rounds; every
round is submitted exactly once, so re-running the call reattaches to those batches too.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from ._connection import Connection
from ._errors import BatchFailedError, JobTimeoutError
from ._journal import Journal
from ._options import JobOptions
from ._requests import RequestPlan
from ._results import ShardOutcome, collect_results, join_results
from ._submit import submit_plan

log = logging.getLogger("netmind_frames")

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

#: The first poll comes after this many seconds; the wait then grows to ``poll_interval``.
_FIRST_POLL = 1.0
_BACKOFF = 1.5
#: Error codes of rows worth sending again: the request never ran, or failed on the server's
#: side. A 4xx request error (a bad request) is not retried: it would fail the same way.
RETRYABLE_CODES = frozenset(
    {
        "batch_expired",
        "missing_result",
        "server_error",
        "internal_error",
        "internal_server_error",
        "service_unavailable",
        "overloaded",
        "rate_limit_exceeded",
        "rate_limit_error",
        "timeout",
        "request_timeout",
    }
)
_RETRYABLE_HTTP = r"^http_(408|409|429|5\d\d)$"
#: Polls in a row that may fail (network, 5xx) before the error is raised.
_POLL_FAILURES = 30


class BatchJob:
    """The batches submitted for one frame; ``wait()`` for them, then ``result()``.

    Get one from ``df.netmind.submit(...)`` or ``BatchJob.attach(job_id, frame=df)``.

    Example:
        >>> job = df.netmind.submit("Summarise: {text}", model="m", local=True)
        >>> job.wait().result()[["text", "response", "status"]]
    """

    def __init__(
        self,
        connection: Connection,
        journal: Journal,
        options: JobOptions,
        frame: pd.DataFrame,
        batch_ids: Sequence[str],
        *,
        plan: RequestPlan | None = None,
        poll_interval: float = 30.0,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._plan = plan if plan is not None else options.build(frame)
        if len(batch_ids) != len(self._plan.shards):
            raise ValueError(f"{len(batch_ids)} batch ids for {len(self._plan.shards)} shards")
        self._connection = connection
        self._journal = journal
        self._options = options
        self._frame = frame
        self._batch_ids = tuple(batch_ids)
        self._poll_interval = poll_interval
        self._progress = progress
        self._sleep = sleep
        self._clock = clock
        self._batches: dict[str, Any] = {}
        self._retry_batch_ids: list[str] = []
        self._results: pa.Table | None = None

    def __repr__(self) -> str:
        status = self._aggregate_status(self._batch_ids) if self._batches else "unknown"
        return f"BatchJob(id={self.id!r}, status={status!r}, rows={self._plan.n_rows})"

    @classmethod
    def attach(
        cls, job_id_or_batch_ids: str | Sequence[str], *, frame: pd.DataFrame, **options: Any
    ) -> BatchJob:
        """Reattach to a job from its id, in any process (see ``netmind_frames.attach``).

        Example:
            >>> job = BatchJob.attach("batch_abc", frame=df)
            >>> out = job.result()
        """
        from ._api import attach  # the orchestration module imports this one

        return attach(job_id_or_batch_ids, frame=frame, **options)

    @property
    def id(self) -> str:
        """The job id: the batch ids, comma-separated. ``BatchJob.attach`` takes it."""
        return ",".join(self._batch_ids)

    @property
    def batch_ids(self) -> tuple[str, ...]:
        """The ids of the job's first-round batches, one per shard, in shard order."""
        return self._batch_ids

    @property
    def retry_batch_ids(self) -> tuple[str, ...]:
        """The ids of the batches that re-sent failed rows (empty until ``result()``)."""
        return tuple(self._retry_batch_ids)

    @property
    def batches(self) -> list[Any]:
        """The last-seen ``openai.types.Batch`` of each first-round shard."""
        return [self._batches[b] for b in self._batch_ids if b in self._batches]

    @property
    def status(self) -> str:
        """The job's status, fetched now: one batch's status, or the least advanced of all."""
        self.refresh()
        return self._aggregate_status(self._batch_ids)

    def refresh(self) -> BatchJob:
        """Fetch every first-round batch once."""
        self._fetch(self._batch_ids)
        return self

    def wait(self, timeout: float | None = None) -> BatchJob:
        """Poll until every batch is terminal, showing progress; return the job.

        Interrupting (Ctrl-C) does not cancel: the batches keep running, the job id and the
        line that reattaches are printed, and ``KeyboardInterrupt`` is raised again.

        Raises:
            JobTimeoutError: ``timeout`` seconds passed first; the batches keep running.
            BatchFailedError: a batch ended ``failed`` (its ``errors`` are on the exception).
        """
        deadline = None if timeout is None else self._clock() + timeout
        self._wait_for(self._batch_ids, self._plan.n_rows, deadline, "netmind batch")
        self._raise_if_failed(self._batch_ids)
        return self

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait if needed, retry failed rows, and return a new frame with the result columns.

        Rows that failed for a reason worth retrying (5xx, 429, timeouts, ``batch_expired``,
        ``missing_result``) are sent again as new batches, up to ``retries`` rounds; rows
        with an answer are never sent again.
        """
        if self._results is None:
            deadline = None if timeout is None else self._clock() + timeout
            self.wait(None if deadline is None else max(deadline - self._clock(), 0.0))
            table = self._collect(self._plan, self._batch_ids)
            self._results = self._retry_rows(table, deadline)
        out = join_results(self._frame, self._results, self._options.prefix)
        out.attrs["netmind_frames"] = {
            "batch_ids": list(self._batch_ids),
            "retry_batch_ids": list(self._retry_batch_ids),
        }
        return out

    def cancel(self) -> BatchJob:
        """Cancel every batch still running and wait until each is terminal.

        Rows that finished keep their answers; ``result()`` then gives the rest the status
        ``cancelled``.
        """
        ids = (*self._batch_ids, *self._retry_batch_ids)
        for batch in self._fetch(ids):
            if batch.status not in TERMINAL_STATUSES and batch.status != "cancelling":
                self._connection.client.batches.cancel(batch.id)
        self._wait_for(ids, 0, None, "cancelling")
        return self

    # -- polling --------------------------------------------------------------------------

    def _fetch(self, batch_ids: Sequence[str]) -> list[Any]:
        fetched = [self._connection.client.batches.retrieve(b) for b in batch_ids]
        for batch in fetched:
            previous = self._batches.get(batch.id)
            if previous is None or previous.status != batch.status:
                self._journal.record_status(
                    self._connection.settings.base_url, batch.id, str(batch.status)
                )
            self._batches[batch.id] = batch
        return fetched

    def _wait_for(
        self, batch_ids: Sequence[str], total: int, deadline: float | None, label: str
    ) -> None:
        try:
            with tqdm(total=total, unit="req", desc=label, disable=not self._progress) as bar:
                self._poll(batch_ids, bar, deadline)
        except KeyboardInterrupt:
            print(self._reattach_hint("Interrupted"), file=sys.stderr)
            raise

    def _poll(self, batch_ids: Sequence[str], bar: Any, deadline: float | None) -> None:
        delay = min(_FIRST_POLL, self._poll_interval)
        failures = 0
        while True:
            try:
                batches = self._fetch(batch_ids)
                failures = 0
            except (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError):
                # A blip while polling a 24-hour batch is no reason to give up on it.
                failures += 1
                if failures >= _POLL_FAILURES:
                    raise
                log.info("poll failed; trying again in %.1f s", delay)
            else:
                bar.n = min(_requests_done(batches), bar.total or 0)
                bar.set_postfix_str(self._aggregate_status(batch_ids), refresh=False)
                bar.refresh()
                if all(b.status in TERMINAL_STATUSES for b in batches):
                    return
            if deadline is not None and self._clock() + delay > deadline:
                raise JobTimeoutError(self._reattach_hint("Not done in time"), self.id)
            self._sleep(delay)
            delay = min(delay * _BACKOFF, self._poll_interval)

    def _aggregate_status(self, batch_ids: Sequence[str]) -> str:
        statuses = [str(self._batches[b].status) for b in batch_ids if b in self._batches]
        if len(set(statuses)) == 1:
            return statuses[0]
        running = [s for s in statuses if s not in TERMINAL_STATUSES]
        if running:
            return running[0]
        for status in ("failed", "expired", "cancelled"):
            if status in statuses:
                return status
        return "completed"

    def _raise_if_failed(self, batch_ids: Sequence[str]) -> None:
        for batch_id in batch_ids:
            batch = self._batches[batch_id]
            if batch.status != "failed":
                continue
            errors = [e.model_dump() for e in (batch.errors.data or [])] if batch.errors else []
            detail = "; ".join(
                f"{e.get('code')}: {e.get('message')}"
                + (f" (line {e['line']})" if e.get("line") is not None else "")
                for e in errors[:5]
            )
            raise BatchFailedError(
                f"Batch {batch.id} failed: {detail or 'no reason given'}", batch.id, errors
            )

    def _reattach_hint(self, what: str) -> str:
        return (
            f"{what}: the batches keep running on the server (job {self.id}).\n"
            f"Reattach with: netmind_frames.BatchJob.attach({self.id!r}, frame=df)"
        )

    # -- results --------------------------------------------------------------------------

    def _collect(self, plan: RequestPlan, batch_ids: Sequence[str]) -> pa.Table:
        batches = [self._batches[b] for b in batch_ids]
        pairs = zip(plan.shards, batches, strict=True)
        with tempfile.TemporaryDirectory(prefix="netmind_frames-") as tmp:
            outcomes = [
                ShardOutcome(
                    positions=shard.positions,
                    batch_status=str(batch.status),
                    files=self._download(batch, Path(tmp) / str(index)),
                )
                for index, (shard, batch) in enumerate(pairs)
            ]
            table = collect_results(plan, outcomes)
        _reconcile(plan, batches, table)
        return table

    def _download(self, batch: Any, prefix: Path) -> list[bytes | Path]:
        """Download the output and error files that exist (either may be absent)."""
        files = {"output": batch.output_file_id, "error": batch.error_file_id}
        return [
            self._connection.files.download(file_id, Path(f"{prefix}-{kind}.jsonl"))
            for kind, file_id in files.items()
            if file_id
        ]

    def _retry_rows(self, table: pa.Table, deadline: float | None) -> pa.Table:
        """Send rows that failed for a retryable reason again, round after round."""
        for round_number in range(1, self._options.retries + 1):
            positions = retryable_rows(table)
            if len(positions) == 0:
                break
            log.info("retry round %d: %d rows", round_number, len(positions))
            subset = self._frame.iloc[positions]
            plan = self._options.build(subset)
            batch_ids = submit_plan(
                self._connection,
                self._journal,
                plan,
                completion_window=self._options.completion_window,
                metadata={**self._options.metadata, "netmind_frames_round": str(round_number)},
                round_number=round_number,
            )
            self._retry_batch_ids.extend(batch_ids)
            self._wait_for(batch_ids, plan.n_rows, deadline, f"retry {round_number}")
            try:
                self._raise_if_failed(batch_ids)
            except BatchFailedError as exc:
                warnings.warn(f"retry round {round_number} not used: {exc}", stacklevel=3)
                break
            table = _replace_rows(table, positions, self._collect(plan, batch_ids))
        return table


def retryable_rows(table: pa.Table) -> np.ndarray:
    """Positions of the rows that failed for a reason worth retrying (see RETRYABLE_CODES)."""
    code = table.column("error_code")
    retryable = pc.or_(
        pc.is_in(code, pa.array(sorted(RETRYABLE_CODES), code.type)),
        pc.match_substring_regex(code, _RETRYABLE_HTTP),
    )
    not_ok = pc.not_equal(table.column("status"), "ok")
    mask = pc.and_(retryable, not_ok).fill_null(False)
    return np.flatnonzero(np.asarray(mask, dtype=bool))


def _requests_done(batches: Sequence[Any]) -> int:
    done = 0
    for batch in batches:
        counts = getattr(batch, "request_counts", None)
        if counts is not None:
            done += (counts.completed or 0) + (counts.failed or 0)
    return done


def _replace_rows(table: pa.Table, positions: np.ndarray, retried: pa.Table) -> pa.Table:
    """``table`` with the rows at ``positions`` replaced by ``retried`` (in the same order)."""
    columns = table.column_names
    combined = pa.concat_tables([table, retried.select(columns)])
    take = np.arange(table.num_rows, dtype=np.int64)
    take[positions] = table.num_rows + np.arange(len(positions), dtype=np.int64)
    return combined.take(pa.array(take))


def _reconcile(plan: RequestPlan, batches: Sequence[Any], table: pa.Table) -> None:
    """Warn when our row counts disagree with the server's ``request_counts``."""
    status = table.column("status").to_numpy(zero_copy_only=False)
    for shard, batch in zip(plan.shards, batches, strict=True):
        counts = getattr(batch, "request_counts", None)
        if counts is None or batch.status != "completed" or counts.completed is None:
            continue
        ok = int(np.count_nonzero(status[shard.positions] == "ok"))
        if ok != counts.completed:
            warnings.warn(
                f"Batch {batch.id}: {ok} rows ok, but the server counts {counts.completed} "
                "completed requests.",
                stacklevel=4,
            )
