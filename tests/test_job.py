"""BatchJob: polling, progress, odd Batch shapes, failures, timeouts, Ctrl-C and reattaching."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import httpx2
import openai
import pandas as pd
import pytest
from conftest import connection_kwargs

import netmind_frames
from netmind_frames import (
    BatchFailedError,
    BatchJob,
    InputError,
    JobTimeoutError,
    LocalBatchServer,
    batch_complete,
)
from netmind_frames.jobs._journal import Journal
from netmind_frames.jobs._options import JobOptions
from netmind_frames.transport._config import resolve_settings
from netmind_frames.transport._connection import connect

ROOT = Path(__file__).resolve().parents[1]


class NetmindShapedBatches(httpx2.BaseTransport):
    """Forward to the real server, but answer the first polls in the shape of Netmind's guide.

    batch-api.md §5.0: status ``pending`` (not in OpenAI's enum), empty ``endpoint`` and
    ``completion_window``, null ``created_at`` and ``input_file_id``. The server cannot be
    asked to answer like that, so this one transport rewrites it.
    """

    def __init__(self, polls_to_rewrite: int) -> None:
        self._inner = httpx2.HTTPTransport()
        self.left = polls_to_rewrite

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        is_retrieve = request.method == "GET" and "/batches/batch" in request.url.path
        if not (is_retrieve and self.left > 0):
            return response
        self.left -= 1
        body = json.loads(response.read())
        body.update(
            status="pending",
            endpoint="",
            completion_window="",
            created_at=None,
            input_file_id=None,
            request_counts=None,
            unknown_field={"x": 1},
        )
        return httpx2.Response(200, json=body, headers={"content-type": "application/json"})


def test_netmind_shaped_batches_are_polled_until_terminal(server, reviews):
    transport = NetmindShapedBatches(polls_to_rewrite=3)
    with openai.OpenAI(
        base_url=server.base_url,
        api_key=server.api_key,
        http_client=httpx2.Client(transport=transport),
    ) as client:
        out = reviews.netmind.batch_complete(
            "{text}", model="m", client=client, poll_interval=0.01, progress=False
        )
    assert transport.left == 0
    assert list(out["response"]) == list(reviews["text"])


def test_progress_bar_shows_requests_and_status(server, reviews, capsys):
    kwargs = connection_kwargs(server, "netmind") | {"progress": True}
    reviews.netmind.batch_complete("{text}", model="m", **kwargs)
    err = capsys.readouterr().err
    assert f"{len(reviews)}/{len(reviews)}" in err
    assert "completed" in err


def test_progress_false_prints_nothing(server, reviews, capsys):
    reviews.netmind.batch_complete("{text}", model="m", **connection_kwargs(server, "openai"))
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_timeout_raises_with_the_job_id_and_the_job_goes_on(reviews):
    with LocalBatchServer(seconds_per_request=0.05) as srv:
        job = reviews.netmind.submit("{text}", model="m", **connection_kwargs(srv, "netmind"))
        with pytest.raises(JobTimeoutError) as info:
            job.wait(timeout=0.1)
        assert isinstance(info.value, TimeoutError)
        assert info.value.job_id == job.id
        assert job.id in str(info.value)
        out = job.result()
    assert (out["status"] == "ok").all()


def test_failed_batch_raises_with_the_servers_errors(openai_client, tmp_path):
    """A batch whose file fails validation raises BatchFailedError carrying errors.data."""
    client = openai_client
    good = b'{"custom_id": "0", "method": "POST", "url": "/v1/chat/completions", "body": {}}'
    bad = good + b"\nnot json\n"
    file = client.files.create(file=("bad.jsonl", bad, "application/jsonl"), purpose="batch")
    batch = client.batches.create(
        input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    frame = pd.DataFrame({"t": ["a"]})
    settings = resolve_settings(client=client)
    job = BatchJob(
        connect(settings, client),
        Journal(tmp_path),
        JobOptions(model="m", max_bytes=settings.max_bytes, prompt="{t}"),
        frame,
        [batch.id],
        poll_interval=0.01,
        progress=False,
    )
    with pytest.raises(BatchFailedError, match="invalid_json_line") as info:
        job.wait()
    assert info.value.batch_id == batch.id
    assert info.value.errors[0]["line"] == 2


def test_attach_from_the_job_id_gives_the_same_result(server, reviews):
    kwargs = connection_kwargs(server, "openai")
    job = reviews.netmind.submit("{text}", model="m", max_requests=5, **kwargs)
    original = job.result()
    again = BatchJob.attach(
        job.id, frame=reviews, prompt="{text}", model="m", max_requests=5, **kwargs
    )
    assert again.batch_ids == job.batch_ids
    pd.testing.assert_frame_equal(again.result(), original)


def test_attach_refuses_a_different_frame(server, reviews):
    kwargs = connection_kwargs(server, "netmind")
    job = reviews.netmind.submit("{text}", model="m", **kwargs)
    other = reviews.assign(text=reviews["text"].str.upper())
    with pytest.raises(InputError, match="same frame"):
        BatchJob.attach(job.id, frame=other, prompt="{text}", model="m", **kwargs)


def test_ctrl_c_leaves_the_batch_running_and_prints_how_to_reattach(tmp_path):
    """SIGINT while waiting: the batch keeps running, the printed attach line works."""
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(40)]})
    frame.to_parquet(tmp_path / "in.parquet")
    with LocalBatchServer(seconds_per_request=0.05) as srv:
        script = textwrap.dedent(
            f"""
            import pandas as pd, netmind_frames
            df = pd.read_parquet({str(tmp_path / "in.parquet")!r})
            job = df.netmind.submit("{{text}}", model="m", base_url={srv.base_url!r},
                                    api_key={srv.api_key!r}, poll_interval=0.05, progress=False)
            print(job.id, flush=True)
            job.wait()
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        job_id = proc.stdout.readline().strip()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode != 0
        assert "KeyboardInterrupt" in err
        assert f"BatchJob.attach({job_id!r}" in err

        assert job_id.startswith("job-")
        job = BatchJob.attach(
            job_id,
            frame=frame,
            prompt="{text}",
            model="m",
            base_url=srv.base_url,
            api_key=srv.api_key,
            poll_interval=0.05,
            progress=False,
        )
        assert job.status not in ("cancelling", "cancelled")
        out = job.result()
    assert (out["status"] == "ok").all()
    assert list(out["response"]) == list(frame["text"])


def test_repr_never_shows_the_key(reviews):
    secret = "sk-sentinel-123456789"
    with LocalBatchServer(api_key=secret) as srv:
        job = reviews.netmind.submit(
            "{text}",
            model="m",
            base_url=srv.base_url,
            api_key=secret,
            poll_interval=0.05,
            progress=False,
        )
        job.wait()
        text = io.StringIO()
        print(repr(job), repr(job._connection), repr(job._connection.settings), file=text)
        assert secret not in text.getvalue()
        assert secret not in repr(srv)


def ok_executions(srv: LocalBatchServer) -> Counter[str]:
    """How many times the server answered each prompt successfully, over all batches."""
    return Counter(e["prompt"] for e in srv.executions() if 200 <= e["status_code"] < 300)


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"fail_rate": 0.25, "seed": 7}, id="fail-rate"),
        pytest.param({"seconds_per_request": 0.004, "expire_after": 0.15}, id="expire-after"),
    ],
)
def test_retries_recover_rows_and_never_resend_an_answered_row(dialect, knobs):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(80)]})
    with LocalBatchServer(**knobs) as srv:
        job = netmind_frames.submit(
            frame, "{text}", model="m", retries=8, **connection_kwargs(srv, dialect)
        )
        out = job.result()
        answered = ok_executions(srv)
    assert job.retry_batch_ids, "the knob should have made some rows fail"
    assert (out["status"] == "ok").all()
    assert list(out["response"]) == list(frame["text"])
    assert all(answered[text] == 1 for text in frame["text"]), answered.most_common(3)


def test_retries_zero_keeps_failures_and_rerunning_retries_reattaches(fresh_server):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(60)]})
    with LocalBatchServer(fail_rate=0.3, seed=11) as srv:
        kwargs = connection_kwargs(srv, "netmind")
        none = batch_complete(frame, "{text}", model="m", retries=0, **kwargs)
        assert (none["status"] == "failed").any()
        first = batch_complete(frame, "{text}", model="m", retries=3, **kwargs)
        with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
            created = len(list(client.batches.list(limit=100)))
            again = batch_complete(frame, "{text}", model="m", retries=3, **kwargs)
            assert len(list(client.batches.list(limit=100))) == created
    pd.testing.assert_frame_equal(first, again)


def test_request_errors_are_not_retried(server, monkeypatch):
    """A 400 (a bad request body) would fail the same way again: it is not resent."""
    from netmind_frames.build import _rowparams

    # The library refuses max_tokens="many" before upload; let it through to get the 400.
    monkeypatch.setattr(_rowparams, "check_param_types", lambda params: None)
    frame = pd.DataFrame({"text": ["fine", "also fine"]})
    out = batch_complete(
        frame,
        "{text}",
        model="m",
        max_tokens="many",
        retries=3,
        **connection_kwargs(server, "openai"),
    )
    assert (out["status"] == "failed").all()
    assert out["error_message"].notna().all()
