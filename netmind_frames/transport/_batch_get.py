"""Batches read with one plain ``GET`` each on the standard library (for quick commands).

``netmind-frames status`` only reads a few batches; importing openai (more than a second) or
even httpx2 (about 0.2 s) to do so would cost more than the reads, so it asks
``GET {base_url}/batches/{id}`` with ``http.client``, following the rules the openai client
follows:

* the resolved base URL, its path prefix included, over ``http`` or ``https`` (TLS verified
  against the system's certificates; ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` are honoured);
* ``Authorization: Bearer <key>`` in the header only: the key is never in a URL, a log or an
  error (a server that quotes it back has it masked);
* one keep-alive connection for all the batches (reopened after a drop);
* retries on 429, 5xx, dropped connections and read timeouts, with doubling waits (reads are
  idempotent); timeouts of 5 s to connect and 60 s per read;
* a quick ``ConfigurationError`` naming the URL when the host cannot be reached (refused,
  unknown name, connect timeout, TLS handshake failure);
* proxies from the environment as httpx reads them by default: ``HTTPS_PROXY`` /
  ``HTTP_PROXY`` / ``ALL_PROXY`` (lower case too) and ``NO_PROXY``, through an ``http://``
  proxy (``CONNECT`` tunnel for https, credentials in the proxy URL sent as Basic). Not
  supported: SOCKS or ``https://`` proxies (refused with a ConfigurationError naming the
  variable), the OS's proxy settings outside the environment, HTTP/2.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from .._errors import ConfigurationError, NetmindFramesError
from ._config import Settings

#: Attempts per batch on 429, 5xx, a dropped connection or a read timeout, and the first wait.
ATTEMPTS = 5
_FIRST_WAIT = 0.25
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0

#: Failures of a request on an open connection (dropped, reset, read timeout, a garbled
#: answer): the connection is closed and the read retried on a new one.
_DROPS = (http.client.HTTPException, OSError)


class BatchReadError(NetmindFramesError):
    """The server answered a batch read with an error (the status code and its message)."""


@dataclass(frozen=True)
class BatchState:
    """What ``status`` shows of one batch: its status (verbatim) and request counts."""

    id: str
    status: str
    completed: int
    failed: int
    total: int


def read_batches(
    settings: Settings,
    batch_ids: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> list[BatchState]:
    """Each batch of ``batch_ids``, read now, in order, over one connection.

    Raises:
        ConfigurationError: the base URL (or the proxy) cannot be reached (named, with why).
        BatchReadError: an answer other than 2xx after the retries (401: the key; 404: no
            such batch at this base URL).
    """
    base = settings.base_url.rstrip("/")
    with _Connection(base, settings.api_key) as conn:
        return [_read(conn, base, b, sleep) for b in batch_ids]


def _read(
    conn: _Connection, base: str, batch_id: str, sleep: Callable[[float], None]
) -> BatchState:
    path = f"/batches/{quote(batch_id, safe='')}"
    url = base + path
    wait = _FIRST_WAIT
    for attempt in range(1, ATTEMPTS + 1):
        try:
            status, reason, body = conn.get(path)
        except _DROPS:
            conn.close()  # the next attempt opens a new one
            if attempt == ATTEMPTS:
                raise
        else:
            if status < 300:
                return _state(batch_id, _json(url, body))
            if not (status == 429 or status >= 500) or attempt == ATTEMPTS:
                # Some servers quote the key they refused: never repeat it.
                message = conn.mask(_message(body, reason))
                raise BatchReadError(f"GET {url} answered {status}: {message}")
        sleep(wait)
        wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


class _Connection:
    """One HTTP(S) connection to the base URL's host (or its proxy), opened on first use."""

    def __init__(self, base: str, api_key: str) -> None:
        self._base = base
        parts = urlsplit(base)  # checked by resolve_settings: http(s) with a host
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._key = api_key
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": "netmind-frames",
        }
        self._proxy = _proxy_for(parts.scheme, self._host)
        self._conn: http.client.HTTPConnection | None = None

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def mask(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        return text.replace(self._key, "***") if self._key else text

    def get(self, path: str) -> tuple[int, str, bytes]:
        """``GET {prefix}{path}``: the status code, reason and whole body (read to the end, so
        the connection can serve the next request)."""
        conn = self._open()
        target = self._prefix + path
        if self._proxy is not None and not self._https:
            target = f"{self._base}{path}"  # a plain-HTTP proxy takes the absolute URL
        conn.request("GET", target, headers=self._headers)
        answer = conn.getresponse()
        body = answer.read()
        if answer.will_close:
            self.close()
        return answer.status, answer.reason, body

    def _open(self) -> http.client.HTTPConnection:
        if self._conn is not None:
            return self._conn
        host, port, tunnel = self._host, self._port, None
        if self._proxy is not None:
            host, port, auth = self._proxy
            tunnel = auth
        conn: http.client.HTTPConnection
        if self._https:
            # The CA store is loaded only for https (a local server's plain http needs none).
            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=CONNECT_TIMEOUT, context=context)
            if tunnel is not None:
                conn.set_tunnel(self._host, self._port, headers=tunnel)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=CONNECT_TIMEOUT)
            if tunnel is not None:
                self._headers.update(tunnel)
        try:
            conn.connect()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            via = f" through the proxy {host}:{port}" if self._proxy is not None else ""
            raise ConfigurationError(
                f"cannot reach the base URL {self._base}{via} ({type(exc).__name__}): check "
                "the address (netmind_frames.doctor() checks it)."
            ) from None
        assert conn.sock is not None
        conn.sock.settimeout(READ_TIMEOUT)
        self._conn = conn
        return conn


def _proxy_for(scheme: str, host: str) -> tuple[str, int, dict[str, str]] | None:
    """The environment's proxy for ``scheme://host`` (host, port and its auth header), or None.

    urllib's own reading of the variables (the same names and NO_PROXY rules httpx follows),
    imported only when a proxy variable is set: urllib.request is slow to import."""
    if not any(k.lower().endswith("_proxy") for k in os.environ):
        return None
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get(scheme) or proxies.get("all")
    if not url or urllib.request.proxy_bypass(host):
        return None
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigurationError(
            f"the {scheme} proxy {parts.scheme}://{parts.hostname}:{parts.port or ''} from the "
            "environment (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) is not supported by "
            "`netmind-frames status`: only http:// proxies are"
        )
    headers = {}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    return parts.hostname, parts.port or 80, headers


def _json(url: str, body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise BatchReadError(f"GET {url} answered 200 but not with a JSON object: {body[:200]!r}")
    return value


def _state(batch_id: str, body: dict[str, Any]) -> BatchState:
    counts = body.get("request_counts") or {}
    return BatchState(
        id=str(body.get("id") or batch_id),
        status=str(body.get("status")),
        completed=int(counts.get("completed") or 0),
        failed=int(counts.get("failed") or 0),
        total=int(counts.get("total") or 0),
    )


def _message(body: bytes, reason: str) -> str:
    """The error's own message (OpenAI's ``{"error": {"message"}}`` shape), else a snippet."""
    try:
        value = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace") or reason
    error = value.get("error") if isinstance(value, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(value)[:200]
