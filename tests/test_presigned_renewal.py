"""Presigned URLs that expire (403) are renewed: a download asks for a fresh URL, an upload
creates a new file; a whole job never fails on one, and no URL reaches a message or a log."""

from __future__ import annotations

import logging
import os
import sqlite3

import pandas as pd
import pytest
from conftest import connection_kwargs, uploaded_files

from netmind_frames import FileTransferError, LocalBatchServer, batch_complete
from netmind_frames.transport._files import NetmindFiles

PRESIGNED = "/_presigned/.*"


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(6)]})


def test_an_expired_download_url_is_renewed(fresh_server, frame, caplog):
    fresh_server.inject_fault("GET", PRESIGNED, "expire")
    with caplog.at_level(logging.DEBUG, logger="netmind_frames"):
        out = batch_complete(
            frame, "{text}", model="m", **connection_kwargs(fresh_server, "netmind")
        )
    assert fresh_server.pending_faults() == []  # the first download URL was refused
    assert list(out["response"]) == list(frame["text"])
    assert (out["status"] == "ok").all()
    assert "sig=" not in caplog.text and "/_presigned/" not in caplog.text


def test_an_upload_url_expired_before_the_upload_gets_a_new_file(frame, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(home))
    with LocalBatchServer(echo_metadata=False) as srv:
        srv.inject_fault("PUT", PRESIGNED, "expire")
        out = batch_complete(
            frame, "{text}", model="m", keep_files=True, **connection_kwargs(srv, "netmind")
        )
        assert srv.pending_faults() == []
        ours = [f for f in uploaded_files(srv) if f["file_name"].startswith("netmind_frames-")]
        # The first file never got its bytes and was deleted; the second holds them.
        assert len(ours) == 1
        with sqlite3.connect(home / "journal-1.sqlite3") as db:
            [(file_id, batch_id)] = db.execute("SELECT file_id, batch_id FROM shards").fetchall()
        assert file_id == ours[0]["id"]  # the journal holds the file with the bytes
        assert batch_id is not None
    assert (out["status"] == "ok").all()


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_renewal_is_bounded_and_never_shows_the_url(fresh_server, tmp_path, method):
    files = NetmindFiles(f"{fresh_server.origin}/v1/files", fresh_server.api_key)
    try:
        file_id = files.upload(b'{"a": 1}\n', "x.jsonl")
        fresh_server.inject_fault(method, PRESIGNED, "expire", times=50)
        with pytest.raises(FileTransferError, match="403") as info:
            if method == "PUT":
                files.upload(b'{"a": 1}\n', "x.jsonl")
            else:
                files.download(file_id, tmp_path / "out")
    finally:
        files.close()
    message = str(info.value)
    assert "sig=" not in message and "_presigned" not in message
    [left] = fresh_server.pending_faults()
    assert left["times"] == 50 - 4  # the first URL and three renewals, then it gave up


def test_the_real_expiry_of_a_presigned_url_is_a_403(tmp_path):
    """What the 'expire' fault stands in for: the server's own signature check."""
    with LocalBatchServer(presign_ttl=0) as srv:
        files = NetmindFiles(f"{srv.origin}/v1/files", srv.api_key)
        try:
            with pytest.raises(FileTransferError, match="403"):
                files.upload(b'{"a": 1}\n', f"{os.urandom(4).hex()}.jsonl")
        finally:
            files.close()
