"""``LocalBatchServer``: the local batch server running in a background thread."""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from ._app import build_app
from ._context import Context
from ._dialect import OPENAI_PREFIX
from ._hooks import CallLog, ExecutionLog, FaultScript
from ._presign import load_secret
from ._quirks import Quirks
from ._runner import Runner
from ._store import Store
from ._upstream import DEFAULT_RETRIES, Upstream, check_upstream_url, redact

DEFAULT_MAX_BODY_BYTES = 200 * 1024 * 1024
#: Netmind's limit on a batch input file, as the presigned PUT enforces it (100 MB).
PRESIGNED_MAX_BYTES = 100_000_000
DEFAULT_PRESIGNED_TTL = 7200.0
ENDPOINTS = ("/v1/chat/completions", "/v1/embeddings")
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def is_loopback(host: str) -> bool:
    """True when ``host`` reaches only this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a host name: not loopback as far as we know


class LocalBatchServer:
    """Netmind's and OpenAI's Batch + File APIs on loopback, answered by the ``echo`` engine,
    or by an ``upstream`` OpenAI-compatible server (a batch gateway).

    Not Netmind: a faithful emulation of the wire contract for tests, CI and offline work.

    Parameters
    ----------
    seconds_per_request:
        Pace of each batch; 0 (default) runs every request at once.
    fail_rate:
        Fraction of requests that end as 500 error lines (seeded).
    fault_rate:
        Fraction of HTTP calls answered 429 (``Retry-After: 0``) or 500, or whose connection is
        dropped after the call was processed; presigned URLs included (seeded).
    expire_after:
        Seconds after creation at which an unfinished batch expires; None never.
    cancel_after:
        Seconds a cancelled batch stays ``cancelling`` before it ends ``cancelled`` (no request
        starts meanwhile); 0 (default) ends it at once. Netmind takes up to 10 minutes.
    seed:
        Seed of the output shuffle, ``fail_rate`` and ``fault_rate``.
    data_dir:
        Directory for files and batch state; a new server on it carries on where the last one
        stopped. None keeps state in a temporary directory removed by :meth:`stop`.
    api_key:
        When set, every call but a presigned URL needs ``Authorization: Bearer <key>`` (or the
        raw key); otherwise any key is accepted.
    max_body_bytes:
        Request bodies above this get 413 (default 200 MiB).
    shuffle:
        Shuffle output lines (seeded); False keeps input order.
    host, port:
        Where to listen; loopback and an ephemeral port by default. Any other address needs
        ``api_key`` (or ``allow_unauthenticated=True``): a ValueError otherwise.
    allow_unauthenticated:
        True: listen beyond loopback without ``api_key``, knowingly: anyone who can reach the
        port can then use the server (and, with ``upstream``, spend the upstream's key).
    presigned_ttl:
        Lifetime of presigned URLs in seconds (Netmind: 2 hours). ``presign_ttl`` is its old
        name, still accepted.
    presigned_max_bytes:
        The largest file a presigned PUT takes (default 100,000,000 bytes, Netmind's limit on
        a batch file); a larger one gets 413 saying so. ``max_body_bytes`` caps the rest.
    netmind_embeddings:
        False (default): a ``/v1/embeddings`` batch created under Netmind's prefix gets 400
        "not supported yet (coming soon)", as Netmind's guide says; OpenAI's prefix runs it.
        True runs it under both. The synchronous ``.../embeddings`` is served either way.
    model_allowlist:
        The models batches may name (None: any). A batch whose lines name another model ends
        ``failed`` with ``errors.data[]`` entries ``model_not_found`` (``param`` ``body.model``,
        the line number), as OpenAI's Batch API fails a file naming a model it does not serve.
    record_executions:
        Keep the in-memory log read by :meth:`executions` (default True; ``serve`` turns it
        off, since no one in its process can read it).
    endpoints:
        The batch endpoints served: both by default. Leaving ``/v1/embeddings`` out emulates
        Netmind today ("coming soon"): creating such a batch gets 400 with a message saying
        the endpoint is not supported yet, and the sync ``POST .../embeddings`` gets 404.
    corrupt_rate:
        Fraction of chat answers to ``json_schema`` requests replaced by broken JSON
        (truncated, fenced in Markdown, a wrong-typed or missing first field); seeded per
        batch and custom_id in batches (a retry in a new batch draws again), per call number
        on the sync endpoint.
    upstream:
        The base URL of an OpenAI-compatible server (``http://127.0.0.1:8001/v1``: vLLM,
        Ollama, a llama.cpp server, another ``LocalBatchServer``). Each request of a batch is
        then sent to its synchronous ``POST {upstream}/chat/completions`` (or
        ``/embeddings``), ``concurrency`` at a time, and the answer, or the upstream's error
        status and body, becomes the request's output or error line. 429 and ``Retry-After``
        are honoured; 429, 5xx, 408, 409, connection errors and timeouts are retried up to
        ``upstream_retries`` times with backoff. With ``data_dir``, a restarted gateway sends
        only the requests whose answers it had not saved. The server's own sync endpoints
        forward to the upstream too. ``seconds_per_request`` and ``corrupt_rate`` do not apply;
        ``fail_rate`` rows are answered locally.
    upstream_api_key:
        Sent to the upstream as ``Authorization: Bearer <key>``; never logged or shown.
    concurrency:
        Upstream requests in flight at once (default 8).
    upstream_retries:
        Retries of one upstream request before its error is recorded (default 4).
    echo_metadata:
        False: batches keep their ``metadata`` hidden (every answer shows null), as a provider
        that does not store it would. Netmind's behaviour here is unknown.
    echo_input_file_id:
        False: batch list and retrieve answers show ``input_file_id`` as null (the batch still
        runs on its file). With ``echo_metadata=False`` too, a client cannot tell whose a batch
        is: the case where exactly-once must stop rather than guess.
    netmind_create_answer:
        True: a batch create answers as the example in Netmind's guide (status ``pending``,
        empty ``endpoint``, null ``input_file_id`` and times); the batch runs as usual.
    queued_polls, queued_status:
        The first ``queued_polls`` retrieves of each batch show status ``queued_status``
        (default ``"pending"``, Netmind's queued state; any name tests an unknown status).
    processes, process_min_bytes:
        Batches whose input file has at least ``process_min_bytes`` bytes (16 MB) are
        validated and answered in up to ``processes`` worker processes (default 2; 0: none),
        so the event loop serving transfers keeps the GIL; the answers are the same.

    Test hooks: :meth:`inject_fault` scripts a fault on one exact call, :meth:`executions`
    lists every request the engine ran in batch mode, :meth:`sync_calls` every synchronous
    call the server answered.

    Example
    -------
    >>> with LocalBatchServer() as server:  # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key)
    >>> gateway = LocalBatchServer(upstream="http://127.0.0.1:8001/v1", concurrency=16)
    """

    def __init__(
        self,
        *,
        seconds_per_request: float = 0.0,
        fail_rate: float = 0.0,
        fault_rate: float = 0.0,
        expire_after: float | None = None,
        cancel_after: float = 0.0,
        seed: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        shuffle: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        presign_ttl: float | None = None,
        presigned_ttl: float | None = None,
        presigned_max_bytes: int = PRESIGNED_MAX_BYTES,
        netmind_embeddings: bool = False,
        model_allowlist: tuple[str, ...] | list[str] | frozenset[str] | None = None,
        record_executions: bool = True,
        endpoints: tuple[str, ...] | list[str] = ENDPOINTS,
        corrupt_rate: float = 0.0,
        upstream: str | None = None,
        upstream_api_key: str | None = None,
        concurrency: int = 8,
        upstream_retries: int = DEFAULT_RETRIES,
        echo_metadata: bool = True,
        echo_input_file_id: bool = True,
        netmind_create_answer: bool = False,
        queued_polls: int = 0,
        queued_status: str = "pending",
        allow_unauthenticated: bool = False,
        processes: int = 2,
        process_min_bytes: int = 16_000_000,
    ) -> None:
        if seconds_per_request < 0:
            raise ValueError("seconds_per_request must be >= 0")
        unknown = sorted(set(endpoints) - set(ENDPOINTS))
        if isinstance(endpoints, str) or unknown or not endpoints:
            raise ValueError(f"endpoints must be a non-empty subset of {ENDPOINTS}")
        self.endpoints = tuple(e for e in ENDPOINTS if e in endpoints)
        rates = (("fail_rate", fail_rate), ("fault_rate", fault_rate))
        for name, rate in (*rates, ("corrupt_rate", corrupt_rate)):
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if expire_after is not None and expire_after < 0:
            raise ValueError("expire_after must be >= 0 or None")
        if not 0 <= cancel_after < float("inf"):
            raise ValueError("cancel_after must be >= 0 seconds")
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        if api_key is not None and not api_key:
            raise ValueError("api_key must be a non-empty string or None")
        if api_key is None and not allow_unauthenticated and not is_loopback(host):
            raise ValueError(
                f"host={host!r} without api_key= would let anyone who can reach the port use "
                "the server" + (" and spend the upstream's key" if upstream else "") + ": pass "
                "api_key=..., or allow_unauthenticated=True to accept that"
            )
        self.upstream = None if upstream is None else check_upstream_url(upstream)
        for name, value, least in (
            ("concurrency", concurrency, 1),
            ("upstream_retries", upstream_retries, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number >= {least}")
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise ValueError("processes must be a whole number >= 0")
        if process_min_bytes < 0:
            raise ValueError("process_min_bytes must be >= 0")
        self.processes = processes
        self.process_min_bytes = int(process_min_bytes)
        if upstream_api_key is not None and not upstream_api_key:
            raise ValueError("upstream_api_key must be a non-empty string or None")
        self._upstream_key = upstream_api_key
        if isinstance(queued_polls, bool) or not isinstance(queued_polls, int) or queued_polls < 0:
            raise ValueError("queued_polls must be a whole number >= 0")
        if not queued_status:
            raise ValueError("queued_status must be a non-empty string")
        self.echo_metadata = bool(echo_metadata)
        self.echo_input_file_id = bool(echo_input_file_id)
        self.netmind_create_answer = bool(netmind_create_answer)
        self.queued_polls = queued_polls
        self.queued_status = queued_status
        self.concurrency = concurrency
        self.upstream_retries = upstream_retries
        self.seconds_per_request = float(seconds_per_request)
        self.fail_rate = float(fail_rate)
        self.corrupt_rate = float(corrupt_rate)
        self.fault_rate = float(fault_rate)
        self.expire_after = expire_after
        self.cancel_after = float(cancel_after)
        self.seed = int(seed)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self._api_key = api_key
        self.max_body_bytes = int(max_body_bytes)
        self.shuffle = bool(shuffle)
        self.host = host
        self._port_arg = int(port)
        self.port = int(port)
        self.presigned_ttl = _ttl(presigned_ttl, presign_ttl)
        if presigned_max_bytes < 1:
            raise ValueError("presigned_max_bytes must be positive")
        self.presigned_max_bytes = int(presigned_max_bytes)
        self.netmind_embeddings = bool(netmind_embeddings)
        self.model_allowlist = _allowlist(model_allowlist)
        self._lock = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._socket: socket.socket | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._runner: Runner | None = None
        self._faults = FaultScript()
        self._log = ExecutionLog() if record_executions else None
        self._sync_log = CallLog() if record_executions else None

    # -- addresses -----------------------------------------------------------------------
    @property
    def origin(self) -> str:
        """``http://host:port`` of the running server (a wildcard host reads as loopback)."""
        if self._socket is None:
            raise RuntimeError("the server is not running; call start() first")
        host = _WILDCARDS.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Netmind dialect base URL: ``origin + /inference-api/openai/v1``."""
        return self.origin + "/inference-api/openai/v1"

    @property
    def openai_base_url(self) -> str:
        """OpenAI dialect base URL: ``origin + /openai/v1``.

        OpenAI's dialect has its own prefix because ``GET /v1/files`` is Netmind's and answers
        a bare array to every client. ``origin + /v1`` still serves OpenAI's uploads,
        downloads and batches for older callers.
        """
        return self.origin + OPENAI_PREFIX

    @property
    def presign_ttl(self) -> float:
        """The old name of :attr:`presigned_ttl`."""
        return self.presigned_ttl

    @property
    def api_key(self) -> str:
        """The configured key, or ``"local"`` when none is set (any key is accepted then)."""
        return self._api_key if self._api_key is not None else "local"

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._thread is not None

    # -- test hooks ----------------------------------------------------------------------
    def inject_fault(self, method: str, path: str, action: str, times: int = 1) -> None:
        """Script a fault on the next ``times`` HTTP calls matching ``method`` and ``path``.

        Thread-safe; callable before :meth:`start` or while serving, from any thread.

        Parameters
        ----------
        method:
            HTTP method, case-insensitive; ``"*"`` matches any.
        path:
            A regular expression that must **full-match** the request path after its dialect
            prefix (the leading ``/inference-api/openai/v1`` or ``/v1`` is removed first; a
            path with neither, such as a presigned URL ``/_presigned/<file id>``, is matched
            whole; the query string is not part of the path). ``"/batches"`` matches batch
            create and list under both prefixes but not ``/batches/<id>/cancel``.
        action:
            ``"429"`` (``Retry-After: 0``) or ``"500"``: answered without running anything.
            ``"drop_before"``: the connection is dropped, nothing is run. ``"drop_after"``: the
            call is run (a batch is created, a file stored, ...), then the connection is
            dropped before the answer is complete. ``"delay:SECONDS"``: the call is run at
            once and its answer held back SECONDS (a client timing out meanwhile never learns
            the work was done). ``"expire"``: answered 403 like a presigned URL whose
            signature expired, nothing run (use it on ``"/_presigned/.*"``).
        times:
            How many matching calls the fault hits; then it is gone.

        Faults fire before the API key check and take precedence over ``fault_rate`` (no
        seeded draw is made for that call). When several pending faults match a call, the
        oldest one fires. Faults belong to this object and survive :meth:`stop` /
        :meth:`start`.

        Example
        -------
        >>> server.inject_fault("POST", "/batches", "drop_after")  # doctest: +SKIP
        """
        self._faults.add(method, path, action, times)

    def pending_faults(self) -> list[dict[str, Any]]:
        """Return the scripted faults not yet used up: ``{method, path, action, times}`` each."""
        return self._faults.pending()

    def clear_faults(self) -> None:
        """Drop every scripted fault not yet used up."""
        self._faults.clear()

    def executions(self) -> list[dict[str, Any]]:
        """Every request the engine ran in batch mode, in the order it ran.

        Each entry is ``{"batch_id", "custom_id", "status_code", "prompt"}``; ``prompt`` is the
        last ``user`` message text of the request (None when its messages are invalid; for an
        embeddings request, its first input).
        ``fail_rate`` rows are listed with status 500; lines that never ran (``batch_expired``,
        ``batch_cancelled``) and synchronous ``chat/completions`` calls are not listed.

        The log is kept in memory by this object: it survives :meth:`stop` / :meth:`start`
        of the same object but starts empty in a new ``LocalBatchServer`` (another process,
        even on the same ``data_dir``). Empty when ``record_executions=False``.
        """
        return self._log.snapshot() if self._log is not None else []

    def clear_executions(self) -> None:
        """Forget the execution log."""
        if self._log is not None:
            self._log.clear()

    def sync_calls(self) -> list[dict[str, Any]]:
        """Every synchronous ``chat/completions`` / ``embeddings`` call this server answered.

        A test hook (e.g. to count what a gateway or sync mode sent to this server). Each
        entry is ``{"endpoint", "status_code", "prompt"}``: ``"/chat/completions"`` or
        ``"/embeddings"``, the status answered, and the last ``user`` message text (for
        embeddings, the first input; None when unreadable). Calls answered by a fault
        (:meth:`inject_fault`, ``fault_rate``) never reached the engine and are not listed.
        Kept in memory like :meth:`executions`; empty when ``record_executions=False``.
        """
        return self._sync_log.snapshot() if self._sync_log is not None else []

    def clear_sync_calls(self) -> None:
        """Forget the sync call log."""
        if self._sync_log is not None:
            self._sync_log.clear()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> LocalBatchServer:
        """Start serving in background threads; return once the socket accepts connections."""
        with self._lock:
            if self._thread is not None:
                return self
            if self.data_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="netmind-frames-server-")
                root = Path(self._tmp.name)
            else:
                root = self.data_dir
                root.mkdir(parents=True, exist_ok=True)
            store = Store(root)
            upstream = None
            if self.upstream is not None:
                upstream = Upstream(
                    self.upstream,
                    self._upstream_key,
                    concurrency=self.concurrency,
                    retries=self.upstream_retries,
                )
            runner = Runner(
                store,
                seconds_per_request=self.seconds_per_request,
                fail_rate=self.fail_rate,
                log=self._log,
                corrupt_rate=self.corrupt_rate,
                upstream=upstream,
                cancel_after=self.cancel_after,
                model_allowlist=self.model_allowlist,
                processes=self.processes,
                process_min_bytes=self.process_min_bytes,
            )
            context = Context(
                store=store,
                runner=runner,
                secret=load_secret(root),
                presigned_ttl=self.presigned_ttl,
                presigned_max_bytes=self.presigned_max_bytes,
                netmind_embeddings=self.netmind_embeddings,
                expire_after=self.expire_after,
                seed=self.seed,
                shuffle=self.shuffle,
                endpoints=frozenset(self.endpoints),
                corrupt_rate=self.corrupt_rate,
                upstream=upstream,
                sync_log=self._sync_log,
                quirks=Quirks(
                    echo_metadata=self.echo_metadata,
                    echo_input_file_id=self.echo_input_file_id,
                    netmind_create_answer=self.netmind_create_answer,
                    queued_polls=self.queued_polls,
                    queued_status=self.queued_status,
                ),
            )
            app = build_app(
                context,
                api_key=self._api_key,
                fault_rate=self.fault_rate,
                seed=self.seed,
                max_body_bytes=self.max_body_bytes,
                script=self._faults,
            )
            family, kind, proto, _, _ = socket.getaddrinfo(
                self.host, self._port_arg, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )[0]
            # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets, and
            # without it every response waits ~40 ms for a delayed ACK.
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((self.host, self._port_arg))
            except OSError:
                sock.close()
                if upstream is not None:
                    upstream.close()
                self._cleanup_tmp()
                raise
            self.port = sock.getsockname()[1]
            config = uvicorn.Config(
                app,
                log_config=None,
                access_log=False,
                lifespan="off",
                http="h11",
                ws="none",
                timeout_graceful_shutdown=2,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name="netmind-frames-server",
                daemon=True,
            )
            self._socket, self._uvicorn, self._thread, self._runner = sock, server, thread, runner
            runner.start()
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    self._stop_locked()
                    raise RuntimeError("the local batch server failed to start")
                time.sleep(0.005)
            return self

    def stop(self) -> None:
        """Stop serving and stop the runner; idempotent. In-flight batches resume on restart."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()
        if self._runner is not None:
            self._runner.stop()
        if self._socket is not None:
            self._socket.close()
        self._uvicorn = self._thread = self._runner = self._socket = None
        self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> LocalBatchServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.origin if self._socket is not None else "stopped"
        key = "set" if self._api_key is not None else "any"
        engine = "" if self.upstream is None else f" upstream={redact(self.upstream)}"
        return f"<LocalBatchServer {where} data_dir={self.data_dir!s} api_key={key}{engine}>"


def _ttl(presigned_ttl: float | None, presign_ttl: float | None) -> float:
    """The presigned URL lifetime from the documented name or its old one (not two values)."""
    if presigned_ttl is not None and presign_ttl is not None and presigned_ttl != presign_ttl:
        raise ValueError("pass presigned_ttl only (presign_ttl is its old name)")
    value = presigned_ttl if presigned_ttl is not None else presign_ttl
    ttl = DEFAULT_PRESIGNED_TTL if value is None else float(value)
    if not 0 <= ttl < float("inf"):
        raise ValueError("presigned_ttl must be a number of seconds >= 0")
    return ttl


def _allowlist(
    models: tuple[str, ...] | list[str] | frozenset[str] | None,
) -> frozenset[str] | None:
    """The ``model_allowlist`` as a set; a string or an empty list is a mistake."""
    if models is None:
        return None
    if isinstance(models, str) or not models or not all(isinstance(m, str) and m for m in models):
        raise ValueError("model_allowlist must be a non-empty list of model names, or None")
    return frozenset(models)
