"""The OpenAI dialect of the local server, driven by the official openai client."""

from __future__ import annotations

from typing import Any

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

BATCH_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "object": str,
    "endpoint": str,
    "model": (str, type(None)),
    "errors": (dict, type(None)),
    "input_file_id": str,
    "completion_window": str,
    "status": str,
    "output_file_id": (str, type(None)),
    "error_file_id": (str, type(None)),
    "created_at": int,
    "in_progress_at": (int, type(None)),
    "expires_at": (int, type(None)),
    "finalizing_at": (int, type(None)),
    "completed_at": (int, type(None)),
    "failed_at": (int, type(None)),
    "expired_at": (int, type(None)),
    "cancelling_at": (int, type(None)),
    "cancelled_at": (int, type(None)),
    "request_counts": dict,
    "usage": (dict, type(None)),
    "metadata": (dict, type(None)),
}
FILE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "object": str,
    "bytes": int,
    "created_at": int,
    "expires_at": (int, type(None)),
    "filename": str,
    "purpose": str,
    "status": str,
    "status_details": (str, type(None)),
}


def _completed(batch: Any) -> int:
    return int(batch.request_counts.completed)


def raw(client: openai.OpenAI, path: str) -> Any:
    """GET a path of the OpenAI dialect and return the raw JSON."""
    return client.get(path, cast_to=object)


def test_file_object_fields_and_roundtrip(oai: openai.OpenAI) -> None:
    data = rows(3)
    created = oai.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch")
    obj = raw(oai, f"/files/{created.id}")
    for name, kind in FILE_FIELDS.items():
        assert isinstance(obj[name], kind), name
    assert obj["object"] == "file"
    assert obj["bytes"] == len(data)
    assert obj["filename"] == "batch.jsonl"
    assert obj["purpose"] == "batch"
    assert oai.files.retrieve(created.id).id == created.id
    assert oai.files.content(created.id).content == data


def test_file_list_envelope_pagination_and_delete(oai: openai.OpenAI) -> None:
    ids = [upload(oai, rows(1), f"f{i}.jsonl") for i in range(5)]
    envelope = raw(oai, "/files")
    assert set(envelope) == {"object", "data", "first_id", "last_id", "has_more"}
    assert envelope["object"] == "list"
    assert [f["id"] for f in envelope["data"]] == ids[::-1]  # newest first
    first = oai.files.list(limit=2)
    assert len(first.data) == 2 and first.has_more
    assert [f.id for f in oai.files.list(limit=2)] == ids[::-1]  # the SDK follows the cursor
    assert [f.id for f in oai.files.list(order="asc", limit=10).data] == ids
    deleted = oai.files.delete(ids[0])
    assert deleted.deleted and deleted.id == ids[0]
    with pytest.raises(openai.NotFoundError):
        oai.files.retrieve(ids[0])


@pytest.mark.parametrize(
    ("name", "purpose", "param"),
    [
        pytest.param("batch.txt", "batch", "file", id="batch-file-not-jsonl"),
        pytest.param("batch.jsonl", "nonsense", "purpose", id="unknown-purpose"),
    ],
)
def test_upload_rejected(oai: openai.OpenAI, name: str, purpose: str, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.files.create(file=(name, b"{}\n", "application/jsonl"), purpose=purpose)  # type: ignore[arg-type]
    assert info.value.body["param"] == param  # type: ignore[index]


def test_completed_batch_lifecycle(oai: openai.OpenAI) -> None:
    created = start_batch(oai, rows(20, max_tokens=100), metadata={"job": "nightly"})
    assert created.status == "validating"
    assert created.output_file_id is None and created.error_file_id is None
    batch = wait_terminal(oai, created.id)
    assert batch.status == "completed"
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(batch, stamp) >= batch.created_at
    assert batch.failed_at is None and batch.cancelled_at is None and batch.expired_at is None
    assert batch.request_counts.model_dump() == {"total": 20, "completed": 20, "failed": 0}
    assert batch.metadata == {"job": "nightly"}
    assert batch.model == "echo-1"
    assert batch.error_file_id is None
    assert oai.files.retrieve(batch.output_file_id).purpose == "batch_output"
    lines = content(oai, batch.output_file_id)
    assert sorted(int(line["custom_id"]) for line in lines) == list(range(20))
    for line in lines:
        assert set(line) == {"id", "custom_id", "response", "error"}
        assert line["error"] is None and line["id"].startswith("batch_req_")
        response = line["response"]
        assert response["status_code"] == 200 and response["request_id"]
        body = response["body"]
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"]["content"] == f"row {line['custom_id']} text"
    assert batch.usage.input_tokens == 60 and batch.usage.output_tokens == 60
    obj = raw(oai, f"/batches/{batch.id}")
    for name, kind in BATCH_FIELDS.items():
        assert isinstance(obj[name], kind), name
    assert set(obj["request_counts"]) == {"total", "completed", "failed"}


@pytest.mark.parametrize(
    ("shuffle", "shuffled"),
    [pytest.param(True, True, id="shuffled"), pytest.param(False, False, id="input-order")],
)
def test_output_order(shuffle: bool, shuffled: bool) -> None:
    with (
        LocalBatchServer(shuffle=shuffle, seed=3) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0) as client,
    ):
        batch = run_batch(client, rows(50))
        order = [line["custom_id"] for line in content(client, batch.output_file_id)]
    assert sorted(order, key=int) == [str(i) for i in range(50)]
    assert (order != [str(i) for i in range(50)]) is shuffled


def test_error_lines_shape_a_and_all_failed_batch(oai: openai.OpenAI) -> None:
    bad = [request_line(str(i), "x") for i in range(3)]
    for line in bad:
        line["body"]["messages"] = []  # not a valid chat completion request
    batch = run_batch(oai, jsonl(bad))
    assert batch.status == "completed"
    assert batch.output_file_id is None
    assert batch.request_counts.model_dump() == {"total": 3, "completed": 0, "failed": 3}
    for line in content(oai, batch.error_file_id):
        assert line["error"] is None
        assert line["response"]["status_code"] == 400
        assert set(line["response"]["body"]["error"]) == {"message", "type", "param", "code"}


def test_fail_rate_gives_500_lines() -> None:
    with (
        LocalBatchServer(fail_rate=0.5, seed=5) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0) as client,
    ):
        batch = run_batch(client, rows(100))
        errors = content(client, batch.error_file_id)
        ok = content(client, batch.output_file_id)
    assert batch.status == "completed"
    assert 0 < len(errors) < 100 and len(errors) + len(ok) == 100
    assert batch.request_counts.failed == len(errors)
    assert {line["response"]["status_code"] for line in errors} == {500}
    assert {line["response"]["body"]["error"]["type"] for line in errors} == {"server_error"}


@pytest.mark.parametrize(
    ("data", "code", "line"),
    [
        pytest.param(b"{not json\n", "invalid_json_line", 1, id="invalid-json"),
        pytest.param(b"[1, 2]\n", "invalid_json_line", 1, id="json-not-object"),
        pytest.param(
            jsonl([request_line("a", "x"), {**request_line("b", "y"), "custom_id": None}]),
            "missing_custom_id",
            2,
            id="missing-custom-id",
        ),
        pytest.param(
            jsonl([request_line("a", "x"), request_line("a", "y")]),
            "duplicate_custom_id",
            2,
            id="duplicate-custom-id",
        ),
        pytest.param(
            jsonl([{**request_line("a", "x"), "url": "/v1/embeddings"}]),
            "url_mismatch",
            1,
            id="url-mismatch",
        ),
        pytest.param(
            jsonl([request_line("a", "x"), request_line("b", "y", model="other")]),
            "model_mismatch",
            2,
            id="model-mismatch",
        ),
        pytest.param(b"", "empty_file", None, id="empty-file"),
        pytest.param(b"\n \n", "empty_file", None, id="blank-lines-only"),
    ],
)
def test_validation_failures(oai: openai.OpenAI, data: bytes, code: str, line: int | None) -> None:
    batch = run_batch(oai, data)
    assert batch.status == "failed"
    assert batch.failed_at is not None and batch.in_progress_at is None
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.errors is not None and batch.errors.object == "list"
    assert [(e.code, e.line) for e in batch.errors.data] == [(code, line)]
    assert batch.errors.data[0].message


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        pytest.param({"completion_window": "1h"}, "completion_window", id="window-1h"),
        pytest.param({"input_file_id": "file-" + "0" * 24}, "input_file_id", id="unknown-file"),
        pytest.param({"input_file_id": "../../etc/passwd"}, "input_file_id", id="traversal-file"),
        pytest.param({"endpoint": "/v1/moderations"}, "endpoint", id="unsupported-endpoint"),
        pytest.param({"metadata": {"k": "v" * 600}}, "metadata", id="metadata-too-long"),
    ],
)
def test_create_rejected_with_400(oai: openai.OpenAI, kwargs: dict[str, Any], param: str) -> None:
    args: dict[str, Any] = {
        "input_file_id": upload(oai, rows(1)),
        "endpoint": ENDPOINT,
        "completion_window": "24h",
        **kwargs,
    }
    with pytest.raises(openai.BadRequestError) as info:
        oai.batches.create(**args)
    err = info.value.body
    assert isinstance(err, dict) and err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}
    assert oai.batches.list().data == []


def test_batch_list_pagination(oai: openai.OpenAI) -> None:
    file_id = upload(oai, rows(1))
    ids = [
        oai.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h").id
        for _ in range(5)
    ]
    first = oai.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[:-3:-1] and first.has_more
    second = first.get_next_page()
    assert [b.id for b in second.data] == [ids[2], ids[1]]
    last = oai.batches.list(limit=2, after=ids[1])
    assert [b.id for b in last.data] == [ids[0]] and not last.has_more
    assert [b.id for b in oai.batches.list(limit=2)] == ids[::-1]
    envelope = raw(oai, "/batches?limit=2")
    assert set(envelope) == {"object", "data", "first_id", "last_id", "has_more"}
    assert envelope["first_id"] == ids[-1] and envelope["last_id"] == ids[-2]


def test_unknown_batch_is_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        oai.batches.retrieve("batch_" + "0" * 24)
    with pytest.raises(openai.NotFoundError):
        oai.batches.cancel("batch_" + "0" * 24)


def test_cancel_keeps_partial_output() -> None:
    with (
        LocalBatchServer(seconds_per_request=0.02, seed=2) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0) as client,
    ):
        created = start_batch(client, rows(400))
        running: Any = wait_for(
            lambda: _completed(b := client.batches.retrieve(created.id)) > 0 and b
        )
        assert running.status == "in_progress" and running.in_progress_at is not None
        assert 0 < running.request_counts.completed < 400
        cancelling = client.batches.cancel(created.id)
        assert cancelling.status in ("cancelling", "cancelled")
        assert cancelling.cancelling_at is not None
        batch = wait_terminal(client, created.id)
        assert client.batches.cancel(created.id).status == "cancelled"  # idempotent
        ok = content(client, batch.output_file_id)
        errors = content(client, batch.error_file_id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.completed_at is None
    assert batch.request_counts.total == 400
    assert batch.request_counts.completed == len(ok) > 0
    assert batch.request_counts.failed == 0  # unrun lines are not counted as failed
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert all(line["response"] is None for line in errors)
    ids = [line["custom_id"] for line in ok + errors]
    assert sorted(ids, key=int) == [str(i) for i in range(400)]


def test_cancel_finished_batch_is_400(oai: openai.OpenAI) -> None:
    batch = run_batch(oai, rows(2))
    with pytest.raises(openai.BadRequestError):
        oai.batches.cancel(batch.id)


def test_expired_keeps_finished_output() -> None:
    with (
        LocalBatchServer(seconds_per_request=0.02, expire_after=1.0, seed=4) as srv,
        openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0) as client,
    ):
        created = start_batch(client, rows(2000))
        assert created.expires_at is not None and created.expires_at >= created.created_at
        batch = wait_terminal(client, created.id)
        ok = content(client, batch.output_file_id)
        errors = content(client, batch.error_file_id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.completed_at is None
    assert batch.request_counts.total == 2000
    assert batch.request_counts.completed == len(ok) > 0
    assert batch.request_counts.failed == 0
    assert len(ok) + len(errors) == 2000
    for line in errors:
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired" and line["error"]["message"]


@pytest.mark.parametrize(
    "prefix",
    [pytest.param("/v1", id="openai"), pytest.param("/inference-api/openai/v1", id="netmind")],
)
def test_sync_chat_completions(local_server: LocalBatchServer, prefix: str) -> None:
    with openai.OpenAI(
        base_url=local_server.origin + prefix, api_key=local_server.api_key, max_retries=0
    ) as client:
        answer = client.chat.completions.create(
            model="echo-1",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "one two three"},
            ],
            max_tokens=2,
        )
        assert answer.object == "chat.completion"
        assert answer.choices[0].message.role == "assistant"
        assert answer.choices[0].message.content == "one two"
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage is not None
        assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (5, 2)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="echo-1", messages=[])
