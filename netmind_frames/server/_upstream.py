"""The ``upstream`` engine: each request of a batch sent to an OpenAI-compatible sync endpoint.

With it the local server is a batch gateway in front of a self-hosted model (vLLM, Ollama, a
llama.cpp server, or any ``/v1`` that answers ``POST /chat/completions`` and
``POST /embeddings``). Each request line's ``body`` is posted as it is, byte for byte.

Retries, per request, at most ``retries`` times:

* 429 (and 503) honour ``Retry-After`` (seconds or an HTTP date, each wait capped at
  :data:`MAX_WAIT` seconds); without the header, and for 408, 409 and other 5xx, exponential
  backoff from :data:`BACKOFF` seconds (doubling, capped at :data:`MAX_BACKOFF`, with jitter).
* A dropped or refused connection and a timeout are retried the same way.

What persists is recorded: the upstream's status code and JSON body (its error envelope) as
an error line; no answer at all as a 502 ``connection_error`` / 504 ``timeout`` line
(``_answer_lines``). The API key goes only into the ``Authorization`` header: never into a
log, a repr or an error message.

Requests run on ``concurrency`` daemon threads, so a request stuck upstream never keeps the
process from exiting; backoff waits end at once when the engine is stopped.
"""

from __future__ import annotations

import email.utils
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx2

from ..results._answer_lines import answer_line, no_answer_line

logger = logging.getLogger("netmind_frames.server")

MAX_WAIT = 60.0
BACKOFF = 0.25
MAX_BACKOFF = 8.0
DEFAULT_RETRIES = 4
DEFAULT_TIMEOUT = 600.0
_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class Answer:
    """What one request got: an HTTP answer (``status``), or none (``failure``)."""

    status: int | None
    content: bytes
    request_id: str | None = None
    failure: Literal["connection", "timeout"] | None = None
    retry_after: str | None = None


class Stopped(Exception):
    """The engine was stopped while the request waited to be retried; nothing was recorded."""


def check_upstream_url(url: str) -> str:
    """The upstream base URL without a trailing slash; ValueError unless it is http(s)."""
    if not isinstance(url, str):
        raise ValueError("upstream must be a URL string such as http://127.0.0.1:8001/v1")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("upstream must be an http(s) URL such as http://127.0.0.1:8001/v1")
    return url.strip().rstrip("/")


def redact(url: str) -> str:
    """``url`` with any ``user:password@`` removed, for printing."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), or None."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_WAIT)


class Upstream:
    """Sends request lines to ``url`` and returns batch output lines.

    Parameters
    ----------
    url:
        The upstream's base URL, e.g. ``http://127.0.0.1:8001/v1``; a line for
        ``/v1/chat/completions`` is posted to ``{url}/chat/completions``.
    api_key:
        Sent as ``Authorization: Bearer <key>``; None sends no such header.
    concurrency:
        Requests in flight at once.
    retries:
        Retries of one request (429, 5xx, 408, 409, connection errors, timeouts).
    timeout:
        Seconds one attempt may take (a long generation is slow).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        concurrency: int = 8,
        retries: int = DEFAULT_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        self.url = check_upstream_url(url)
        self.concurrency = concurrency
        self.retries = retries
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx2.Client(
            headers=headers,
            timeout=httpx2.Timeout(timeout, connect=10.0),
            limits=httpx2.Limits(max_connections=concurrency),
            transport=transport,
        )
        self._stop = threading.Event()
        self._tasks: queue.SimpleQueue[tuple[Future[bytes], Callable[[], bytes]] | None] = (
            queue.SimpleQueue()
        )
        self._alive = concurrency
        self._alive_lock = threading.Lock()
        self._rng = random.Random()
        for number in range(concurrency):
            threading.Thread(
                target=self._work, name=f"netmind-frames-upstream-{number}", daemon=True
            ).start()

    def __repr__(self) -> str:
        return f"<Upstream {redact(self.url)} concurrency={self.concurrency}>"

    # -- running requests ------------------------------------------------------------------
    def submit(self, line: dict[str, Any], body: bytes) -> Future[bytes]:
        """Queue one request line (its parsed form and its body's bytes); the future's result
        is its output line, or :class:`Stopped`."""
        future: Future[bytes] = Future()
        self._tasks.put((future, lambda: self.line(line, body)))
        return future

    def line(self, line: dict[str, Any], body: bytes) -> bytes:
        """Send one request line now, with retries; return its output line."""
        cid = line.get("custom_id")
        path = "/" + str(line.get("url", "")).removeprefix("/v1/").lstrip("/")
        answer = self.post(path, body)
        if answer.failure is not None:
            return no_answer_line(cid, answer.failure, answer.content.decode())
        assert answer.status is not None
        return answer_line(cid, answer.status, answer.content, answer.request_id)

    def post(self, path: str, body: bytes, *, retries: int | None = None) -> Answer:
        """POST ``body`` to ``{url}{path}``, retrying up to ``retries`` times (default: the
        engine's); return the last answer. Raises :class:`Stopped` if the engine stops while
        waiting to retry.
        """
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._client.post(
                    self.url + path,
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
            except httpx2.TimeoutException as exc:
                if last:
                    return Answer(None, _no_answer("timed out", exc, self.url), failure="timeout")
                self._wait(self._backoff(attempt))
                continue
            except httpx2.TransportError as exc:
                if last:
                    message = _no_answer("could not be reached", exc, self.url)
                    return Answer(None, message, failure="connection")
                self._wait(self._backoff(attempt))
                continue
            status = response.status_code
            header = response.headers.get("retry-after")
            if last or not (status in _RETRY_STATUS or status >= 500):
                request_id = response.headers.get("x-request-id")
                return Answer(status, response.content, request_id, retry_after=header)
            wait = retry_after(header)
            logger.info("upstream answered %d; retrying (%d of %d)", status, attempt + 1, attempts)
            self._wait(self._backoff(attempt) if wait is None else wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int) -> float:
        return min(BACKOFF * 2**attempt, MAX_BACKOFF) * (1 - 0.25 * self._rng.random())

    def _wait(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise Stopped

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop: queued requests are dropped, backoff waits end, the threads exit as soon as
        their request in flight (if any) returns; the last one closes the HTTP client."""
        self._stop.set()
        for _ in range(self.concurrency):
            self._tasks.put(None)

    def _work(self) -> None:
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                future, call = task
                if self._stop.is_set():
                    future.cancel()
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(call())
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)
        finally:
            with self._alive_lock:
                self._alive -= 1
                last = self._alive == 0
            if last:
                self._client.close()


def _no_answer(what: str, exc: Exception, url: str) -> bytes:
    return f"The upstream {redact(url)} {what}: {type(exc).__name__}.".encode()
