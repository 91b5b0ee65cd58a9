"""Exactly-once that does not rest on ``metadata``: the input file's name and ``input_file_id``.

Netmind may not store or echo a batch's metadata (batch-api.md §5.2b). These tests run the
local server with ``echo_metadata=False`` (and ``echo_input_file_id=False`` for a provider that
shows neither) and count batches and uploads on the server itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
from types import SimpleNamespace
from typing import Any

import openai
import pandas as pd
import pytest
from conftest import connection_kwargs, uploaded_files

import netmind_frames
from netmind_frames import LocalBatchServer, SubmissionUnknownError, batch_complete
from netmind_frames.jobs._lookup import FINGERPRINT_KEY, classify, file_name
from netmind_frames.transport._files import NetmindFiles, OpenAIFiles, RemoteFile, _named

PROMPT = "{text}"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(8)]})


def batches(srv: LocalBatchServer) -> list[Any]:
    """Every batch on the server, newest first, through a client of its own."""
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
        return list(client.batches.list(limit=100))


def our_files(srv: LocalBatchServer) -> list[dict[str, Any]]:
    """The request files this library uploaded (result files left out)."""
    return [f for f in uploaded_files(srv) if f["file_name"].startswith("netmind_frames-")]


def run(frame: pd.DataFrame, srv: LocalBatchServer, dialect: str, **kwargs: Any) -> pd.DataFrame:
    return batch_complete(frame, PROMPT, model="m", **kwargs, **connection_kwargs(srv, dialect))


def test_a_lost_create_answer_without_metadata_makes_one_batch(frame, dialect):
    with LocalBatchServer(echo_metadata=False) as srv:
        srv.inject_fault("POST", "/batches", "drop_after")
        out = run(frame, srv, dialect)
        assert srv.pending_faults() == []  # the create's answer was really lost
        assert len(batches(srv)) == 1
    assert list(out["response"]) == list(frame["text"])
    assert (out["status"] == "ok").all()


def test_a_lost_journal_without_metadata_reattaches_without_uploading_again(
    frame, dialect, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(home))
    with LocalBatchServer(echo_metadata=False) as srv:
        # keep_files: the file-name channel needs the input file on the provider (by default
        # it is deleted once the result is written; see the README's "Provider storage").
        first = run(frame, srv, dialect, keep_files=True)
        shutil.rmtree(home)
        second = run(frame, srv, dialect, keep_files=True)
        assert len(batches(srv)) == 1
        assert len(our_files(srv)) == 1
    pd.testing.assert_frame_equal(first, second)


def test_neither_channel_stops_instead_of_paying_twice(frame, dialect):
    with LocalBatchServer(echo_metadata=False, echo_input_file_id=False) as srv:
        srv.inject_fault("POST", "/batches", "drop_after")
        with pytest.raises(SubmissionUnknownError) as info:
            run(frame, srv, dialect)
        [uploaded] = our_files(srv)
        assert info.value.file_ids == [uploaded["id"]]
        message = str(info.value)
        assert uploaded["id"] in message and "resubmit=True" in message
        assert "--resubmit" in message and "input_file_id" in message
        assert len(batches(srv)) == 1  # the lost answer's batch; none more

        # The journal knows the file: running again stops again, still without creating.
        with pytest.raises(SubmissionUnknownError, match=uploaded["id"]):
            run(frame, srv, dialect)
        assert len(batches(srv)) == 1

        out = run(frame, srv, dialect, resubmit=True)  # the risk accepted
        assert len(batches(srv)) == 2
    assert (out["status"] == "ok").all()


def test_a_file_uploaded_before_a_crash_is_reused_when_the_journal_is_gone(frame, dialect):
    """A process uploaded the shard's file and died before creating its batch."""
    data = netmind_frames.to_jsonl(frame, prompt=PROMPT, model="m")
    assert isinstance(data, bytes)
    key = hashlib.sha256(b"/v1/chat/completions\n" + data).hexdigest()
    with LocalBatchServer(echo_metadata=False) as srv:
        if dialect == "netmind":
            files = NetmindFiles(f"{srv.origin}/v1/files", srv.api_key)
            try:
                file_id = files.upload(data, file_name(key))
            finally:
                files.close()
        else:
            with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
                file_id = OpenAIFiles(client).upload(data, file_name(key))
        out = run(frame, srv, dialect, keep_files=True)
        assert [f["id"] for f in our_files(srv)] == [file_id]  # no second upload
        assert [b.input_file_id for b in batches(srv)] == [file_id]
    assert (out["status"] == "ok").all()


def test_a_file_left_without_its_bytes_by_a_killed_upload_is_uploaded_again():
    """A process killed between Netmind's file create and its presigned PUT leaves a named file
    with no bytes (Netmind lists no sizes). The next run reuses it, sees its batch fail
    validation (nothing runs, nothing is billed), uploads the bytes and creates once more."""
    frame = pd.DataFrame({"text": ["a", "b", "c"]})
    data = netmind_frames.to_jsonl(frame, prompt=PROMPT, model="m")
    assert isinstance(data, bytes)
    key = hashlib.sha256(b"/v1/chat/completions\n" + data).hexdigest()
    with LocalBatchServer(echo_metadata=False) as srv:
        files = NetmindFiles(f"{srv.origin}/v1/files", srv.api_key)
        try:  # the create alone, as a killed upload leaves it
            created = files._http.post(
                f"{srv.origin}/v1/files",
                json={"file_name": file_name(key), "purpose": "batch"},
                headers=files._auth,
            )
            empty_id = created.json()["id"]
        finally:
            files.close()
        out = run(frame, srv, "netmind", keep_files=True)
        listed = batches(srv)
        assert [b.status for b in listed if b.input_file_id == empty_id] == ["failed"]
        completed = [b for b in listed if b.input_file_id != empty_id]
        assert len(completed) == 1 and completed[0].status == "completed"
        assert sum(b.request_counts.total or 0 for b in listed) == len(frame)  # none twice
    assert (out["status"] == "ok").all()


def test_without_metadata_a_file_of_ours_and_no_batch_still_creates_one(frame, dialect):
    """Every listed batch is placed (input_file_id shown), none is ours: create, once."""
    with LocalBatchServer(echo_metadata=False) as srv:
        run(frame.iloc[:3], srv, dialect)  # someone else's batch, with its own file
        out = run(frame, srv, dialect)
        assert len(batches(srv)) == 2
    assert (out["status"] == "ok").all()


def test_file_names_carry_the_whole_key_in_netmind_sdk_characters():
    key = "ab" * 32
    assert file_name(key) == f"netmind_frames-{key}.jsonl"
    retry = file_name(f"{key}:r2")
    assert retry == f"netmind_frames-{key}-r2.jsonl"
    assert re.fullmatch(r"[A-Za-z0-9_-]+\.jsonl", retry)


def batch(file_id: str | None, metadata: dict[str, str] | None) -> Any:
    return SimpleNamespace(input_file_id=file_id, metadata=metadata)


@pytest.mark.parametrize(
    ("listed", "verdict"),
    [
        pytest.param(batch("file-ours", None), "ours", id="our-file"),
        pytest.param(batch(None, {FINGERPRINT_KEY: "k"}), "ours", id="our-metadata"),
        pytest.param(batch("file-old", {FINGERPRINT_KEY: "k"}), "ours", id="metadata-old-file"),
        pytest.param(batch("file-else", None), "other", id="other-file"),
        pytest.param(batch(None, {}), "other", id="metadata-without-key"),
        pytest.param(batch(None, {FINGERPRINT_KEY: "x"}), "other", id="other-key"),
        pytest.param(batch("", None), "undetermined", id="empty-file-id"),
        pytest.param(batch(None, None), "undetermined", id="nothing-shown"),
    ],
)
def test_each_listed_batch_is_placed_with_certainty_or_undetermined(listed, verdict):
    assert classify(listed, "k", {"file-ours"}) == verdict


def test_right_after_a_create_the_file_outweighs_an_older_batchs_metadata():
    older = batch("file-old", {FINGERPRINT_KEY: "k"})
    assert classify(older, "k", {"file-new"}, file_decides=True) == "other"
    assert classify(batch(None, {FINGERPRINT_KEY: "k"}), "k", {"file-new"}, file_decides=True) == (
        "ours"
    )


def test_netmind_file_list_is_read_as_a_bare_array_or_an_envelope(server):
    name = f"netmind_frames-{os.urandom(8).hex()}.jsonl"
    files = NetmindFiles(f"{server.origin}/v1/files", server.api_key)
    try:
        first = files.upload(b'{"a": 1}\n', name)
        second = files.upload(b'{"a": 1}\n', name)
        assert {f.id for f in files.find(name)} == {first, second}
        assert files.find("netmind_frames-none.jsonl") == []
    finally:
        files.close()
    envelope = {"data": [{"id": "file-1", "filename": name, "bytes": 9, "created_at": 5}]}
    assert _named(envelope, name) == [RemoteFile("file-1", 9, 5)]


def test_openai_find_lists_files_by_name(server):
    name = f"netmind_frames-{os.urandom(8).hex()}.jsonl"
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        files = OpenAIFiles(client)
        file_id = files.upload(b'{"a": 1}\n', name)
        assert files.find(name) == [RemoteFile(file_id, 9, files.find(name)[0].created_at)]


def test_journal_records_the_file_before_the_create(frame, tmp_path, monkeypatch):
    """A create that never succeeds leaves the file id in the journal for the next run."""
    home = tmp_path / "home"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(home))
    with LocalBatchServer(echo_metadata=False, echo_input_file_id=False) as srv:
        srv.inject_fault("POST", "/batches", "drop_after")
        with pytest.raises(SubmissionUnknownError):
            run(frame, srv, "netmind")
        [uploaded] = our_files(srv)
    with sqlite3.connect(home / "journal-1.sqlite3") as db:
        rows = db.execute("SELECT file_id, batch_id, owner FROM shards").fetchall()
    assert rows == [(uploaded["id"], None, None)]  # recorded, and the claim released


def test_a_provider_that_cannot_list_files_leaves_the_other_channels(server):
    """No file listing route (404): no file is recognised by name, and nothing fails."""
    files = NetmindFiles(f"{server.origin}/v1/no-such-route", server.api_key)
    try:
        assert files.find("netmind_frames-x.jsonl") == []
    finally:
        files.close()
    with openai.OpenAI(base_url=f"{server.origin}/nowhere", api_key=server.api_key) as client:
        assert OpenAIFiles(client).find("netmind_frames-x.jsonl") == []
