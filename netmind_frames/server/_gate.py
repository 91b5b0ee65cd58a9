"""ASGI middleware in front of every route: injected faults, the API key, the body size cap.

Order: a scripted fault (:meth:`LocalBatchServer.inject_fault`) matching the call is taken
first; otherwise a seeded draw decides whether this call is a ``fault_rate`` fault (429 with
``Retry-After: 0``, 500, or a dropped connection after processing). Then the API key is
checked (presigned URLs are authorised by their signature instead); then a ``Content-Length``
above the cap gets 413 at once, and a streamed body is counted as it arrives (``BodyTooLarge``
surfaces as 413 through the app's handler).

A dropped connection starts a response and closes the connection before it is complete: the
client sees the connection close mid-response. ``drop_after`` (and a ``fault_rate`` drop) runs
the request first and then loses the answer, as when a proxy drops a response already
processed: the case a client must survive without creating a batch twice. ``drop_before``
drops it without running anything. ``delay:S`` runs the request at once and holds the answer
back S seconds, so a client that times out meanwhile does not know the work was done.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import random
import threading
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._envelope import ApiError, error_body
from ._hooks import Fault, FaultScript
from ._presign import PREFIX

_DROP_MESSAGE = "ASGI callable returned without completing response."


class _HideDropLog(logging.Filter):
    """Keep uvicorn from logging the connections this middleware drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != _DROP_MESSAGE


_filter_installed = False


def _install_drop_filter() -> None:
    global _filter_installed
    if not _filter_installed:
        logging.getLogger("uvicorn.error").addFilter(_HideDropLog())
        _filter_installed = True


class BodyTooLarge(ApiError):
    """The request body passed ``max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"Request body is larger than the {limit} byte limit.", code="body_too_large"
        )


def _auth_ok(header: bytes | None, key: bytes) -> bool:
    if header is None:
        return False
    token = header.strip()
    if token[:7].lower() == b"bearer ":
        token = token[7:].strip()
    return hmac.compare_digest(token, key)


class Gate:
    """Wrap ``app`` with fault injection, API-key checks and the body size cap."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        api_key: str | None,
        fault_rate: float,
        seed: int,
        max_body_bytes: int,
        script: FaultScript | None = None,
    ) -> None:
        self.app = app
        self.script = script if script is not None else FaultScript()
        self._key = api_key.encode() if api_key is not None else None
        self.fault_rate = fault_rate
        self.max_body_bytes = max_body_bytes
        self._rng = random.Random(f"faults:{seed}")
        self._rng_lock = threading.Lock()

    def _draw_fault(self, scope: Scope) -> Fault | None:
        scripted = self.script.take(scope["method"], scope["path"])
        if scripted is not None:
            return scripted
        if self.fault_rate <= 0:
            return None
        with self._rng_lock:
            if self._rng.random() >= self.fault_rate:
                return None
            kind = self._rng.choice(("429", "500", "drop_after"))
        return Fault(kind)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI call."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fault = self._draw_fault(scope)
        kind = fault.kind if fault is not None else None
        if kind == "429":
            err = ApiError(
                429,
                "Rate limit reached (fault injected by the local server).",
                type="requests",
                code="rate_limit_exceeded",
                headers={"Retry-After": "0"},
            )
            await err.response()(scope, receive, send)
            return
        if kind == "500":
            body = error_body(
                "The server had an error (fault injected by the local server).", type="server_error"
            )
            await ApiError(500, body["error"]["message"], type="server_error").response()(
                scope, receive, send
            )
            return
        if kind == "expire":
            # As _files_api answers a presigned URL whose signature has expired.
            err = ApiError(
                403, "The signature is invalid or the URL has expired.", code="access_denied"
            )
            await err.response()(scope, receive, send)
            return
        if kind == "drop_before":
            await _dropping(send)({"type": "http.response.start", "status": 200, "headers": []})
            return
        headers = dict(scope["headers"])
        if self._key is not None and not scope["path"].startswith(PREFIX):
            auth = headers.get(b"authorization")
            if not _auth_ok(auth, self._key):
                message = (
                    "You didn't provide an API key."
                    if auth is None
                    else "Incorrect API key provided."
                )
                code = None if auth is None else "invalid_api_key"
                await ApiError(401, message, code=code).response()(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await BodyTooLarge(self.max_body_bytes).response()(scope, receive, send)
            return
        receive = self._counting(receive)
        if kind == "drop_after":
            await self.app(scope, receive, _dropping(send))
            return
        if fault is not None and kind == "delay":
            await self.app(scope, receive, _delaying(send, fault.seconds))
            return
        await self.app(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted


def _dropping(send: Send) -> Send:
    """Let the app finish, then start a response that never completes (the server closes)."""
    _install_drop_filter()
    started = False

    async def swallow(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start" and not started:
            started = True
            headers: list[Any] = [(b"content-length", b"1048576")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})

    return swallow


def _delaying(send: Send, seconds: float) -> Send:
    """Hold every message of the answer until the app is done, then wait and send them."""
    held: list[Message] = []

    async def hold(message: Message) -> None:
        held.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            await asyncio.sleep(seconds)
            for item in held:
                await send(item)
            held.clear()

    return hold
