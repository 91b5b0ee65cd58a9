"""Shared fixtures: real local batch servers on loopback (no mocks)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pandas as pd
import pytest

from netmind_frames.server import LocalBatchServer

with contextlib.suppress(ImportError):  # the server suite's own fixtures, if it has some
    from conftest_server import *  # noqa: F403

DIALECTS = ("netmind", "openai")


@pytest.fixture(autouse=True)
def _isolated_journal(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Each test gets its own journal folder, so no test reattaches to another's batches."""
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(tmp_path_factory.mktemp("home")))
    monkeypatch.delenv("NETMIND_API_KEY", raising=False)
    monkeypatch.delenv("NETMIND_BASE_URL", raising=False)
    monkeypatch.delenv("NETMIND_FILES_URL", raising=False)


@pytest.fixture(scope="session")
def server() -> Iterator[LocalBatchServer]:
    """One immediate server for the whole session (state is shared: don't count files on it)."""
    with LocalBatchServer(seed=0) as srv:
        yield srv


@pytest.fixture
def openai_client(server: LocalBatchServer) -> Iterator[openai.OpenAI]:
    """The official client on the session server's OpenAI dialect, closed afterwards."""
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        yield client


@pytest.fixture
def fresh_server() -> Iterator[LocalBatchServer]:
    """A new, empty, immediate server for one test."""
    with LocalBatchServer(seed=1) as srv:
        yield srv


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once per provider dialect."""
    return str(request.param)


def connection_kwargs(srv: LocalBatchServer, dialect: str) -> dict[str, Any]:
    """The keyword arguments that point the library at ``srv`` in ``dialect``."""
    base_url = srv.base_url if dialect == "netmind" else srv.openai_base_url
    return {"base_url": base_url, "api_key": srv.api_key, "poll_interval": 0.05, "progress": False}


def uploaded_files(srv: LocalBatchServer) -> list[Any]:
    """Every file on the server, through Netmind's File API listing (a bare JSON array)."""
    response = httpx2.get(
        f"{srv.origin}/v1/files", headers={"Authorization": f"Bearer {srv.api_key}"}
    )
    response.raise_for_status()
    files = response.json()
    assert isinstance(files, list)
    return files


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs.

    The socket stays bound (never listening), so a server started meanwhile on port 0, such
    as a gateway whose upstream is this port, cannot be given it: a port merely bound and
    closed can be handed out again at once, and the "unreachable" address is then a live one.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def server_batches(srv: LocalBatchServer) -> list[Any]:
    """Every batch on the server, newest first, through the openai client."""
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as c:
        return list(c.batches.list(limit=100))


def until_answered(srv: LocalBatchServer, timeout: float = 60) -> None:
    """Wait until the server has answered at least one batch request (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(b.request_counts.completed or 0 for b in server_batches(srv)):
            return
        time.sleep(0.1)


def assert_paid_once(srv: LocalBatchServer, shards: int) -> None:
    """Each of ``shards`` shards has exactly one batch that ran on the server.

    A worker killed half-way through a Netmind upload leaves a named file without its bytes;
    the next attempt may reuse it, see its batch fail validation (nothing ran, nothing billed)
    and submit once more. Such a batch is allowed, and only such a one.
    """
    batches = server_batches(srv)
    by_key: dict[str, list[Any]] = {}
    for b in batches:
        by_key.setdefault(b.metadata["netmind_frames_fingerprint"], []).append(b)
    assert len(by_key) == shards, [(b.id, b.metadata, b.status) for b in batches]
    for key, found in by_key.items():
        ran = [b for b in found if b.status != "failed"]
        assert len(ran) == 1, (key, [(b.id, b.status, b.request_counts) for b in found])
        for b in found:
            if b.status == "failed":
                assert b.request_counts.completed == b.request_counts.failed == 0, b
                assert b.errors is not None and b.errors.data, b


@pytest.fixture
def reviews() -> pd.DataFrame:
    """A small frame with a non-default, duplicated string index."""
    texts = [f"review number {i} says {'good' if i % 3 else 'bad'} things" for i in range(12)]
    return pd.DataFrame(
        {"text": texts, "stars": [i % 5 + 1 for i in range(12)]},
        index=pd.Index([f"k{i % 4}" for i in range(12)], name="key"),
    )
