"""Structured outputs, per-row models and parameters, end to end through the local server."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from typing import Literal

import numpy as np
import openai
import pandas as pd
import pydantic
import pytest
from conftest import connection_kwargs, uploaded_files

import netmind_frames.server._store
from netmind_frames import ColumnError, InputError, LocalBatchServer, batch_complete
from netmind_frames.cli import EXIT_OK, main
from netmind_frames.results._embeddings import EMBEDDING_COLUMNS


class Author(pydantic.BaseModel):
    name: str
    verified: bool


class Review(pydantic.BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    stars: int
    confidence: float
    topics: list[str]
    author: Author
    summary: str | None = None


SCHEMA = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["spam", "ham"]},
        "score": {"type": "number"},
        "count": {"type": "integer"},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "meta": {"type": "object", "properties": {"source": {"type": "string"}}},
        "note": {"type": ["string", "null"]},
    },
    "required": ["label", "score", "count", "flag", "tags", "meta"],
}


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"text": [f"review {i}: {'great' if i % 2 else 'awful'} kettle" for i in range(30)]},
        index=pd.Index([f"r{i % 7}" for i in range(30)], name="key"),
    )


def test_a_pydantic_model_gives_typed_columns(server, frame, dialect):
    out = frame.netmind.batch_complete(
        "{text}", model="m", schema=Review, **connection_kwargs(server, dialect)
    )
    assert out.index.equals(frame.index)
    assert (out["status"] == "ok").all()
    assert list(out.columns[-6:]) == [
        "sentiment",
        "stars",
        "confidence",
        "topics",
        "author",
        "summary",
    ]
    assert str(out["stars"].dtype) == "Int64"
    assert str(out["confidence"].dtype) == "Float64"
    assert isinstance(out["sentiment"].dtype, pd.CategoricalDtype)
    assert list(out["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    for raw, author, topics in zip(out["response"], out["author"], out["topics"], strict=True):
        parsed = Review.model_validate_json(raw)
        assert author == parsed.author.model_dump()
        assert topics == parsed.topics


def test_a_json_schema_gives_typed_columns_and_optional_fields(server, frame):
    out = frame.netmind.batch_complete(
        "{text}", model="m", schema=SCHEMA, prefix="nm_", **connection_kwargs(server, "openai")
    )
    dtypes = {name: str(out[f"nm_{name}"].dtype) for name in SCHEMA["properties"]}
    assert dtypes["count"] == "Int64" and dtypes["score"] == "Float64"
    assert dtypes["flag"] == "boolean" and dtypes["label"] == "category"
    assert dtypes["tags"] == "object" and dtypes["meta"] == "object"
    assert set(out["nm_label"].dropna()) <= {"spam", "ham"}
    assert all(isinstance(tags, list) for tags in out["nm_tags"])


@pytest.fixture
def numbered_batch_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch ids 1, 2, 3, ... instead of random ones, for this test's servers.

    ``corrupt_rate`` draws per (seed, batch id, custom_id): with random ids a row could stay
    corrupt through every retry now and then (0.4 ** 9 a row). Numbered ids make each run draw
    the same, so the test passes or fails every time.
    """
    numbers = itertools.count(1)
    monkeypatch.setattr(
        netmind_frames.server._store, "new_batch_id", lambda: f"batch_{next(numbers):024x}"
    )


@pytest.mark.usefixtures("numbered_batch_ids")
def test_malformed_answers_are_invalid_output_and_retries_repair_them(frame, dialect):
    with LocalBatchServer(corrupt_rate=0.4, seed=8) as srv:
        kwargs = connection_kwargs(srv, dialect)
        raw = batch_complete(frame, "{text}", model="m", schema=Review, retries=0, **kwargs)
        bad = raw[raw["status"] == "failed"]
        assert len(bad) == 15
        assert (bad["error_code"] == "invalid_output").all()
        assert bad["error_message"].str.len().gt(0).all()
        assert bad["response"].notna().all()  # the raw answer is kept for inspection
        assert bad["stars"].isna().all()
        repaired = batch_complete(frame, "{text}", model="m", schema=Review, retries=8, **kwargs)
        batches = Counter(run["batch_id"] for run in srv.executions())
    # 30 rows, then 15, 6, 3, 2 retried: corruption went on in the retries, which repaired it.
    assert sorted(batches.values(), reverse=True) == [30, 15, 6, 3, 2]
    assert (repaired["status"] == "ok").all()
    assert repaired["stars"].notna().all()


def test_three_models_in_one_call_make_three_batches_and_one_result(fresh_server, frame):
    models = ["llama", "gemma", "qwen"]
    frame = frame.assign(model=[models[i % 3] for i in range(len(frame))])
    out = frame.netmind.batch_complete(
        "{text}", model_column="model", keep_files=True,
        **connection_kwargs(fresh_server, "netmind"),
    )  # fmt: skip
    assert out.index.equals(frame.index)
    assert list(out["response"]) == list(frame["text"])
    with openai.OpenAI(
        base_url=fresh_server.openai_base_url, api_key=fresh_server.api_key
    ) as client:
        batches = list(client.batches.list(limit=100))
        bodies = [
            json.loads(line)["body"]["model"]
            for b in batches
            for line in client.files.content(b.input_file_id).text.splitlines()
        ]
    assert len(batches) == 3
    assert sorted(set(bodies)) == sorted(models)


def test_per_row_params_reach_the_server(server, frame):
    frame = frame.assign(params=[{"max_tokens": 1 + i % 3} for i in range(len(frame))])
    out = frame.netmind.batch_complete(
        "{text}", model="m", params_column="params", **connection_kwargs(server, "netmind")
    )
    assert list(out["completion_tokens"]) == [1 + i % 3 for i in range(len(frame))]
    assert (out["finish_reason"] == "length").all()


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        pytest.param({"schema": {"type": "string"}}, InputError, "object", id="not-an-object"),
        pytest.param(
            {"schema": SCHEMA, "response_format": {"type": "json_object"}},
            InputError,
            "not both",
            id="schema-and-response-format",
        ),
        pytest.param(
            {"schema": {"type": "object", "properties": {"status": {"type": "string"}}}},
            ColumnError,
            "status",
            id="field-named-like-a-result-column",
        ),
        pytest.param({"model": None}, InputError, "model_column", id="no-model"),
    ],
)
def test_bad_structured_input_uploads_nothing(fresh_server, frame, kwargs, error, needle):
    options = {"model": "m", **kwargs}
    with pytest.raises(error, match=needle):
        batch_complete(frame, "{text}", **options, **connection_kwargs(fresh_server, "netmind"))
    assert uploaded_files(fresh_server) == []


def test_a_schema_field_colliding_with_an_input_column_is_an_error(server, frame):
    with pytest.raises(ColumnError, match="stars"):
        frame.assign(stars=1).netmind.batch_complete(
            "{text}", model="m", schema=Review, **connection_kwargs(server, "netmind")
        )


def test_cli_schema_and_model_column(tmp_path, frame):
    source = frame.reset_index().assign(model=["a", "b"] * 15)
    source.to_parquet(tmp_path / "in.parquet")
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    args = [
        "complete", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"),
        "--prompt", "{text}", "--model-column", "model", "--schema", str(tmp_path / "schema.json"),
        "--local", "--quiet", "--poll-interval", "0.05",
    ]  # fmt: skip
    assert main(args) == EXIT_OK
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["text"]) == list(source["text"])
    assert str(out["count"].dtype) in ("int64", "Int64")
    assert all(isinstance(json.loads(tags), list) for tags in out["tags"])


def test_batch_embed_gives_unit_vectors_of_the_right_shape(server, frame):
    # OpenAI's dialect: Netmind does not run embedding batches (see the next tests).
    out = frame.netmind.batch_embed(
        "text", model="e", dimensions=64, **connection_kwargs(server, "openai")
    )
    assert out.index.equals(frame.index)
    assert list(out.columns) == [*frame.columns, *EMBEDDING_COLUMNS]
    assert (out["status"] == "ok").all()
    matrix = np.stack(out["embedding"])
    assert matrix.shape == (len(frame), 64) and matrix.dtype == np.float32
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    same = frame["text"] == frame["text"].iloc[0]
    assert np.allclose(matrix[same.to_numpy()], matrix[0])  # same text, same vector
    assert str(out["prompt_tokens"].dtype) == "Int64"


def test_a_provider_without_batch_embeddings_says_so(frame):
    # An OpenAI-dialect provider whose batch create refuses the endpoint: the server's 400
    # becomes an InputError.
    with (
        LocalBatchServer(endpoints=("/v1/chat/completions",)) as srv,
        pytest.raises(InputError, match="coming soon"),
    ):
        frame.netmind.batch_embed("text", model="e", **connection_kwargs(srv, "openai"))


@pytest.mark.parametrize("how", ["base_url", "local"])
def test_netmind_embedding_batches_stop_before_the_upload(fresh_server, frame, how):
    kwargs = (
        connection_kwargs(fresh_server, "netmind")
        if how == "base_url"
        else {"local": True, "progress": False}
    )
    with pytest.raises(InputError, match="coming soon") as caught:
        frame.netmind.batch_embed("text", model="e", **kwargs)
    message = str(caught.value)
    assert "nothing was uploaded" in message and "mode='sync'" in message
    assert ("provider='openai'" in message) == (how == "base_url")
    assert ("openai_base_url" in message) == (how == "local")
    assert uploaded_files(fresh_server) == []


def test_netmind_embeddings_run_in_sync_mode(fresh_server, frame):
    out = frame.netmind.batch_embed(
        "text", model="e", mode="sync", **connection_kwargs(fresh_server, "netmind")
    )
    assert (out["status"] == "ok").all()
    assert uploaded_files(fresh_server) == []


def test_cli_embed_says_netmind_does_not_run_embedding_batches(tmp_path, frame, capsys):
    frame.reset_index().to_parquet(tmp_path / "in.parquet")
    args = [
        "embed", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--column", "text",
        "--model", "e", "--local", "--quiet",
    ]  # fmt: skip
    assert main(args) != EXIT_OK
    assert "coming soon" in capsys.readouterr().err
    assert not (tmp_path / "out.parquet").exists()


def test_cli_embed_writes_vectors(tmp_path, frame, fresh_server, monkeypatch):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    frame.reset_index().to_parquet(tmp_path / "in.parquet")
    args = [
        "embed", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--column", "text",
        "--model", "e", "--param", "dimensions=32", "--base-url", fresh_server.openai_base_url,
        "--quiet", "--poll-interval", "0.05",
    ]  # fmt: skip
    assert main(args) == EXIT_OK
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == len(frame) and (out["status"] == "ok").all()
    assert np.stack(out["embedding"]).shape == (len(frame), 32)
