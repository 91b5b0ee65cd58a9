"""BatchJob: the batches of one call, submitted a few at a time, polled under one progress bar.

A job is the plan of one call (its input's rows in chunks, each chunk's requests in shards
spooled to disk) and the batch of each shard. Its id, ``job-<sha256 prefix>``, is derived from
the shards' fingerprints, so it is known before anything is submitted and the same rows and
options always give the same id; the journal maps it to the options, the input file and the
shards' batches. At most ``max_concurrent_batches`` batches run at once; the rest are
submitted, each exactly once, as earlier ones finish (by whichever process waits). Rows that
fail for a reason worth retrying are sent again as new batches, in up to ``retries`` rounds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import openai
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
from tqdm import TqdmWarning

with warnings.catch_warnings():
    # In a notebook without ipywidgets, tqdm.auto warns and falls back to the text bar,
    # which is what we want anyway: say nothing.
    warnings.simplefilter("ignore", TqdmWarning)
    from tqdm.auto import tqdm

from .._errors import BatchFailedError, InputError
from .._timing import timed
from ..build._prefetch import prefetched
from ..build._private import DIR_MODE, private_dir, private_file, private_home
from ..build._source import FileSource, FrameSource, Source, TableSource, as_source, chunk_rows_for
from ..build._spool import ChunkPlan, JobPlan, spool_chunk, spool_plan
from ..build._storage_io import is_url
from ..results._embeddings import join_embeddings
from ..results._results import join_results
from ..results._schema import OutputSchema
from ..results._structured import check_answers, typed_frame
from ..results._tables import join_table, to_polars
from ..transport._config import MAX_CONCURRENT_BATCHES
from ..transport._connection import Connection
from ._attach import find_job, known_batches, remember
from ._cancel import cancel_batches
from ._checks import check_timeout
from ._early import Abandoned, FinalChunks
from ._journal import FileKind, Journal, StoredFile
from ._options import JobOptions
from ._output import write_result
from ._prices import load_prices
from ._rounds import TERMINAL_STATUSES, Driver, Round
from ._storage import delete_stored, remember_input, remember_results
from ._submit import shard_key
from ._summary import SUMMARY_COLUMNS, format_summary, reattach_line, summarize

log = logging.getLogger("netmind_frames")

__all__ = [
    "RETRYABLE_CODES",
    "TERMINAL_STATUSES",
    "BatchJob",
    "joined_frame",
    "joined_output",
    "replace_rows",
    "retryable_rows",
]

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
        "invalid_output",
        "rate_limit_error",
        "timeout",
        "request_timeout",
        "connection_error",
    }
)
_RETRYABLE_HTTP = r"^http_(408|409|429|5\d\d)$"


class BatchJob:
    """The batches submitted for one frame (or file); ``wait()`` for them, then ``result()``.

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
        frame: Any,
        batch_ids: Sequence[str | None] | None = None,
        *,
        plan: JobPlan | None = None,
        poll_interval: float = 30.0,
        progress: bool = True,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        resubmit: bool = False,
        keep_files: bool = False,
        local: bool = False,
        prices: Mapping[str, Any] | str | Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prices = load_prices(prices)  # a bad price is an error before any upload
        self._local = local
        #: First-round batches that existed before this object submitted anything (a re-run
        #: reattached to them: not paid again); None until known.
        self._reused: int | None = None
        self._source: Source = (
            frame if isinstance(frame, (FrameSource, FileSource, TableSource)) else as_source(frame)
        )
        self._options = options
        self._chunk_rows = chunk_rows_for(options.max_requests, options.chunk_rows)
        spool_root = private_home(connection.settings.home) / "spool"
        private_dir(spool_root)
        self._spool = Path(tempfile.mkdtemp(prefix="job-", dir=spool_root))
        os.chmod(self._spool, DIR_MODE)  # mkdtemp's 0700 went through the umask
        # The spool lives as long as the job object (or the process).
        self._finalizer = weakref.finalize(self, shutil.rmtree, self._spool, True)
        self._plan = plan if plan is not None else self._build_plan()
        self._journal = journal
        self._connection = connection
        self._progress = progress
        self._keep_files = keep_files
        self._cancelled = False
        self._driver = Driver(
            connection=connection,
            journal=journal,
            spool=self._spool,
            endpoint=self._plan.chunks[0].endpoint,
            completion_window=options.completion_window,
            max_concurrent=max(1, int(max_concurrent_batches)),
            poll_interval=poll_interval,
            sleep=sleep,
            clock=clock,
            resubmit=resubmit,
            check_cancelled=self._check_cancelled,
            job_id=self._plan.job_id,
        )
        self._first = Round(0, self._plan.chunks, dict(options.metadata))
        if batch_ids is not None:
            self.use_batches(batch_ids)
        self._retries: list[Round] = []
        self._done = False

    def use_batches(self, batch_ids: Sequence[str | None]) -> None:
        """The first-round batch of each shard, known already (None: not submitted yet)."""
        if len(batch_ids) != len(self._first.batch_ids):
            raise ValueError(f"{len(batch_ids)} batch ids for {len(self._plan.shards)} shards")
        self._first.batch_ids = list(batch_ids)

    def _build_plan(self) -> JobPlan:
        columns = self._options.columns
        if isinstance(self._source, FileSource):
            self._source.check_columns(columns)
        # The next window is read while this one is built and spooled.
        frames = self._source.frames(self._chunk_rows, columns)
        with contextlib.closing(prefetched(frames, "netmind-frames-read")) as chunks:
            return spool_plan(chunks, self._options.build, self._spool, self._source.n_rows)

    def __repr__(self) -> str:
        status = self._driver.aggregate_status(self._first) if self._driver.batches else "unknown"
        return f"BatchJob(id={self.id!r}, status={status!r}, rows={self._plan.n_rows})"

    @classmethod
    def attach(
        cls,
        job_id_or_batch_ids: str | Sequence[str],
        *,
        frame: Any = None,
        input: str | Path | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        provider: str | None = None,
        local: bool = False,
        poll_interval: float = 30.0,
        progress: bool = True,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        keep_files: bool = False,
        prices: Mapping[str, Any] | str | Path | None = None,
        **options: Any,
    ) -> BatchJob:
        """Rebuild a job from its id (``job-...``, or its batch ids comma-separated), in any
        process.

        On the machine that submitted the job, the journal knows the call's options, its base
        URL and (for a file) its input path, so the id is all it needs besides the frame.
        Elsewhere (or with the journal gone) pass the original call's options too
        (``prompt=``, ``model=``, ...). Either way the requests are rebuilt and must give the
        same job id (or, for batch ids, match each batch's fingerprint), so results are never
        joined to the wrong rows. Shards not submitted yet are submitted, exactly once, by
        ``wait()``/``result()``.

        Args:
            frame: the frame the job was submitted from: a pandas or Polars DataFrame (or
                LazyFrame), or a ``pyarrow.Table``; ``result()`` returns the same kind.
            input: or the input file (default: the one the journal recorded).
            keep_files: keep the job's input files on the provider once its result is
                written (by default they are deleted then; see :meth:`result`).
            prices: token prices for :meth:`summary` (see ``batch_complete``).

        Example:
            >>> job = BatchJob.attach("job-0123abcd...", frame=df)
            >>> out = job.result()

        Raises:
            InputError: no options known for this job, or the job was not submitted from this
                frame with these options.
            ConfigurationError: the job ran on another process's local server (``local=True``).
        """
        found = find_job(
            job_id_or_batch_ids,
            frame=frame,
            input=input,
            api_key=api_key,
            base_url=base_url,
            client=client,
            provider=provider,
            local=local,
            **options,
        )
        job = cls(
            found.connection,
            found.journal,
            found.options,
            found.source,
            poll_interval=poll_interval,
            progress=progress,
            max_concurrent_batches=max_concurrent_batches,
            keep_files=keep_files,
            local=found.local,
            prices=prices,
        )
        job.use_batches(known_batches(found, job))
        job._note_reused()
        settings = found.connection.settings
        remember(found.journal, job, settings.base_url, found.options, found.source, found.local)
        return job

    @property
    def id(self) -> str:
        """The job id, ``job-`` + 24 hex digits; ``BatchJob.attach`` takes it."""
        return self._plan.job_id

    @property
    def n_rows(self) -> int:
        """The rows of the job's input."""
        return self._plan.n_rows

    @property
    def n_shards(self) -> int:
        """The first-round shards (one batch each)."""
        return len(self._first.batch_ids)

    @property
    def shard_keys(self) -> list[str]:
        """The first-round shards' fingerprints, in order."""
        return [shard.fingerprint for shard in self._plan.shards]

    @property
    def batch_ids(self) -> tuple[str, ...]:
        """The ids of the first-round batches submitted so far, in shard order."""
        return tuple(b for b in self._first.batch_ids if b is not None)

    @property
    def retry_batch_ids(self) -> tuple[str, ...]:
        """The ids of the batches that re-sent failed rows (empty until ``result()``)."""
        return tuple(b for r in self._retries for b in r.batch_ids if b is not None)

    @property
    def batches(self) -> list[Any]:
        """The last-seen ``openai.types.Batch`` of each submitted first-round shard."""
        return [self._driver.batches[b] for b in self.batch_ids if b in self._driver.batches]

    @property
    def status(self) -> str:
        """The job's status, fetched now: the least advanced of its shards', as the provider
        names it (``validating``, ``in_progress``, Netmind's ``pending``, or any status it
        invents: shown as it is and taken as still running); ``not_submitted``: shards still
        wait for a slot."""
        self.refresh()
        return self._driver.aggregate_status(self._first)

    def refresh(self) -> BatchJob:
        """Fetch every submitted first-round batch once."""
        self._driver.fetch(self.batch_ids)
        return self

    def start(self) -> BatchJob:
        """Submit the first shards, up to ``max_concurrent_batches`` (``submit`` calls it).

        Shards whose batch this machine's journal knows already are reattached, never
        submitted again; when any are, the log says so (``reattached to job ...``).
        """
        if self._reused is None and not self._driver.resubmit:
            base_url = self._connection.settings.base_url
            known = [self._journal.shard(base_url, key) for key in self.shard_keys]
            self._reused = sum(1 for r in known if r is not None and r.batch_id)
            if self._reused:
                log.warning("%s", reattach_line(self.id, self._reused, self.n_shards))
        self._driver.submit_ready(self._first)
        return self

    def _note_reused(self) -> None:
        """After ``attach``: the batches found are reattached, not paid again."""
        self._reused = len(self.batch_ids)
        if self._reused:
            log.info("%s", reattach_line(self.id, self._reused, self.n_shards))

    @property
    def reattached(self) -> bool:
        """Whether this job reattached to batches submitted before (a re-run, or ``attach``)
        instead of submitting them: those were not paid again."""
        return bool(self._reused)

    def summary(self) -> dict[str, Any]:
        """How the finished job went and what it cost, as a dict (waits for it first).

        Keys: ``job_id``, ``rows``, ``ok``, ``failed`` (rows per error code), ``expired``,
        ``cancelled``, ``prompt_tokens``, ``completion_tokens``, ``wall_seconds`` (first
        batch created to last one ended, by the server's clock), ``reattached``,
        ``batches_reused``, ``batches_new``, and ``cost``: None without a price for the
        job's model, else ``{"model", "batch_usd", "sync_usd", "rule"}`` from the
        ``prices`` given (or ``NETMIND_FRAMES_HOME/prices.json``; no price is invented).
        """
        self._finish(None)
        batch_ids = [*self.batch_ids, *self.retry_batch_ids]
        batches = [self._driver.batches[b] for b in batch_ids if b in self._driver.batches]
        return summarize(
            self.id,
            (self._load(c.number, SUMMARY_COLUMNS) for c in self._plan.chunks),
            batches,
            model=None if self._options.model_column else self._options.model,
            prices=self._prices,
            reused=self._reused or 0,
            n_shards=self.n_shards,
        )

    def _log_summary(self) -> None:
        log.info("%s", format_summary(self.summary()))

    def wait(self, timeout: float | None = None) -> BatchJob:
        """Submit the shards still waiting as slots free up, and poll until every batch is
        terminal, showing progress; return the job.

        Interrupting (Ctrl-C) does not cancel: the batches keep running, the job id and the
        line that reattaches are printed, and ``KeyboardInterrupt`` is raised again.

        Raises:
            InputError: ``timeout`` is not None, 0 or a finite number of seconds > 0.
            JobTimeoutError: ``timeout`` seconds passed first; the batches keep running.
            BatchFailedError: a batch ended ``failed`` (its ``errors`` are on the exception).
        """
        check_timeout(timeout)
        self._drive(self._first, self._deadline(timeout), self._label(), None)
        return self

    def _label(self) -> str:
        """The progress bar's description: says when the batches were there already."""
        return "netmind batch (reattached, not paid again)" if self._reused else "netmind batch"

    def result(self, timeout: float | None = None) -> Any:
        """Wait if needed, retry failed rows, and return a new frame with the result columns.

        The frame is of the kind the job was submitted from: a pandas DataFrame, a Polars
        DataFrame (from a Polars DataFrame or LazyFrame) or a ``pyarrow.Table`` (from a table
        or a ``RecordBatchReader``, and for a file read by ``BatchJob.attach(input=...)``:
        pandas).

        Rows that failed for a reason worth retrying (5xx, 429, timeouts, ``batch_expired``,
        ``missing_result``) are sent again as new batches, up to ``retries`` rounds; rows
        with an answer are never sent again.

        Once the frame is built, the job's input files are deleted on the provider (its
        output and error files stay), unless the job was made with ``keep_files=True``. A
        deletion that fails is logged; it never fails the call.
        """
        out = self._joined(timeout)
        self._drop_inputs()
        return out

    def _joined(self, timeout: float | None) -> Any:
        """The input's rows plus the result columns (nothing deleted)."""
        check_timeout(timeout)
        self._finish(timeout)
        with timed("join"):
            results = pa.concat_tables([self._load(c.number) for c in self._plan.chunks])
            provenance = {
                "job_id": self.id,
                "batch_ids": list(self.batch_ids),
                "retry_batch_ids": list(self.retry_batch_ids),
            }
            return joined_output(self._source, self._chunk_rows, results, self._options,
                                 provenance)  # fmt: skip

    def to_parquet(
        self,
        path: str | Path,
        timeout: float | None = None,
        *,
        dataset: bool = False,
        storage_options: Mapping[str, Any] | None = None,
    ) -> dict[str, int]:
        """Like ``result()``, but write the joined rows to a Parquet file, chunk by chunk
        when the job's input is a file (memory stays flat); return the count of each status.
        Once the file is written, the input files are deleted as by ``result()``.

        ``path`` may be a URL (``s3://``, ``gs://``, ``az://``, ``abfs://``, ``file://``; the
        extra ``[cloud]``), with the storage library's ``storage_options``; ``dataset=True``
        writes a directory of part files, one per window. The result is written under a
        temporary name and moved into place at the end: a failed write leaves no partial file.
        """
        check_timeout(timeout)

        def write(results_of: Callable[[int], pa.Table]) -> dict[str, int]:
            return write_result(
                path,
                self._source,
                self._chunk_rows,
                results_of,
                self._options,
                lambda: self._joined(None),
                dataset=dataset,
                storage_options=storage_options,
            )

        if self._done or not self._writes_early(path):
            self._finish(timeout)
            counts = write(self._load)
        else:
            counts = self._write_while_running(write, timeout)
        self._drop_inputs()
        return counts

    def _writes_early(self, path: str | Path) -> bool:
        """Whether OUT can be written while the batches run: a local input file (or an Arrow
        table) to a local OUT. A remote input or OUT is not held open for a job's hours."""
        if is_url(path):
            return False
        if isinstance(self._source, FileSource):
            return self._source.path is not None
        return isinstance(self._source, TableSource)

    def _write_while_running(
        self, write: Callable[[Callable[[int], pa.Table]], dict[str, int]], timeout: float | None
    ) -> dict[str, int]:
        """Write OUT in a thread, each window once its chunk's results are final, while this
        thread drives the job; the writer's own error (say, a full disk) is raised after."""
        final = FinalChunks(len(self._plan.chunks), self._load)
        with ThreadPoolExecutor(1, thread_name_prefix="netmind-frames-write") as pool:
            writer = pool.submit(write, final.results_of)
            try:
                self._finish(timeout, on_final=final.mark)
            except BaseException:
                final.abandon()  # the writer removes its temporary file and ends
                stopped = writer.exception()
                if stopped is not None and not isinstance(stopped, Abandoned):
                    log.info("writing the result stopped: %s", stopped)
                raise
            final.mark_all()
            return writer.result()

    def delete_files(self) -> list[str]:
        """Delete the job's files on the provider, its inputs and its results; their ids.

        Frees the provider's storage (Netmind: 100 GB per organization) once the result is
        safe on disk. Without the result files, the job's answers cannot be downloaded again:
        re-running the call would have to pay again (``resubmit=True``). A deletion that fails
        is logged and the file is left (``netmind-frames files --delete`` tries again).

        Raises:
            InputError: a batch of the job is still running (``wait()`` or ``cancel()`` first).
        """
        batch_ids = [*self.batch_ids, *self.retry_batch_ids]
        for batch in self._driver.fetch(batch_ids):
            if batch.status not in TERMINAL_STATUSES:
                raise InputError(
                    f"job {self.id} still runs (batch {batch.id} is {batch.status}): wait() "
                    "or cancel() it before deleting its files"
                )
            remember_results(self._connection, self._journal, self.id, batch)
        for rnd in [self._first, *self._retries]:
            for shard, batch_id in zip(rnd.shards, rnd.batch_ids, strict=True):
                if batch_id is not None:
                    batch = self._driver.batches.get(batch_id)
                    key = shard_key(shard, rnd.number)
                    remember_input(self._connection, self._journal, self.id, key, batch)
        files = self._stored_files(("input", "output", "error"))
        return [f.file_id for f in delete_stored(self._connection, self._journal, files)]

    def _drop_inputs(self) -> None:
        """Delete the input files once the result is written (unless keep_files=True)."""
        if self._keep_files:
            return
        gone = delete_stored(self._connection, self._journal, self._stored_files(("input",)))
        if gone:
            log.info("job %s: deleted %d input file(s) on the provider", self.id, len(gone))

    def _stored_files(self, kinds: tuple[FileKind, ...]) -> list[StoredFile]:
        base_url = self._connection.settings.base_url
        files = self._journal.files(job_id=self.id, kinds=kinds)
        return [f for f in files if f.base_url == base_url]

    def cancel(self, timeout: float | None = None) -> BatchJob:
        """Cancel every batch still running, submit no more, and wait until each is terminal.

        Rows that finished keep their answers; ``result()`` then gives the rest the status
        ``cancelled``. A cancelled batch stays ``cancelling`` until its in-flight requests
        finish (up to 10 minutes on Netmind).

        Raises:
            InputError: ``timeout`` is not None, 0 or a finite number of seconds > 0.
            JobTimeoutError: ``timeout`` seconds passed first; the batches go on cancelling,
                and ``cancel()`` again waits for them.
        """
        check_timeout(timeout)
        self._cancelled = True
        self._journal.mark_cancelled(self.id)
        cancel_batches(
            self._connection.client,
            self._driver.fetch,
            [*self.batch_ids, *self.retry_batch_ids],
            job_id=self.id,
            poll_interval=self._driver.poll_interval,
            deadline=self._deadline(timeout),
            clock=self._driver.clock,
            sleep=self._driver.sleep,
        )
        return self

    # -- driving rounds -------------------------------------------------------------------

    def _check_cancelled(self) -> bool:
        if not self._cancelled:
            record = self._journal.job(self.id)
            self._cancelled = bool(record and record.cancelled)
        return self._cancelled

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self._driver.clock() + timeout

    def _drive(
        self,
        rnd: Round,
        deadline: float | None,
        label: str,
        on_chunk: Callable[[ChunkPlan, pa.Table], None] | None,
    ) -> None:
        spec = self._options.output
        if spec is not None and on_chunk is not None:
            on_chunk = _checking(on_chunk, spec)

        try:
            with tqdm(
                total=rnd.n_requests, unit="req", desc=label, disable=not self._progress
            ) as bar:
                self._driver.run(
                    rnd, bar, deadline, on_chunk, lambda: self._reattach_hint("Not done in time"),
                    self.id,
                )  # fmt: skip
        except KeyboardInterrupt:
            # A WARNING: Python's last-resort handler shows it even with logging unconfigured.
            log.warning("%s", self._interrupted())
            raise

    def _finish(self, timeout: float | None, on_final: Callable[[int], None] | None = None) -> None:
        """Drive the job to its end; ``on_final(chunk number)`` as soon as a chunk's results
        are saved with no row left to retry (the others are final when this returns)."""
        if self._done:
            return
        deadline = self._deadline(timeout)
        save: Callable[[ChunkPlan, pa.Table], None] = self._save
        if on_final is not None:
            save = _marking_final(save, on_final, self._options.retries)
        self._drive(self._first, deadline, self._label(), save)
        self._retry_rows(deadline)
        self._done = True
        self._log_summary()

    def _interrupted(self) -> str:
        """What Ctrl-C leaves behind: running batches, or nothing with the embedded server."""
        if not self._local:
            return self._reattach_hint("Interrupted")
        return (
            f"Interrupted: job {self.id} ran on the local batch server inside this process "
            "(local=True), which stops with the process, and its batches with it: nothing "
            "keeps running, and there is nothing to wait for later. For jobs that must "
            "outlive a process, run `netmind-frames serve` and pass its base_url=."
        )

    def _reattach_hint(self, what: str) -> str:
        how = f"netmind_frames.BatchJob.attach({self.id!r}, frame=df)"
        if isinstance(self._source, FileSource):
            how += f" or: netmind-frames wait {self.id}"
        return (
            f"{what}: the batches keep running on the server (job {self.id}).\nReattach with: {how}"
        )

    # -- results of each chunk, on disk ---------------------------------------------------

    def _result_path(self, number: int) -> Path:
        return self._spool / f"results-{number:06d}.arrow"

    def _save(self, chunk: ChunkPlan, table: pa.Table) -> None:
        path = private_file(self._result_path(chunk.number))  # pyarrow keeps the file's mode
        feather.write_feather(table, path, compression="uncompressed")

    def _load(self, number: int, columns: Sequence[str] | None = None) -> pa.Table:
        """A chunk's saved results; with ``columns``, only those of them it has (the answers
        are most of the bytes, and checks such as retries and the summary need none)."""
        path = self._result_path(number)
        if columns is None:
            return feather.read_table(path, memory_map=False)
        # Mapped, not read: the columns left out are never touched.
        table = feather.read_table(path, memory_map=True)
        return table.select([name for name in columns if name in table.column_names])

    def _retry_rows(self, deadline: float | None) -> None:
        """Send rows that failed for a retryable reason again, round after round."""
        for number in range(1, self._options.retries + 1):
            need = {}
            for chunk in self._plan.chunks:
                positions = retryable_rows(self._load(chunk.number, RETRY_COLUMNS))
                if len(positions):
                    need[chunk.number] = positions
            if not need:
                break
            log.info("retry round %d: %d rows", number, sum(len(p) for p in need.values()))
            rnd = Round(
                number,
                self._spool_retry(number, need),
                {**self._options.metadata, "netmind_frames_round": str(number)},
            )
            self._retries.append(rnd)

            def replace(chunk: ChunkPlan, table: pa.Table) -> None:
                positions = need[chunk.number]  # noqa: B023 (used before the loop moves on)
                merged = replace_rows(self._load(chunk.number), positions, table)
                self._save(chunk, merged)

            try:
                self._drive(rnd, deadline, f"retry {number}", replace)
            except BatchFailedError as exc:
                warnings.warn(f"retry round {number} not used: {exc}", stacklevel=4)
                break

    def _spool_retry(self, number: int, need: dict[int, np.ndarray]) -> tuple[ChunkPlan, ...]:
        chunks: list[ChunkPlan] = []
        first_index = 0
        frames = self._source.frames(self._chunk_rows, self._options.columns)
        for chunk_number, (start, frame) in enumerate(frames):
            if chunk_number not in need:
                continue
            with timed("build"):
                # Ids start at the chunk's start, so they stay within its window of ids.
                plan = self._options.build(frame.iloc[need[chunk_number]], start)
                chunk = spool_chunk(
                    plan,
                    number=chunk_number,
                    start=start,
                    first_index=first_index,
                    directory=self._spool,
                    tag=f"-r{number}",
                )
            first_index += len(chunk.shards)
            chunks.append(chunk)
        return tuple(chunks)


def _checking(
    save: Callable[[ChunkPlan, pa.Table], None], spec: OutputSchema
) -> Callable[[ChunkPlan, pa.Table], None]:
    """``save``, after structured answers are checked (bad ones become invalid_output rows,
    before retries are decided)."""

    def check_then_save(chunk: ChunkPlan, table: pa.Table) -> None:
        save(chunk, check_answers(table, spec))

    return check_then_save


def _marking_final(
    save: Callable[[ChunkPlan, pa.Table], None], on_final: Callable[[int], None], retries: int
) -> Callable[[ChunkPlan, pa.Table], None]:
    """``save``, then ``on_final(chunk number)`` when no row of the chunk is left to retry."""

    def save_then_mark(chunk: ChunkPlan, table: pa.Table) -> None:
        save(chunk, table)
        if not retries or not len(retryable_rows(table)):
            on_final(chunk.number)

    return save_then_mark


#: The result columns that :func:`retryable_rows` reads.
RETRY_COLUMNS = ("status", "error_code")


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


def joined_output(
    source: Source,
    chunk_rows: int,
    results: pa.Table,
    options: JobOptions,
    provenance: dict[str, Any],
) -> Any:
    """The input's rows plus the result columns, as the caller's kind of frame.

    pandas (a pandas frame or a file): ``provenance`` goes into ``attrs["netmind_frames"]``.
    Arrow: a ``pyarrow.Table`` with native types (:mod:`..results._tables`), ``provenance`` as
    JSON in its schema metadata under ``netmind_frames``. Polars: a Polars DataFrame, the
    caller's columns as they were.
    """
    if isinstance(source, TableSource):
        spec = None if options.embed_column is not None else options.output
        table = join_table(source.table, results, options.prefix, options.result_columns, spec)
        if source.kind == "polars":
            return to_polars(source.original, table)
        metadata = {**(table.schema.metadata or {}), b"netmind_frames": orjson.dumps(provenance)}
        return table.replace_schema_metadata(metadata)
    if isinstance(source, FrameSource):
        frame = source.frame
    else:
        tables = [t for _, t in source.tables(chunk_rows)]
        frame = pa.concat_tables(tables).to_pandas()
    out = joined_frame(frame, results, options)
    out.attrs["netmind_frames"] = provenance
    return out


def joined_frame(frame: pd.DataFrame, results: pa.Table, options: JobOptions) -> pd.DataFrame:
    """``frame`` plus the result columns (prefixed) and any structured-output columns."""
    if options.embed_column is not None:
        return join_embeddings(frame, results, options.prefix)
    out = join_results(frame, results, options.prefix)
    spec = options.output
    if spec is not None:
        typed = typed_frame(results, spec)
        for name in spec.columns:
            out[options.prefix + name] = typed[name].array
    return out


def replace_rows(table: pa.Table, positions: np.ndarray, retried: pa.Table) -> pa.Table:
    """``table`` with the rows at ``positions`` replaced by ``retried`` (in the same order)."""
    columns = table.column_names
    combined = pa.concat_tables([table, retried.select(columns)])
    take = np.arange(table.num_rows, dtype=np.int64)
    take[positions] = table.num_rows + np.arange(len(positions), dtype=np.int64)
    return combined.take(pa.array(take)).combine_chunks()
