"""Entry point of a worker process (``python -m netmind_frames.server._worker``); see ``_pool``.

The process's own stdin and stdout are its pipe to the server (pickled calls in, replies out),
not a terminal: like the CLI, this entry point is allowed to touch them.
"""

from __future__ import annotations

import sys
from typing import Any

from netmind_frames.server._pool import _receive, _send


def serve() -> None:
    """The worker's loop: answer pickled calls from stdin on stdout until stdin ends."""
    inbox, outbox = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the replies
    while True:
        try:
            fn, args, kwargs = _receive(inbox)
        except EOFError:
            return
        try:
            reply: tuple[bool, Any] = (True, fn(*args, **kwargs))
        except Exception as exc:  # reported to the runner, which fails that batch
            reply = (False, f"{type(exc).__name__}: {exc}")
        _send(outbox, reply)


if __name__ == "__main__":
    serve()
