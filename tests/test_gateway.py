"""The ``upstream`` engine: a local server as a batch gateway in front of another server.

Every test chains two real servers on loopback: an echo ``LocalBatchServer`` plays the
self-hosted model (its ``sync_calls()`` hook counts what reached it, its ``inject_fault``
makes it answer 429/500 or drop connections), and a gateway
``LocalBatchServer(upstream=echo.openai_base_url)`` runs the batches.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import openai
import orjson
import pandas as pd
import pytest
from conftest import closed_port
from conftest_server import content, rows, start_batch, wait_for, wait_terminal

import netmind_frames  # noqa: F401  (registers df.netmind)
from netmind_frames.build import _rowparams
from netmind_frames.results._answer_lines import answer_line
from netmind_frames.server import LocalBatchServer
from netmind_frames.server._cli import add_serve_parser, run_serve
from netmind_frames.server._upstream import MAX_WAIT, Upstream, retry_after


@pytest.fixture
def echo() -> Iterator[LocalBatchServer]:
    """The "self-hosted model": a fresh echo server, immediate, output in input order."""
    with LocalBatchServer(seed=5, shuffle=False) as srv:
        yield srv


@pytest.fixture
def gateway(echo: LocalBatchServer) -> Iterator[LocalBatchServer]:
    """A gateway in front of ``echo``, four requests in flight."""
    with LocalBatchServer(upstream=echo.openai_base_url, concurrency=4, seed=5) as srv:
        yield srv


def kwargs_for(srv: LocalBatchServer, **extra: Any) -> dict[str, Any]:
    """Library keyword arguments pointing at ``srv`` (OpenAI dialect)."""
    return {
        "base_url": srv.openai_base_url,
        "api_key": srv.api_key,
        "poll_interval": 0.05,
        "progress": False,
        **extra,
    }


def frame(n: int = 24) -> pd.DataFrame:
    """Rows with distinct texts, per-row parameters (one of them invalid) and a custom index."""
    params = [{"max_tokens": 1 + i % 3} if i % 2 else None for i in range(n)]
    if n > 5:
        params[5] = {"max_tokens": 0}  # the echo model answers 400: an error line, both ways
    return pd.DataFrame(
        {"text": [f"gateway row {i} has a few words" for i in range(n)], "params": params},
        index=pd.Index([f"r{i % 7}" for i in range(n)], name="key"),
    )


def client_for(srv: LocalBatchServer) -> openai.OpenAI:
    """An openai client on ``srv`` without retries."""
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0)


# -- same answers ---------------------------------------------------------------------------


def test_a_batch_through_the_gateway_matches_the_echo_server(
    echo: LocalBatchServer, gateway: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The library refuses max_tokens=0 before upload; let row 5 through to get its 400 line.
    monkeypatch.setattr(_rowparams, "check_param_types", lambda params: None)
    df = frame()
    call = {"prompt": "Repeat: {text}", "model": "echo-1", "params_column": "params"}
    direct = df.netmind.batch_complete(**call, **kwargs_for(echo))
    echo.clear_sync_calls()
    through = df.netmind.batch_complete(**call, **kwargs_for(gateway))
    pd.testing.assert_frame_equal(through, direct)
    assert Counter(through["status"]) == {"ok": 23, "failed": 1}
    assert through["error_code"].iloc[5] == "invalid_value"
    # Each row reached the upstream exactly once, as a synchronous call; none as a batch.
    prompts = Counter(c["prompt"] for c in echo.sync_calls())
    assert prompts == Counter(f"Repeat: {t}" for t in df["text"])
    assert len(gateway.executions()) == len(df)


def test_embeddings_through_the_gateway_match_the_echo_server(
    echo: LocalBatchServer, gateway: LocalBatchServer
) -> None:
    df = frame(10)
    direct = df.netmind.batch_embed("text", model="emb", dimensions=16, **kwargs_for(echo))
    through = df.netmind.batch_embed("text", model="emb", dimensions=16, **kwargs_for(gateway))
    assert np.array_equal(np.stack(through["embedding"]), np.stack(direct["embedding"]))
    pd.testing.assert_frame_equal(
        through.drop(columns="embedding"), direct.drop(columns="embedding")
    )
    assert {c["endpoint"] for c in echo.sync_calls()} == {"/embeddings"}


def test_the_gateway_sync_endpoints_forward_to_the_upstream(
    echo: LocalBatchServer, gateway: LocalBatchServer
) -> None:
    with client_for(gateway) as client:
        answer = client.chat.completions.create(
            model="echo-1", messages=[{"role": "user", "content": "hello through the gateway"}]
        )
        assert answer.choices[0].message.content == "hello through the gateway"
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(
                model="echo-1", messages=[{"role": "user", "content": "x"}], max_tokens=0
            )
        assert caught.value.code == "invalid_value"
    assert [c["prompt"] for c in echo.sync_calls()] == ["hello through the gateway", "x"]


# -- upstream errors ------------------------------------------------------------------------


def test_upstream_429s_500s_and_dropped_connections_are_retried(
    echo: LocalBatchServer, gateway: LocalBatchServer
) -> None:
    echo.inject_fault("POST", "/chat/completions", "429", times=3)
    echo.inject_fault("POST", "/chat/completions", "500", times=2)
    echo.inject_fault("POST", "/chat/completions", "drop_before", times=1)
    df = frame(12).drop(columns="params")
    out = df.netmind.batch_complete("Say {text}", model="m", retries=0, **kwargs_for(gateway))
    assert (out["status"] == "ok").all()
    assert echo.pending_faults() == []
    assert len(echo.sync_calls()) == 12  # faulted calls never reached the engine


def test_upstream_errors_that_persist_become_error_lines(echo: LocalBatchServer) -> None:
    """One request in flight and one retry: the first request gets 500 twice, the second
    429 twice; both are recorded with the upstream's status code and error envelope."""
    echo.inject_fault("POST", "/chat/completions", "500", times=2)
    echo.inject_fault("POST", "/chat/completions", "429", times=2)
    with (
        LocalBatchServer(
            upstream=echo.openai_base_url, concurrency=1, upstream_retries=1, shuffle=False
        ) as gateway,
        client_for(gateway) as client,
    ):
        batch = wait_terminal(client, start_batch(client, rows(4)).id)
        errors = {
            line["custom_id"]: line["response"] for line in content(client, batch.error_file_id)
        }
        ok = content(client, batch.output_file_id)
    assert batch.status == "completed"
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 2)
    assert sorted(line["custom_id"] for line in ok) == ["2", "3"]
    assert errors["0"]["status_code"] == 500
    assert errors["0"]["body"]["error"]["type"] == "server_error"
    assert errors["1"]["status_code"] == 429
    assert errors["1"]["body"]["error"]["code"] == "rate_limit_exceeded"


def test_the_library_reports_and_retries_upstream_errors(echo: LocalBatchServer) -> None:
    echo.inject_fault("POST", "/chat/completions", "500", times=2)
    df = frame(3).drop(columns="params")
    with LocalBatchServer(
        upstream=echo.openai_base_url, concurrency=1, upstream_retries=1, shuffle=False
    ) as gateway:
        failed = df.netmind.batch_complete(
            "Say {text}", model="m", retries=0, **kwargs_for(gateway)
        )
        echo.inject_fault("POST", "/chat/completions", "500", times=2)
        retried = df.netmind.batch_complete("Say {text}", model="m", **kwargs_for(gateway))
    assert list(failed["status"]) == ["failed", "ok", "ok"]
    assert failed["error_code"].iloc[0] == "server_error"
    assert (retried["status"] == "ok").all()


def test_an_unreachable_upstream_gives_connection_error_lines() -> None:
    with (
        closed_port() as port,
        LocalBatchServer(upstream=f"http://127.0.0.1:{port}/v1", upstream_retries=0) as gateway,
    ):
        out = frame(3).netmind.batch_complete(
            "Say {text}", model="m", retries=0, **kwargs_for(gateway)
        )
    assert set(out["status"]) == {"failed"}
    assert set(out["error_code"]) == {"connection_error"}
    assert "could not be reached" in out["error_message"].iloc[0]


def test_the_upstream_key_is_sent_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-upstream-very-secret"
    caplog.set_level(logging.DEBUG)
    with (
        LocalBatchServer(api_key=secret) as echo,
        LocalBatchServer(upstream=echo.openai_base_url, upstream_api_key=secret) as keyed,
        LocalBatchServer(upstream=echo.openai_base_url, upstream_retries=0) as keyless,
    ):
        ok = frame(4).netmind.batch_complete("Say {text}", model="m", **kwargs_for(keyed))
        refused = frame(4).netmind.batch_complete(
            "Say {text}", model="m", retries=0, **kwargs_for(keyless)
        )
        shown = repr(keyed) + str(vars(keyed))
    assert (ok["status"] == "ok").all()
    assert set(refused["status"]) == {"failed"}
    assert "API key" in refused["error_message"].iloc[0]
    assert secret not in shown.replace(f"'_upstream_key': '{secret}'", "")
    assert secret not in caplog.text


# -- restart --------------------------------------------------------------------------------


def test_a_gateway_restart_resends_nothing_that_finished(
    echo: LocalBatchServer, tmp_path: Path
) -> None:
    echo.inject_fault("POST", "/chat/completions", "delay:0.03", times=10_000)
    n = 60
    with (
        LocalBatchServer(upstream=echo.openai_base_url, concurrency=2, data_dir=tmp_path) as gw,
        client_for(gw) as client,
    ):
        created = start_batch(client, rows(n))
        wait_for(lambda: client.batches.retrieve(created.id).request_counts.completed >= 8)
    before = {e["custom_id"] for e in gw.executions()}
    assert 8 <= len(before) < n
    with (
        LocalBatchServer(upstream=echo.openai_base_url, concurrency=2, data_dir=tmp_path) as gw2,
        client_for(gw2) as client,
    ):
        batch = wait_terminal(client, created.id, timeout=60)
        lines = content(client, batch.output_file_id)
    after = {e["custom_id"] for e in gw2.executions()}
    assert batch.status == "completed" and batch.request_counts.completed == n
    assert not before & after
    assert before | after == {str(i) for i in range(n)}
    assert sorted(int(line["custom_id"]) for line in lines) == list(range(n))
    sent = Counter(c["prompt"] for c in echo.sync_calls())
    assert all(sent[f"row {i} text"] == 1 for i in map(int, before))
    # Only requests whose answers were not saved when the gateway stopped were sent twice.
    assert n <= sum(sent.values()) <= n + 4


# -- the engine's parts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param("2.5", 2.5, id="seconds"),
        pytest.param("3600", MAX_WAIT, id="capped"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
    ],
)
def test_retry_after(header: str | None, expected: float | None) -> None:
    assert retry_after(header) == expected


def test_a_429_waits_as_long_as_retry_after_says() -> None:
    calls: list[float] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx2.Response(429, headers={"Retry-After": "0.3"}, json={"error": {}})
        return httpx2.Response(200, json={"choices": [], "usage": {}})

    upstream = Upstream(
        "http://upstream.test/v1", concurrency=1, transport=httpx2.MockTransport(answer)
    )
    try:
        line = {"custom_id": "a", "url": "/v1/chat/completions"}
        result = orjson.loads(upstream.line(line, b"{}"))
    finally:
        upstream.close()
    assert result["response"]["status_code"] == 200
    assert calls[1] - calls[0] >= 0.3


def test_a_body_that_is_not_json_is_kept_readable() -> None:
    line = orjson.loads(answer_line("7", 502, b"<html>Bad gateway</html>"))
    assert line["response"]["status_code"] == 502
    assert line["response"]["body"]["error"]["code"] == "http_502"
    assert "Bad gateway" in line["response"]["body"]["error"]["message"]
    ok_but_html = orjson.loads(answer_line("8", 200, b"<html>hi</html>"))
    assert ok_but_html["response"]["status_code"] == 502


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"upstream": "ftp://x/v1"}, id="not-http"),
        pytest.param({"upstream": "http:///v1"}, id="no-host"),
        pytest.param({"upstream": "http://x/v1", "concurrency": 0}, id="no-concurrency"),
        pytest.param({"upstream": "http://x/v1", "upstream_retries": -1}, id="negative-retries"),
        pytest.param({"upstream": "http://x/v1", "upstream_api_key": ""}, id="empty-key"),
    ],
)
def test_bad_upstream_settings_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        LocalBatchServer(**kwargs)


def test_an_open_gateway_is_refused() -> None:
    """A gateway beyond loopback without a key would let anyone spend the upstream's key."""
    with pytest.raises(ValueError, match="spend the upstream's key"):
        LocalBatchServer(host="0.0.0.0", upstream="http://127.0.0.1:9/v1", upstream_api_key="u")
    gateway = LocalBatchServer(host="0.0.0.0", upstream="http://127.0.0.1:9/v1", api_key="k")
    assert gateway.upstream == "http://127.0.0.1:9/v1"


# -- netmind-frames serve --upstream ----------------------------------------------------------


def _serve_parser() -> Any:
    import argparse

    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    return top


def test_serve_upstream_flags() -> None:
    args = _serve_parser().parse_args(
        ["serve", "--upstream", "http://127.0.0.1:9/v1/", "--upstream-key-env", "VLLM_KEY",
         "--concurrency", "16", "--upstream-retries", "2"]
    )  # fmt: skip
    assert (args.upstream, args.upstream_key_env) == ("http://127.0.0.1:9/v1", "VLLM_KEY")
    assert (args.concurrency, args.upstream_retries) == (16, 2)
    defaults = _serve_parser().parse_args(["serve"])
    assert (defaults.upstream, defaults.concurrency) == (None, 8)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--upstream", "not a url"], id="bad-url"),
        pytest.param(["--concurrency", "0"], id="no-concurrency"),
        pytest.param(["--upstream-key-env", "sk-abc.def"], id="key-given-as-env-name"),
    ],
)
def test_serve_refuses_bad_upstream_flags(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        _serve_parser().parse_args(["serve", *argv])
    assert "sk-abc" not in capsys.readouterr().err


def test_serve_refuses_an_unset_upstream_key_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_SUCH_UPSTREAM_KEY", raising=False)
    args = _serve_parser().parse_args(
        ["serve", "--port", "0", "--upstream", "http://127.0.0.1:9/v1",
         "--upstream-key-env", "NO_SUCH_UPSTREAM_KEY"]
    )  # fmt: skip
    assert run_serve(args, stop=threading.Event()) == 2
    assert "NO_SUCH_UPSTREAM_KEY" in capsys.readouterr().err


def test_serve_as_a_gateway_runs_batches_and_never_prints_the_key(
    echo: LocalBatchServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UPSTREAM_TEST_KEY", "sk-gateway-secret")
    args = _serve_parser().parse_args(
        ["serve", "--port", "0", "--upstream", echo.openai_base_url,
         "--upstream-key-env", "UPSTREAM_TEST_KEY", "--concurrency", "3"]
    )  # fmt: skip
    out = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_serve(args, stop=stop, out=out)))
    thread.start()
    try:
        text = wait_for(lambda: "Ctrl-C" in out.getvalue() and out.getvalue())
        match = re.search(r"OpenAI base URL:\s+(\S+)", text)
        assert match is not None
        assert f"gateway to {echo.openai_base_url}" in text
        with openai.OpenAI(base_url=match.group(1), api_key="any", max_retries=0) as client:
            batch = wait_terminal(client, start_batch(client, rows(5)).id)
        assert batch.status == "completed" and batch.request_counts.completed == 5
    finally:
        stop.set()
        thread.join()
    assert result == [0]
    assert "sk-gateway-secret" not in out.getvalue()
    assert "$UPSTREAM_TEST_KEY" in out.getvalue()
