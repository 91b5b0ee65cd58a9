"""File transports against the real local server, and the download-URL shapes Netmind may send."""

from __future__ import annotations

import httpx2
import openai
import pytest

from netmind_frames import FileTransferError
from netmind_frames.transport._files import NetmindFiles, OpenAIFiles, download_url_from

PAYLOAD = b'{"a": 1}\n\n{"b": "line\\nwith escapes \xe2\x9c\x93"}\r\n'


def test_netmind_upload_and_download_keep_bytes_exactly(server, tmp_path):
    files = NetmindFiles(f"{server.origin}/v1/files", server.api_key)
    try:
        file_id = files.upload(PAYLOAD, "x.jsonl")
        assert files.download(file_id, tmp_path / "out").read_bytes() == PAYLOAD
    finally:
        files.close()


def test_openai_upload_and_download_keep_bytes_exactly(server, tmp_path):
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        files = OpenAIFiles(client)
        file_id = files.upload(PAYLOAD, "x.jsonl")
        assert files.download(file_id, tmp_path / "out").read_bytes() == PAYLOAD


def test_a_file_uploaded_the_netmind_way_reads_back_the_openai_way(server, tmp_path):
    netmind = NetmindFiles(f"{server.origin}/v1/files", server.api_key)
    try:
        file_id = netmind.upload(PAYLOAD, "x.jsonl")
    finally:
        netmind.close()
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        assert client.files.content(file_id).content == PAYLOAD


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"json": {"presigned_url": "https://s3.example/f?sig=1"}}, id="presigned_url"),
        pytest.param({"json": {"url": "https://s3.example/f?sig=1"}}, id="url"),
        pytest.param({"json": {"data": {"url": "https://s3.example/f?sig=1"}}}, id="nested"),
        pytest.param({"json": "https://s3.example/f?sig=1"}, id="json-string"),
        pytest.param({"text": "https://s3.example/f?sig=1\n"}, id="plain-text"),
    ],
)
def test_every_download_url_shape_is_accepted(answer):
    assert download_url_from(httpx2.Response(200, **answer)) == "https://s3.example/f?sig=1"


def test_a_download_answer_without_url_is_a_clear_error_that_hides_values():
    with pytest.raises(FileTransferError, match="keys") as info:
        download_url_from(httpx2.Response(200, json={"token": "secret-value"}))
    assert "secret-value" not in str(info.value)


def test_wrong_key_is_not_retried_forever(tmp_path):
    from netmind_frames import LocalBatchServer

    with LocalBatchServer(api_key="right") as srv:
        files = NetmindFiles(f"{srv.origin}/v1/files", "wrong")
        try:
            with pytest.raises(FileTransferError, match="401"):
                files.upload(PAYLOAD, "x.jsonl")
        finally:
            files.close()


def test_a_lost_upload_answer_does_not_store_the_file_twice(fresh_server):
    fresh_server.inject_fault("POST", "/files", "drop_after")
    with openai.OpenAI(
        base_url=fresh_server.openai_base_url, api_key=fresh_server.api_key
    ) as client:
        file_id = OpenAIFiles(client).upload(PAYLOAD, "netmind_frames-abc.jsonl")
        stored = list(client.files.list(purpose="batch"))
    assert [f.id for f in stored] == [file_id]
    assert fresh_server.pending_faults() == []
