"""Writing OUT while the job still runs: each window as soon as its results are final.

``to_parquet`` of a file's job used to wait for every batch, then read the input again and write
OUT window by window, one after another. A window's results are final once its chunk is
collected with no row left to retry, so a writer thread can take it then: by the time the last
batch ends, every window before it is written, and only the last remains.

:class:`FinalChunks` is the hand-over between the job (which marks chunks final) and the
writer (which waits for each chunk in turn). OUT itself is written as before, under a temporary
name moved into place at the end: a job that fails or is interrupted leaves no partial OUT.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pyarrow as pa


class Abandoned(Exception):
    """The job ended without results for every chunk (an error, a timeout, Ctrl-C)."""


class FinalChunks:
    """Which chunks' results are final; :meth:`results_of` waits for one."""

    def __init__(self, n_chunks: int, load: Callable[[int], pa.Table]) -> None:
        self._load = load
        self._final = [threading.Event() for _ in range(n_chunks)]
        self._abandoned = False

    def mark(self, number: int) -> None:
        """Chunk ``number``'s results are saved and will not change."""
        self._final[number].set()

    def mark_all(self) -> None:
        """Every chunk's results are final (the job is done, retries included)."""
        for event in self._final:
            event.set()

    def abandon(self) -> None:
        """Stop the writer: the chunks not final yet never will be."""
        self._abandoned = True
        self.mark_all()

    def results_of(self, number: int) -> pa.Table:
        """Chunk ``number``'s results, once final; ``Abandoned`` if the job ends first."""
        self._final[number].wait()
        if self._abandoned:
            raise Abandoned(f"chunk {number} has no final results")
        return self._load(number)
