"""Sync mode: the same call, answered through the synchronous endpoint, gives batch mode's frame.

Every comparison runs the call twice on a real local server, once per mode, and compares
the frames whole (columns, dtypes, index, statuses, error codes, typed schema columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import openai
import orjson
import pandas as pd
import pydantic
import pytest
from conftest import closed_port, connection_kwargs

import netmind_frames
from netmind_frames import InputError, LocalBatchServer
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, main
from netmind_frames.jobs._journal import Journal


class Verdict(pydantic.BaseModel):
    """A structured answer: two typed columns."""

    label: str
    score: int


def sample(n: int = 10) -> pd.DataFrame:
    """Rows with distinct texts, a model and parameters per row, and a duplicated index."""
    return pd.DataFrame(
        {
            "text": [f"sync row {i} with some words" for i in range(n)],
            "model": [None if i % 3 else "other-model" for i in range(n)],
            "params": [{"max_tokens": 1 + i % 3, "seed": i} if i % 2 else None for i in range(n)],
            "uid": [f"id-{i:03d}" for i in range(n)],
        },
        index=pd.Index([i % 4 for i in range(n)], name="k"),
    )


CASES = [
    pytest.param({"prompt": "Say {text}", "max_tokens": 3}, id="template"),
    pytest.param({"prompt_column": "text", "system": "Be brief."}, id="prompt-column-system"),
    pytest.param({"prompt": "Say {text}", "params_column": "params"}, id="params-column"),
    pytest.param({"prompt": "Rate: {text}", "schema": Verdict}, id="schema-pydantic"),
    pytest.param(
        {
            "prompt": "Rate: {text}",
            "schema": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "tags": {"type": "array"}},
                "required": ["ok", "tags"],
            },
        },
        id="schema-json",
    ),
    pytest.param({"prompt": "Say {text}", "model_column": "model"}, id="model-column"),
    pytest.param({"prompt": "Say {text}", "custom_id_column": "uid"}, id="custom-ids"),
    pytest.param({"prompt": "Say {text}", "prefix": "nm_", "max_tokens": 2}, id="prefix"),
]


@pytest.mark.parametrize("call", CASES)
def test_sync_mode_gives_the_batch_mode_frame(
    server: LocalBatchServer, dialect: str, call: dict[str, Any]
) -> None:
    df = sample()
    kwargs = {"model": "m", **connection_kwargs(server, dialect), **call}
    batch = df.netmind.batch_complete(**kwargs)
    sync = df.netmind.batch_complete(mode="sync", max_concurrency=3, **kwargs)
    pd.testing.assert_frame_equal(sync, batch)
    assert sync.attrs["netmind_frames"] == {"mode": "sync"}


def let_bad_params_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """The library refuses max_tokens=0 before upload; let it reach the server's 400."""
    from netmind_frames.build import _rowparams

    monkeypatch.setattr(_rowparams, "check_param_types", lambda params: None)


def test_failed_rows_have_the_same_codes_and_messages(
    server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    let_bad_params_through(monkeypatch)
    df = sample(6).assign(
        params=[None, {"max_tokens": 0}, None, {"temperature": "hot"}, None, None]
    )
    kwargs = {"model": "m", "params_column": "params", **connection_kwargs(server, "openai")}
    batch = df.netmind.batch_complete("Say {text}", **kwargs)
    sync = df.netmind.batch_complete("Say {text}", mode="sync", **kwargs)
    pd.testing.assert_frame_equal(sync, batch)
    assert list(sync["status"]) == ["ok", "failed", "ok", "ok", "ok", "ok"]
    assert sync["error_code"].iloc[1] == "invalid_value"


def test_embeddings_sync_mode_gives_the_batch_mode_frame(
    server: LocalBatchServer, dialect: str
) -> None:
    df = sample(7)
    kwargs = {"model": "emb", "dimensions": 12}
    # Batches in OpenAI's dialect (Netmind runs no embedding batches), sync in each dialect.
    batch = df.netmind.batch_embed("text", **kwargs, **connection_kwargs(server, "openai"))
    sync = df.netmind.batch_embed(
        "text", mode="sync", **kwargs, **connection_kwargs(server, dialect)
    )
    assert np.array_equal(np.stack(sync["embedding"]), np.stack(batch["embedding"]))
    assert sync["embedding"].iloc[0].dtype == np.float32
    pd.testing.assert_frame_equal(sync.drop(columns="embedding"), batch.drop(columns="embedding"))


def test_sync_bodies_are_the_batch_request_bodies_byte_for_byte(server: LocalBatchServer) -> None:
    df = sample(5).assign(text=['quote " and \\ back', "é ü 中文", "tab\there", "new\nline", "x"])
    call: dict[str, Any] = {"model": "m", "params_column": "params", "schema": Verdict}
    sent: list[bytes] = []

    def record(request: httpx2.Request) -> None:
        sent.append(request.read())

    with openai.OpenAI(
        base_url=server.openai_base_url,
        api_key=server.api_key,
        http_client=httpx2.Client(event_hooks={"request": [record]}),
    ) as client:
        out = df.netmind.batch_complete(
            "Say {text}", mode="sync", client=client, progress=False, **call
        )
    assert (out["status"] == "ok").all()
    lines = df.netmind.to_jsonl(prompt="Say {text}", **call).splitlines()
    expected = [orjson.dumps(orjson.loads(line)["body"]) for line in lines]
    assert sorted(sent) == sorted(expected)
    # The same bytes that the upload carries: the body is the line's last field.
    assert all(line.endswith(body + b"}") for line, body in zip(lines, expected, strict=True))


def test_sync_mode_retries_429_and_500(fresh_server: LocalBatchServer) -> None:
    fresh_server.inject_fault("POST", "/chat/completions", "429", times=2)
    fresh_server.inject_fault("POST", "/chat/completions", "500", times=2)
    out = sample(6).netmind.batch_complete(
        "Say {text}",
        model="m",
        mode="sync",
        retries=0,
        **connection_kwargs(fresh_server, "netmind"),
    )
    assert (out["status"] == "ok").all()
    assert len(fresh_server.sync_calls()) == 6
    assert fresh_server.pending_faults() == []


def test_sync_mode_retry_rounds_resend_only_retryable_rows(
    fresh_server: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that fails the schema (``corrupt_rate``) is asked again, as in batch mode; a
    bad request (400) is not."""
    let_bad_params_through(monkeypatch)
    with LocalBatchServer(corrupt_rate=0.5, seed=3) as srv:
        df = sample(8).assign(params=[{"max_tokens": 0} if i == 0 else None for i in range(8)])
        kwargs = {
            "model": "m",
            "schema": Verdict,
            "params_column": "params",
            "mode": "sync",
            "max_concurrency": 1,
            **connection_kwargs(srv, "openai"),
        }
        once = df.netmind.batch_complete("Rate {text}", retries=0, **kwargs)
        calls_once = len(srv.sync_calls())
        srv.clear_sync_calls()
        retried = df.netmind.batch_complete("Rate {text}", retries=8, **kwargs)
        prompts = [c["prompt"] for c in srv.sync_calls()]
    assert calls_once == 8
    assert (once["error_code"] == "invalid_output").sum() > 0
    assert retried["error_code"].iloc[0] == "invalid_value"
    assert prompts.count(f"Rate {df['text'].iloc[0]}") == 1  # a 400 is not retried
    assert list(retried["status"].iloc[1:]) == ["ok"] * 7


def test_a_dead_endpoint_gives_connection_error_rows() -> None:
    with (
        closed_port() as port,
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0) as c,
    ):
        out = sample(2).netmind.batch_complete(
            "Say {text}", model="m", mode="sync", client=c, retries=0, progress=False
        )
    assert set(out["status"]) == {"failed"}
    assert set(out["error_code"]) == {"connection_error"}


def test_sync_mode_keeps_no_journal_and_creates_no_batch(fresh_server: LocalBatchServer) -> None:
    home = Path(__import__("os").environ["NETMIND_FRAMES_HOME"])
    sample(3).netmind.batch_complete(
        "Say {text}", model="m", mode="sync", **connection_kwargs(fresh_server, "openai")
    )
    assert Journal(home).recent_jobs(10) == []
    with openai.OpenAI(base_url=fresh_server.openai_base_url, api_key="x") as client:
        assert list(client.batches.list()) == []
    assert len(fresh_server.sync_calls()) == 3


def test_auto_mode_picks_sync_up_to_the_threshold(fresh_server: LocalBatchServer) -> None:
    kwargs = {"model": "m", "mode": "auto", **connection_kwargs(fresh_server, "openai")}
    small = sample(3).netmind.batch_complete("Say {text}", sync_threshold=3, **kwargs)
    large = sample(4).netmind.batch_complete("Say {text}", sync_threshold=3, **kwargs)
    assert small.attrs["netmind_frames"] == {"mode": "sync"}
    assert "job_id" in large.attrs["netmind_frames"]
    assert len(fresh_server.sync_calls()) == 3


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"mode": "auto"}, "sync_threshold", id="auto-without-threshold"),
        pytest.param({"mode": "fast"}, "mode must be", id="unknown-mode"),
        pytest.param({"mode": "sync", "max_concurrency": 0}, "max_concurrency", id="concurrency"),
        pytest.param({"mode": "auto", "sync_threshold": -1}, "sync_threshold", id="negative"),
        pytest.param({"mode": "auto", "sync_threshold": 2.5}, "sync_threshold", id="not-int"),
    ],
)
def test_bad_mode_arguments_fail_before_anything_is_sent(
    fresh_server: LocalBatchServer, kwargs: dict[str, Any], needle: str
) -> None:
    with pytest.raises(InputError, match=needle):
        sample(2).netmind.batch_complete(
            "Say {text}", model="m", **kwargs, **connection_kwargs(fresh_server, "openai")
        )
    assert fresh_server.sync_calls() == []


def test_the_function_and_the_accessor_agree(server: LocalBatchServer) -> None:
    df = sample(4)
    kwargs = {"model": "m", "mode": "sync", **connection_kwargs(server, "openai")}
    pd.testing.assert_frame_equal(
        netmind_frames.batch_complete(df, "Say {text}", **kwargs),
        df.netmind.batch_complete("Say {text}", **kwargs),
    )


def _cli_args(path: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        "complete", str(path), str(out), "--prompt", "Say {text}", "--model", "m",
        "--max-tokens", "3", "--base-url", base_url, "--provider", "openai",
        "--poll-interval", "0.05", "--quiet", *extra,
    ]  # fmt: skip


def test_cli_sync_mode_writes_the_batch_mode_file(
    server: LocalBatchServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETMIND_API_KEY", "local")
    source = tmp_path / "in.parquet"
    sample(9)[["text", "uid"]].reset_index().to_parquet(source)
    base = server.openai_base_url
    batch, sync = tmp_path / "batch.parquet", tmp_path / "sync.parquet"
    assert main(_cli_args(source, batch, base)) == EXIT_OK
    assert main(_cli_args(source, sync, base, "--mode", "sync", "--max-concurrency", "2")) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(sync), pd.read_parquet(batch))
    auto = tmp_path / "auto.parquet"
    assert main(_cli_args(source, auto, base, "--mode", "auto", "--sync-threshold", "9")) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(auto), pd.read_parquet(batch))
    assert main(_cli_args(source, auto, base, "--mode", "auto")) == EXIT_ERROR
