"""One round of a job: submit its shards with a bounded number in flight, poll them together
under one progress bar, and collect each chunk's results as soon as its shards are done.

Shards beyond ``max_concurrent_batches`` wait for a slot; every submission goes through
``_submit.submit_shard`` (journal, then metadata lookup, then create), so a shard submitted
late is as exactly-once as the first. A chunk's output and error files are downloaded to the
spool, parsed into one Arrow table of the chunk's rows, and handed to ``on_chunk``; the
downloads are deleted at once, so the spool holds results, not raw files.

Transfers overlap: the shards that get a slot are submitted (each its own upload and create)
by up to ``transfers`` background threads at once while this thread polls the batches already
created, and the result files of the chunks that are done are downloaded by as many threads
while this one parses the chunk whose files have arrived: uploads, the server's work,
downloads and parsing all run at the same time. The
threads only wait on sockets and disks (the GIL is free meanwhile); each shard's submission
stays one exactly-once sequence of its own, so running several at once changes nothing about
what may be paid: a failure in one shard is raised after the others have ended and recorded
their batches.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openai
import pyarrow as pa
import pyarrow.compute as pc

from .._errors import BatchFailedError, JobTimeoutError
from .._timing import timed
from ..build._requests import EMBEDDINGS_ENDPOINT
from ..build._spool import ChunkPlan, SpooledShard
from ..results._embeddings import collect_embeddings
from ..results._results import ShardOutcome, collect_results
from ..transport._connection import Connection
from ._batch_status import NOT_SUBMITTED, TERMINAL_STATUSES, note_status
from ._journal import Journal
from ._storage import remember_input, remember_results
from ._submit import shard_key, submit_shard

log = logging.getLogger("netmind_frames")

#: The first poll comes after this many seconds; the wait then grows to ``poll_interval``.
_FIRST_POLL = 0.25
_BACKOFF = 1.5
#: Polls in a row that may fail (network, 5xx) before the error is raised.
POLL_FAILURES = 30
TRANSIENT_ERRORS = (openai.APIConnectionError, openai.InternalServerError, openai.RateLimitError)


class PollBlips:
    """Polls that failed in a row with one of ``TRANSIENT_ERRORS``: a blip while polling a
    24-hour batch is no reason to give up on it, ``POLL_FAILURES`` in a row are."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0

    def passed(self) -> None:
        """A poll succeeded: the count starts again."""
        self.count = 0

    def outlast(self, error: BaseException, delay: float) -> None:
        """One more failure: logged (the next try is in ``delay`` s), or ``error`` raised."""
        self.count += 1
        if self.count >= POLL_FAILURES:
            raise error
        log.info("%s failed; trying again in %.1f s", self.what, delay)


#: Uploads (with their creates) or downloads at once. Both providers' file storage serves
#: parallel transfers; a few keep a fast link busy without hammering a slow one.
TRANSFERS = 4


def cancel_running(client: openai.OpenAI, batches: Sequence[tuple[str, str | None]]) -> None:
    """Cancel each ``(batch id, status last seen)`` that may still run (None: not seen yet).

    A batch that finished between that status and its cancel (the server answers 400 or
    409) is left as it is.
    """
    for batch_id, status in batches:
        if status in TERMINAL_STATUSES or status == "cancelling":
            continue
        try:
            client.batches.cancel(batch_id)
        except (openai.BadRequestError, openai.ConflictError):
            log.info("batch %s finished before it could be cancelled", batch_id)


@dataclass
class Round:
    """The shards of one round (0: every row; 1, 2, ...: retried rows) and their batches."""

    number: int
    chunks: tuple[ChunkPlan, ...]
    metadata: dict[str, str]
    batch_ids: list[str | None] = field(default_factory=list)
    collected: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.batch_ids:
            self.batch_ids = [None] * len(self.shards)

    @property
    def shards(self) -> list[SpooledShard]:
        """Every shard of the round, in order (``shard.index`` is its place here)."""
        return [shard for chunk in self.chunks for shard in chunk.shards]

    @property
    def n_requests(self) -> int:
        """The requests of all shards."""
        return sum(chunk.n_rows for chunk in self.chunks)


@dataclass
class Driver:
    """What a round needs from its job: clients, journal, knobs, and the batches seen."""

    connection: Connection
    journal: Journal
    spool: Path
    endpoint: str
    completion_window: str
    max_concurrent: int
    poll_interval: float
    sleep: Callable[[float], None]
    clock: Callable[[], float]
    batches: dict[str, Any] = field(default_factory=dict)
    resubmit: bool = False
    check_cancelled: Callable[[], bool] = lambda: False
    """Asked before submitting more: was the job cancelled (maybe by another process)?"""
    cancelled: bool = False
    job_id: str = ""
    """Whose files the journal records (its input and result files on the provider)."""
    transfers: int = TRANSFERS
    """Submissions (uploads) or downloads running at once."""
    _submitting: dict[int, Future[str]] = field(default_factory=dict, repr=False)
    """Shards (by index) whose submission runs in the background."""
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    # -- submitting -----------------------------------------------------------------------

    def submit_ready(self, rnd: Round, *, wait: bool = True) -> int:
        """Submit waiting shards while fewer than ``max_concurrent`` run or are being
        submitted; how many batches were created since the last call.

        Up to ``transfers`` shards are submitted at once, each exactly once (journal, lookup,
        upload, create). With ``wait``, this returns once they have all ended; without, the
        submissions go on in the background (polling and downloading meanwhile) and later
        calls record their batches. When one fails, no more are started, the others still
        end and their batches are recorded, and then the first failure (in shard order) is
        raised.
        """
        created = self._harvest(rnd)
        if None in rnd.batch_ids and not self.notice_cancel(rnd):
            running = sum(1 for b in rnd.batch_ids if b is not None and not self.is_terminal(b))
            waiting = [
                i
                for i, batch_id in enumerate(rnd.batch_ids)
                if batch_id is None and i not in self._submitting
            ]
            room = self.max_concurrent - running - len(self._submitting)
            for i in waiting[: max(0, room)]:
                self._submitting[i] = self._uploads().submit(self._submit_one, rnd, i)
        if wait:
            created += self._finish_submitting(rnd)
        return created

    def _submit_one(self, rnd: Round, i: int) -> str:
        shard = rnd.shards[i]
        return submit_shard(
            self.connection,
            self.journal,
            shard,
            endpoint=self.endpoint,
            index=i,
            total=len(rnd.batch_ids),
            key=shard_key(shard, rnd.number),
            completion_window=self.completion_window,
            metadata=rnd.metadata,
            resubmit=self.resubmit,
            sleep=self.sleep,
        )

    def _uploads(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.transfers, thread_name_prefix="netmind-submit")
        return self._pool

    def _finish_submitting(self, rnd: Round) -> int:
        """Wait for the submissions under way (none is abandoned half-way: each ends and is
        recorded); how many batches they created. Raises the first failure, as
        :meth:`submit_ready`."""
        try:
            if self._submitting:
                futures_wait(list(self._submitting.values()))
        except BaseException:
            self._stop_submitting(rnd)  # Ctrl-C: those under way still end and are recorded
            raise
        return self._harvest(rnd)

    def _harvest(self, rnd: Round) -> int:
        """Record the batches of the submissions that have ended; how many. After a failure
        the others are waited for and recorded, then the first (in shard order) is raised."""
        failures: dict[int, BaseException] = {}
        created: list[str] = []
        while True:
            for i in sorted(i for i, future in self._submitting.items() if future.done()):
                future = self._submitting.pop(i)
                if future.cancelled():  # never started (interrupted): still waiting
                    continue
                error = future.exception()
                if error is not None:
                    failures[i] = error
                    continue
                rnd.batch_ids[i] = batch_id = future.result()
                created.append(batch_id)
                if self.job_id:
                    shard = rnd.shards[i]
                    key = shard_key(shard, rnd.number)
                    size = shard.path.stat().st_size
                    remember_input(self.connection, self.journal, self.job_id, key, size=size)
            if not failures or not self._submitting:
                break
            futures_wait(list(self._submitting.values()))
        if self.cancelled and created:
            # Created after the job was cancelled (they were under way): cancel them too.
            cancel_running(self.connection.client, [(b, None) for b in created])
        if failures:
            raise failures[min(failures)]
        return len(created)

    def _stop_submitting(self, rnd: Round) -> None:
        """Drop the submissions not started; let those under way end and record them (a
        failure among them is left to the log: another error is on its way out)."""
        if self._pool is None:
            return
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None
        try:
            self._harvest(rnd)
        except Exception as exc:  # reported, not raised over the error on its way out
            log.info("a shard's submission failed while stopping: %s", exc)

    def notice_cancel(self, rnd: Round) -> bool:
        """Whether the job was cancelled, maybe by another process (``netmind-frames cancel``).

        That process knows only the first round's batches (the journal's), so on first
        noticing, this one cancels the running batches of ``rnd`` too: a retry round's are
        known here only.
        """
        if self.cancelled:
            return True
        if not self.check_cancelled():
            return False
        seen = [(b, getattr(self.batches.get(b), "status", None)) for b in rnd.batch_ids if b]
        try:
            cancel_running(self.connection.client, seen)
        except TRANSIENT_ERRORS:
            log.info("cancelling this round's batches failed; trying again at the next poll")
            return True
        self.cancelled = True
        return True

    # -- polling --------------------------------------------------------------------------

    def is_terminal(self, batch_id: str) -> bool:
        batch = self.batches.get(batch_id)
        return batch is not None and batch.status in TERMINAL_STATUSES

    def fetch(self, batch_ids: Sequence[str]) -> list[Any]:
        """Retrieve batches now, recording status changes in the journal."""
        fetched = [self.connection.client.batches.retrieve(b) for b in batch_ids]
        for batch in fetched:
            note_status(str(batch.status))
            previous = self.batches.get(batch.id)
            if previous is None or previous.status != batch.status:
                self.journal.record_status(
                    self.connection.settings.base_url, batch.id, str(batch.status)
                )
            self.batches[batch.id] = batch
        return fetched

    def shard_status(self, rnd: Round, i: int) -> str:
        batch_id = rnd.batch_ids[i]
        if batch_id is None:
            return "cancelled" if self.cancelled else NOT_SUBMITTED
        batch = self.batches.get(batch_id)
        return "submitted" if batch is None else str(batch.status)

    def aggregate_status(self, rnd: Round) -> str:
        """One status, or the least advanced of all (a provider's status verbatim, even one
        we do not know); ``not_submitted``: shards wait for a slot."""
        statuses = [self.shard_status(rnd, i) for i in range(len(rnd.batch_ids))]
        if len(set(statuses)) == 1:
            return statuses[0]
        running = [s for s in statuses if s not in TERMINAL_STATUSES and s != NOT_SUBMITTED]
        if running:
            return running[0]
        if NOT_SUBMITTED in statuses:
            return NOT_SUBMITTED
        for status in ("failed", "expired", "cancelled"):
            if status in statuses:
                return status
        return "completed"

    def run(
        self,
        rnd: Round,
        bar: Any,
        deadline: float | None,
        on_chunk: Callable[[ChunkPlan, pa.Table], None] | None,
        timeout_message: Callable[[], str],
        job_id: str,
    ) -> None:
        """Drive ``rnd`` until every shard is terminal (and, with ``on_chunk``, collected).

        Raises ``BatchFailedError`` when a batch fails validation, ``JobTimeoutError`` when
        ``deadline`` (on ``clock``) passes first.
        """
        try:
            delay = min(_FIRST_POLL, self.poll_interval)
            blips = PollBlips("poll")
            shards = rnd.shards
            while True:
                self.notice_cancel(rnd)
                # Shards upload in the background while this thread polls, downloads and parses.
                self.submit_ready(rnd, wait=False)
                live = [b for b in rnd.batch_ids if b is not None and not self.is_terminal(b)]
                try:
                    self.fetch(live)
                    blips.passed()
                except TRANSIENT_ERRORS as exc:
                    blips.outlast(exc, delay)
                else:
                    self.raise_if_failed(rnd.batch_ids)
                    # Slots the poll freed are filled before collecting: the next shards
                    # upload (and the server runs them) while this thread downloads and parses.
                    created = self.submit_ready(rnd, wait=False)
                    if on_chunk is not None:
                        self._collect_ready(rnd, on_chunk)
                    done = [
                        self.shard_status(rnd, i) in TERMINAL_STATUSES for i in range(len(shards))
                    ]
                    bar.n = min(self._requests_done(rnd), bar.total or 0)
                    bar.set_postfix_str(
                        f"{self.aggregate_status(rnd)}, shards {sum(done)}/{len(shards)}",
                        refresh=False,
                    )
                    bar.refresh()
                    finished = on_chunk is None or len(rnd.collected) == len(rnd.chunks)
                    if all(done) and finished:
                        return
                    if created + self.submit_ready(rnd, wait=False):
                        # New batches were created: poll them at once, then soon, as at the
                        # start (a quick one may be done in a second).
                        delay = min(_FIRST_POLL, self.poll_interval)
                        continue
                    if any(self.is_terminal(b) for b in live):
                        # A batch just ended: a job's batches tend to end close together.
                        delay = min(_FIRST_POLL, self.poll_interval)
                if deadline is not None and self.clock() + delay > deadline:
                    raise JobTimeoutError(timeout_message(), job_id)
                with timed("wait"):
                    if self._submitting:  # wake as soon as a submission ends
                        futures_wait(list(self._submitting.values()), delay, FIRST_COMPLETED)
                    else:
                        self.sleep(delay)
                delay = min(delay * _BACKOFF, self.poll_interval)
        finally:
            self._stop_submitting(rnd)  # those under way end and are recorded

    def _requests_done(self, rnd: Round) -> int:
        done = 0
        for chunk in rnd.chunks:
            if chunk.number in rnd.collected:
                done += chunk.n_rows
                continue
            for shard in chunk.shards:
                batch = self.batches.get(rnd.batch_ids[shard.index] or "")
                counts = getattr(batch, "request_counts", None)
                if counts is not None:
                    done += (counts.completed or 0) + (counts.failed or 0)
        return done

    def raise_if_failed(self, batch_ids: Sequence[str | None]) -> None:
        """Raise ``BatchFailedError`` for the first batch that ended ``failed``."""
        for batch_id in batch_ids:
            batch = self.batches.get(batch_id or "")
            if batch is None or batch.status != "failed":
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

    # -- collecting -----------------------------------------------------------------------

    def _collect_ready(self, rnd: Round, on_chunk: Callable[[ChunkPlan, pa.Table], None]) -> None:
        ready = [
            chunk
            for chunk in rnd.chunks
            if chunk.number not in rnd.collected
            and all(self.shard_status(rnd, s.index) in TERMINAL_STATUSES for s in chunk.shards)
        ]
        if not ready:
            return
        # Every ready chunk's files download at once (bounded) while this thread parses
        # the chunks, in order, as their files arrive.
        pool = ThreadPoolExecutor(self.transfers, thread_name_prefix="netmind-frames-download")
        try:
            pending = {chunk.number: self._start_downloads(pool, rnd, chunk) for chunk in ready}
            for chunk in ready:
                on_chunk(chunk, self.collect(rnd, chunk, pending[chunk.number]))
                rnd.collected.add(chunk.number)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _start_downloads(
        self, pool: ThreadPoolExecutor, rnd: Round, chunk: ChunkPlan
    ) -> list[Future[dict[str, Path]] | None]:
        """Start downloading each shard's result files (None: a shard never submitted)."""
        futures: list[Future[dict[str, Path]] | None] = []
        for shard in chunk.shards:
            batch_id = rnd.batch_ids[shard.index]
            if batch_id is None:
                futures.append(None)
                continue
            prefix = self.spool / f"r{rnd.number}-{shard.index:06d}"
            futures.append(pool.submit(self._download, self.batches[batch_id], prefix))
        return futures

    def collect(
        self,
        rnd: Round,
        chunk: ChunkPlan,
        pending: Sequence[Future[dict[str, Path]] | None] | None = None,
    ) -> pa.Table:
        """Download (or take from ``pending``, one per shard) and parse the results of one
        chunk whose shards are all terminal."""
        if pending is None:
            pending = [None] * len(chunk.shards)
        outcomes: list[ShardOutcome] = []
        downloads: list[Path] = []
        batches = []
        try:
            for shard, future in zip(chunk.shards, pending, strict=True):
                batch_id = rnd.batch_ids[shard.index]
                if batch_id is None:  # never submitted: the job was cancelled first
                    outcomes.append(ShardOutcome(shard.positions, "cancelled", []))
                    continue
                batch = self.batches[batch_id]
                batches.append((shard, batch))
                prefix = self.spool / f"r{rnd.number}-{shard.index:06d}"
                files = future.result() if future else self._download(batch, prefix)
                downloads += files.values()
                outcomes.append(
                    ShardOutcome(shard.positions, str(batch.status), list(files.values()))
                )
                if self.job_id:
                    self._remember_files(rnd, shard, batch, files)
            with timed("parse"):
                collect = (
                    collect_embeddings if chunk.endpoint == EMBEDDINGS_ENDPOINT else collect_results
                )
                table = collect(chunk.request_plan(), outcomes)
        finally:
            for path in downloads:
                path.unlink(missing_ok=True)
        _reconcile(batches, table)
        return table

    def _download(self, batch: Any, prefix: Path) -> dict[str, Path]:
        """Download the output and error files that exist (either may be absent), by id."""
        files = {"output": batch.output_file_id, "error": batch.error_file_id}
        with timed("download"):
            return {
                file_id: self.connection.files.download(file_id, Path(f"{prefix}-{kind}.jsonl"))
                for kind, file_id in files.items()
                if file_id
            }

    def _remember_files(
        self, rnd: Round, shard: SpooledShard, batch: Any, files: dict[str, Path]
    ) -> None:
        """Record a collected shard's input and result files (with sizes) in the journal."""
        key = shard_key(shard, rnd.number)
        size = shard.path.stat().st_size if shard.path.exists() else None
        remember_input(self.connection, self.journal, self.job_id, key, batch, size)
        sizes = {file_id: path.stat().st_size for file_id, path in files.items()}
        remember_results(self.connection, self.journal, self.job_id, batch, sizes)


def _reconcile(batches: Sequence[tuple[SpooledShard, Any]], table: pa.Table) -> None:
    """Warn when our row counts disagree with the server's ``request_counts``."""
    # Compared in Arrow: a chunk's statuses as Python strings cost the polling thread ~15 ms.
    ok_rows = pc.equal(table.column("status"), "ok").fill_null(False).to_numpy()
    for shard, batch in batches:
        counts = getattr(batch, "request_counts", None)
        if counts is None or batch.status != "completed" or counts.completed is None:
            continue
        ok = int(np.count_nonzero(ok_rows[shard.positions]))
        if ok != counts.completed:
            warnings.warn(
                f"Batch {batch.id}: {ok} rows ok, but the server counts {counts.completed} "
                "completed requests.",
                stacklevel=5,
            )
