"""Spooled shards: their files hold the shard bytes and their fingerprints (hashed in threads,
side by side) belong to the right shard, in order."""

from __future__ import annotations

import hashlib

import pandas as pd

from netmind_frames.build._requests import CHAT_ENDPOINT, build_plan
from netmind_frames.build._spool import spool_chunk


def test_each_spooled_shard_keeps_its_own_bytes_and_fingerprint(tmp_path):
    frame = pd.DataFrame({"t": [f"row {i} " + "x" * (i % 7) for i in range(500)]})
    plan = build_plan(frame, "Say {t}", model="m", max_requests=37)  # 14 shards, unequal sizes
    chunk = spool_chunk(plan, number=3, start=0, first_index=10, directory=tmp_path, tag="-a")

    assert len(chunk.shards) == len(plan.shards) == 14
    for offset, (spooled, shard) in enumerate(zip(chunk.shards, plan.shards, strict=True)):
        assert spooled.index == 10 + offset and spooled.chunk == 3
        assert spooled.path.read_bytes() == shard.data
        expected = hashlib.sha256(CHAT_ENDPOINT.encode() + b"\n" + shard.data).hexdigest()
        assert spooled.fingerprint == shard.fingerprint == expected
        assert spooled.n_requests == shard.n_requests
        assert spooled.positions.tolist() == shard.positions.tolist()
    assert len({s.fingerprint for s in chunk.shards}) == 14


def test_shards_of_scattered_rows_keep_their_positions(tmp_path):
    """One shard per model: a shard's rows need not be consecutive."""
    frame = pd.DataFrame({"t": list("abcdef"), "m": ["x", "y", "x", "y", "y", "x"]})
    plan = build_plan(frame, "{t}", model_column="m")
    chunk = spool_chunk(plan, number=0, start=0, first_index=0, directory=tmp_path)
    assert [s.model for s in chunk.shards] == ["x", "y"]
    assert [s.positions.tolist() for s in chunk.shards] == [[0, 2, 5], [1, 3, 4]]
    assert [s.fingerprint for s in chunk.shards] == [s.fingerprint for s in plan.shards]
