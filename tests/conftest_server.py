"""Fixtures and helpers of the local batch server's tests (real servers on loopback)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, TypeVar

import httpx2
import openai
import orjson
import pytest

from netmind_frames.server import LocalBatchServer

T = TypeVar("T")
ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def request_line(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    """One batch input line asking the echo model to answer ``text``."""
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": "echo-1", "messages": [{"role": "user", "content": text}], **body},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    """Encode lines as JSONL bytes."""
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def rows(n: int, **body: Any) -> bytes:
    """A valid input file of ``n`` requests with custom_ids ``"0"``.. and texts ``row <i>``."""
    return jsonl([request_line(str(i), f"row {i} text", **body) for i in range(n)])


def parse_jsonl(data: bytes) -> list[dict[str, Any]]:
    """Decode JSONL bytes (blank lines skipped)."""
    return [orjson.loads(line) for line in data.splitlines() if line.strip()]


def wait_for(check: Callable[[], T | None], *, timeout: float = 20.0, interval: float = 0.01) -> T:
    """Call ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(interval)


def wait_terminal(client: openai.OpenAI, batch_id: str, *, timeout: float = 20.0) -> Any:
    """Poll a batch until it is terminal and return it."""

    def done() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in TERMINAL else None

    return wait_for(done, timeout=timeout)


def upload(client: openai.OpenAI, data: bytes, name: str = "batch.jsonl") -> str:
    """Upload through OpenAI's multipart File API; return the file id."""
    return client.files.create(file=(name, data, "application/jsonl"), purpose="batch").id


def start_batch(client: openai.OpenAI, data: bytes, **kwargs: Any) -> Any:
    """Upload ``data`` and create a batch on it."""
    return client.batches.create(
        input_file_id=upload(client, data),
        endpoint=ENDPOINT,
        completion_window="24h",
        **kwargs,
    )


def run_batch(client: openai.OpenAI, data: bytes, **kwargs: Any) -> Any:
    """Upload, create and wait for a batch; return the terminal Batch."""
    return wait_terminal(client, start_batch(client, data, **kwargs).id)


def content(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The lines of a result file, or [] for None."""
    return [] if file_id is None else parse_jsonl(client.files.content(file_id).content)


@pytest.fixture
def local_server() -> Iterator[LocalBatchServer]:
    """A new, empty, immediate server."""
    with LocalBatchServer(seed=7) as srv:
        yield srv


@pytest.fixture
def oai(local_server: LocalBatchServer) -> Iterator[openai.OpenAI]:
    """An openai client on ``local_server`` (OpenAI dialect), without retries."""
    with openai.OpenAI(
        base_url=local_server.openai_base_url, api_key=local_server.api_key, max_retries=0
    ) as client:
        yield client


@pytest.fixture
def http(local_server: LocalBatchServer) -> Iterator[httpx2.Client]:
    """A plain HTTP client on ``local_server``'s origin, with its API key."""
    headers = {"Authorization": f"Bearer {local_server.api_key}"}
    with httpx2.Client(base_url=local_server.origin, headers=headers) as client:
        yield client
