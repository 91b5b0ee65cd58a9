"""Netmind's dialect: the presigned File API and the batch prefix, over plain HTTP."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import openai
import pytest
from conftest_server import ENDPOINT, TERMINAL, parse_jsonl, rows, upload, wait_for

from netmind_frames.server import LocalBatchServer

NETMIND = "/inference-api/openai/v1"


def netmind_upload(http: httpx2.Client, data: bytes, name: str = "input.jsonl") -> str:
    """Netmind's two-step upload: create, then PUT the raw bytes to the presigned URL."""
    created = http.post("/v1/files", json={"file_name": name, "purpose": "batch"})
    assert created.status_code == 200
    body = created.json()
    assert set(body) == {"id", "presigned_url"}
    put = httpx2.put(body["presigned_url"], content=data)  # no Authorization header
    assert put.status_code == 200 and put.json() == {}
    return str(body["id"])


def download(http: httpx2.Client, file_id: str) -> bytes:
    """Netmind's download: ask for a presigned URL, then GET it."""
    answer = http.get(f"/v1/files/{file_id}/presigned_url")
    assert answer.status_code == 200 and set(answer.json()) == {"presigned_url"}
    got = httpx2.get(answer.json()["presigned_url"])
    assert got.status_code == 200
    return got.content


def wait_batch(http: httpx2.Client, batch_id: str) -> dict[str, Any]:
    """Poll a batch through Netmind's prefix until it is terminal."""

    def done() -> dict[str, Any] | None:
        batch = http.get(f"{NETMIND}/batches/{batch_id}").json()
        return batch if batch["status"] in TERMINAL else None

    return wait_for(done)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(rows(3), id="plain"),
        pytest.param(rows(3).replace(b"\n", b"\r\n"), id="crlf"),
        pytest.param(rows(3).rstrip(b"\n"), id="no-final-newline"),
        pytest.param(bytes(range(256)) * 4, id="binary"),
    ],
)
def test_upload_keeps_bytes_exactly(http: httpx2.Client, data: bytes) -> None:
    file_id = netmind_upload(http, data)
    assert download(http, file_id) == data
    assert http.get(f"/v1/files/{file_id}/content").content == data


def test_file_listing_is_a_bare_array(http: httpx2.Client) -> None:
    ids = [netmind_upload(http, rows(1), f"f{i}.jsonl") for i in range(3)]
    listing = http.get("/v1/files").json()
    assert isinstance(listing, list)
    assert [entry["id"] for entry in listing] == ids
    for entry in listing:
        assert set(entry) == {"id", "file_name", "purpose", "created_at"}
        assert entry["purpose"] == "batch" and isinstance(entry["created_at"], int)
    one = http.get(f"/v1/files/{ids[0]}").json()
    assert one["file_name"] == "f0.jsonl" and one["purpose"] == "batch"
    assert http.delete(f"/v1/files/{ids[0]}").status_code == 200
    assert http.get(f"/v1/files/{ids[0]}").status_code == 404
    assert [entry["id"] for entry in http.get("/v1/files").json()] == ids[1:]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"purpose": "batch"}, id="no-file-name"),
        pytest.param({"file_name": "x.jsonl", "purpose": "vision"}, id="bad-purpose"),
        pytest.param([1], id="not-an-object"),
    ],
)
def test_netmind_create_rejected(http: httpx2.Client, body: Any) -> None:
    assert http.post("/v1/files", json=body).status_code == 400
    assert http.get("/v1/files").json() == []


def test_batch_through_netmind_prefix(http: httpx2.Client) -> None:
    file_id = netmind_upload(http, rows(10))
    created = http.post(
        f"{NETMIND}/batches",
        json={
            "input_file_id": file_id,
            "endpoint": ENDPOINT,
            "completion_window": "24h",
            "metadata": {"description": "nightly eval job"},
        },
    )
    assert created.status_code == 200 and created.json()["status"] == "validating"
    batch = wait_batch(http, created.json()["id"])
    assert batch["status"] == "completed"
    assert batch["metadata"] == {"description": "nightly eval job"}
    lines = parse_jsonl(download(http, batch["output_file_id"]))
    assert sorted(int(line["custom_id"]) for line in lines) == list(range(10))
    listing = http.get(f"{NETMIND}/batches", params={"limit": 10}).json()
    assert [b["id"] for b in listing["data"]] == [batch["id"]]
    assert http.get(f"/v1/batches/{batch['id']}").json()["id"] == batch["id"]


def test_files_cross_dialects(local_server: LocalBatchServer, http: httpx2.Client) -> None:
    """A Netmind upload feeds an OpenAI-dialect batch and vice versa."""
    with (
        openai.OpenAI(
            base_url=local_server.base_url, api_key=local_server.api_key, max_retries=0
        ) as netmind_sdk,
        openai.OpenAI(
            base_url=local_server.openai_base_url, api_key=local_server.api_key, max_retries=0
        ) as openai_sdk,
    ):
        netmind_file = netmind_upload(http, rows(4))
        batch = openai_sdk.batches.create(
            input_file_id=netmind_file, endpoint=ENDPOINT, completion_window="24h"
        )
        openai_file = upload(openai_sdk, rows(5))
        other = netmind_sdk.batches.create(
            input_file_id=openai_file, endpoint=ENDPOINT, completion_window="24h"
        )
        first = wait_batch(http, batch.id)
        second = wait_batch(http, other.id)
        assert len(parse_jsonl(download(http, first["output_file_id"]))) == 4
        assert len(openai_sdk.files.content(second["output_file_id"]).content.splitlines()) == 5


def test_batch_before_put_fails_as_empty(http: httpx2.Client) -> None:
    created = http.post("/v1/files", json={"file_name": "late.jsonl", "purpose": "batch"}).json()
    batch_id = http.post(
        f"{NETMIND}/batches",
        json={"input_file_id": created["id"], "endpoint": ENDPOINT, "completion_window": "24h"},
    ).json()["id"]
    batch = wait_batch(http, batch_id)
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "empty_file"


def _tamper(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts._replace(query=urlencode(query)).geturl()


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"sig": "0" * 64}, id="signature"),
        pytest.param({"expires": "9999999999"}, id="expiry-extended"),
        pytest.param({"op": "get"}, id="operation"),
        pytest.param({"sig": "é"}, id="non-ascii-signature"),
    ],
)
def test_tampered_presigned_url_is_403(http: httpx2.Client, change: dict[str, str]) -> None:
    url = http.post("/v1/files", json={"file_name": "a.jsonl", "purpose": "batch"}).json()[
        "presigned_url"
    ]
    method = "GET" if change.get("op") == "get" else "PUT"
    answer = httpx2.request(method, _tamper(url, **change), content=b"evil")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "access_denied"


def test_presigned_url_of_another_file_is_403(http: httpx2.Client) -> None:
    url = http.post("/v1/files", json={"file_name": "a.jsonl", "purpose": "batch"}).json()[
        "presigned_url"
    ]
    other = http.post("/v1/files", json={"file_name": "b.jsonl", "purpose": "batch"}).json()["id"]
    parts = urlsplit(url)
    forged = parts._replace(path=f"/_presigned/{other}").geturl()
    assert httpx2.put(forged, content=b"evil").status_code == 403
    assert http.get(f"/v1/files/{other}/content").content == b""


def test_expired_presigned_urls_are_403() -> None:
    with LocalBatchServer(presign_ttl=0) as srv, httpx2.Client(base_url=srv.origin) as http:
        created = http.post("/v1/files", json={"file_name": "a.jsonl", "purpose": "batch"}).json()
        assert httpx2.put(created["presigned_url"], content=b"x").status_code == 403
        url = http.get(f"/v1/files/{created['id']}/presigned_url").json()["presigned_url"]
        assert httpx2.get(url).status_code == 403
