"""Uploads run in the background while the job polls and collects (issue #16, goal 1).

Before, a round submitted its shards (upload + create) and only then polled: while one create
was slow, nothing else happened. Now submissions run on background threads and the loop keeps
polling, downloading and parsing meanwhile, with each shard still submitted exactly once.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pandas as pd
from conftest import connection_kwargs

import netmind_frames
from netmind_frames.jobs import _rounds
from netmind_frames.server import LocalBatchServer


def test_the_job_polls_while_a_slow_create_is_under_way(monkeypatch):
    spans: dict[int, tuple[float, float]] = {}
    polls: list[float] = []
    real_submit, real_fetch = _rounds.submit_shard, _rounds.Driver.fetch
    lock = threading.Lock()

    def submit(*args: Any, **kwargs: Any) -> str:
        start = time.monotonic()
        batch_id = real_submit(*args, **kwargs)
        with lock:
            spans[kwargs["index"]] = (start, time.monotonic())
        return batch_id

    def fetch(self: Any, batch_ids: Any) -> list[Any]:
        polls.append(time.monotonic())
        return real_fetch(self, batch_ids)

    monkeypatch.setattr(_rounds, "submit_shard", submit)
    monkeypatch.setattr(_rounds.Driver, "fetch", fetch)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(6)]})
    with LocalBatchServer(seed=2) as server:
        options = connection_kwargs(server, "netmind") | {"poll_interval": 0.1}
        job = netmind_frames.submit(
            frame, "Say {text}", model="m", max_requests=1, max_concurrent_batches=2, **options
        )
        assert len([b for b in job.batch_ids if b]) == 2  # the first two, submitted by submit()
        server.inject_fault("POST", "/batches", "delay:1.5", times=1)  # the third create
        out = job.result()
    assert list(out["status"]) == ["ok"] * 6
    assert [c.split()[-1] for c in out["response"]] == [str(i) for i in range(6)]
    slow_start, slow_end = max(spans.values(), key=lambda span: span[1] - span[0])
    assert slow_end - slow_start >= 1.4
    during = [t for t in polls if slow_start + 0.1 < t < slow_end - 0.1]
    assert during, "no batch was polled while the slow create was under way"
    assert len(spans) == 6 and len(set(job.batch_ids)) == 6  # each shard submitted once


def test_a_freed_slot_is_filled_before_the_finished_chunk_is_parsed(monkeypatch):
    """With one batch at a time, the next shard's upload starts as soon as a poll sees the
    running batch end, not after that chunk's results are downloaded and parsed."""
    started_at_collect: dict[int, list[int]] = {}
    real_collect = _rounds.Driver.collect

    def collect(self: Any, rnd: Any, chunk: Any, pending: Any = None) -> Any:
        started = [i for i, b in enumerate(rnd.batch_ids) if b is not None or i in self._submitting]
        started_at_collect[chunk.number] = started
        return real_collect(self, rnd, chunk, pending)

    monkeypatch.setattr(_rounds.Driver, "collect", collect)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(3)]})
    with LocalBatchServer(seed=2) as server:
        options = connection_kwargs(server, "netmind") | {"poll_interval": 0.1}
        out = netmind_frames.batch_complete(
            frame, "Say {text}", model="m", max_requests=1, chunk_rows=1,
            max_concurrent_batches=1, **options,
        )  # fmt: skip
    assert list(out["status"]) == ["ok"] * 3
    assert [c.split()[-1] for c in out["response"]] == ["0", "1", "2"]
    # When chunk k was parsed, shard k + 1 was already under way (or created).
    assert started_at_collect[0] == [0, 1]
    assert started_at_collect[1] == [0, 1, 2]
