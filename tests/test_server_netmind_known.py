"""The local server's Netmind dialect is the Netmind we know (batch-api.md §5.0, §5.2b).

A bare file list for every client, the SDK's purposes, the 100 MB presigned upload, no
embedding batches under Netmind's prefix; OpenAI's dialect under its own prefix; and the
``model_allowlist`` and ``presigned_ttl`` knobs. Each against the real client where it fits.
"""

from __future__ import annotations

import argparse
import io
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import openai
import pandas as pd
import pytest
from conftest import connection_kwargs
from conftest_server import jsonl, request_line, rows, upload, wait_for, wait_terminal

import netmind_frames
from netmind_frames import BatchFailedError, LocalBatchServer
from netmind_frames._errors import FileTransferError
from netmind_frames.server._cli import add_serve_parser, run_serve

NETMIND = "/inference-api/openai/v1"
EMBED_LINE = {
    "custom_id": "0",
    "method": "POST",
    "url": "/v1/embeddings",
    "body": {"model": "e", "input": "the cat sat"},
}
#: What Netmind's SDK sends: it goes through openai.OpenAI (batch-api.md §5.2b).
OPENAI_SDK_HEADERS = {
    "X-Stainless-Lang": "python",
    "X-Stainless-Package-Version": "1.109.1",
    "User-Agent": "OpenAI/Python 1.109.1",
}


def netmind_create(http: httpx2.Client, name: str = "in.jsonl", purpose: str = "batch") -> Any:
    return http.post("/v1/files", json={"file_name": name, "purpose": purpose})


def netmind_upload(http: httpx2.Client, data: bytes, name: str = "in.jsonl") -> str:
    created = netmind_create(http, name).json()
    assert httpx2.put(created["presigned_url"], content=data).status_code == 200
    return str(created["id"])


def frame(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(n)]})


# -- (a) one list per dialect ----------------------------------------------------------------


def test_file_list_is_a_bare_array_even_for_the_openai_sdks_headers(
    local_server: LocalBatchServer, http: httpx2.Client
) -> None:
    ids = [netmind_upload(http, rows(1), f"f{i}.jsonl") for i in range(2)]
    listing = http.get("/v1/files", headers=OPENAI_SDK_HEADERS).json()
    assert isinstance(listing, list)
    assert [entry["id"] for entry in listing] == ids
    # The openai SDK on OpenAI's prefix gets OpenAI's envelope over the same files.
    base = local_server.openai_base_url
    assert urlsplit(base).path == "/openai/v1"
    with openai.OpenAI(base_url=base, api_key=local_server.api_key, max_retries=0) as client:
        page = client.files.list()
        assert sorted(f.id for f in page.data) == sorted(ids)
        assert not page.has_more


def test_the_old_v1_base_still_serves_openai_callers(local_server: LocalBatchServer) -> None:
    old = local_server.origin + "/v1"
    with openai.OpenAI(base_url=old, api_key=local_server.api_key, max_retries=0) as client:
        file_id = upload(client, rows(2))
        # OpenAI's list parameters still get the envelope on the old base (Netmind's SDK
        # sends none), as the library's lookup after a lost upload answer needs.
        assert [f.id for f in client.files.list(purpose="batch")] == [file_id]
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert wait_terminal(client, batch.id).status == "completed"


def test_openai_prefix_keeps_fault_paths_and_unknown_url_messages(
    local_server: LocalBatchServer, oai: openai.OpenAI
) -> None:
    local_server.inject_fault("GET", "/batches", "500")
    with pytest.raises(openai.InternalServerError):
        oai.batches.list()
    assert local_server.pending_faults() == []
    answer = httpx2.get(local_server.origin + "/openai/v1/nope")
    assert answer.status_code == 404 and "/openai/v1/nope" in answer.json()["error"]["message"]


def test_library_round_trip_in_both_dialects(fresh_server: LocalBatchServer, dialect: str) -> None:
    out = netmind_frames.batch_complete(
        frame(), "Say {text}", model="m", **connection_kwargs(fresh_server, dialect)
    )
    assert list(out["response"]) == ["Say row 0", "Say row 1", "Say row 2"]


# -- (b) purposes ----------------------------------------------------------------------------


@pytest.mark.parametrize("purpose", ["fine-tune", "batch", "inference", "code-interpreter"])
def test_netmind_sdk_purposes_are_accepted(http: httpx2.Client, purpose: str) -> None:
    created = netmind_create(http, purpose=purpose)
    assert created.status_code == 200
    listed = {f["id"]: f["purpose"] for f in http.get("/v1/files").json()}
    assert listed[created.json()["id"]] == purpose


def test_an_unknown_purpose_names_the_accepted_ones(http: httpx2.Client) -> None:
    answer = netmind_create(http, purpose="vision")
    assert answer.status_code == 400
    message = answer.json()["error"]["message"]
    assert "'inference'" in message and "'code-interpreter'" in message


# -- (c) the presigned upload cap ------------------------------------------------------------


def raw_put_headers_only(url: str, length: int) -> tuple[int, bytes]:
    """PUT with a ``Content-Length`` and no body; return the status and the body answered."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    request = (
        f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_presigned_put_over_100_mb_is_413_at_once(http: httpx2.Client) -> None:
    url = netmind_create(http).json()["presigned_url"]
    status, body = raw_put_headers_only(url, 100_000_001)
    assert status == 413
    assert b"100,000,000 byte limit" in body
    assert LocalBatchServer().presigned_max_bytes == 100_000_000  # the limit itself is fine


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_presigned_put_cap_counts_streamed_bodies(chunked: bool) -> None:
    with (
        LocalBatchServer(presigned_max_bytes=10) as srv,
        httpx2.Client(base_url=srv.origin) as http,
    ):
        url = netmind_create(http).json()["presigned_url"]
        body = (lambda: iter([b"x" * 6, b"x" * 5])) if chunked else (lambda: b"x" * 11)
        too_big = httpx2.put(url, content=body())
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "file_too_large"
        assert httpx2.put(url, content=b"x" * 10).status_code == 200


def test_the_library_reports_the_cap_before_any_batch() -> None:
    with LocalBatchServer(presigned_max_bytes=50) as srv:
        with pytest.raises(FileTransferError, match="50 byte limit"):
            netmind_frames.batch_complete(
                frame(), "Say {text}", model="m", **connection_kwargs(srv, "netmind")
            )
        listed = httpx2.get(srv.base_url + "/batches").json()["data"]
        assert listed == []


# -- (d) embeddings --------------------------------------------------------------------------


def test_embedding_batches_are_not_supported_under_netmind_prefix(
    local_server: LocalBatchServer, http: httpx2.Client, oai: openai.OpenAI
) -> None:
    file_id = netmind_upload(http, jsonl([EMBED_LINE]))
    body = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    refused = http.post(f"{NETMIND}/batches", json=body)
    assert refused.status_code == 400
    assert "not supported yet (coming soon)" in refused.json()["error"]["message"]
    # OpenAI's prefix runs the same file; the sync endpoint works under Netmind's prefix.
    created = oai.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert wait_terminal(oai, created.id).status == "completed"
    sync = http.post(f"{NETMIND}/embeddings", json={"model": "e", "input": "x"})
    assert sync.status_code == 200 and sync.json()["data"][0]["embedding"]


def test_netmind_embeddings_knob_runs_them_under_netmind_prefix() -> None:
    with (
        LocalBatchServer(netmind_embeddings=True) as srv,
        httpx2.Client(base_url=srv.origin) as http,
    ):
        file_id = netmind_upload(http, jsonl([EMBED_LINE]))
        body = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
        created = http.post(f"{NETMIND}/batches", json=body)
        assert created.status_code == 200

        def done() -> str | None:
            status = http.get(f"{NETMIND}/batches/{created.json()['id']}").json()["status"]
            return status if status in ("completed", "failed") else None

        assert wait_for(done) == "completed"


# -- (e) model_allowlist ---------------------------------------------------------------------


def test_a_model_outside_the_allowlist_fails_the_batch_like_openai(dialect: str) -> None:
    with LocalBatchServer(model_allowlist=["allowed-1", "allowed-2"]) as srv:
        kwargs = connection_kwargs(srv, dialect)
        ok = netmind_frames.batch_complete(frame(), "Say {text}", model="allowed-2", **kwargs)
        assert (ok["status"] == "ok").all()
        with pytest.raises(BatchFailedError, match="model_not_found") as caught:
            netmind_frames.batch_complete(frame(), "Say {text}", model="other", **kwargs)
    errors = caught.value.errors
    assert [e["line"] for e in errors] == [1, 2, 3]
    assert {e["code"] for e in errors} == {"model_not_found"}
    assert {e["param"] for e in errors} == {"body.model"}
    assert "'other'" in errors[0]["message"]


def test_the_allowlist_fails_each_line_naming_another_model() -> None:
    data = jsonl([request_line("a", "x"), request_line("b", "y")])
    with LocalBatchServer(model_allowlist=["echo-2"]) as srv, srv_client(srv) as client:
        batch = client.batches.create(
            input_file_id=upload(client, data),
            endpoint="/v1/chat/completions",
            completion_window="24h",
        )
        failed = wait_terminal(client, batch.id)
    assert failed.status == "failed" and failed.errors is not None
    assert [(e.code, e.line) for e in failed.errors.data or []] == [
        ("model_not_found", 1),
        ("model_not_found", 2),
    ]


@pytest.mark.parametrize("value", ["m", [], [""], [1]])
def test_bad_allowlists_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="model_allowlist"):
        LocalBatchServer(model_allowlist=value)


# -- (f) presigned_ttl -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["presigned_ttl", "presign_ttl"])
def test_presigned_ttl_and_its_old_name(name: str) -> None:
    with (
        LocalBatchServer(**{name: 0}) as srv,
        httpx2.Client(base_url=srv.origin) as http,
    ):
        assert srv.presigned_ttl == srv.presign_ttl == 0
        url = netmind_create(http).json()["presigned_url"]
        assert httpx2.put(url, content=b"x").status_code == 403  # expired at once
    assert LocalBatchServer().presigned_ttl == 7200


def test_presigned_ttl_given_twice_differently_is_refused() -> None:
    with pytest.raises(ValueError, match="presigned_ttl"):
        LocalBatchServer(presigned_ttl=10, presign_ttl=20)


# -- serve flags -----------------------------------------------------------------------------


def srv_client(srv: LocalBatchServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0)


@pytest.fixture
def served() -> Iterator[str]:
    """``netmind-frames serve`` with this module's flags, in a thread; yields its origin."""
    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(
        ["serve", "--port", "0", "--seconds-per-request", "0", "--model-allowlist", "a, b",
         "--netmind-embeddings", "--presigned-ttl", "60", "--presigned-max-bytes", "1000"]
    )  # fmt: skip
    assert args.model_allowlist == ("a", "b") and args.presigned_ttl == 60
    out, stop = io.StringIO(), threading.Event()
    thread = threading.Thread(target=run_serve, args=(args,), kwargs={"stop": stop, "out": out})
    thread.start()
    try:
        match = wait_for(lambda: re.search(r"Netmind base URL:\s+(\S+)", out.getvalue()))
        yield match.group(1).removesuffix(NETMIND)
    finally:
        stop.set()
        thread.join()


def test_serve_flags_reach_the_server(served: str) -> None:
    def run(model: str) -> str:
        line = {**EMBED_LINE, "body": {"model": model, "input": "x"}}
        file_id = netmind_upload(http, jsonl([line]))
        body = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
        created = http.post(f"{NETMIND}/batches", json=body)  # --netmind-embeddings
        assert created.status_code == 200

        def done() -> str | None:
            status = http.get(f"{NETMIND}/batches/{created.json()['id']}").json()["status"]
            return status if status in ("completed", "failed") else None

        return wait_for(done)

    with httpx2.Client(base_url=served) as http:
        url = netmind_create(http).json()["presigned_url"]
        expires = int(parse_qs(urlsplit(url).query)["expires"][0])
        assert 0 < expires - time.time() <= 61  # --presigned-ttl 60
        assert httpx2.put(url, content=b"x" * 1001).status_code == 413  # --presigned-max-bytes
        assert run("a") == "completed"
        assert run("z") == "failed"  # --model-allowlist a,b
