"""Read ahead: the next item of an iterator is produced in a thread while the caller works.

Reading a Parquet window, converting it and loading a chunk's results release the GIL for most
of their time, so on two cores the next window is read while this one is built or written.
One item ahead, never more: memory holds at most one extra window.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

_END = object()


def prefetched(items: Iterable[T], name: str) -> Generator[T, None, None]:
    """``items``, in order, each one produced in a background thread (``name``) while the
    caller holds the one before; an error producing an item is raised where it is taken."""
    source = iter(items)
    # A pool per call, never one kept for the process: a forked child would inherit a pool
    # without threads and wait forever.
    with ThreadPoolExecutor(1, thread_name_prefix=name) as pool:
        ahead = pool.submit(next, source, _END)
        try:
            while (item := ahead.result()) is not _END:
                ahead = pool.submit(next, source, _END)
                yield item  # type: ignore[misc]
        finally:
            ahead.cancel()
            pool.shutdown(wait=True)  # the producer is idle before its source is closed
            close = getattr(source, "close", None)
            if close is not None:
                close()
