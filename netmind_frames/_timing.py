"""Wall time per phase of a job (build, upload, wait, download, parse, join, write).

A process-wide accumulator: each phase adds its seconds to a total, and logs them at DEBUG on
the ``netmind_frames.timing`` logger. ``netmind-frames complete --timings`` prints the totals;
``benchmarks/bench_cli.py`` reads them from there. Phases may interleave (a shard downloads
while others run), so the totals add up to about the wall time, never more.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

PHASES = ("build", "upload", "wait", "download", "parse", "join", "write")

log = logging.getLogger("netmind_frames.timing")

_lock = threading.Lock()
_totals: dict[str, float] = {}


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Add the wall time of the ``with`` block to ``phase``'s total."""
    start = time.perf_counter()
    try:
        yield
    finally:
        seconds = time.perf_counter() - start
        with _lock:
            _totals[phase] = _totals.get(phase, 0.0) + seconds
        log.debug("%s: %.3f s", phase, seconds)


def totals() -> dict[str, float]:
    """The seconds spent in each phase since the last :func:`reset` (every phase listed)."""
    with _lock:
        return {phase: round(_totals.get(phase, 0.0), 3) for phase in PHASES}


def reset() -> None:
    """Start counting from zero."""
    with _lock:
        _totals.clear()
