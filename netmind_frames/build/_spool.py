"""Request shards spooled to disk, chunk by chunk: the plan of a whole job.

Each chunk of the input (a window of rows, see ``_source``) is turned into a
:class:`~netmind_frames._requests.RequestPlan` by ``build_plan`` with ``first_position`` set
to the chunk's start, so default ``custom_id``s are positions in the whole input. The shards'
bytes go to files in a spool directory and only their fingerprints, sizes and row positions
stay in memory: a job holds one chunk's requests at a time, however large its input. A shard's
rows always lie within one chunk, but may be any rows of it (one shard per model, later).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .._errors import RowError
from .._timing import timed
from ._private import write_private
from ._requests import RequestPlan, Shard, fingerprint_of


@dataclass(frozen=True)
class SpooledShard:
    """One input file of the job, its bytes on disk."""

    index: int
    """0-based, in the job (all chunks)."""
    chunk: int
    path: Path
    fingerprint: str
    n_requests: int
    model: str
    first: int = field(repr=False)
    """Where the shard's positions start in its chunk, when they are consecutive, else -1."""
    _positions: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def data(self) -> bytes:
        """The JSONL bytes to upload (read from the spool; at most ``max_bytes``)."""
        return self.path.read_bytes()

    @property
    def positions(self) -> np.ndarray:
        """int64 row positions within the chunk, in line order."""
        if self._positions is not None:
            return self._positions
        return np.arange(self.first, self.first + self.n_requests, dtype=np.int64)


@dataclass(frozen=True)
class ChunkPlan:
    """The shards of one window of rows, and the way back from their ids to the rows."""

    number: int
    start: int
    """The chunk's first row, as a position in the whole input."""
    n_rows: int
    endpoint: str
    shards: tuple[SpooledShard, ...]
    custom_ids: pd.Index | None = field(default=None, repr=False, compare=False)
    id_offset: int = 0
    """``RequestPlan.first_position`` of the chunk's requests."""

    def request_plan(self) -> RequestPlan:
        """A shard-less ``RequestPlan`` that maps this chunk's result ids back to its rows."""
        return RequestPlan(
            self.endpoint,
            self.n_rows,
            (),
            custom_ids=self.custom_ids,
            first_position=self.id_offset,
        )


@dataclass(frozen=True)
class JobPlan:
    """Every chunk of a job's input, with their spooled shards."""

    n_rows: int
    chunks: tuple[ChunkPlan, ...]

    @property
    def shards(self) -> tuple[SpooledShard, ...]:
        """All shards, in order."""
        return tuple(shard for chunk in self.chunks for shard in chunk.shards)

    @property
    def job_id(self) -> str:
        """``job-`` + a sha256 prefix of the shard fingerprints: the same rows and options
        always give the same id, known before anything is submitted."""
        digest = hashlib.sha256("\n".join(s.fingerprint for s in self.shards).encode())
        return f"job-{digest.hexdigest()[:24]}"


def spool_chunk(
    plan: RequestPlan, *, number: int, start: int, first_index: int, directory: Path, tag: str = ""
) -> ChunkPlan:
    """Write ``plan``'s shards to ``directory`` and keep only what is needed to find them."""
    # A pool per call, never one kept for the process: a forked child would inherit a pool
    # without threads and wait forever.
    with ThreadPoolExecutor(_usable_cores(), thread_name_prefix="netmind-frames-spool") as pool:
        return _spooling(pool, plan, number, start, first_index, directory, tag)()


def _spooling(
    pool: ThreadPoolExecutor,
    plan: RequestPlan,
    number: int,
    start: int,
    first_index: int,
    directory: Path,
    tag: str = "",
) -> Callable[[], ChunkPlan]:
    """Start writing and hashing ``plan``'s shards on ``pool``; call the result to wait for
    them and get the chunk's plan."""
    # sha256 (~370 MB/s without SHA extensions) and the writes both release the GIL: the
    # shards hash and go to disk on every core while the caller builds the next chunk.
    paths = [directory / f"shard{tag}-{first_index + i:06d}.jsonl" for i in range(len(plan.shards))]
    fingerprints = []
    writes = []
    for shard, path in zip(plan.shards, paths, strict=True):
        fingerprints.append(pool.submit(fingerprint_of, shard))
        writes.append(pool.submit(write_private, path, shard.data))  # every prompt: owner-only

    def spooled() -> ChunkPlan:
        for write in writes:
            write.result()
        shards = [
            _spooled(shard, first_index + offset, number, path, fingerprint.result())
            for offset, (shard, path, fingerprint) in enumerate(
                zip(plan.shards, paths, fingerprints, strict=True)
            )
        ]
        return ChunkPlan(
            number,
            start,
            plan.n_rows,
            plan.endpoint,
            tuple(shards),
            custom_ids=plan.custom_ids,
            id_offset=plan.first_position,
        )

    return spooled


def _usable_cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _spooled(shard: Shard, index: int, chunk: int, path: Path, fingerprint: str) -> SpooledShard:
    positions = shard.positions
    consecutive = len(positions) > 0 and int(positions[-1] - positions[0]) == len(positions) - 1
    consecutive = consecutive and bool(np.all(np.diff(positions) == 1))
    return SpooledShard(
        index=index,
        chunk=chunk,
        path=path,
        fingerprint=fingerprint,
        n_requests=shard.n_requests,
        model=shard.model,
        first=int(positions[0]) if consecutive else -1,
        _positions=None if consecutive else np.asarray(positions, dtype=np.int64),
    )


def spool_plan(
    chunks: Iterable[tuple[int, pd.DataFrame]],
    build: object,
    directory: Path,
    n_rows: int,
) -> JobPlan:
    """Build and spool every chunk: ``build(frame, first_position)`` -> ``RequestPlan``.

    A bad row in any chunk raises before anything is submitted (the whole input is built
    first), with its position in the whole input. Each chunk is written and hashed while the
    next one is built; at most one chunk waits to be written, so memory stays bounded.
    """
    assert callable(build)
    out: list[ChunkPlan] = []
    first_index = 0
    pending: Callable[[], ChunkPlan] | None = None
    with ThreadPoolExecutor(_usable_cores(), thread_name_prefix="netmind-frames-spool") as pool:
        for number, (start, frame) in enumerate(chunks):
            with timed("build"):
                try:
                    plan = build(frame, start)
                except RowError as exc:
                    raise _in_whole_input(exc, start) from None
                if pending is not None:
                    out.append(pending())
                pending = _spooling(pool, plan, number, start, first_index, directory)
            first_index += len(plan.shards)
        if pending is not None:
            with timed("build"):
                out.append(pending())
    return JobPlan(n_rows, tuple(out))


def _in_whole_input(exc: RowError, start: int) -> RowError:
    """The error with the row's position in the whole input instead of in its chunk."""
    if not start or exc.position is None:
        return exc
    position = exc.position + start
    message = str(exc).replace(f"row {exc.position} ", f"row {position} ", 1)
    return RowError(message, position=position)
