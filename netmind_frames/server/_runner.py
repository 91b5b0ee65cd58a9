"""The runner: one background thread that moves every active batch through its lifecycle.

``validating`` -> (``failed``) -> ``in_progress`` -> ``finalizing`` -> ``completed``, or
``expired`` once the batch's deadline passes, or ``cancelling`` -> ``cancelled``. Requests run
in a seeded shuffled order (or file order with ``shuffle=False``) and their result lines are
appended in that order, so the output is shuffled and a restarted runner resumes exactly where
the saved state says, without redoing any request. With ``seconds_per_request=0`` requests run
in chunks as fast as the engine goes; otherwise each batch advances at that pace.

With an ``upstream`` engine, a chunk's requests go to the upstream concurrently and each answer
is saved as soon as every request before it (in run order) is answered: a restart resends only
requests whose answers were not saved.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._answer import Answered, answer, run_order, seed_of, unit
from ._engine import last_user_text
from ._envelope import error_body
from ._hooks import ExecutionLog
from ._ids import fast_hex
from ._pool import Pool, WorkerLost, answer_blob, answer_lines_at, validate_and_answer
from ._store import Store
from ._upstream import Stopped, Upstream
from ._validate import Lines, Validated, validate_input

logger = logging.getLogger("netmind_frames.server")

CHUNK = 2000
PROCESS_CHUNK = 50_000  # requests per chunk a worker process answers (cancel is checked between)
_TICK = 0.02
_IDLE, _TIMED, _HOT = 0, 1, 2
_NOT_RUN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "cancelled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


@dataclass(frozen=True)
class _Input:
    path: Path
    endpoint: str
    seed: int
    shuffle: bool
    remote: bool  # validated and answered in worker processes


@dataclass
class _Job:
    lines: Sequence[bytes]
    order: list[int]
    remote: bool = False  # answered in worker processes
    path: Path | None = None  # the input file (a worker reads its lines from it)
    last: float = field(default_factory=time.monotonic)
    allowance: float = 0.0


class Runner:
    """Advance the batches of ``store`` in a daemon thread.

    Parameters
    ----------
    store:
        The shared state.
    seconds_per_request:
        Pace of each batch; 0 runs requests as fast as possible.
    fail_rate:
        Fraction of requests answered with a 500 error line (seeded per batch and custom_id).
    log:
        Where every executed request is recorded (None: not recorded). ``fail_rate`` rows
        count as executed (status 500); lines ended by expiry or cancel never ran and do not.
    upstream:
        Send requests there instead of answering them with the echo engine (``corrupt_rate``
        does not apply; ``fail_rate`` rows are answered locally and never sent).
    cancel_after:
        Seconds a cancelled batch stays ``cancelling`` (no request starts meanwhile) before it
        ends ``cancelled``; Netmind finishes in-flight requests first, for up to 10 minutes.
    model_allowlist:
        The models a batch may name; a batch naming another fails validation. None: any.
    processes:
        Worker processes for large batches (0: every batch is answered in this thread).
    process_min_bytes:
        Input files from this size on are validated and answered in the worker processes
        (with ``seconds_per_request=0`` and no ``upstream``); smaller ones in this thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        seconds_per_request: float,
        fail_rate: float,
        log: ExecutionLog | None = None,
        corrupt_rate: float = 0.0,
        upstream: Upstream | None = None,
        cancel_after: float = 0.0,
        model_allowlist: frozenset[str] | None = None,
        processes: int = 0,
        process_min_bytes: int = 16_000_000,
    ) -> None:
        self.store = store
        self._pool = Pool(processes) if processes > 0 else None
        self.process_min_bytes = process_min_bytes
        # batch id -> (work running in a worker process, what to do with its result)
        self._pending: dict[str, tuple[Future[Any], Callable[[Any], int]]] = {}
        self.model_allowlist = model_allowlist
        self.cancel_after = cancel_after
        self._cancel_seen: dict[str, float] = {}  # batch id -> when the runner saw the cancel
        self.upstream = upstream
        self.seconds_per_request = seconds_per_request
        self.fail_rate = fail_rate
        self.corrupt_rate = corrupt_rate
        self.log = log
        self._jobs: dict[str, _Job] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(
            target=self._loop, name="netmind-frames-runner", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread after the step in progress; state on disk stays consistent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._pool is not None:
            self._pool.close()  # unrecorded work is redone after a restart
            self._pending.clear()
        if self.upstream is not None:
            self.upstream.close()

    def wake(self) -> None:
        """Tell the runner that something changed (a batch was created or cancelled)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            state = _IDLE
            for batch_id in self.store.active_batch_ids():
                if self._stop.is_set():
                    return
                try:
                    state = max(state, self._step(batch_id))
                except Exception:  # a bug must not kill the runner for every other batch
                    logger.exception("batch %s failed inside the local server", batch_id)
                    self._fail(batch_id, "server_error", "The local server failed on this batch.")
            if state != _HOT:
                self._wake.wait(_TICK if state == _TIMED else 1.0)
                self._wake.clear()

    def _fail(self, batch_id: str, code: str, message: str) -> None:
        self._jobs.pop(batch_id, None)
        self._pending.pop(batch_id, None)
        err = {"code": code, "message": message, "param": None, "line": None}
        self.store.update(
            batch_id,
            status="failed",
            failed_at=int(time.time()),
            errors={"object": "list", "data": [err]},
        )

    def _local_only(self) -> None:
        """Stop using worker processes (one could not start or died)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        for job in self._jobs.values():
            job.remote = False
        self._pending.clear()

    def _park(self, batch_id: str, future: Future[Any], then: Callable[[Any], int]) -> int:
        """Remember work sent to a worker; ``then(result)`` runs in a later step."""
        self._pending[batch_id] = (future, then)
        future.add_done_callback(lambda _: self._wake.set())
        return _TIMED

    def _step(self, batch_id: str) -> int:
        pending = self._pending.get(batch_id)
        if pending is not None:
            # Work in a worker is recorded before anything else (a cancel or expiry included),
            # as a chunk run in this thread is.
            future, then = pending
            if not future.done():
                return _TIMED
            del self._pending[batch_id]
            try:
                result = future.result()
            except WorkerLost:
                # Nothing was recorded: the same step is redone in this thread from now on.
                logger.warning("a worker process was lost; answering in the server process")
                self._local_only()
                return _HOT
            return then(result)
        with self.store.lock:
            rec = self.store.batch_record(batch_id)
            status, done, deadline = rec.obj["status"], rec.done, rec.deadline
        if status == "validating":
            return self._validate(batch_id)
        if status == "cancelling":
            seen = self._cancel_seen.setdefault(batch_id, time.monotonic())
            if time.monotonic() - seen < self.cancel_after:
                return _TIMED
            self._cancel_seen.pop(batch_id, None)
            self._end(batch_id, "cancelled")
            return _HOT
        if status == "finalizing":
            self._jobs.pop(batch_id, None)
            self.store.finish(batch_id, "completed")
            return _HOT
        if deadline is not None and time.time() >= deadline:
            self._end(batch_id, "expired")
            return _HOT
        job = self._job(batch_id)
        if job is None:
            return _HOT
        if done >= len(job.lines):
            self.store.transition(
                batch_id, "in_progress", status="finalizing", finalizing_at=int(time.time())
            )
            return _HOT
        if self.upstream is not None:
            # The upstream sets the pace. Small chunks: cancel and expiry are checked between.
            n = max(16, 4 * self.upstream.concurrency)
            self._run_upstream(batch_id, job, done, min(done + n, len(job.lines)))
            return _HOT
        if self.seconds_per_request > 0:
            now = time.monotonic()
            job.allowance += (now - job.last) / self.seconds_per_request
            job.last = now
            n = min(int(job.allowance), CHUNK)
            job.allowance -= n
            if n == 0:
                return _TIMED
        else:
            n = PROCESS_CHUNK if job.remote else CHUNK
        return self._run(batch_id, job, done, min(done + n, len(job.lines)))

    def _job(self, batch_id: str) -> _Job | None:
        job = self._jobs.get(batch_id)
        if job is not None:
            return job
        found = self._input(batch_id)
        if found is None:
            return None
        checked = validate_input(found.path, found.endpoint, self.model_allowlist)
        return self._remember(batch_id, checked.lines, found)

    def _input(self, batch_id: str) -> _Input | None:
        """Where the batch's input file is, with its settings; None (and the batch failed)
        when the file is gone."""
        with self.store.lock:
            rec = self.store.batch_record(batch_id)
            file_id, endpoint = rec.obj["input_file_id"], rec.obj["endpoint"]
            seed, shuffle = rec.seed, rec.shuffle
        file = self.store.get_file(file_id)
        if file is None:
            self._fail(batch_id, "invalid_file", f"The input file {file_id} no longer exists.")
            return None
        remote = (
            self._pool is not None
            and self.upstream is None
            and self.seconds_per_request == 0
            and file.bytes >= self.process_min_bytes
        )
        return _Input(self.store.data_path(file_id), endpoint, seed, shuffle, remote)

    def _remember(self, batch_id: str, lines: Sequence[bytes], found: _Input) -> _Job:
        order = run_order(len(lines), _shuffle_seed(found, batch_id))
        job = _Job(lines=lines, order=order, remote=found.remote, path=found.path)
        self._jobs[batch_id] = job
        return job

    def _validate(self, batch_id: str) -> int:
        found = self._input(batch_id)
        if found is None:
            return _HOT
        if found.remote:
            # A worker checks the file and answers it on the way (each line parsed once); the
            # answers are kept if the file is valid, fits one chunk and the batch still runs.
            assert self._pool is not None
            out_path = self.store.new_tmp_path(".out")
            err_path = self.store.new_tmp_path(".err")
            future = self._pool.submit(
                validate_and_answer,
                found.path,
                found.endpoint,
                self.model_allowlist,
                out_path,
                err_path,
                most=PROCESS_CHUNK,
                shuffle_seed=_shuffle_seed(found, batch_id),
                **self._options(batch_id),
            )

            def then(result: tuple[Any, str | None, Any, Any, Answered | None]) -> int:
                errors, model, starts, ends, answered = result
                lines = [] if errors else Lines.of_offsets(found.path, starts, ends)
                self._validated(batch_id, Validated(lines, model, errors), found)
                if answered is not None and batch_id in self._jobs and self._runs(batch_id):
                    return self._record(batch_id, answered, len(lines))
                out_path.unlink(missing_ok=True)
                err_path.unlink(missing_ok=True)
                return _HOT

            return self._park(batch_id, future, then)
        checked = validate_input(found.path, found.endpoint, self.model_allowlist)
        return self._validated(batch_id, checked, found)

    def _validated(self, batch_id: str, checked: Validated, found: _Input) -> int:
        with self.store.lock:
            if self.store.batch_record(batch_id).obj["status"] != "validating":
                return _HOT  # cancelled meanwhile
            now = int(time.time())
            if checked.errors:
                self.store.update(
                    batch_id,
                    status="failed",
                    failed_at=now,
                    errors={"object": "list", "data": checked.errors},
                )
                return _HOT
            counts = {"total": len(checked.lines), "completed": 0, "failed": 0}
            self.store.update(
                batch_id,
                status="in_progress",
                in_progress_at=now,
                model=checked.model,
                request_counts=counts,
            )
        self._remember(batch_id, checked.lines, found)
        return _HOT

    def _options(self, batch_id: str) -> dict[str, Any]:
        """How the echo answers this batch's lines (see ``answer_requests``)."""
        with self.store.lock:
            rec = self.store.batch_record(batch_id)
            seed, is_embeddings = rec.seed, rec.obj["endpoint"] == "/v1/embeddings"
        return {
            "batch_id": batch_id,
            "seed": seed,
            "embeddings": is_embeddings,
            "fail_rate": self.fail_rate,
            "corrupt_rate": self.corrupt_rate,
            "log": self.log is not None,
        }

    def _runs(self, batch_id: str) -> bool:
        """Whether the batch is in progress and before its deadline."""
        with self.store.lock:
            rec = self.store.batch_record(batch_id)
            status, deadline = rec.obj["status"], rec.deadline
        return status == "in_progress" and (deadline is None or time.time() < deadline)

    def _run(self, batch_id: str, job: _Job, start: int, stop: int) -> int:
        """Answer ``job.order[start:stop]`` here or in a worker; return the loop's next pace."""
        options = self._options(batch_id)
        if job.remote:
            assert self._pool is not None
            positions = job.order[start:stop]
            if isinstance(job.lines, Lines) and job.path is not None and job.path.exists():
                # The worker reads the lines from the file itself: only their offsets cross
                # the pipe, and this process (whose GIL the HTTP server shares) copies nothing.
                starts, ends = job.lines.offsets_at(positions)
                # The answers come back as files under tmp/ (a lost worker's are removed
                # when the server next starts, with every other leftover there).
                out_path = self.store.new_tmp_path(".out")
                err_path = self.store.new_tmp_path(".err")
                future = self._pool.submit(
                    answer_lines_at, job.path, starts, ends, out_path, err_path, **options
                )
            else:
                # One bytes object crosses to the worker: request lines never hold a newline.
                blob = b"\n".join([job.lines[pos] for pos in positions])
                future = self._pool.submit(answer_blob, blob, **options)
            return self._park(batch_id, future, lambda done: self._record(batch_id, done, stop))
        lines = (job.lines[pos] for pos in job.order[start:stop])
        self._record(batch_id, answer(lines, **options), stop)
        return _HOT if self.seconds_per_request == 0 else _TIMED

    def _record(self, batch_id: str, done: Answered, stop: int) -> int:
        self.store.record_progress(
            batch_id,
            out=done.out if done.out_path is None else done.out_path,
            err=done.err if done.err_path is None else done.err_path,
            done=stop,
            completed=done.completed,
            failed=done.failed,
            usage=(done.prompt_tokens, done.completion_tokens),
        )
        if self.log is not None:
            self.log.extend(done.executed)
        return _HOT

    def _run_upstream(self, batch_id: str, job: _Job, start: int, stop: int) -> None:
        """Run ``job.order[start:stop]`` upstream; save each answer once all before it are."""
        assert self.upstream is not None
        with self.store.lock:
            seed = self.store.batch_record(batch_id).seed
        slots: list[Future[bytes]] = []
        texts: list[str | None] = []
        for pos in job.order[start:stop]:
            req = orjson.loads(job.lines[pos])
            body = req.get("body")
            texts.append(embed_text(body) if _is_embeddings(req) else last_user_text(body))
            if self.fail_rate and unit(seed, batch_id, req["custom_id"]) < self.fail_rate:
                failed: Future[bytes] = Future()
                failed.set_result(_failed_line(req["custom_id"]))
                slots.append(failed)
            else:
                raw = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
                slots.append(self.upstream.submit(req, raw))
        saved = 0
        while saved < len(slots):
            stopping = self._stop.is_set()
            if stopping:
                for future in slots[saved:]:
                    future.cancel()  # not started: sent after a restart
            else:
                wait(slots[saved:], timeout=0.1, return_when=FIRST_COMPLETED)
            ready = saved
            while ready < len(slots) and slots[ready].done() and not slots[ready].cancelled():
                ready += 1
            if ready > saved:
                try:
                    lines = [f.result() for f in slots[saved:ready]]
                except Stopped:
                    return
                self._save_lines(batch_id, lines, texts[saved:ready], start + ready)
                saved = ready
            if stopping:
                return  # answers still in flight are not saved: sent again after a restart

    def _save_lines(
        self, batch_id: str, lines: Sequence[bytes], texts: list[str | None], done: int
    ) -> None:
        out: list[bytes] = []
        err: list[bytes] = []
        prompt = completion = 0
        executed: list[tuple[str, Any, int, str | None]] = []
        for raw, text in zip(lines, texts, strict=True):
            line = orjson.loads(raw)
            response = line["response"]
            status = response["status_code"]
            executed.append((batch_id, line["custom_id"], status, text))
            if 200 <= status < 300:
                out.append(raw)
                usage = response["body"].get("usage") or {}
                prompt += _count(usage.get("prompt_tokens"))
                completion += _count(usage.get("completion_tokens"))
            else:
                err.append(raw)
        self.store.record_progress(
            batch_id,
            out=b"".join(out),
            err=b"".join(err),
            done=done,
            completed=len(out),
            failed=len(err),
            usage=(prompt, completion),
        )
        if self.log is not None:
            self.log.extend(executed)

    def _end(self, batch_id: str, status: str) -> None:
        """End a batch early: a ``batch_expired`` / ``batch_cancelled`` line per unrun request."""
        job = self._job(batch_id)
        if job is None:
            return
        with self.store.lock:
            rec = self.store.batch_record(batch_id)
            done, total = rec.done, rec.obj["request_counts"]["total"]
        if total == 0 and job.lines:  # cancelled while still validating
            counts = {"total": len(job.lines), "completed": 0, "failed": 0}
            self.store.update(batch_id, request_counts=counts)
        code, message = _NOT_RUN[status]
        tail: list[bytes] = []
        for pos in job.order[done:]:
            cid: Any = orjson.loads(job.lines[pos]).get("custom_id")
            line = {
                "id": "batch_req_" + fast_hex(),
                "custom_id": cid,
                "response": None,
                "error": {"code": code, "message": message},
            }
            tail.append(orjson.dumps(line) + b"\n")
        self.store.record_progress(
            batch_id,
            out=b"",
            err=b"".join(tail),
            done=len(job.lines),
            completed=0,
            failed=0,
            usage=(0, 0),
        )
        self._jobs.pop(batch_id, None)
        self.store.finish(batch_id, status)


def _is_embeddings(req: dict[str, Any]) -> bool:
    return req.get("url") == "/v1/embeddings"


def embed_text(body: Any) -> str | None:
    """The first input of an embeddings request (what the execution log shows)."""
    raw = body.get("input") if isinstance(body, dict) else None
    if isinstance(raw, list) and raw:
        raw = raw[0]
    return raw if isinstance(raw, str) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _failed_line(custom_id: Any) -> bytes:
    """A ``fail_rate`` line: a 500 answered locally (never sent upstream)."""
    message = "The server had an error while processing your request. Sorry about that!"
    body = error_body(message, type="server_error")
    line = {
        "id": "batch_req_" + fast_hex(),
        "custom_id": custom_id,
        "response": {"status_code": 500, "request_id": "req_" + fast_hex(), "body": body},
        "error": None,
    }
    return orjson.dumps(line) + b"\n"


def _shuffle_seed(found: _Input, batch_id: str) -> int | None:
    """The seed of the batch's run order, or None: its lines run in file order."""
    return seed_of(found.seed, batch_id) if found.shuffle else None
