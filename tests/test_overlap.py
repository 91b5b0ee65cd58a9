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
