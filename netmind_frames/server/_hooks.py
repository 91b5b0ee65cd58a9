"""Deterministic test hooks: scripted faults and the execution log.

Both live on the :class:`~netmind_frames.server.LocalBatchServer` object (not on disk), are
shared between the test's thread and the server's threads, and are guarded by a lock each.

Scripted faults
---------------
A fault matches a call when the method is equal (case-insensitive; ``"*"`` is any method) and
the **path pattern full-matches the request path after its dialect prefix**: the leading
``/inference-api/openai/v1`` or ``/v1`` is removed first, and a path with neither prefix
(presigned URLs: ``/_presigned/<file id>``) is matched whole. The query string is not part of
the path. So ``"/batches"`` matches batch create (POST) and list (GET) under both prefixes but
not ``/batches/<id>/cancel``; ``"/batches/[^/]+/cancel"`` matches cancel, ``"/files"`` both
dialects' uploads and ``"/_presigned/.*"`` every presigned URL.

``"expire"`` answers 403 as an expired or bad presigned signature does, running nothing: a
URL that expired between being handed out and being used (meant for ``/_presigned/.*``).

Faults fire in the order they were injected: a call takes the oldest matching fault that still
has shots left, and uses one shot.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

PREFIXES = ("/inference-api/openai/v1", "/v1")
SIMPLE_ACTIONS = frozenset({"429", "500", "drop_before", "drop_after", "expire"})
ACTIONS_HELP = "'429', '500', 'drop_before', 'drop_after', 'expire' or 'delay:SECONDS'"


def strip_prefix(path: str) -> str:
    """Return ``path`` without its dialect prefix (``/inference-api/openai/v1`` or ``/v1``)."""
    for prefix in PREFIXES:
        if path.startswith(prefix) and (len(path) == len(prefix) or path[len(prefix)] == "/"):
            return path[len(prefix) :]
    return path


@dataclass(frozen=True)
class Fault:
    """What to do to one call: ``kind`` is an action of :data:`SIMPLE_ACTIONS` or ``"delay"``."""

    kind: str
    seconds: float = 0.0


def parse_action(action: str) -> Fault:
    """Check an action string and return its :class:`Fault`; ValueError if it is unknown."""
    if not isinstance(action, str):
        raise ValueError(f"action must be {ACTIONS_HELP}")
    if action in SIMPLE_ACTIONS:
        return Fault(action)
    if action.startswith("delay:"):
        try:
            seconds = float(action[len("delay:") :])
        except ValueError:
            seconds = -1.0
        if seconds >= 0 and seconds != float("inf"):
            return Fault("delay", seconds)
    raise ValueError(f"action must be {ACTIONS_HELP}, got {action!r}")


@dataclass
class _Entry:
    method: str
    path: str
    pattern: re.Pattern[str]
    action: str
    fault: Fault
    left: int


class FaultScript:
    """Scripted faults: each fires on the next ``times`` matching calls, then stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(self, method: str, path: str, action: str, times: int = 1) -> None:
        """Add a fault (see the module docstring for matching); ValueError on bad arguments."""
        if not isinstance(method, str) or not method:
            raise ValueError("method must be an HTTP method or '*'")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        try:
            pattern = re.compile(path)
        except (re.error, TypeError) as exc:
            raise ValueError(f"path must be a regular expression: {exc}") from None
        entry = _Entry(method.upper(), path, pattern, action, parse_action(action), times)
        with self._lock:
            self._entries.append(entry)

    def take(self, method: str, path: str) -> Fault | None:
        """Use one shot of the oldest fault matching this call; None when none matches."""
        if not self._entries:  # unlocked fast path: the common case is no script at all
            return None
        rest = strip_prefix(path)
        with self._lock:
            for entry in self._entries:
                if entry.method in ("*", method) and entry.pattern.fullmatch(rest):
                    entry.left -= 1
                    if entry.left == 0:
                        self._entries.remove(entry)
                    return entry.fault
        return None

    def pending(self) -> list[dict[str, Any]]:
        """Return the faults with shots left, oldest first."""
        with self._lock:
            return [
                {"method": e.method, "path": e.path, "action": e.action, "times": e.left}
                for e in self._entries
            ]

    def clear(self) -> None:
        """Drop every pending fault."""
        with self._lock:
            self._entries.clear()


class ExecutionLog:
    """Every request the runner executed in batch mode, in execution order.

    Rows are kept as small tuples ``(batch_id, custom_id, status_code, prompt)`` and turned
    into dicts only when read, so recording 100k rows costs little.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[tuple[str, Any, int, str | None]] = []

    def extend(self, rows: list[tuple[str, Any, int, str | None]]) -> None:
        """Append executed rows."""
        with self._lock:
            self._rows.extend(rows)

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the rows as dicts ``{batch_id, custom_id, status_code, prompt}``."""
        with self._lock:
            rows = list(self._rows)
        return [
            {"batch_id": b, "custom_id": c, "status_code": s, "prompt": p} for b, c, s, p in rows
        ]

    def clear(self) -> None:
        """Forget every row."""
        with self._lock:
            self._rows.clear()


class CallLog:
    """Every synchronous ``chat/completions`` / ``embeddings`` call a server answered.

    Rows are ``(endpoint, status_code, prompt)``: the endpoint path after the dialect prefix,
    the answer's status, and the last ``user`` message text (for embeddings, the first
    input; None when unreadable). Calls answered by a fault (429, 500, drop) are not listed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: list[tuple[str, int, str | None]] = []

    def add(self, endpoint: str, status_code: int, prompt: str | None) -> None:
        """Append one call."""
        with self._lock:
            self._rows.append((endpoint, status_code, prompt))

    def snapshot(self) -> list[dict[str, Any]]:
        """Return the rows as dicts ``{endpoint, status_code, prompt}``."""
        with self._lock:
            rows = list(self._rows)
        return [{"endpoint": e, "status_code": s, "prompt": p} for e, s, p in rows]

    def clear(self) -> None:
        """Forget every row."""
        with self._lock:
            self._rows.clear()
