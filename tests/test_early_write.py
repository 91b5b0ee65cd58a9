"""OUT is written while the job runs: each window once its results are final (issue #16, goal 1).

``to_parquet`` of a local file's job writes window k as soon as chunk k is collected with no row
left to retry, on a writer thread, instead of after the last batch. OUT still appears only
complete: a job interrupted midway leaves neither OUT nor its temporary file, and the same call
again writes it whole. A temporary file left by a killed writer is removed by the next one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import connection_kwargs

from netmind_frames.frames._api import submit_file
from netmind_frames.jobs import _rounds
from netmind_frames.results._sink import ParquetSink
from netmind_frames.server import LocalBatchServer

ROWS = 3


def _input(tmp_path: Path, rows: int = ROWS) -> Path:
    source = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(rows)]}), source)
    return source


def _watch_first_write(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """An event set once OUT's first window is written (to its temporary file)."""
    written = threading.Event()
    real_write = ParquetSink.write

    def write(self: ParquetSink, table: pa.Table) -> None:
        real_write(self, table)
        written.set()

    monkeypatch.setattr(ParquetSink, "write", write)
    return written


def _before_last_chunk(monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    """Run ``then()`` when the job is about to parse its last chunk's results."""
    real_collect = _rounds.Driver.collect

    def collect(self: Any, rnd: Any, chunk: Any, pending: Any = None) -> Any:
        if chunk.number == ROWS - 1:
            then()
        return real_collect(self, rnd, chunk, pending)

    monkeypatch.setattr(_rounds.Driver, "collect", collect)


def _submit(server: LocalBatchServer, source: Path, **kwargs: Any) -> Any:
    """One row per chunk and one batch at a time: the chunks finish one after another."""
    return submit_file(
        source, "Say {text}", model="m", max_requests=1, chunk_rows=1, max_concurrent_batches=1,
        **connection_kwargs(server, "netmind"), **kwargs,
    )  # fmt: skip


def test_the_first_window_is_written_before_the_last_batch_is_parsed(tmp_path, monkeypatch):
    written = _watch_first_write(monkeypatch)
    seen: list[bool] = []
    _before_last_chunk(monkeypatch, lambda: seen.append(written.wait(10)))
    out = tmp_path / "out.parquet"
    with LocalBatchServer(seed=2) as server:
        counts = _submit(server, _input(tmp_path)).to_parquet(out)
    assert seen == [True], "window 0 was not written while the last batch was still to parse"
    assert counts == {"ok": ROWS}
    table = pq.read_table(out)
    assert table.column("text").to_pylist() == [f"row {i}" for i in range(ROWS)]
    assert [r.split()[-1] for r in table.column("response").to_pylist()] == ["0", "1", "2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


def test_an_interrupted_job_leaves_no_out_and_the_same_call_writes_it_whole(tmp_path, monkeypatch):
    written = _watch_first_write(monkeypatch)
    interrupts = [KeyboardInterrupt()]

    def interrupt_once() -> None:
        assert written.wait(10)  # a window was already in the temporary file
        if interrupts:
            raise interrupts.pop()

    _before_last_chunk(monkeypatch, interrupt_once)
    out = tmp_path / "out.parquet"
    with LocalBatchServer(seed=2) as server:
        job = _submit(server, _input(tmp_path))
        with pytest.raises(KeyboardInterrupt):
            job.to_parquet(out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
        n_batches = len(job.batch_ids)
        counts = job.to_parquet(out)  # the batches are done: nothing is paid again
    assert counts == {"ok": ROWS}
    assert len(job.batch_ids) == n_batches == ROWS
    assert pq.read_table(out).column("text").to_pylist() == [f"row {i}" for i in range(ROWS)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


def test_a_chunk_with_rows_to_retry_is_written_after_its_retry(tmp_path):
    rows = 24  # at a 50% failure rate, no failed row at all is a 1-in-16-million draw
    out = tmp_path / "out.parquet"
    with LocalBatchServer(seed=4, fail_rate=0.5) as server:
        job = submit_file(
            _input(tmp_path, rows), "Say {text}", model="m", max_requests=2, chunk_rows=2,
            retries=3, **connection_kwargs(server, "netmind"),
        )  # fmt: skip
        job.to_parquet(out)
        in_memory = job.result()  # joined after the job, never written early
    assert job.retry_batch_ids, "no row failed: the retry path was not exercised"
    written = pq.read_table(out).to_pandas()
    for name in ("status", "response", "error_code"):  # missing: None in one, NA in the other
        assert written[name].fillna("-").tolist() == in_memory[name].fillna("-").tolist(), name
    ok = written[written["status"] == "ok"]
    assert [r.split()[-1] for r in ok["response"]] == [t.split()[-1] for t in ok["text"]]


def test_a_killed_writers_temporary_file_is_removed_by_the_next_writer(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = tmp_path / f".out.parquet.{gone.stdout.strip()}.tmp"
    dead.write_bytes(b"half a file")
    dead_dataset = tmp_path / f".out.parquet.{int(gone.stdout) + 1_000_000}.tmp"
    dead_dataset.mkdir()  # a dataset's temporary directory (no such pid: above pid_max)
    (dead_dataset / "part-00000.parquet").write_bytes(b"x")
    alive = tmp_path / f".out.parquet.{os.getppid()}.tmp"  # the process that ran pytest
    alive.write_bytes(b"another writer at work")
    other = tmp_path / ".other.parquet.1.tmp"
    other.write_bytes(b"not this OUT's")
    ParquetSink(tmp_path / "out.parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, other.name])


def test_a_failed_write_still_ends_the_job_and_the_same_call_writes_it_again(tmp_path, monkeypatch):
    """The writer fails (a full disk, say) while batches run: the job still ends, its answers
    stay on disk, the error comes after, no temporary file is left, and the same call again
    writes OUT whole without a new batch."""
    real_write = ParquetSink.write
    failures = [OSError(28, "No space left on device")]

    def write(self: ParquetSink, table: pa.Table) -> None:
        if failures:
            raise failures.pop()
        real_write(self, table)

    monkeypatch.setattr(ParquetSink, "write", write)
    out = tmp_path / "out.parquet"
    with LocalBatchServer(seed=2) as server:
        job = _submit(server, _input(tmp_path))
        with pytest.raises(OSError, match="No space left"):
            job.to_parquet(out)
        assert job.status == "completed"  # every batch ran to its end meanwhile
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet"]
        counts = job.to_parquet(out)
    assert counts == {"ok": ROWS}
    assert len(job.batch_ids) == ROWS
    assert pq.read_table(out).column("text").to_pylist() == [f"row {i}" for i in range(ROWS)]
