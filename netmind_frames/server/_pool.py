"""Worker processes for large batches: validate and answer them away from the server's GIL.

The HTTP event loop and the runner share one interpreter. Answering a 100 MB input file in the
runner thread holds the GIL for seconds at a time, so uploads and downloads served meanwhile
crawl. Above a size threshold the runner hands a batch's validation and its chunks of requests
to these processes instead; the runner thread only dispatches and records, and several batches
are answered in parallel. Each worker has its own id prefix (``_ids``), so ids stay unique.

The workers are plain ``python -m netmind_frames.server._worker`` processes fed pickled calls
over their stdin, not ``multiprocessing``: its ``spawn`` re-runs the caller's main script in
every worker (a script without a ``__main__`` guard would start its jobs again), and ``fork``
is unsafe in a process with the server's threads.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
from array import array
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from itertools import islice
from pathlib import Path
from typing import IO, Any

from ._answer import Answered, answer, answer_requests, run_order
from ._validate import Checks, Lines

_SIZE = struct.Struct("<Q")


class WorkerLost(Exception):
    """A worker process could not be started or ended mid-call (not an error of the work)."""


def validate_and_answer(
    path: Path,
    endpoint: str,
    models: frozenset[str] | None,
    out_path: Path,
    err_path: Path,
    *,
    most: int,
    shuffle_seed: int | None,
    **options: Any,
) -> tuple[list[dict[str, Any]], str | None, array[int], array[int], Answered | None]:
    """Validate the input file at ``path`` and answer its lines as they are checked, so each
    is parsed once: ``(errors, model, line starts, line ends, answered)``.

    The answers (in run order: ``shuffle_seed`` as the runner draws it) go to ``out_path`` and
    ``err_path``, as :func:`answer_lines_at` writes them; None instead when the file has an
    error or more than ``most`` lines (the runner then answers it chunk by chunk).
    """
    lines = Lines.of_file(path)
    checks = Checks(endpoint, models)
    requests = checks.requests(lines)
    done = answer_requests(
        islice(requests, most),
        run_order=partial(run_order, shuffle_seed=shuffle_seed),
        **options,
    )
    extra = sum(1 for _ in requests)  # the rest of the file is checked all the same
    checked = checks.result(lines)
    starts, ends = lines.offsets()
    if checked.errors or extra:
        return checked.errors, checked.model, starts, ends, None
    return checked.errors, checked.model, starts, ends, _written(done, out_path, err_path)


def answer_lines_at(
    path: Path,
    starts: array[int],
    ends: array[int],
    out_path: Path,
    err_path: Path,
    **options: Any,
) -> Answered:
    """Answer the request lines of the file at ``path`` at these offsets, in this order.

    The output and error lines are written to ``out_path`` and ``err_path``, not sent back:
    through the pipe they cost four copies (pickle, pipe, pipe, unpickle) in two processes,
    then a fifth to the batch's file in the server process, whose GIL serves the transfers.
    """
    done = answer(Lines.of_offsets(path, starts, ends), **options)
    return _written(done, out_path, err_path)


def _written(done: Answered, out_path: Path, err_path: Path) -> Answered:
    """``done`` with its output and error lines written to these files instead of held."""
    out_path.write_bytes(done.out)
    err_path.write_bytes(done.err)
    return replace(done, out=b"", err=b"", out_path=out_path, err_path=err_path)


def answer_blob(blob: bytes, **options: Any) -> Answered:
    """Answer the request lines of ``blob`` (joined by newlines, in run order)."""
    return answer(blob.split(b"\n"), **options)


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_SIZE.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_SIZE.size)
    if len(head) < _SIZE.size:
        raise EOFError("the worker process ended")
    (size,) = _SIZE.unpack(head)
    return pickle.loads(stream.read(size))


class _Worker:
    """One worker process; one call at a time."""

    def __init__(self) -> None:
        env = dict(os.environ)
        # The worker imports this very package, wherever the server imported it from.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "netmind_frames.server._worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )

    def call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            _send(self._proc.stdin, (fn, args, kwargs))
            ok, result = _receive(self._proc.stdout)
        except (EOFError, OSError) as exc:
            raise WorkerLost(f"worker process {self._proc.pid} ended") from exc
        if not ok:
            raise RuntimeError(f"worker process failed: {result}")
        return result

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # the worker ends at end of input
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class Pool:
    """Up to ``size`` worker processes, started when first needed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._threads: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is None:
            try:
                worker = _Worker()
            except OSError as exc:
                raise WorkerLost(f"cannot start a worker process: {exc}") from exc
            self._local.worker = worker
            with self._lock:
                self._workers.append(worker)
        try:
            return worker.call(fn, args, kwargs)
        except WorkerLost:
            self._local.worker = None  # the next call starts a new one
            worker.close()
            raise

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` (a module-level function) in a worker process."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="netmind-worker")
        return self._threads.submit(self._call, fn, args, kwargs)

    def close(self) -> None:
        """Stop the workers; work not started is dropped (the saved state says what is left)."""
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
        self._local = threading.local()
