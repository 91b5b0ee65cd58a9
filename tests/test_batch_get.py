"""Batches read with plain GETs (``netmind-frames status``): the same answers the openai client
gets, retries on faults, and errors that name the URL but never the key."""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import openai
import pytest
from conftest import DIALECTS, closed_port
from conftest_server import rows, run_batch

from netmind_frames._errors import ConfigurationError
from netmind_frames.server import LocalBatchServer
from netmind_frames.transport import _batch_get
from netmind_frames.transport._batch_get import BatchReadError, read_batches
from netmind_frames.transport._config import resolve_settings


def settings_for(srv: LocalBatchServer, dialect: str, api_key: str | None = None):
    base_url = srv.base_url if dialect == "netmind" else srv.openai_base_url
    return resolve_settings(base_url=base_url, api_key=api_key or srv.api_key)


@pytest.fixture(autouse=True)
def no_proxy_from_the_machine(monkeypatch):
    """The tests choose their own proxies: none from the machine running them."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


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
    with closed_port() as port:
        base_url = f"http://127.0.0.1:{port}/v1"
        settings = resolve_settings(base_url=base_url, api_key="sk-unreachable-key")
        with pytest.raises(
            ConfigurationError, match=rf"cannot reach the base URL {base_url}"
        ) as info:
            read_batches(settings, ["batch_1"], sleep=pytest.fail)
    assert "sk-unreachable-key" not in str(info.value)


def test_one_connection_serves_every_batch(keyed, monkeypatch):
    opened: list[object] = []
    create = socket.create_connection

    def counted(*args, **kwargs):  # the real function, counted
        opened.append(args[0])
        return create(*args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", counted)
    batch = keyed.batch  # type: ignore[attr-defined]
    states = read_batches(settings_for(keyed, "openai"), [batch.id] * 4)
    assert [s.status for s in states] == ["completed"] * 4
    assert len(opened) == 1


def test_a_read_timeout_is_retried_on_a_new_connection(keyed, monkeypatch):
    monkeypatch.setattr(_batch_get, "READ_TIMEOUT", 0.2)
    keyed.inject_fault("GET", "/batches/.*", "delay:1", times=1)
    waits: list[float] = []
    batch = keyed.batch  # type: ignore[attr-defined]
    [state] = read_batches(settings_for(keyed, "netmind"), [batch.id], sleep=waits.append)
    assert (state.status, waits) == ("completed", [0.25])


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A plain-HTTP forward proxy: GET of an absolute URL, forwarded with its headers."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Proxy-Authorization")))
        url = urlsplit(self.path)
        target = http.client.HTTPConnection(url.netloc, timeout=5)
        forwarded = {k: v for k, v in self.headers.items() if k != "Proxy-Authorization"}
        target.request("GET", url.path, headers=forwarded)
        answer = target.getresponse()
        body = answer.read()
        target.close()
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://user:p%40ss@127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_environments_proxy_is_used(keyed, proxy, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", proxy)
    settings = settings_for(keyed, "netmind")
    batch = keyed.batch  # type: ignore[attr-defined]
    [state] = read_batches(settings, [batch.id])
    assert state.status == "completed"
    [(path, auth)] = _Proxy.seen
    assert path == f"{settings.base_url}/batches/{batch.id}"
    assert auth == "Basic dXNlcjpwQHNz"  # user:p@ss


def test_no_proxy_bypasses_it_and_an_unreachable_proxy_is_named(keyed, monkeypatch):
    with closed_port() as port:
        dead = f"127.0.0.1:{port}"
        monkeypatch.setenv("http_proxy", f"http://{dead}")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        batch = keyed.batch  # type: ignore[attr-defined]
        [state] = read_batches(settings_for(keyed, "netmind"), [batch.id])
        assert state.status == "completed"
        monkeypatch.delenv("NO_PROXY")
        with pytest.raises(ConfigurationError, match=rf"through the proxy {dead}"):
            read_batches(settings_for(keyed, "netmind"), [batch.id], sleep=pytest.fail)


def test_a_socks_proxy_is_refused_naming_it(keyed, monkeypatch):
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match=r"proxy socks5://127.0.0.1:1080 .* not supported"):
        read_batches(settings_for(keyed, "netmind"), [keyed.batch.id])  # type: ignore[attr-defined]
