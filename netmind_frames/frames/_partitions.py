"""The engine-agnostic core of a partitioned job (Dask, Spark): plain steps over plain values.

A job over a distributed frame has three parts. Per partition, on the engine's workers: a
cheap validation (:func:`validate_partition`: the requests are built exactly as the pandas path
builds them, so every check that runs there before an upload runs here, and nothing is sent),
then build + upload + create (:func:`submit_partition`, returning a small :class:`Ticket`).
Once, on the driver: the wait (:func:`wait_partitions`: one light poller, one progress bar,
``max_concurrent_batches`` honoured across the whole job by submitting in waves). Per
partition, on the workers again: download + parse + join (:func:`join_partition`).

Every value passed between them is small and picklable. Exactly once holds across workers
because a partition's shards have deterministic fingerprints: a task that the engine re-runs on
another worker (whose journal may be lost with the first one) finds the first batch through the
server-side lookup (``jobs/_lookup.py``) before it creates anything. The driver keeps its own
record of the tickets (a small JSON file in ``NETMIND_FRAMES_HOME/partitioned``), so the same
call again, from a new process, reattaches without submitting anything.

Each partition is one ``BatchJob`` (row positions count from 0 in the partition), so two
partitions with the very same rows and options make the same requests and share one batch:
they are paid once.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import openai
import orjson
import pandas as pd
import pyarrow as pa
from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # as in jobs/_job.py
    from tqdm.auto import tqdm

from .._errors import BatchFailedError, InputError, JobTimeoutError
from ..build._private import private_dir, private_home, write_private
from ..build._source import FrameSource, chunk_rows_for
from ..build._spool import spool_plan
from ..jobs._attach import remember
from ..jobs._cancel import cancel_by_id
from ..jobs._checks import check_flags, check_positive, check_seconds, check_timeout
from ..jobs._job import TERMINAL_STATUSES, BatchJob, joined_frame
from ..jobs._journal import Journal, partitioned_record
from ..jobs._options import JobOptions
from ..jobs._rounds import cancel_running
from ..transport._config import MAX_CONCURRENT_BATCHES, Settings, resolve_settings
from ..transport._connection import connect
from ._api import _prepare

log = logging.getLogger("netmind_frames")

__all__ = [
    "PartitionCall",
    "PartitionPlan",
    "Ticket",
    "join_partition",
    "make_call",
    "result_meta",
    "submit_partition",
    "validate_partition",
    "wait_partitions",
]

#: The keywords of ``batch_complete`` that go to ``_prepare`` (the request-building ones).
_PREPARE = frozenset(
    {
        "model",
        "prompt_column",
        "messages_column",
        "system",
        "custom_id_column",
        "model_column",
        "params_column",
        "schema",
        "prefix",
        "api_key",
        "base_url",
        "provider",
        "max_requests",
        "max_bytes",
        "completion_window",
        "metadata",
        "retries",
        "embed_column",
    }
)
_FIRST_POLL = 0.5
_BACKOFF = 1.5


@dataclass(frozen=True)
class PartitionCall:
    """One call's checked arguments, as sent to every worker (picklable, the key not shown).

    ``prepare`` holds the request-building keywords and the resolved connection (base URL,
    key, provider), so workers need no environment of their own; ``params`` the request
    parameters (``max_tokens``, ...).
    """

    prompt: str | None
    prepare: dict[str, Any] = field(repr=False)
    params: dict[str, Any] = field(repr=False)
    keep_files: bool = False
    prices: Any = None
    engine: str = "Dask"
    options: JobOptions | None = field(default=None, repr=False)
    """The job's options as the driver checked them (for empty partitions' columns)."""

    def prepared(self, frame: pd.DataFrame) -> Any:
        """The pandas path's checked settings, options and connection for ``frame``."""
        return _prepare(FrameSource(frame), self.prompt, **self.prepare, **self.params)


@dataclass(frozen=True)
class PartitionPlan:
    """What the validation pass learnt of one partition: its rows, job id and shards."""

    number: int
    n_rows: int
    job_id: str | None  # None: an empty partition (nothing to send)
    n_shards: int
    known: tuple[str, ...] = ()
    """The batches of its first shards, known already (a later wave: no lookup needed)."""


@dataclass(frozen=True)
class Ticket:
    """A partition's submitted batches: the first ``len(batch_ids)`` of its ``n_shards``."""

    number: int
    job_id: str | None
    n_rows: int
    n_shards: int
    batch_ids: tuple[str, ...] = ()
    #: The job was cancelled: shards without a batch never get one; their rows are cancelled.
    cancelled: bool = False

    @property
    def complete(self) -> bool:
        """Whether every shard of the partition has its batch."""
        return len(self.batch_ids) == self.n_shards


def make_call(
    sample: pd.DataFrame,
    prompt: str | None,
    kwargs: Mapping[str, Any],
    *,
    engine: str = "Dask",
) -> tuple[PartitionCall, JobOptions]:
    """Check a call's arguments on the driver (before anything runs on a worker) and return
    what the workers get, with the job's options (for ``meta``).

    ``sample`` is a small non-empty frame with the partitions' columns and dtypes (Dask's
    ``_meta_nonempty``). Arguments that cannot apply to a partitioned job raise
    :class:`InputError` saying why.
    """
    kwargs = dict(kwargs)
    _refuse_inapplicable(kwargs, engine)
    for name in ("poll_interval", "progress", "max_concurrent_batches", "timeout"):
        kwargs.pop(name, None)
    prices = kwargs.pop("prices", None)
    keep_files = bool(kwargs.pop("keep_files", False))
    prepare = {k: v for k, v in kwargs.items() if k in _PREPARE}
    params = {k: v for k, v in kwargs.items() if k not in _PREPARE}
    settings = resolve_settings(
        api_key=prepare.get("api_key"),
        base_url=prepare.get("base_url"),
        provider=prepare.get("provider"),
    )
    # Resolved here, once: a worker elsewhere has none of the driver's environment.
    prepare.update(api_key=settings.api_key, base_url=settings.base_url)
    prepare["provider"] = settings.provider
    call = PartitionCall(prompt, prepare, params, keep_files, prices, engine)
    options = call.prepared(sample).options
    return replace(call, options=options), options


def _refuse_inapplicable(kwargs: dict[str, Any], engine: str) -> None:
    """InputError for the arguments of the pandas signature that a partitioned job cannot
    honour, before anything is sent."""
    if kwargs.pop("client", None) is not None:
        raise InputError(
            f"client= cannot be used with {engine}: an openai.OpenAI object does not travel to "
            "the workers. Pass api_key= and base_url= (or set NETMIND_API_KEY) instead."
        )
    if kwargs.pop("local", False):
        raise InputError(
            f"local=True cannot be used with {engine}: the embedded server lives inside one "
            "process and the workers cannot reach it. Run `netmind-frames serve` and pass the "
            "base_url= it prints."
        )
    mode = kwargs.pop("mode", "batch")
    if mode != "batch":
        raise InputError(
            f"mode={mode!r} cannot be used with {engine}: a partitioned job runs through the "
            "Batch API only (mode='batch'). For a quick synchronous try, compute a few rows "
            "into pandas and use df.netmind.batch_complete(..., mode='sync')."
        )
    if kwargs.pop("sync_threshold", None) is not None:
        raise InputError(f"sync_threshold= cannot be used with {engine} (batch mode only).")
    kwargs.pop("max_concurrency", None)  # a sync-mode knob: nothing to do in batch mode
    if kwargs.pop("resubmit", False):
        raise InputError(
            f"resubmit=True cannot be used with {engine}: the engine may run a partition's "
            "task twice (a lost worker), and with resubmit each run would pay again. Delete the "
            "old batches' journal (NETMIND_FRAMES_HOME) or change the call instead."
        )
    if kwargs.pop("max_cost", None) is not None:
        raise InputError(
            f"max_cost= cannot be used with {engine} yet: estimate a sample in pandas with "
            "df.netmind.estimate(...) instead."
        )
    check_seconds("poll_interval", kwargs.get("poll_interval", 30.0))
    check_positive(
        "max_concurrent_batches", kwargs.get("max_concurrent_batches", MAX_CONCURRENT_BATCHES)
    )
    check_timeout(kwargs.get("timeout"))
    check_flags(progress=kwargs.get("progress", True), keep_files=kwargs.get("keep_files", False))


def result_meta(meta: pd.DataFrame, options: JobOptions) -> pd.DataFrame:
    """The joined result of an empty partition: the input's columns plus the result columns
    with the dtypes the pandas path gives them (Dask's ``meta``, and empty partitions)."""
    return joined_frame(meta.iloc[:0], _empty_results(options), options)


def _empty_results(options: JobOptions) -> pa.Table:
    text = pa.large_string()
    if options.embed_column is not None:
        head = [("embedding", pa.list_(pa.float32())), ("prompt_tokens", pa.int64())]
    else:
        head = [
            ("response", text),
            ("finish_reason", text),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
        ]
    tail = [("error_code", text), ("error_message", text), ("status", text)]
    return pa.schema(head + tail).empty_table()


def validate_partition(
    frame: pd.DataFrame, call: PartitionCall, number: int, total: int
) -> PartitionPlan:
    """Build one partition's requests as the pandas path would, send nothing; its plan.

    Raises:
        InputError: a bad row or argument, naming the partition (and the row, counted from 0
            within the partition, and the column).
    """
    if len(frame) == 0:
        return PartitionPlan(number, 0, None, 0)
    with tempfile.TemporaryDirectory(prefix="netmind-validate-") as spool:
        try:
            options = call.prepared(frame).options
            chunk_rows = chunk_rows_for(options.max_requests, options.chunk_rows)
            chunks = FrameSource(frame).frames(chunk_rows, options.columns)
            plan = spool_plan(chunks, options.build, Path(spool), len(frame))
        except InputError as exc:
            raise InputError(
                f"partition {number + 1} of {total} (number {number}, counting from 0), "
                f"row positions counted from 0 within it: {exc}"
            ) from None
    return PartitionPlan(number, len(frame), plan.job_id, len(plan.shards))


def submit_partition(
    frame: pd.DataFrame, call: PartitionCall, plan: PartitionPlan, shards: int
) -> Ticket:
    """Make sure the first ``shards`` shards of a partition have their batch (each exactly
    once: the journal, then the server, then an upload and a create); the partition's ticket.

    Safe to run again, on any worker: shards whose batch exists are found, not paid again.
    """
    if plan.job_id is None:
        return Ticket(plan.number, None, 0, 0)
    job = _job(frame, call, plan.job_id, batch_ids=plan.known, max_concurrent=max(1, shards))
    job.start()
    return Ticket(plan.number, job.id, job.n_rows, job.n_shards, job.batch_ids)


def join_partition(frame: pd.DataFrame, call: PartitionCall, ticket: Ticket) -> pd.DataFrame:
    """Download, parse and join one partition's results (every shard's batch terminal).

    Rows that failed for a retryable reason are sent again in ``retries`` rounds, from here.
    Safe to run again: the results are downloaded again, nothing is paid again.
    """
    if ticket.job_id is None:
        assert call.options is not None  # make_call sets it
        return result_meta(frame, call.options)
    job = _job(frame, call, ticket.job_id, batch_ids=ticket.batch_ids, cancelled=ticket.cancelled)
    return job.result()


def _job(
    frame: pd.DataFrame,
    call: PartitionCall,
    job_id: str,
    *,
    batch_ids: Sequence[str] = (),
    max_concurrent: int = MAX_CONCURRENT_BATCHES,
    cancelled: bool = False,
) -> BatchJob:
    ready = call.prepared(frame)
    journal = Journal(ready.settings.home)
    source = FrameSource(frame)
    job = BatchJob(
        ready.connection,
        journal,
        ready.options,
        source,
        progress=False,
        max_concurrent_batches=max_concurrent,
        keep_files=call.keep_files,
        prices=call.prices,
    )
    if job.id != job_id:
        raise InputError(
            f"partition {job_id} changed between its validation and now (its rows make job "
            f"{job.id}): {call.engine} must give the same rows each time it computes a "
            "partition (persist the frame first if its source is not deterministic)."
        )
    if batch_ids or cancelled:
        job.use_batches([*batch_ids, *[None] * (job.n_shards - len(batch_ids))])
    remember(journal, job, ready.settings.base_url, ready.options, source, False)
    if cancelled:  # its shards without a batch are never submitted, nor its rows retried
        journal.mark_cancelled(job.id)
    return job


# -- the driver ------------------------------------------------------------------------------


def job_id_of(plans: Sequence[PartitionPlan]) -> str:
    """The partitioned job's id: ``job-`` + a sha256 prefix of its partitions' job ids."""
    joined = "\n".join(p.job_id or "" for p in plans)
    return f"job-{hashlib.sha256(joined.encode()).hexdigest()[:24]}"


def start_partitions(
    plans: Sequence[PartitionPlan],
    call: PartitionCall,
    submit_wave: Callable[[list[tuple[PartitionPlan, int]]], list[Ticket]],
    *,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
) -> list[Ticket]:
    """Submit the first wave (up to ``max_concurrent_batches`` batches) unless the driver's
    journal knows batches of this job already (then :func:`wait_partitions` goes on)."""
    record = _record(plans, call)
    tickets = record.load(plans)
    if record.cancelled:
        log.warning("job %s was cancelled: nothing more is submitted", record.job_id)
    elif any(t.batch_ids for t in tickets.values()):
        log.warning("reattached to job %s: its batches are not paid again", record.job_id)
    else:
        wave = _next_wave(plans, tickets, max_concurrent_batches)
        for ticket in submit_wave(wave):
            tickets[ticket.number] = ticket
        record.save(plans, tickets)
    return [tickets[p.number] for p in plans]


#: The keywords of a partitioned call that only the driver's wait uses.
WAITING = ("poll_interval", "progress", "max_concurrent_batches")

_Job = TypeVar("_Job", bound="PartitionedJob")


class PartitionedJob:
    """What a Dask job and a Spark job share: the partitions' plans, the driver's waves of
    submissions and the tickets they leave. A subclass says how a wave reaches the workers
    (``_submit_wave``) and how the result is joined."""

    def __init__(
        self, call: PartitionCall, plans: list[PartitionPlan], waiting: Mapping[str, Any]
    ) -> None:
        self._call = call
        self._plans = plans
        self._waiting = {k: v for k, v in waiting.items() if k in WAITING}
        self._tickets: list[Ticket] | None = None

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(id={self.id!r}, partitions={len(self._plans)}, rows={self.n_rows})"

    @property
    def id(self) -> str:
        """The job id, ``job-`` + 24 hex digits."""
        return job_id_of(self._plans)

    @property
    def n_rows(self) -> int:
        """The rows of every partition."""
        return sum(p.n_rows for p in self._plans)

    def start(self: _Job) -> _Job:
        """Submit the first wave of partitions (``submit`` calls it)."""
        start_partitions(
            self._plans,
            self._call,
            self._submit_wave,
            max_concurrent_batches=self._waiting.get(
                "max_concurrent_batches", MAX_CONCURRENT_BATCHES
            ),
        )
        return self

    def wait(self: _Job, timeout: float | None = None) -> _Job:
        """Submit the remaining partitions as slots free up and wait, on the driver (this
        process), until every batch is terminal; return the job."""
        self._tickets = wait_partitions(
            self._plans, self._call, self._submit_wave, timeout=timeout, **self._waiting
        )
        return self

    @property
    def tickets(self) -> list[Ticket]:
        """Every partition's batches (after ``wait()``)."""
        if self._tickets is None:
            raise RuntimeError("wait() first")
        return list(self._tickets)

    def cancel(self: _Job, timeout: float | None = None) -> _Job:
        """Cancel every batch still running, submit no more partitions, and wait until each
        batch is terminal; return the job.

        Rows that finished keep their answers; ``result()`` then gives the rest the status
        ``cancelled`` (partitions never submitted included). The same call again reattaches
        to the cancelled job and submits nothing. A cancelled batch stays ``cancelling`` until
        its in-flight requests finish (up to 10 minutes on Netmind).

        Raises:
            InputError: ``timeout`` is not None, 0 or a finite number of seconds > 0.
            JobTimeoutError: ``timeout`` seconds passed first; the batches go on cancelling,
                and ``cancel()`` again waits for them.
        """
        check_timeout(timeout)
        record = _record(self._plans, self._call)
        tickets = record.load(self._plans)
        record.cancelled = True
        record.save(self._plans, tickets)  # first: a wait elsewhere submits nothing more
        self._tickets = None  # the next result() takes the cancelled tickets
        cancel_by_id(
            _client(self._call),
            [b for t in tickets.values() for b in t.batch_ids],
            job_id=self.id,
            poll_interval=self._waiting.get("poll_interval", 30.0),
            timeout=timeout,
        )
        return self

    def _tickets_by_number(self, timeout: float | None) -> dict[int, Ticket]:
        """Wait if needed; every partition's ticket by its partition number."""
        if self._tickets is None:
            self.wait(timeout)
        return {t.number: t for t in self.tickets}

    def _submit_wave(self, wave: list[tuple[PartitionPlan, int]]) -> list[Ticket]:
        raise NotImplementedError


def _settings(call: PartitionCall) -> Settings:
    """The driver's connection settings, from the call's."""
    prepare = call.prepare
    return resolve_settings(
        api_key=prepare["api_key"], base_url=prepare["base_url"], provider=prepare["provider"]
    )


def _client(call: PartitionCall) -> openai.OpenAI:
    return connect(_settings(call)).client


def _record(plans: Sequence[PartitionPlan], call: PartitionCall) -> _Record:
    return _Record(_settings(call).home, job_id_of(plans), call.prepare["base_url"])


def wait_partitions(
    plans: Sequence[PartitionPlan],
    call: PartitionCall,
    submit_wave: Callable[[list[tuple[PartitionPlan, int]]], list[Ticket]],
    *,
    poll_interval: float = 30.0,
    timeout: float | None = None,
    progress: bool = True,
    max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[Ticket]:
    """Submit the partitions in waves and wait, on the driver, until every batch is terminal.

    ``submit_wave([(plan, shards), ...])`` runs :func:`submit_partition` for each pair (on the
    engine's workers) and returns the tickets. At most ``max_concurrent_batches`` batches of
    the whole job run at once: a wave asks for only as many new batches as there are free
    slots. The tickets are recorded in the driver's journal as they come, so the same call
    again (from any process on this machine) reattaches instead of submitting.

    Raises:
        BatchFailedError: a batch failed validation on the server.
        JobTimeoutError: ``timeout`` passed first; the batches keep running.
    """
    job_id = job_id_of(plans)
    client = _client(call)
    record = _record(plans, call)
    tickets = record.load(plans)
    statuses: dict[str, Any] = {}
    deadline = None if timeout is None else clock() + timeout
    delay = min(_FIRST_POLL, poll_interval)
    total_rows = sum(p.n_rows for p in plans)
    try:
        with tqdm(total=total_rows, unit="req", desc="netmind batch", disable=not progress) as bar:
            while True:
                live = [
                    b
                    for t in tickets.values()
                    for b in t.batch_ids
                    if getattr(statuses.get(b), "status", None) not in TERMINAL_STATUSES
                ]
                for batch_id in live:
                    statuses[batch_id] = client.batches.retrieve(batch_id)
                _raise_if_failed(statuses.values())
                running = sum(1 for b in live if statuses[b].status not in TERMINAL_STATUSES)
                if record.cancelled_since():
                    # Cancelled meanwhile: a batch of a wave submitted as the cancel was being
                    # made is known only here, so this loop cancels what still runs too.
                    cancel_running(client, [(b, statuses[b].status) for b in live])
                free = 0 if record.cancelled else max_concurrent_batches - running
                wave = _next_wave(plans, tickets, free)
                if wave:
                    for ticket in submit_wave(wave):
                        tickets[ticket.number] = ticket
                    record.save(plans, tickets)
                    continue  # poll the new batches at once
                bar.n = min(_rows_done(tickets.values(), statuses), total_rows)
                bar.refresh()
                submitted = record.cancelled or all(t.complete for t in tickets.values())
                done = submitted and not any(
                    statuses[b].status not in TERMINAL_STATUSES
                    for t in tickets.values()
                    for b in t.batch_ids
                )
                if done:
                    return [replace(tickets[p.number], cancelled=record.cancelled) for p in plans]
                if deadline is not None and clock() + delay > deadline:
                    raise JobTimeoutError(_hint(job_id, "Not done in time"), job_id)
                sleep(delay)
                delay = min(delay * _BACKOFF, poll_interval)
    except KeyboardInterrupt:
        log.warning("%s", _hint(job_id, "Interrupted"))
        raise


def _hint(job_id: str, what: str) -> str:
    return (
        f"{what}: the batches keep running on the server (job {job_id}). Reattach by running "
        "the same call again (same frame and arguments): it finds the batches, pays nothing."
    )


def _next_wave(
    plans: Sequence[PartitionPlan], tickets: Mapping[int, Ticket], free: int
) -> list[tuple[PartitionPlan, int]]:
    """The partitions to submit next, each with how many of its shards should then have a
    batch, within ``free`` new batches (in partition order)."""
    wave = []
    for plan in plans:
        if free <= 0:
            break
        have = len(tickets[plan.number].batch_ids)
        if plan.job_id is None or have == plan.n_shards:
            continue
        more = min(free, plan.n_shards - have)
        wave.append((replace(plan, known=tickets[plan.number].batch_ids), have + more))
        free -= more
    return wave


def _raise_if_failed(batches: Any) -> None:
    for batch in batches:
        if batch.status != "failed":
            continue
        errors = [e.model_dump() for e in (batch.errors.data or [])] if batch.errors else []
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors[:5])
        raise BatchFailedError(
            f"Batch {batch.id} failed: {detail or 'no reason given'}", batch.id, errors
        )


def _rows_done(tickets: Any, statuses: Mapping[str, Any]) -> int:
    done = 0
    for ticket in tickets:
        for batch_id in ticket.batch_ids:
            counts = getattr(statuses.get(batch_id), "request_counts", None)
            if counts is not None:
                done += (counts.completed or 0) + (counts.failed or 0)
    return done


class _Record:
    """The driver's journal entry of a partitioned job: its partitions' tickets, as JSON."""

    def __init__(self, home: Path, job_id: str, base_url: str) -> None:
        self.path = partitioned_record(private_home(home), job_id)
        private_dir(self.path.parent)
        self.job_id = job_id
        self.base_url = base_url
        #: Set by ``PartitionedJob.cancel``: no further wave is submitted, ever.
        self.cancelled = False

    def load(self, plans: Sequence[PartitionPlan]) -> dict[int, Ticket]:
        """The tickets known from an earlier run of the same call (empty ones otherwise)."""
        data = self._stored()
        known = {int(p["number"]): p for p in data["partitions"]} if data else {}
        self.cancelled = bool(data and data.get("cancelled"))
        tickets = {}
        for plan in plans:
            seen = known.get(plan.number)
            same = seen is not None and seen["job_id"] == plan.job_id
            batch_ids = tuple(seen["batch_ids"]) if same and seen is not None else ()
            tickets[plan.number] = Ticket(
                plan.number, plan.job_id, plan.n_rows, plan.n_shards, batch_ids
            )
        return tickets

    def cancelled_since(self) -> bool:
        """Whether the job is cancelled, maybe meanwhile by another thread or process."""
        if not self.cancelled:
            data = self._stored()
            self.cancelled = bool(data and data.get("cancelled"))
        return self.cancelled

    def _stored(self) -> dict[str, Any] | None:
        """The saved record of this job on this base URL, or None."""
        if not self.path.exists():
            return None
        data: dict[str, Any] = orjson.loads(self.path.read_bytes())
        return data if data.get("base_url") == self.base_url else None

    def save(self, plans: Sequence[PartitionPlan], tickets: Mapping[int, Ticket]) -> None:
        self.cancelled_since()  # never undo a cancel saved meanwhile
        data = {
            "job_id": self.job_id,
            "base_url": self.base_url,
            "cancelled": self.cancelled,
            "partitions": [
                {
                    "number": p.number,
                    "job_id": p.job_id,
                    "n_rows": p.n_rows,
                    "n_shards": p.n_shards,
                    "batch_ids": list(tickets[p.number].batch_ids),
                }
                for p in plans
            ],
        }
        tmp = self.path.with_suffix(".tmp")
        write_private(tmp, orjson.dumps(data))
        tmp.replace(self.path)  # atomic: a killed driver leaves the old record or the new
