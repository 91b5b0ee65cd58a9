"""Batches read with one plain ``GET`` each, without the openai client (for quick commands).

``netmind-frames status`` only reads a few batches; importing openai to do so costs more than a
second, so it asks ``GET {base_url}/batches/{id}`` itself, with the same rules the openai
client follows: the resolved base URL, ``Authorization: Bearer <key>``, retries on 429, 5xx and
dropped connections (reads are idempotent), and a quick failure naming the URL when the host
cannot be reached. The key is sent in the header only: never in a URL, a log or an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from .._errors import ConfigurationError, NetmindFramesError
from ._config import Settings

#: Attempts per batch on 429, 5xx or a dropped connection, and the first wait between them.
ATTEMPTS = 5
_FIRST_WAIT = 0.25
_TIMEOUT = httpx2.Timeout(60.0, connect=5.0)


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
    http: httpx2.Client | None = None,
) -> list[BatchState]:
    """Each batch of ``batch_ids``, read now, in order.

    Raises:
        ConfigurationError: the base URL cannot be reached (named, with what was tried).
        BatchReadError: an answer other than 2xx after the retries (401: the key; 404: no
            such batch at this base URL).
    """
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "Accept": "application/json",
        "User-Agent": "netmind-frames",
    }
    base = settings.base_url.rstrip("/")
    if http is not None:
        return [_read(http, base, b, headers, sleep) for b in batch_ids]
    # A plain-HTTP base URL (a local server) needs no TLS: skipping the CA bundle that
    # httpx2 otherwise loads up front saves a good part of the command's start.
    plain = base.startswith("http://")
    with httpx2.Client(timeout=_TIMEOUT, verify=not plain) as own:
        return [_read(own, base, b, headers, sleep) for b in batch_ids]


def _read(
    http: httpx2.Client,
    base: str,
    batch_id: str,
    headers: dict[str, str],
    sleep: Callable[[float], None],
) -> BatchState:
    url = f"{base}/batches/{batch_id}"
    wait = _FIRST_WAIT
    for attempt in range(1, ATTEMPTS + 1):
        try:
            answer = http.get(url, headers=headers)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.UnsupportedProtocol) as exc:
            raise ConfigurationError(
                f"cannot reach the base URL {base} ({type(exc).__name__}): check the address "
                "(netmind_frames.doctor() checks it)."
            ) from None
        except httpx2.TransportError:
            if attempt == ATTEMPTS:
                raise
        else:
            if answer.status_code < 300:
                return _state(batch_id, answer.json())
            retry = answer.status_code == 429 or answer.status_code >= 500
            if not retry or attempt == ATTEMPTS:
                # Some servers quote the key they refused: never repeat it.
                message = _message(answer).replace(headers["Authorization"][7:], "***")
                raise BatchReadError(f"GET {url} answered {answer.status_code}: {message}")
        sleep(wait)
        wait *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def _state(batch_id: str, body: dict[str, Any]) -> BatchState:
    counts = body.get("request_counts") or {}
    return BatchState(
        id=str(body.get("id") or batch_id),
        status=str(body.get("status")),
        completed=int(counts.get("completed") or 0),
        failed=int(counts.get("failed") or 0),
        total=int(counts.get("total") or 0),
    )


def _message(answer: httpx2.Response) -> str:
    """The error's own message (OpenAI's ``{"error": {"message"}}`` shape), else a snippet."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200] or answer.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    return str(body)[:200]
