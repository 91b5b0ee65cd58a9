"""The local server's test hooks: scripted faults, the execution log, batch listing order."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import httpx2
import openai
import pytest
from conftest_server import (
    ENDPOINT,
    content,
    jsonl,
    request_line,
    rows,
    run_batch,
    start_batch,
    upload,
    wait_for,
    wait_terminal,
)

from netmind_frames.server import LocalBatchServer

NETMIND = "/inference-api/openai/v1"


def batch_ids(client: openai.OpenAI) -> list[str]:
    """Every batch id on the server, as the SDK's auto-paging list returns them."""
    return [b.id for b in client.batches.list(limit=100)]


def create_json(file_id: str, **extra: Any) -> dict[str, Any]:
    """The JSON body of a batch create."""
    return {
        "input_file_id": file_id,
        "endpoint": ENDPOINT,
        "completion_window": "24h",
        **extra,
    }


# -- scripted faults ---------------------------------------------------------------------------
def test_drop_after_create_leaves_exactly_one_batch(
    local_server: LocalBatchServer, oai: openai.OpenAI
) -> None:
    file_id = upload(oai, rows(4))
    local_server.inject_fault("POST", "/batches", "drop_after")
    with pytest.raises(openai.APIConnectionError):
        oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h")
    assert local_server.pending_faults() == []
    [batch] = oai.batches.list().data  # the lost answer's batch exists, exactly once
    assert batch.input_file_id == file_id
    assert wait_terminal(oai, batch.id).status == "completed"


def test_drop_after_hits_the_netmind_prefix_too(
    local_server: LocalBatchServer, oai: openai.OpenAI, http: httpx2.Client
) -> None:
    file_id = upload(oai, rows(2))
    local_server.inject_fault("post", "/batches", "drop_after")
    with pytest.raises(httpx2.TransportError):
        http.post(f"{NETMIND}/batches", json=create_json(file_id))
    assert len(batch_ids(oai)) == 1


def test_drop_before_runs_nothing(local_server: LocalBatchServer, oai: openai.OpenAI) -> None:
    file_id = upload(oai, rows(2))
    local_server.inject_fault("POST", "/batches", "drop_before")
    with pytest.raises(openai.APIConnectionError):
        oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h")
    assert batch_ids(oai) == []


def test_429_once_then_success(local_server: LocalBatchServer, oai: openai.OpenAI) -> None:
    file_id = upload(oai, rows(2))
    local_server.inject_fault("POST", "/batches", "429")
    with pytest.raises(openai.RateLimitError) as caught:
        oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h")
    assert caught.value.response.headers["retry-after"] == "0"
    assert batch_ids(oai) == []  # answered without running anything
    created = oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h")
    assert batch_ids(oai) == [created.id]


def test_sdk_retry_over_injected_500_creates_one_batch(local_server: LocalBatchServer) -> None:
    local_server.inject_fault("POST", "/batches", "500", times=2)
    with openai.OpenAI(
        base_url=local_server.openai_base_url, api_key=local_server.api_key, max_retries=3
    ) as client:
        created = start_batch(client, rows(3))
        assert batch_ids(client) == [created.id]
    assert local_server.pending_faults() == []


def test_times_counts_matching_calls_only(
    local_server: LocalBatchServer, http: httpx2.Client
) -> None:
    local_server.inject_fault("GET", "/batches", "500", times=2)
    assert http.post("/v1/batches", json={}).status_code == 400  # POST: not this fault
    assert http.get("/v1/batches/batch_nope").status_code == 404  # longer path: no match
    assert local_server.pending_faults() == [
        {"method": "GET", "path": "/batches", "action": "500", "times": 2}
    ]
    assert http.get("/v1/batches").status_code == 500
    assert http.get(f"{NETMIND}/batches", params={"limit": 5}).status_code == 500
    assert http.get("/v1/batches").status_code == 200
    assert local_server.pending_faults() == []


def test_path_rule_cancel_and_create_are_distinct(
    local_server: LocalBatchServer, oai: openai.OpenAI
) -> None:
    created = start_batch(oai, rows(3))
    local_server.inject_fault("POST", "/batches", "500")
    local_server.inject_fault("POST", r"/batches/[^/]+/cancel", "429")
    with pytest.raises(openai.RateLimitError):
        oai.batches.cancel(created.id)
    assert [f["path"] for f in local_server.pending_faults()] == ["/batches"]
    with pytest.raises(openai.InternalServerError):
        start_batch(oai, rows(1))  # the upload passes; the create hits the fault
    local_server.clear_faults()
    assert local_server.pending_faults() == []


def test_oldest_matching_fault_fires_first(
    local_server: LocalBatchServer, http: httpx2.Client
) -> None:
    local_server.inject_fault("*", "/batches.*", "429")
    local_server.inject_fault("GET", "/batches", "500")
    assert http.get("/v1/batches").status_code == 429
    assert http.get("/v1/batches").status_code == 500
    assert http.get("/v1/batches").status_code == 200


def test_presigned_urls_match_whole_path(
    local_server: LocalBatchServer, http: httpx2.Client
) -> None:
    created = http.post("/v1/files", json={"file_name": "in.jsonl", "purpose": "batch"}).json()
    local_server.inject_fault("PUT", "/_presigned/.*", "drop_after")
    with pytest.raises(httpx2.TransportError):
        httpx2.put(created["presigned_url"], content=rows(2))
    # the body was stored before the answer was lost
    assert http.get(f"/v1/files/{created['id']}").json()["bytes"] == len(rows(2))


def test_expire_answers_403_like_an_expired_signature_and_runs_nothing(
    local_server: LocalBatchServer, http: httpx2.Client
) -> None:
    created = http.post("/v1/files", json={"file_name": "in.jsonl", "purpose": "batch"}).json()
    local_server.inject_fault("PUT", "/_presigned/.*", "expire")
    refused = httpx2.put(created["presigned_url"], content=rows(2))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "access_denied"
    assert http.get(f"/v1/files/{created['id']}").json()["bytes"] == 0  # nothing stored
    # One shot: the same, still valid URL works again.
    assert httpx2.put(created["presigned_url"], content=rows(2)).status_code == 200
    assert local_server.pending_faults() == []


def test_delay_runs_the_call_and_holds_the_answer(
    local_server: LocalBatchServer, oai: openai.OpenAI
) -> None:
    file_id = upload(oai, rows(2))
    local_server.inject_fault("POST", "/batches", "delay:3")
    began = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oai.with_options(timeout=0.2).batches.create(
            input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h"
        )
    assert time.monotonic() - began < 2.5  # gave up long before the answer (margin for load)
    assert len(batch_ids(oai)) == 1  # the work was done although the client timed out
    local_server.inject_fault("GET", "/batches", "delay:0.2")
    began = time.monotonic()
    assert len(oai.batches.list().data) == 1  # a patient client gets the answer
    assert time.monotonic() - began >= 0.2


def test_faults_fire_before_the_key_check() -> None:
    with LocalBatchServer(api_key="secret") as srv, httpx2.Client(base_url=srv.origin) as http:
        srv.inject_fault("GET", "/files", "429")
        assert http.get("/v1/files").status_code == 429
        assert http.get("/v1/files").status_code == 401


def test_faults_injected_before_start_and_kept_over_restart() -> None:
    srv = LocalBatchServer()
    srv.inject_fault("GET", "/batches", "500", times=2)
    with srv, httpx2.Client() as http:
        assert http.get(srv.origin + "/v1/batches").status_code == 500
    with srv, httpx2.Client() as http:
        assert http.get(srv.origin + "/v1/batches").status_code == 500
        assert http.get(srv.origin + "/v1/batches").status_code == 200


def test_inject_fault_is_thread_safe(local_server: LocalBatchServer) -> None:
    def inject() -> None:
        for _ in range(10):
            local_server.inject_fault("GET", "/batches", "500")

    threads = [threading.Thread(target=inject) for _ in range(5)]
    for t in threads:
        t.start()
    outcomes: Counter[int] = Counter()

    def call() -> None:
        with httpx2.Client(base_url=local_server.origin) as http:
            for _ in range(15):
                outcomes[http.get("/v1/batches").status_code] += 1

    for t in threads:
        t.join()
    callers = [threading.Thread(target=call) for _ in range(4)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert outcomes == Counter({500: 50, 200: 10})


@pytest.mark.parametrize(
    ("method", "path", "action", "times"),
    [
        pytest.param("POST", "/batches", "404", 1, id="unknown-action"),
        pytest.param("POST", "/batches", "delay:-1", 1, id="negative-delay"),
        pytest.param("POST", "/batches", "delay:soon", 1, id="bad-delay"),
        pytest.param("POST", "/batches(", "500", 1, id="bad-regex"),
        pytest.param("POST", "/batches", "500", 0, id="times-zero"),
        pytest.param("", "/batches", "500", 1, id="no-method"),
    ],
)
def test_inject_fault_rejects_bad_arguments(
    method: str, path: str, action: str, times: int
) -> None:
    srv = LocalBatchServer()
    with pytest.raises(ValueError):
        srv.inject_fault(method, path, action, times)
    assert srv.pending_faults() == []


# -- execution log -----------------------------------------------------------------------------
def test_executions_list_every_run_row_once() -> None:
    with (
        LocalBatchServer(fail_rate=0.3, seed=5) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0) as client,
    ):
        first = run_batch(client, rows(20))
        second = run_batch(client, jsonl([request_line("a", "alpha"), request_line("b", "")]))
        client.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "sync"}]
        )
        log = srv.executions()
        failed = {line["custom_id"] for line in content(client, first.error_file_id)}
    assert {e["batch_id"] for e in log} == {first.id, second.id}
    mine = [e for e in log if e["batch_id"] == first.id]
    assert sorted(int(e["custom_id"]) for e in mine) == list(range(20))
    for e in mine:
        assert e["prompt"] == f"row {e['custom_id']} text"
        assert e["status_code"] == (500 if e["custom_id"] in failed else 200)
    assert 0 < len(failed) < 20
    assert first.request_counts is not None
    assert sum(e["status_code"] == 200 for e in mine) == first.request_counts.completed
    theirs = sorted((e["custom_id"], e["prompt"]) for e in log if e["batch_id"] == second.id)
    assert theirs in ([("a", "alpha"), ("b", "")], [("a", "alpha")])  # "b" may hit fail_rate
    assert "sync" not in {e["prompt"] for e in log}


def test_executions_record_invalid_requests(
    local_server: LocalBatchServer, oai: openai.OpenAI
) -> None:
    bad = request_line("bad", "x", max_tokens=0)
    broken = {"custom_id": "broken", "method": "POST", "url": ENDPOINT, "body": {"model": "echo-1"}}
    batch = run_batch(oai, jsonl([bad, broken]))
    log = sorted(local_server.executions(), key=lambda e: e["custom_id"])
    assert [(e["custom_id"], e["status_code"], e["prompt"]) for e in log] == [
        ("bad", 400, "x"),
        ("broken", 400, None),
    ]
    assert {e["batch_id"] for e in log} == {batch.id}


def test_executions_skip_lines_that_never_ran() -> None:
    with (
        LocalBatchServer(seconds_per_request=0.02, expire_after=1.0, seed=2) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client,
    ):
        expired = run_batch(client, rows(200))
        cancelled = start_batch(client, rows(200))

        def started() -> bool:
            counts = client.batches.retrieve(cancelled.id).request_counts
            return counts is not None and counts.completed > 0

        wait_for(started)
        client.batches.cancel(cancelled.id)
        cancelled = wait_terminal(client, cancelled.id)
        log = srv.executions()
        assert (expired.status, cancelled.status) == ("expired", "cancelled")
        for batch in (expired, cancelled):
            ran = [e for e in log if e["batch_id"] == batch.id]
            assert 0 < len(ran) < 200
            assert batch.request_counts is not None
            assert len(ran) == batch.request_counts.completed
            unrun = {line["custom_id"] for line in content(client, batch.error_file_id)}
            assert len(unrun) + len(ran) == 200
            assert not unrun & {e["custom_id"] for e in ran}


def test_executions_survive_restart_of_the_same_object(tmp_path: Any) -> None:
    srv = LocalBatchServer(data_dir=tmp_path)
    with srv, openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
        run_batch(client, rows(3))
    with srv:
        assert len(srv.executions()) == 3
        srv.clear_executions()
        assert srv.executions() == []
    with LocalBatchServer(data_dir=tmp_path) as fresh:
        assert fresh.executions() == []  # a new object starts empty


def test_record_executions_off() -> None:
    with (
        LocalBatchServer(record_executions=False) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client,
    ):
        assert run_batch(client, rows(3)).status == "completed"
        assert srv.executions() == []


# -- listing -------------------------------------------------------------------------------------
def test_batch_list_is_newest_first_and_keeps_metadata(
    oai: openai.OpenAI, http: httpx2.Client
) -> None:
    file_id = upload(oai, rows(1))
    made = [
        oai.batches.create(
            input_file_id=file_id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"fingerprint": f"fp-{i}", "job": "j"},
        ).id
        for i in range(5)
    ]
    newest_first = made[::-1]
    assert batch_ids(oai) == newest_first
    for prefix in ("/v1", NETMIND):
        seen: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if after is not None:
                params["after"] = after
            page = http.get(f"{prefix}/batches", params=params).json()
            seen += [b["id"] for b in page["data"]]
            for b in page["data"]:
                assert b["metadata"] == {"fingerprint": f"fp-{made.index(b['id'])}", "job": "j"}
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == newest_first
    full = http.get(f"{NETMIND}/batches", params={"limit": 100}).json()
    assert [b["id"] for b in full["data"]] == newest_first and not full["has_more"]
    wanted = {"fingerprint": "fp-3", "job": "j"}
    assert [b.id for b in oai.batches.list(limit=100) if b.metadata == wanted] == [made[3]]
