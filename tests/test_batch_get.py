"""Batches read with plain GETs (``netmind-frames status``): the same answers the openai client
gets, retries on faults, and errors that name the URL but never the key."""

from __future__ import annotations

import socket
from pathlib import Path

import openai
import pytest
from conftest import DIALECTS
from conftest_server import rows, run_batch

from netmind_frames._errors import ConfigurationError
from netmind_frames.server import LocalBatchServer
from netmind_frames.transport._batch_get import BatchReadError, read_batches
from netmind_frames.transport._config import resolve_settings


def settings_for(srv: LocalBatchServer, dialect: str, api_key: str | None = None):
    base_url = srv.base_url if dialect == "netmind" else srv.openai_base_url
    return resolve_settings(base_url=base_url, api_key=api_key or srv.api_key)


@pytest.fixture(scope="module")
def keyed() -> LocalBatchServer:
    """A server that checks its API key, with one finished batch of 3 requests."""
    with LocalBatchServer(seed=5, api_key="sk-secret-status-key") as srv:
        with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
            srv.batch = run_batch(client, rows(3))  # type: ignore[attr-defined]
        yield srv


@pytest.mark.parametrize("dialect", DIALECTS)
def test_reads_what_the_openai_client_reads(keyed, dialect):
    batch = keyed.batch  # type: ignore[attr-defined]
    [state] = read_batches(settings_for(keyed, dialect), [batch.id])
    counts = batch.request_counts
    assert (state.id, state.status) == (batch.id, batch.status) == (batch.id, "completed")
    assert (state.completed, state.failed, state.total) == (
        counts.completed, counts.failed, counts.total,
    ) == (3, 0, 3)  # fmt: skip


@pytest.mark.parametrize("action", ["429", "500", "drop_before"])
def test_retries_busy_answers_and_dropped_connections(keyed, action):
    keyed.inject_fault("GET", "/batches/.*", action, times=2)
    waits: list[float] = []
    [state] = read_batches(
        settings_for(keyed, "netmind"),
        [keyed.batch.id],
        sleep=waits.append,  # type: ignore[attr-defined]
    )
    assert state.status == "completed"
    assert waits == [0.25, 0.5]
    assert keyed.pending_faults() == []


def test_gives_up_after_the_last_attempt(keyed):
    keyed.inject_fault("GET", "/batches/.*", "500", times=10)
    try:
        with pytest.raises(BatchReadError, match=r"answered 500"):
            read_batches(settings_for(keyed, "netmind"), ["batch_x"], sleep=lambda s: None)
    finally:
        keyed.clear_faults()


def test_a_refused_key_is_an_error_that_does_not_repeat_it(keyed):
    wrong = "sk-wrong-key-never-shown"
    with pytest.raises(BatchReadError, match=r"answered 401") as info:
        read_batches(settings_for(keyed, "openai", api_key=wrong), [keyed.batch.id])  # type: ignore[attr-defined]
    assert wrong not in str(info.value)
    assert "/v1/batches/" in str(info.value)


def test_an_unknown_batch_is_named(keyed):
    with pytest.raises(BatchReadError, match=r"batches/batch_nope answered 404"):
        read_batches(settings_for(keyed, "openai"), ["batch_nope"])


def test_an_unreachable_base_url_fails_at_once_naming_it(tmp_path: Path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    settings = resolve_settings(base_url=base_url, api_key="sk-unreachable-key")
    with pytest.raises(ConfigurationError, match=rf"cannot reach the base URL {base_url}") as info:
        read_batches(settings, ["batch_1"], sleep=pytest.fail)
    assert "sk-unreachable-key" not in str(info.value)
