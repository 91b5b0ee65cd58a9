"""Chaos runs: faults on every call, cut downloads, a server killed mid-batch, a client
killed mid-poll, and malformed server answers.

Each run ends with the result of a clean run and no duplicate batch; a malformed answer is
tolerated where the contract allows (and warned about), a clear error otherwise, and never
joined to a wrong row. ``test_properties.py`` covers random frames; ``test_submit.py`` the
single lost answers and the 30% fault rate, which this module does not repeat.

The long soak (many seeds, long outages) runs with ``NETMIND_FRAMES_SOAK=1 pytest -m soak``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pandas as pd
import pytest
from conftest import connection_kwargs

import netmind_frames
from netmind_frames import BatchFailedError, LocalBatchServer, batch_complete
from netmind_frames.cli import main
from netmind_frames.transport._config import resolve_settings
from netmind_frames.transport._connection import connect

ROOT = Path(__file__).resolve().parents[1]
SOAK = bool(os.environ.get("NETMIND_FRAMES_SOAK"))
soak = pytest.mark.skipif(not SOAK, reason="the soak runs with NETMIND_FRAMES_SOAK=1")


def texts(n: int) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i} says {'yes' if i % 3 else 'no'}" for i in range(n)]})


def clean_result(frame: pd.DataFrame, dialect: str = "netmind", **kwargs: Any) -> pd.DataFrame:
    """The result of the same call on a server without faults."""
    with LocalBatchServer(seed=1) as clean:
        return batch_complete(
            frame, "{text}", model="m", **kwargs, **connection_kwargs(clean, dialect)
        )


def same_rows(out: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Equal frames, but for the batch ids in ``attrs`` (each server names its own)."""
    out, expected = out.copy(), expected.copy()
    out.attrs, expected.attrs = {}, {}
    pd.testing.assert_frame_equal(out, expected)


def batch_count(base_origin: str, key: str = "local", attempts: int = 200) -> int:
    """The batches on a server, asked until an answer comes (the server may inject faults)."""
    for _ in range(attempts):
        try:
            with openai.OpenAI(base_url=base_origin + "/v1", api_key=key, max_retries=0) as c:
                return sum(1 for _ in c.batches.list(limit=100))
        except openai.APIError:
            continue
    raise AssertionError("the server never answered")


def executed_once(srv: LocalBatchServer, frame: pd.DataFrame) -> None:
    """Every row ran exactly once on the server: no batch was made or run twice."""
    runs = Counter(e["prompt"] for e in srv.executions())
    assert all(runs[t] == 1 for t in frame["text"]), runs.most_common(3)
    assert sum(runs.values()) == len(frame)


# -- faults on every call --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "seed"),
    [pytest.param("netmind", 1, id="netmind"), pytest.param("openai", 0, id="openai")],
)
def test_half_of_all_calls_failing_gives_the_clean_result(dialect, seed):
    """fault_rate=0.5: half of all HTTP calls, presigned uploads and downloads included,
    answer 429 or 500 or drop the connection after the work was done."""
    frame = texts(40)
    expected = clean_result(frame, dialect, max_requests=20)
    with LocalBatchServer(fault_rate=0.5, seed=seed) as faulty:
        out = batch_complete(
            frame, "{text}", model="m", max_requests=20, **connection_kwargs(faulty, dialect)
        )
        assert batch_count(faulty.origin) == 2
        executed_once(faulty, frame)
    same_rows(out, expected)


@soak
@pytest.mark.soak
@pytest.mark.parametrize("dialect", ["netmind", "openai"])
@pytest.mark.parametrize("rate", [0.3, 0.5])
@pytest.mark.parametrize("seed", range(10))
def test_soak_faults_everywhere(dialect, rate, seed):
    frame = texts(120)
    expected = clean_result(frame, dialect, max_requests=25)
    with LocalBatchServer(fault_rate=rate, seed=seed, fail_rate=0.0) as faulty:
        out = batch_complete(
            frame, "{text}", model="m", max_requests=25, **connection_kwargs(faulty, dialect)
        )
        assert batch_count(faulty.origin) == 5
        executed_once(faulty, frame)
    same_rows(out, expected)


# -- downloads cut mid-body ------------------------------------------------------------------


class _Cut(httpx2.SyncByteStream):
    """Half of a body, then the connection breaks."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self._data[: len(self._data) // 2]
        raise httpx2.ReadError("connection cut mid-body (test)")


class CutDownloads(httpx2.BaseTransport):
    """Forward to the real server; break the first ``times`` matching downloads mid-body."""

    def __init__(self, path: str, times: int) -> None:
        self._inner = httpx2.HTTPTransport()
        self._path = re.compile(path)
        self.left = times

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        if not (self.left and request.method == "GET" and self._path.search(request.url.path)):
            return response
        self.left -= 1
        data = response.read()
        response.close()
        assert len(data) > 10
        return httpx2.Response(response.status_code, headers=response.headers, stream=_Cut(data))


def test_downloads_cut_mid_body_are_fetched_again_openai(fresh_server, monkeypatch):
    """The OpenAI dialect's ``files.content`` stream breaks half-way, three times."""
    frame = texts(30)
    expected = clean_result(frame, "openai", max_requests=10)
    cutter = CutDownloads(r"/files/[^/]+/content$", times=3)
    with openai.OpenAI(
        base_url=fresh_server.openai_base_url,
        api_key=fresh_server.api_key,
        http_client=httpx2.Client(transport=cutter),
    ) as client:
        out = batch_complete(
            frame, "{text}", model="m", max_requests=10, client=client, poll_interval=0.05,
            progress=False,
        )  # fmt: skip
    assert cutter.left == 0
    same_rows(out, expected)


def test_downloads_cut_mid_body_are_fetched_again_netmind(fresh_server, monkeypatch):
    """Netmind's presigned download breaks half-way, three times."""
    frame = texts(30)
    expected = clean_result(frame, "netmind", max_requests=10)
    kwargs = connection_kwargs(fresh_server, "netmind")
    files = connect(resolve_settings(base_url=kwargs["base_url"], api_key=kwargs["api_key"])).files
    cutter = CutDownloads(r"^/_presigned/", times=3)
    with httpx2.Client(transport=cutter) as http:
        monkeypatch.setattr(files, "_http", http)
        out = batch_complete(frame, "{text}", model="m", max_requests=10, **kwargs)
    assert cutter.left == 0
    same_rows(out, expected)


# -- the server killed and restarted on its data_dir -----------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``netmind-frames serve`` in a subprocess, on a fixed port and data_dir."""

    def __init__(self, data_dir: Path, port: int, log: Path, *flags: str) -> None:
        self.argv = [
            sys.executable, "-m", "netmind_frames.cli", "serve", "--data-dir", str(data_dir),
            "--port", str(port), "--seed", "3", *flags,
        ]  # fmt: skip
        self.origin = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start and wait until it answers; the seconds that took."""
        began = time.monotonic()
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
        while True:
            try:
                if httpx2.get(self.origin + "/v1/files", timeout=1).status_code == 200:
                    return time.monotonic() - began
            except httpx2.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() - began > 60:
                raise AssertionError(f"serve did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    started: list[ServeProcess] = []

    def make(*flags: str) -> ServeProcess:
        proc = ServeProcess(tmp_path / "data", free_port(), tmp_path / "serve.log", *flags)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def progress(origin: str) -> tuple[int, bool]:
    """Requests completed over all batches, and whether every batch is terminal."""
    with openai.OpenAI(base_url=origin + "/v1", api_key="local", max_retries=0) as client:
        batches = list(client.batches.list(limit=100))
    done = sum(b.request_counts.completed for b in batches if b.request_counts)
    terminal = bool(batches) and all(
        b.status in ("completed", "failed", "expired", "cancelled") for b in batches
    )
    return done, terminal


def kill_and_restart(server: ServeProcess, downtime: float, report: dict[str, Any]) -> None:
    """Wait for the job to be under way, SIGKILL the server, restart it after ``downtime``."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if progress(server.origin)[0] >= 5:
            break
        time.sleep(0.02)
    report["done_at_kill"], report["terminal_at_kill"] = progress(server.origin)
    server.kill()
    killed = time.monotonic()
    time.sleep(downtime)
    report["restart_seconds"] = server.start()
    report["outage_seconds"] = time.monotonic() - killed


@pytest.mark.parametrize("dialect", ["netmind", "openai"])
def test_server_killed_mid_batch_and_restarted_on_its_data_dir(serve, dialect):
    """SIGKILL the server while the job runs; 3 s later it restarts on the same port and
    data_dir. The waiting client rides out the outage and gets the clean result."""
    frame = texts(150)
    expected = clean_result(frame, dialect, max_requests=50)
    # Slow enough (~2 s a batch) that the kill lands mid-batch even on a loaded machine.
    server = serve("--seconds-per-request", "0.04")
    server.start()
    base_url = server.origin + ("/inference-api/openai/v1" if dialect == "netmind" else "/v1")
    began = time.monotonic()
    job = netmind_frames.submit(
        frame, "{text}", model="m", max_requests=50, base_url=base_url, api_key="local",
        poll_interval=0.2, progress=False,
    )  # fmt: skip
    report: dict[str, Any] = {}
    chaos = threading.Thread(target=kill_and_restart, args=(server, 3.0, report))
    chaos.start()
    out = job.result()
    chaos.join(60)
    elapsed = time.monotonic() - began
    assert report["done_at_kill"] < len(frame) and not report["terminal_at_kill"], report
    assert report["outage_seconds"] >= 3.0
    same_rows(out, expected)
    assert batch_count(server.origin) == 3
    assert elapsed < 60, (elapsed, report)  # measured here: ~9 s, of which ~5 s outage


@soak
@pytest.mark.soak
@pytest.mark.parametrize("downtime", [10.0, 25.0])
def test_soak_long_server_outage(serve, downtime):
    frame = texts(300)
    expected = clean_result(frame, "netmind", max_requests=100)
    server = serve("--seconds-per-request", "0.01")
    server.start()
    job = netmind_frames.submit(
        frame, "{text}", model="m", max_requests=100,
        base_url=server.origin + "/inference-api/openai/v1", api_key="local",
        poll_interval=1.0, progress=False,
    )  # fmt: skip
    report: dict[str, Any] = {}
    chaos = threading.Thread(target=kill_and_restart, args=(server, downtime, report))
    chaos.start()
    out = job.result()
    chaos.join(120)
    same_rows(out, expected)
    assert batch_count(server.origin) == 3


# -- the client killed mid-poll, then run again ----------------------------------------------


def test_cli_killed_mid_poll_with_shards_still_waiting_then_rerun(tmp_path, monkeypatch):
    """SIGKILL ``netmind-frames complete`` while its first of three shards runs (the others
    wait for a slot); the re-run attaches to that batch, submits the other two once, and
    writes the clean run's file."""
    frame = texts(90)
    frame.to_parquet(tmp_path / "in.parquet")
    env = os.environ | {"NETMIND_FRAMES_HOME": str(tmp_path / "home"), "NETMIND_API_KEY": "k"}

    def complete(srv: LocalBatchServer, out: str) -> list[str]:
        return [
            "complete", str(tmp_path / "in.parquet"), str(tmp_path / out), "--prompt", "{text}",
            "--model", "m", "--base-url", srv.base_url, "--poll-interval", "0.05",
            "--max-requests", "30", "--max-concurrent-batches", "1", "--quiet",
        ]  # fmt: skip

    monkeypatch.setenv("NETMIND_API_KEY", "k")
    with LocalBatchServer(seed=1) as clean:
        assert main(complete(clean, "clean.parquet")) == 0
    with LocalBatchServer(seconds_per_request=0.01, seed=2) as srv:
        argv = [sys.executable, "-m", "netmind_frames.cli", *complete(srv, "out.parquet")]
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while progress(srv.origin)[0] < 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert proc.stderr is not None
        proc.stderr.close()
        assert batch_count(srv.origin) == 1
        assert not (tmp_path / "out.parquet").exists()

        rerun = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=120)
        assert rerun.returncode == 0, rerun.stderr.decode()
        assert batch_count(srv.origin) == 3
        executed_once(srv, frame)
    same_rows(
        pd.read_parquet(tmp_path / "out.parquet"), pd.read_parquet(tmp_path / "clean.parquet")
    )


# -- malformed server answers ----------------------------------------------------------------


Rewrite = Callable[[bytes], bytes]


class Malformed(httpx2.BaseTransport):
    """Forward to the real server and rewrite some answers into shapes it cannot produce.

    ``output`` rewrites the first ``times`` output-file downloads; ``batch`` rewrites the
    first ``times`` batch retrieves (as JSON dicts).
    """

    def __init__(
        self,
        *,
        output: Rewrite | None = None,
        batch: Callable[[dict[str, Any]], None] | None = None,
        times: int = 1,
    ) -> None:
        self._inner = httpx2.HTTPTransport()
        self._output, self._batch = output, batch
        self.outputs_left = times if output else 0
        self.batches_left = times if batch else 0
        self._output_ids: set[str] = set()

    def close(self) -> None:
        self._inner.close()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        response = self._inner.handle_request(request)
        path = request.url.path
        if request.method != "GET" or response.status_code != 200:
            return response
        if re.search(r"/batches/batch_[^/]+$", path):
            body = json.loads(response.read())
            if body.get("output_file_id"):
                self._output_ids.add(body["output_file_id"])
            if self.batches_left and self._batch is not None:
                self.batches_left -= 1
                self._batch(body)
            return _json_response(body)
        match = re.search(r"/files/([^/]+)/content$", path)
        if match and match.group(1) in self._output_ids and self.outputs_left:
            self.outputs_left -= 1
            assert self._output is not None
            return httpx2.Response(200, content=self._output(response.read()))
        return response


def _json_response(body: Any) -> httpx2.Response:
    return httpx2.Response(200, json=body, headers={"content-type": "application/json"})


@contextlib.contextmanager
def recorded() -> Iterator[list[str]]:
    """Collect every warning's ``Category: message`` (the suite turns warnings into errors)."""
    seen: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield seen
    seen.extend(f"{w.category.__name__}: {w.message}" for w in caught)


def run_through(transport: Malformed, frame: pd.DataFrame, **kwargs: Any) -> pd.DataFrame:
    http = httpx2.Client(transport=transport)
    with (
        LocalBatchServer(seed=4) as srv,
        openai.OpenAI(
            base_url=srv.openai_base_url, api_key=srv.api_key, http_client=http
        ) as client,
    ):
        return batch_complete(
            frame, "{text}", model="m", client=client, poll_interval=0.02, progress=False,
            **kwargs,
        )  # fmt: skip


def lines_of(data: bytes) -> list[bytes]:
    return [line for line in data.splitlines() if line.strip()]


def _truncate_last(data: bytes) -> bytes:
    lines = lines_of(data)
    return b"\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 2]]) + b"\n"


def _unknown_id(data: bytes) -> bytes:
    extra = json.loads(lines_of(data)[0])
    extra["custom_id"] = "424242"
    extra["response"]["body"]["choices"][0]["message"]["content"] = "not yours"
    return data + json.dumps(extra).encode() + b"\n"


def _duplicated(data: bytes) -> bytes:
    return data + lines_of(data)[0] + b"\n"


def _error_duplicate(data: bytes) -> bytes:
    """A second, failed line for a row that has an answer: the answer is kept."""
    first = json.loads(lines_of(data)[0])
    failed = {"custom_id": first["custom_id"], "response": None,
              "error": {"code": "server_error", "message": "late failure"}}  # fmt: skip
    return json.dumps(failed).encode() + b"\n" + data


def _garbage(data: bytes) -> bytes:
    return b"<html><body>502 Bad Gateway</body></html>\n"


def _strip_optional(data: bytes) -> bytes:
    out = []
    for raw in lines_of(data):
        line = json.loads(raw)
        line.pop("id", None)
        line["response"].pop("request_id", None)
        body = line["response"]["body"]
        for key in ("usage", "id", "object", "created", "system_fingerprint"):
            body.pop(key, None)
        body["choices"][0].pop("finish_reason", None)
        out.append(json.dumps(line).encode())
    return b"\n".join(out) + b"\n"


@pytest.mark.parametrize(
    ("rewrite", "warning", "missing"),
    [
        pytest.param(_truncate_last, "not valid JSON", 1, id="truncated-line"),
        pytest.param(_unknown_id, "not in this request plan", 0, id="unknown-custom-id"),
        pytest.param(_duplicated, "duplicate", 0, id="duplicated-line"),
        pytest.param(_error_duplicate, "duplicate", 0, id="failed-duplicate-of-an-answer"),
        pytest.param(_garbage, "not valid JSON", 12, id="html-instead-of-jsonl"),
    ],
)
@pytest.mark.parametrize("retries", [0, 2])
def test_malformed_output_lines_are_warned_about_and_never_joined(
    rewrite, warning, missing, retries
):
    """Bad lines are skipped with a MissingResultWarning; a row left without a line is
    ``missing_result`` (retried when retries allow); no answer lands on another row."""
    frame = texts(12)
    with recorded() as seen:
        out = run_through(Malformed(output=rewrite), frame, retries=retries)
    assert any(w.startswith("MissingResultWarning") and warning in w for w in seen), seen
    ok = out["status"] == "ok"
    assert list(out.loc[ok, "response"]) == list(out.loc[ok, "text"])
    if retries:
        assert ok.all()
    else:
        assert (~ok).sum() == missing
        assert set(out.loc[~ok, "error_code"]) <= {"missing_result"}


def test_missing_optional_fields_are_tolerated():
    """Lines without usage, finish_reason, ids: answers kept, the missing fields are NA."""
    frame = texts(8)
    out = run_through(Malformed(output=_strip_optional), frame, retries=0)
    assert (out["status"] == "ok").all()
    assert list(out["response"]) == list(frame["text"])
    assert out["finish_reason"].isna().all() and out["prompt_tokens"].isna().all()


@pytest.mark.parametrize("status", ["queued", "running", "", "pending"])
def test_unknown_statuses_are_polled_through(status):
    """A status outside OpenAI's enum (and an empty endpoint, no request_counts) is not
    terminal: the job keeps polling until the batch ends."""

    def rewrite(batch: dict[str, Any]) -> None:
        batch.update(status=status, endpoint="", request_counts=None, output_file_id=None)

    frame = texts(10)
    transport = Malformed(batch=rewrite, times=4)
    out = run_through(transport, frame)
    assert transport.batches_left == 0
    assert list(out["response"]) == list(frame["text"])


def test_counts_that_disagree_with_the_rows_are_reported():
    def rewrite(batch: dict[str, Any]) -> None:
        if batch["status"] == "completed":
            batch["request_counts"]["completed"] += 5

    transport = Malformed(batch=rewrite, times=100)
    with pytest.warns(UserWarning, match="server counts 15 completed"):
        out = run_through(transport, texts(10), retries=0)
    assert (out["status"] == "ok").all()


def test_a_completed_batch_without_files_marks_rows_missing_then_retries():
    def rewrite(batch: dict[str, Any]) -> None:
        if batch["status"] == "completed":
            batch.update(output_file_id=None, error_file_id=None)

    frame = texts(6)
    transport = Malformed(batch=rewrite, times=1000)
    with recorded() as seen:
        out = run_through(transport, frame, retries=1)
    assert any(w.startswith("MissingResultWarning") and "no result line" in w for w in seen)
    assert any("0 rows ok, but the server counts 6 completed" in w for w in seen), seen
    assert (out["error_code"] == "missing_result").all() and (out["status"] == "failed").all()


def test_a_failed_batch_without_errors_is_a_clear_error():
    def rewrite(batch: dict[str, Any]) -> None:
        batch.update(status="failed", errors=None)

    with pytest.raises(BatchFailedError, match="no reason given"):
        run_through(Malformed(batch=rewrite, times=1000), texts(3))


@pytest.mark.parametrize("action", ["500", "drop_before", "429"])
def test_a_failing_lookup_by_fingerprint_is_tried_again(fresh_server, action):
    """The lookup before a create (``batches.list``) fails three times in a row, beyond the
    client's own retries (none here): the submission looks again instead of giving up.
    Found by the fault-rate soak, where 1 run in 7 died there at ``fault_rate=0.5``."""
    frame = texts(5)
    fresh_server.inject_fault("GET", "/batches", action, times=3)
    with openai.OpenAI(
        base_url=fresh_server.openai_base_url, api_key=fresh_server.api_key, max_retries=0
    ) as client:
        out = batch_complete(
            frame, "{text}", model="m", client=client, poll_interval=0.05, progress=False
        )
    assert fresh_server.pending_faults() == []
    assert list(out["response"]) == list(frame["text"])
    assert batch_count(fresh_server.origin) == 1
