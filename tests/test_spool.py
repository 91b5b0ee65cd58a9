"""Spooled shards: their files hold the shard bytes and their fingerprints (hashed in threads,
side by side) belong to the right shard, in order."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from netmind_frames._errors import RowError
from netmind_frames.build._requests import CHAT_ENDPOINT, build_plan
from netmind_frames.build._spool import spool_chunk, spool_plan


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


def _windows(frame: pd.DataFrame, rows: int):
    return ((start, frame.iloc[start : start + rows]) for start in range(0, len(frame), rows))


def _build(frame: pd.DataFrame, start: int):
    return build_plan(frame, "Say {t}", model="m", max_requests=37, first_position=start)


def test_a_plan_spools_each_chunk_while_the_next_is_built_and_keeps_their_order(tmp_path):
    frame = pd.DataFrame({"t": [f"row {i} " + "y" * (i % 11) for i in range(400)]})
    plan = spool_plan(_windows(frame, 100), _build, tmp_path, len(frame))

    assert [c.number for c in plan.chunks] == [0, 1, 2, 3]
    assert [c.start for c in plan.chunks] == [0, 100, 200, 300]
    assert [s.index for s in plan.shards] == list(range(12))  # 3 shards per window of 100
    for chunk in plan.chunks:
        expected = _build(frame.iloc[chunk.start : chunk.start + 100], chunk.start).shards
        assert [s.path.read_bytes() for s in chunk.shards] == [s.data for s in expected]
        assert [s.fingerprint for s in chunk.shards] == [s.fingerprint for s in expected]
        assert [s.positions.tolist() for s in chunk.shards] == [
            s.positions.tolist() for s in expected
        ]


def test_a_bad_row_in_a_later_chunk_is_named_by_its_place_in_the_whole_input(tmp_path):
    frame = pd.DataFrame({"t": ["ok"] * 250 + [None] + ["ok"] * 49})
    with pytest.raises(RowError, match="row 250 "):
        spool_plan(_windows(frame, 100), _build, tmp_path, len(frame))
    # The chunks before it were written in full before the error left spool_plan.
    assert len(list(tmp_path.glob("shard-*.jsonl"))) == 6
