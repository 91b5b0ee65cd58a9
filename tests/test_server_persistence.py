"""``data_dir``: files and batches survive a restart, and in-flight batches carry on."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
import pytest
from conftest_server import content, rows, start_batch, upload, wait_for, wait_terminal

from netmind_frames.server import LocalBatchServer


def _completed(batch: Any) -> int:
    return int(batch.request_counts.completed)


def client_for(srv: LocalBatchServer) -> openai.OpenAI:
    """An openai client on ``srv`` without retries."""
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0)


def test_restart_mid_batch_finishes_every_request_once(tmp_path: Path) -> None:
    with (
        LocalBatchServer(data_dir=tmp_path, seconds_per_request=0.01, seed=9) as srv,
        client_for(srv) as client,
    ):
        created = start_batch(client, rows(300), metadata={"run": "1"})
        running: Any = wait_for(
            lambda: _completed(b := client.batches.retrieve(created.id)) >= 20 and b
        )
        assert running.status == "in_progress"
    stopped_at = running.request_counts.completed
    with LocalBatchServer(data_dir=tmp_path, seed=9) as srv, client_for(srv) as client:
        batch = wait_terminal(client, created.id)
        lines = content(client, batch.output_file_id)
        assert client.files.retrieve(created.input_file_id).bytes == len(rows(300))
    assert batch.status == "completed" and batch.metadata == {"run": "1"}
    assert batch.request_counts.completed == 300 >= stopped_at
    assert batch.in_progress_at == running.in_progress_at
    ids = [line["custom_id"] for line in lines]
    assert len(ids) == 300 and sorted(ids, key=int) == [str(i) for i in range(300)]


def test_files_and_batches_survive_restart(tmp_path: Path) -> None:
    with LocalBatchServer(data_dir=tmp_path) as srv, client_for(srv) as client:
        file_id = upload(client, rows(3))
        batch = wait_terminal(client, start_batch(client, rows(2)).id)
    with LocalBatchServer(data_dir=tmp_path) as srv, client_for(srv) as client:
        assert client.files.content(file_id).content == rows(3)
        again = client.batches.retrieve(batch.id)
        assert again.model_dump() == batch.model_dump()
        assert len(content(client, again.output_file_id)) == 2
        assert [b.id for b in client.batches.list()] == [batch.id]


def test_restart_keeps_presigned_urls_valid(tmp_path: Path) -> None:
    with LocalBatchServer(data_dir=tmp_path) as srv, httpx2.Client(base_url=srv.origin) as http:
        created = http.post("/v1/files", json={"file_name": "a.jsonl", "purpose": "batch"}).json()
    with LocalBatchServer(data_dir=tmp_path) as srv, httpx2.Client(base_url=srv.origin) as http:
        # Same data_dir, new port: the signature still holds.
        url = (
            urlsplit(created["presigned_url"])._replace(netloc=urlsplit(srv.origin).netloc).geturl()
        )
        assert httpx2.put(url, content=b"data").status_code == 200
        assert http.get(f"/v1/files/{created['id']}/content").content == b"data"


def test_temporary_state_is_removed_on_stop() -> None:
    srv = LocalBatchServer().start()
    with client_for(srv) as client:
        upload(client, rows(1))
    root = srv._tmp.name if srv._tmp else None
    srv.stop()
    srv.stop()  # idempotent
    assert root is not None and not Path(root).exists()
    assert not srv.running


def test_lines_written_after_the_last_saved_state_are_not_duplicated(tmp_path: Path) -> None:
    """After an unclean stop, result lines beyond the saved offset are dropped and redone once."""
    with (
        LocalBatchServer(data_dir=tmp_path, seconds_per_request=0.01) as srv,
        client_for(srv) as client,
    ):
        created = start_batch(client, rows(200))
        wait_for(lambda: _completed(client.batches.retrieve(created.id)) >= 10)
    part = tmp_path / "batches" / f"{created.id}.out"
    with part.open("ab") as fh:  # as if the process died between writing lines and state
        fh.write(b'{"custom_id": "0", "partial": true}\n')
    with LocalBatchServer(data_dir=tmp_path) as srv, client_for(srv) as client:
        batch = wait_terminal(client, created.id)
        ids = [line["custom_id"] for line in content(client, batch.output_file_id)]
    assert sorted(ids, key=int) == [str(i) for i in range(200)]


def test_input_files_are_read_through_a_memory_map_not_held_whole(tmp_path):
    """The runner keeps two offsets per line; each line is read when its turn comes."""
    from netmind_frames.server._validate import Lines, validate_input

    lines = [
        b'{"custom_id": "%d", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "m", "messages": [{"role": "user", "content": "x"}]}}' % i
        for i in range(1000)
    ]
    path = tmp_path / "input.jsonl"
    path.write_bytes(b"\n".join(lines[:500]) + b"\n\n  \n" + b"\n".join(lines[500:]) + b"\n")
    checked = validate_input(path, "/v1/chat/completions")
    assert checked.errors == []
    assert isinstance(checked.lines, Lines)
    assert len(checked.lines) == 1000
    assert [checked.lines[i] for i in (0, 499, 500, 999)] == [lines[i] for i in (0, 499, 500, 999)]
    assert validate_input(lines[0] + b"\n", "/v1/chat/completions").lines[0] == lines[0]


def test_a_deleted_files_bytes_leave_the_disk_and_it_stays_deleted(tmp_path: Path) -> None:
    with LocalBatchServer(data_dir=tmp_path) as srv, client_for(srv) as client:
        kept, dropped = upload(client, rows(3)), upload(client, rows(4))
        on_disk = {p.name for p in tmp_path.rglob("*") if p.is_file()}
        assert f"{dropped}.data" in on_disk
        assert client.files.delete(dropped).deleted
        assert not any(p.name.startswith(dropped) for p in tmp_path.rglob("*"))
        # The bytes wait under tmp/ for a thread that unlinks them.
        wait_for(lambda: not list((tmp_path / "tmp").iterdir()))
        assert client.files.content(kept).content == rows(3)
    with LocalBatchServer(data_dir=tmp_path) as srv, client_for(srv) as client:
        assert [f.id for f in client.files.list()] == [kept]
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(dropped)
