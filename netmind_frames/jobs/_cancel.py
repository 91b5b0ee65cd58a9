"""Cancelling batches: ask once for each one still running, then wait until all are terminal.

A cancelled batch is ``cancelling`` until its in-flight requests finish (up to 10 minutes on
Netmind, its batch guide says), so the wait may be long: it backs off to ``poll_interval``,
says once in the log what it waits for, outlasts blips while polling, and stops at
``deadline`` with a ``JobTimeoutError`` (the batches go on cancelling; cancelling again
resumes the wait).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai

from .._errors import JobTimeoutError
from ._rounds import TERMINAL_STATUSES, TRANSIENT_ERRORS, PollBlips, cancel_running

log = logging.getLogger("netmind_frames")

_FIRST_POLL = 0.05
_BACKOFF = 1.5


def cancel_by_id(
    client: openai.OpenAI,
    batch_ids: Sequence[str],
    *,
    job_id: str,
    poll_interval: float,
    timeout: float | None,
) -> list[Any]:
    """:func:`cancel_batches` for a caller that knows only batch ids: each is read with one
    ``batches.retrieve``, and the wait stops ``timeout`` seconds from now (None: never)."""
    return cancel_batches(
        client,
        lambda ids: [client.batches.retrieve(i) for i in ids],
        batch_ids,
        job_id=job_id,
        poll_interval=poll_interval,
        deadline=None if timeout is None else time.monotonic() + timeout,
    )


def cancel_batches(
    client: openai.OpenAI,
    fetch: Callable[[Sequence[str]], Sequence[Any]],
    batch_ids: Sequence[str],
    *,
    job_id: str,
    poll_interval: float,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Any]:
    """Cancel the batches of ``batch_ids`` that still run; return them once all are terminal.

    ``fetch`` retrieves batches by id. A batch that finished between the fetch and its
    cancel is left as it is. ``deadline`` is on ``clock``; passing it raises
    ``JobTimeoutError`` carrying ``job_id``.
    """
    cancel_running(client, [(b.id, str(b.status)) for b in fetch(batch_ids)])
    delay, blips, told = _FIRST_POLL, PollBlips("poll while cancelling"), False
    waiting: list[Any] = []
    while True:
        try:
            batches = list(fetch(batch_ids))
            blips.passed()
        except TRANSIENT_ERRORS as exc:
            blips.outlast(exc, delay)
        else:
            waiting = [b for b in batches if b.status not in TERMINAL_STATUSES]
            if not waiting:
                return batches
            if not told and delay >= 1.0:
                log.info("waiting for %d batch(es) to finish cancelling", len(waiting))
                told = True
        if deadline is not None and clock() + delay > deadline:
            ids = ", ".join(str(b.id) for b in waiting) or "its batches"
            raise JobTimeoutError(
                f"Job {job_id}: {ids} still cancelling when the timeout passed; they go on "
                "cancelling on the server. Cancel again to wait for them.",
                job_id,
            )
        sleep(delay)
        delay = min(delay * _BACKOFF, poll_interval)
