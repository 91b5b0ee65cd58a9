"""``BatchJob.wait/result/to_parquet(timeout=...)`` check ``timeout`` as the entry points do.

A wrong type or a negative, NaN or infinite value raises the same ``InputError`` as
``batch_complete(timeout=...)``, before the job sends a single request.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import numpy as np
import openai
import pandas as pd
import pytest

import netmind_frames
from netmind_frames import BatchJob, InputError, LocalBatchServer, NetmindFramesError


class CountingTransport(httpx2.BaseTransport):
    """Forward every request to the real server, counting them."""

    def __init__(self) -> None:
        self._inner = httpx2.HTTPTransport()
        self.requests = 0

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        return self._inner.handle_request(request)


BAD = [
    pytest.param("10", id="str"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param(-1, id="negative"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(float("inf"), id="inf"),
    pytest.param([10], id="list"),
]

METHODS = ["wait", "result", "to_parquet"]


def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": ["a", "b", "c"]})


@pytest.fixture
def counted(server: LocalBatchServer) -> Iterator[tuple[openai.OpenAI, CountingTransport]]:
    transport = CountingTransport()
    with openai.OpenAI(
        base_url=server.base_url,
        api_key=server.api_key,
        http_client=httpx2.Client(transport=transport),
    ) as client:
        yield client, transport


def submitted(client: openai.OpenAI) -> BatchJob:
    return netmind_frames.submit(
        frame(), "{text}", model="m", client=client, poll_interval=0.05, progress=False
    )


def call(job: BatchJob, method: str, timeout: Any, tmp_path: Any) -> Any:
    if method == "to_parquet":
        return job.to_parquet(tmp_path / "out.parquet", timeout=timeout)
    return getattr(job, method)(timeout=timeout)


@pytest.mark.parametrize("timeout", BAD)
@pytest.mark.parametrize("method", METHODS)
def test_a_bad_timeout_is_an_input_error_before_any_request(counted, tmp_path, method, timeout):
    client, transport = counted
    job = submitted(client)
    before = transport.requests
    assert before > 0  # the counter sees the job's traffic
    with pytest.raises(InputError, match=r"^timeout must be a number of seconds > 0, not "):
        call(job, method, timeout, tmp_path)
    assert transport.requests == before
    assert not (tmp_path / "out.parquet").exists()
    # The job is untouched: it still finishes and joins.
    assert list(job.result()["response"]) == ["a", "b", "c"]


@pytest.mark.parametrize("timeout", BAD)
def test_the_job_and_the_entry_point_raise_the_same_error(counted, timeout):
    client, _ = counted
    job = submitted(client)
    with pytest.raises(NetmindFramesError) as from_job:
        job.wait(timeout=timeout)
    with LocalBatchServer(seed=4) as quiet:
        with pytest.raises(NetmindFramesError) as from_entry:
            netmind_frames.batch_complete(
                frame(),
                "{text}",
                model="m",
                timeout=timeout,
                base_url=quiet.base_url,
                api_key=quiet.api_key,
                progress=False,
            )
        with httpx2.Client(base_url=quiet.origin) as http:
            assert http.get("/v1/files").json() == []
    assert type(from_job.value) is type(from_entry.value) is InputError
    assert str(from_job.value) == str(from_entry.value)


@pytest.mark.parametrize("method", METHODS)
def test_a_bad_timeout_is_checked_even_once_the_job_is_done(counted, tmp_path, method):
    client, transport = counted
    job = submitted(client)
    job.result()
    before = transport.requests
    with pytest.raises(InputError, match="timeout"):
        call(job, method, "soon", tmp_path)
    assert transport.requests == before


@pytest.mark.parametrize("timeout", [None, 0, 0.0, 30, 30.5, np.float64(30.0)])
def test_good_timeouts_are_accepted(counted, tmp_path, timeout):
    client, _ = counted
    job = submitted(client)
    assert job.wait(timeout=30) is job  # finished before the possibly-zero timeouts below
    assert job.wait(timeout=timeout) is job
    assert list(job.result(timeout=timeout)["response"]) == ["a", "b", "c"]
    assert job.to_parquet(tmp_path / "out.parquet", timeout=timeout) == {"ok": 3}
