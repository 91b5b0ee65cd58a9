"""Overlapped transfers: shards are submitted (uploaded) several at once and their results
downloaded several at once, streamed from and to disk, without weakening exactly-once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pandas as pd
import pytest
from conftest import connection_kwargs

from netmind_frames import FileTransferError
from netmind_frames.jobs._rounds import TRANSFERS
from netmind_frames.server import LocalBatchServer
from netmind_frames.transport._config import resolve_settings
from netmind_frames.transport._connection import connect
from netmind_frames.transport._files import NetmindFiles, OpenAIFiles

MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct"
FRAME = pd.DataFrame({"text": [f"row {i}" for i in range(12)]})


class Overlap:
    """Counts the calls of a method of ours running at once (the real method still runs)."""

    def __init__(self) -> None:
        self.now = self.most = self.calls = 0
        self._lock = threading.Lock()

    def wrap(self, method: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.now += 1
                self.calls += 1
                self.most = max(self.most, self.now)
            try:
                return method(*args, **kwargs)
            finally:
                with self._lock:
                    self.now -= 1

        return counted


@pytest.fixture
def spied(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Overlap]]:
    """Upload and download of both transports, counted."""
    seen = {"upload": Overlap(), "download": Overlap()}
    for cls in (NetmindFiles, OpenAIFiles):
        for name, overlap in seen.items():
            monkeypatch.setattr(cls, name, overlap.wrap(getattr(cls, name)))
    yield seen


@pytest.mark.parametrize("dialect", ["netmind", "openai"])
def test_shards_upload_and_download_several_at_once(spied, dialect):
    """Each transfer is held back a moment by the server, so serial ones could not overlap."""
    with LocalBatchServer(seed=2) as srv:
        for path in ("/_presigned/.*", "/files", "/files/.*/content"):
            srv.inject_fault("*", path, "delay:0.3", times=6)
        out = FRAME.netmind.batch_complete(
            "{text}", model=MODEL, max_requests=2, **connection_kwargs(srv, dialect)
        )
    assert (out["status"] == "ok").all() and out["response"].notna().all()
    assert spied["upload"].calls == 6
    assert 1 < spied["upload"].most <= TRANSFERS
    assert 1 < spied["download"].most <= TRANSFERS


def test_a_failed_shard_leaves_the_others_submitted_once(spied):
    """One shard too large for the presigned upload fails; the shards beside it, submitted at
    the same time, keep their batches, and running the call again pays for none of them."""
    frame = pd.DataFrame({"text": ["short"] * 4 + ["x" * 3000] * 2 + ["short"] * 2})
    with LocalBatchServer(seed=2, presigned_max_bytes=2000) as srv:
        kwargs = connection_kwargs(srv, "netmind")
        for _ in range(2):
            with pytest.raises(FileTransferError, match="HTTP 413"):
                frame.netmind.batch_complete("{text}", model=MODEL, max_requests=2, **kwargs)
            with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
                batches = list(client.batches.list())
            assert len(batches) == 3  # shards 1, 2 and 4: never created twice
    assert spied["upload"].most > 1


def test_uploads_stream_from_the_spool_file(server, tmp_path: Path):
    data = b"".join(b'{"n": %d, "text": "\\u00e9\\n"}\n' % i for i in range(50_000))
    spool = tmp_path / "shard.jsonl"
    spool.write_bytes(data)
    connection = connect(resolve_settings(base_url=server.base_url, api_key=server.api_key))
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        for files in (connection.files, OpenAIFiles(client)):
            file_id = files.upload(spool, "shard.jsonl")
            assert files.download(file_id, tmp_path / f"{file_id}.jsonl").read_bytes() == data
