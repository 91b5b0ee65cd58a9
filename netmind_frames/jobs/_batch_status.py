"""Batch statuses: which we know, which are terminal, and the one warning about any other.

Kept apart from the rounds (which need openai, NumPy and Arrow) so that ``netmind-frames
status`` can name and check statuses without importing them.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("netmind_frames")

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
#: Every batch status we know: OpenAI's, plus Netmind's ``pending`` (queued at the provider,
#: the status of the create answer in its guide). Any other is taken as still running.
KNOWN_STATUSES = TERMINAL_STATUSES | {
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
    "pending",
}
#: Our own status of a shard not submitted yet (waiting for a slot). Not ``pending``: that is
#: a provider's status of a batch that exists.
NOT_SUBMITTED = "not_submitted"

_unknown_seen: set[str] = set()
_unknown_lock = threading.Lock()


def note_status(status: str) -> str:
    """``status``, after a warning in the log the first time this process sees it, if it is
    not one we know (it is then treated as running: never terminal)."""
    if status not in KNOWN_STATUSES:
        with _unknown_lock:
            first = status not in _unknown_seen
            _unknown_seen.add(status)
        if first:
            log.warning(
                "batch status %r is not one we know; treating it as still running (polling "
                "goes on until a terminal status: %s)",
                status,
                ", ".join(sorted(TERMINAL_STATUSES)),
            )
    return status
