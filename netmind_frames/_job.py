"""BatchJob: the batches of one call, polled together, with one progress bar.

A job is the set of batches (one per shard) that one ``submit`` created. Its id is their batch
ids joined by commas, so any process can rebuild the job from the id alone.
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
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from ._connection import Connection
from ._errors import BatchFailedError, JobTimeoutError
from ._requests import RequestPlan
from ._results import ShardOutcome, collect_results, join_results

log = logging.getLogger("netmind_frames")

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
FINGERPRINT_KEY = "netmind_frames_fingerprint"

#: The first poll comes after this many seconds; the wait then grows to ``poll_interval``.
_FIRST_POLL = 1.0
_BACKOFF = 1.5


class BatchJob:
    """The batches submitted for one frame; ``wait()`` for them, then ``result()``.

    Get one from ``df.netmind.submit(...)`` or ``BatchJob.attach(job_id, frame=df, ...)``.

    Example:
        >>> job = df.netmind.submit("Summarise: {text}", model="m", local=True)
        >>> job.wait().result()[["text", "response", "status"]]
    """

    def __init__(
        self,
        connection: Connection,
        plan: RequestPlan,
        frame: pd.DataFrame,
        batch_ids: Sequence[str],
        *,
        prefix: str = "",
        poll_interval: float = 30.0,
        progress: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(batch_ids) != len(plan.shards):
            raise ValueError(f"{len(batch_ids)} batch ids for {len(plan.shards)} shards")
        self._connection = connection
        self._plan = plan
        self._frame = frame
        self._batch_ids = tuple(batch_ids)
        self._prefix = prefix
        self._poll_interval = poll_interval
        self._progress = progress
        self._sleep = sleep
        self._clock = clock
        self._batches: list[Any] = []
        self._results: pa.Table | None = None

    def __repr__(self) -> str:
        status = self._aggregate_status() if self._batches else "unknown"
        return f"BatchJob(id={self.id!r}, status={status!r}, rows={self._plan.n_rows})"

    @classmethod
    def attach(
        cls, job_id_or_batch_ids: str | Sequence[str], *, frame: pd.DataFrame, **options: Any
    ) -> BatchJob:
        """Reattach to a job from its id, in any process (see ``netmind_frames.attach``).

        Pass the frame and the same prompt, model and options as the original call.

        Example:
            >>> job = BatchJob.attach("batch_abc", frame=df, prompt="Summarise: {text}", model="m")
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
        """The ids of the job's batches, one per shard, in shard order."""
        return self._batch_ids

    @property
    def batches(self) -> list[Any]:
        """The last-seen ``openai.types.Batch`` object of each shard (refreshed by ``status``)."""
        return list(self._batches)

    @property
    def status(self) -> str:
        """The job's status, fetched now: one batch's status, or the least advanced of all."""
        self.refresh()
        return self._aggregate_status()

    def refresh(self) -> BatchJob:
        """Fetch every batch once."""
        self._batches = [self._connection.client.batches.retrieve(b) for b in self._batch_ids]
        return self

    def wait(self, timeout: float | None = None) -> BatchJob:
        """Poll until every batch is terminal, showing progress; return the job.

        Interrupting (Ctrl-C) does not cancel: the batches keep running, the job id and the
        line that reattaches are printed, and ``KeyboardInterrupt`` is raised again.

        Raises:
            JobTimeoutError: ``timeout`` seconds passed first; the batches keep running.
            BatchFailedError: a batch ended ``failed`` (its ``errors`` are on the exception).
        """
        try:
            self._poll(timeout)
        except KeyboardInterrupt:
            print(self._reattach_hint("Interrupted"), file=sys.stderr)
            raise
        self._raise_if_failed()
        return self

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait if needed, then return a new frame: the input's rows plus the result columns."""
        if self._results is None:
            self.wait(timeout)
            self._results = self._download_and_collect()
        out = join_results(self._frame, self._results, self._prefix)
        out.attrs["netmind_frames"] = {"batch_ids": list(self._batch_ids)}
        return out

    def cancel(self) -> BatchJob:
        """Cancel every batch that is still running; finished rows stay available."""
        for batch in self.refresh()._batches:
            if batch.status not in TERMINAL_STATUSES and batch.status != "cancelling":
                self._connection.client.batches.cancel(batch.id)
        return self.refresh()

    # -- polling --------------------------------------------------------------------------

    def _poll(self, timeout: float | None) -> None:
        deadline = None if timeout is None else self._clock() + timeout
        delay = min(_FIRST_POLL, self._poll_interval)
        total = self._plan.n_rows
        with tqdm(total=total, unit="req", desc="netmind batch", disable=not self._progress) as bar:
            while True:
                self.refresh()
                bar.n = min(self._requests_done(), total)
                bar.set_postfix_str(self._aggregate_status(), refresh=False)
                bar.refresh()
                if all(b.status in TERMINAL_STATUSES for b in self._batches):
                    return
                if deadline is not None and self._clock() + delay > deadline:
                    raise JobTimeoutError(
                        self._reattach_hint(f"Not done after {timeout} s"), self.id
                    )
                self._sleep(delay)
                delay = min(delay * _BACKOFF, self._poll_interval)

    def _requests_done(self) -> int:
        done = 0
        for batch in self._batches:
            counts = getattr(batch, "request_counts", None)
            if counts is not None:
                done += (counts.completed or 0) + (counts.failed or 0)
        return done

    def _aggregate_status(self) -> str:
        statuses = [str(b.status) for b in self._batches]
        if len(set(statuses)) == 1:
            return statuses[0]
        running = [s for s in statuses if s not in TERMINAL_STATUSES]
        if running:
            return running[0]
        for status in ("failed", "expired", "cancelled"):
            if status in statuses:
                return status
        return "completed"

    def _raise_if_failed(self) -> None:
        for batch in self._batches:
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
            f"Reattach with: netmind_frames.BatchJob.attach({self.id!r}, frame=df, ...) "
            "passing the same prompt and options."
        )

    # -- results --------------------------------------------------------------------------

    def _download_and_collect(self) -> pa.Table:
        pairs = zip(self._plan.shards, self._batches, strict=True)
        with tempfile.TemporaryDirectory(prefix="netmind_frames-") as tmp:
            outcomes = [
                ShardOutcome(
                    positions=shard.positions,
                    batch_status=str(batch.status),
                    files=self._download(batch, Path(tmp) / str(index)),
                )
                for index, (shard, batch) in enumerate(pairs)
            ]
            table = collect_results(self._plan, outcomes)
        self._reconcile(table)
        return table

    def _download(self, batch: Any, prefix: Path) -> list[bytes | Path]:
        """Download the output and error files that exist (either may be absent)."""
        files = {"output": batch.output_file_id, "error": batch.error_file_id}
        return [
            self._connection.files.download(file_id, Path(f"{prefix}-{kind}.jsonl"))
            for kind, file_id in files.items()
            if file_id
        ]

    def _reconcile(self, table: pa.Table) -> None:
        """Warn when our row counts disagree with the server's ``request_counts``."""
        status = table.column("status").to_numpy(zero_copy_only=False)
        for shard, batch in zip(self._plan.shards, self._batches, strict=True):
            counts = getattr(batch, "request_counts", None)
            if counts is None or batch.status != "completed":
                continue
            ok = int(np.count_nonzero(status[shard.positions] == "ok"))
            if counts.completed is not None and ok != counts.completed:
                warnings.warn(
                    f"Batch {batch.id}: {ok} rows ok, but the server counts {counts.completed} "
                    "completed requests.",
                    stacklevel=3,
                )
