"""Embeddings: request lines, result parsing, and batches through the local server."""

from __future__ import annotations

import base64
import warnings
from typing import Any

import httpx2
import numpy as np
import openai
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from conftest_server import upload, wait_terminal

from netmind_frames._errors import ColumnError, InputError, MissingResultWarning, RowError
from netmind_frames.build._requests import EMBEDDINGS_ENDPOINT, RequestPlan, build_embedding_plan
from netmind_frames.results._embeddings import (
    EMBEDDING_COLUMNS,
    collect_embeddings,
    embedding_matrix,
    join_embeddings,
)
from netmind_frames.results._results import ShardOutcome
from netmind_frames.server import LocalBatchServer

TEXTS = ["the cat sat", "the cat sat", "a dog barked loudly", "stock prices fell"]


def test_lines_are_embedding_requests_with_params():
    frame = pd.DataFrame({"t": ['a "quoted"\ntext', "b"]}, index=["x", "y"])
    plan = build_embedding_plan(frame, "t", model="emb", params={"dimensions": 8})
    (shard,) = plan.shards
    lines = [orjson.loads(line) for line in shard.data.splitlines()]
    assert plan.endpoint == shard.endpoint == EMBEDDINGS_ENDPOINT
    assert lines[0] == {
        "custom_id": "0",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {"model": "emb", "input": 'a "quoted"\ntext', "dimensions": 8},
    }
    assert shard.fingerprint != build_plan_fingerprint_as_chat(frame)


def build_plan_fingerprint_as_chat(frame: pd.DataFrame) -> str:
    from netmind_frames.build._requests import build_plan

    return build_plan(frame, prompt_column="t", model="emb").shards[0].fingerprint


@pytest.mark.parametrize(
    ("values", "kwargs", "error", "message"),
    [
        pytest.param(["a", ""], {}, RowError, r"row 1 .*empty string", id="empty"),
        pytest.param(["a", None], {}, RowError, r"row 1 .*null", id="null"),
        pytest.param(["a", 3], {}, RowError, r"row 1 .*not a string", id="number"),
        pytest.param(["a"], {"params": {"input": "x"}}, InputError, "'input'", id="reserved"),
        pytest.param(["a"], {"column": "nope"}, ColumnError, "'nope'", id="missing-column"),
        pytest.param(["a"], {"model": None}, InputError, "model=", id="no-model"),
    ],
)
def test_bad_embedding_input_is_rejected(values, kwargs, error, message):
    frame = pd.DataFrame({"t": pd.Series(values, dtype=object)})
    arguments: dict[str, Any] = {"column": "t", "model": "emb", **kwargs}
    with pytest.raises(error, match=message):
        build_embedding_plan(frame, arguments.pop("column"), **arguments)


def _success(custom_id: str, vector: Any, tokens: int = 3) -> bytes:
    line = {
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "body": {"data": [{"embedding": vector}], "usage": {"prompt_tokens": tokens}},
        },
        "error": None,
    }
    return orjson.dumps(line) + b"\n"


def _plan(n: int) -> RequestPlan:
    return build_embedding_plan(pd.DataFrame({"t": [f"t{i}" for i in range(n)]}), "t", model="e")


def test_parsed_vectors_are_fixed_size_float32_with_the_usual_statuses():
    plan = _plan(4)
    failed = {"custom_id": "1", "response": {"status_code": 400, "body": {"error": {
        "message": "bad input", "code": "invalid_value"}}}, "error": None}  # fmt: skip
    out = _success("2", [0.0, 1.0]) + _success("0", [0.6, 0.8])
    files = [out, orjson.dumps(failed) + b"\n"]
    table = collect_embeddings(plan, [ShardOutcome(plan.shards[0].positions, "expired", files)])
    assert table.column_names == list(EMBEDDING_COLUMNS)
    assert table.column("embedding").type == pa.list_(pa.float32(), 2)
    assert table.column("status").to_pylist() == ["ok", "failed", "ok", "expired"]
    assert table.column("error_code").to_pylist() == [None, "invalid_value", None, "batch_expired"]
    matrix = embedding_matrix(table.column("embedding"))
    assert matrix.dtype == np.float32 and matrix.shape == (4, 2)
    np.testing.assert_allclose(matrix[[0, 2]], [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    assert np.isnan(matrix[[1, 3]]).all()


def test_base64_vectors_and_missing_vectors_take_the_tolerant_path():
    plan = _plan(3)
    packed = base64.b64encode(np.array([0.5, -0.5], "<f4").tobytes()).decode()
    files = [_success("0", packed) + _success("1", [1, 2]) + _success("2", None)]
    table = collect_embeddings(plan, [ShardOutcome(plan.shards[0].positions, "completed", files)])
    assert table.column("embedding").to_pylist()[:2] == [[0.5, -0.5], [1.0, 2.0]]
    assert table.column("status").to_pylist() == ["ok", "ok", "failed"]
    assert table.column("error_code").to_pylist()[2] == "invalid_output"


def test_vectors_of_different_lengths_stay_a_variable_list():
    plan = _plan(2)
    files = [_success("0", [1, 2, 3]) + _success("1", [1])]
    table = collect_embeddings(plan, [ShardOutcome(plan.shards[0].positions, "completed", files)])
    assert table.column("embedding").type == pa.list_(pa.float32())
    out = join_embeddings(pd.DataFrame({"t": ["a", "b"]}), table)
    assert [len(v) for v in out["embedding"]] == [3, 1]
    with pytest.raises(InputError, match="different lengths"):
        embedding_matrix(table.column("embedding"))


def test_a_missing_row_is_reported():
    plan = _plan(2)
    files = [_success("0", [1.0])]
    with pytest.warns(MissingResultWarning):
        table = collect_embeddings(
            plan, [ShardOutcome(plan.shards[0].positions, "completed", files)]
        )
    assert table.column("error_code").to_pylist() == [None, "missing_result"]


def _embed_batch(client: openai.OpenAI, plan: RequestPlan) -> pa.Table:
    file_id = upload(client, plan.shards[0].data)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
    )
    batch = wait_terminal(client, batch.id)
    assert batch.status == "completed", batch
    files = [client.files.content(f).content for f in (batch.output_file_id,) if f]
    return collect_embeddings(plan, [ShardOutcome(plan.shards[0].positions, batch.status, files)])


@pytest.mark.parametrize(
    ("params", "size"),
    [pytest.param({}, 256, id="default-256"), pytest.param({"dimensions": 32}, 32, id="dims-32"),
     pytest.param({"dimensions": 16, "encoding_format": "base64"}, 16, id="base64")],
)  # fmt: skip
@pytest.mark.parametrize("embedding_dtype", ["numpy", "arrow"])
def test_batches_through_the_local_server(fresh_server, params, size, embedding_dtype):
    frame = pd.DataFrame({"text": TEXTS}, index=pd.Index(list("wxyz"), name="k"))
    plan = build_embedding_plan(frame, "text", model="echo-embed", params=params)
    with openai.OpenAI(base_url=fresh_server.openai_base_url, api_key="k") as client:
        table = _embed_batch(client, plan)
    assert table.column("embedding").type == pa.list_(pa.float32(), size)
    out = join_embeddings(frame, table, prefix="nm_", embedding_dtype=embedding_dtype)
    assert out.index.equals(frame.index) and list(frame.columns) == ["text"]
    assert out["nm_status"].tolist() == ["ok"] * 4
    assert out["nm_prompt_tokens"].tolist() == [3, 3, 4, 3]
    matrix = embedding_matrix(table.column("embedding"))
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(matrix[0], matrix[1])  # same text, same vector
    assert matrix[0] @ matrix[2] < 0.9
    if embedding_dtype == "numpy":
        assert out["nm_embedding"].dtype == object
        assert out["nm_embedding"].iloc[0].dtype == np.float32
        np.testing.assert_array_equal(np.stack(out["nm_embedding"]), matrix)
    else:
        assert isinstance(out["nm_embedding"].dtype, pd.ArrowDtype)


@pytest.mark.parametrize("prefix", ["/v1", "/inference-api/openai/v1"])
def test_sync_endpoint_under_both_prefixes(fresh_server, prefix):
    with httpx2.Client(base_url=fresh_server.origin, headers={"Authorization": "k"}) as http:
        body = {"model": "e", "input": ["one two", "one two"], "dimensions": 8}
        answer = http.post(f"{prefix}/embeddings", json=body).json()
        bad = http.post(f"{prefix}/embeddings", json={"model": "e", "input": ""})
    first, second = (np.array(d["embedding"]) for d in answer["data"])
    assert len(first) == 8 and np.array_equal(first, second)
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4}
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input"


def test_the_openai_client_reads_the_sync_answer(fresh_server):
    with openai.OpenAI(base_url=fresh_server.openai_base_url, api_key="k") as client:
        answer = client.embeddings.create(model="e", input="hello world", dimensions=4)
    assert len(answer.data[0].embedding) == 4 and answer.usage.prompt_tokens == 2


def test_a_server_without_embeddings_rejects_them_like_netmind():
    with (
        LocalBatchServer(endpoints=("/v1/chat/completions",)) as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0) as client,
        httpx2.Client(base_url=server.origin) as http,
    ):
        file_id = upload(client, _plan(1).shards[0].data)
        with pytest.raises(openai.BadRequestError, match=r"not supported yet.*coming soon"):
            client.batches.create(
                input_file_id=file_id, endpoint="/v1/embeddings", completion_window="24h"
            )
        sync = http.post("/v1/embeddings", json={"model": "e", "input": "x"})
    assert sync.status_code == 404 and "coming soon" in sync.json()["error"]["message"]


def test_join_rejects_collisions_and_wrong_lengths():
    plan = _plan(1)
    table = collect_embeddings(
        plan, [ShardOutcome(plan.shards[0].positions, "completed", [_success("0", [1.0])])]
    )
    with pytest.raises(ColumnError, match="'embedding'"):
        join_embeddings(pd.DataFrame({"embedding": [1]}), table)
    with pytest.raises(InputError, match="1 results for a frame of 2 rows"):
        join_embeddings(pd.DataFrame({"t": [1, 2]}), table)
    with pytest.raises(InputError, match="embedding_dtype"):
        join_embeddings(pd.DataFrame({"t": [1]}), table, embedding_dtype="list")  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert join_embeddings(pd.DataFrame({"t": [1]}), table)["status"].tolist() == ["ok"]
