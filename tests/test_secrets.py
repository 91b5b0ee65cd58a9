"""Contract 9: the API key never appears anywhere the library writes or shows.

Whole flows (success, failed rows, a wrong key, a timeout, Ctrl-C, the CLI with ``--debug``)
run against a server that requires a sentinel key; then every trace is searched for it: log
records at DEBUG (the library's, openai's and httpx2's), reprs of public objects, exception
messages and formatted tracebacks, the journal's SQLite files, the spool, written Parquet
files, batch metadata, the uploaded and result files, and the progress bar's stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pandas as pd
import pytest

import netmind_frames
from netmind_frames import JobTimeoutError, LocalBatchServer
from netmind_frames.jobs._journal import Journal
from netmind_frames.transport._config import resolve_settings
from netmind_frames.transport._connection import connect

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "sk-nmf-SENTINEL-7f3a9c1e5b2d4a60"
#: Pieces a careless log line could still leak (a key cut or masked half-way).
PIECES = (SENTINEL, SENTINEL[7:], "7f3a9c1e5b2d4a60")


def assert_clean(*texts: Any, where: str = "") -> None:
    """No trace of the sentinel key in any of ``texts`` (str, bytes or anything repr-able)."""
    for text in texts:
        data = text if isinstance(text, bytes) else str(text).encode("utf-8", "replace")
        for piece in PIECES:
            assert piece.encode() not in data, f"the API key leaked into {where or 'output'}"


def home_bytes(home: Path) -> list[tuple[str, bytes]]:
    """Every file under NETMIND_FRAMES_HOME: the journal (with its WAL) and the spool."""
    return [(str(p), p.read_bytes()) for p in home.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def keyed() -> Iterator[LocalBatchServer]:
    """A server that requires the sentinel key; a fifth of its requests fail."""
    with LocalBatchServer(api_key=SENTINEL, fail_rate=0.2, seed=5) as srv:
        yield srv


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every logger at DEBUG, the HTTP clients' included."""
    caplog.set_level(logging.DEBUG)
    for name in ("netmind_frames", "openai", "httpx2", "httpx", "httpcore", "httpcore2"):
        caplog.set_level(logging.DEBUG, logger=name)
    yield caplog


def frame(n: int = 12) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"text {i}" for i in range(n)]})


def server_files(srv: LocalBatchServer) -> list[bytes]:
    """The bytes of every file on the server (uploads and results)."""
    with httpx2.Client(base_url=srv.origin, headers={"Authorization": SENTINEL}) as http:
        ids = [f["id"] for f in http.get("/v1/files").json()]
        return [http.get(f"/v1/files/{i}/content").content for i in ids]


def all_batches(srv: LocalBatchServer) -> list[Any]:
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=SENTINEL) as client:
        return list(client.batches.list(limit=100))


@pytest.mark.parametrize("dialect", ["netmind", "openai"])
def test_a_whole_run_leaves_no_trace_of_the_key(
    keyed, dialect, debug_logs, capsys, tmp_path, monkeypatch
):
    home = tmp_path / "home"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(home))
    base_url = keyed.base_url if dialect == "netmind" else keyed.openai_base_url
    job = netmind_frames.submit(
        frame(), "{text}", model="m", base_url=base_url, api_key=SENTINEL, poll_interval=0.05,
        progress=True, metadata={"project": "secrets"}, retries=1,
    )  # fmt: skip
    spool_during = home_bytes(home)  # the spooled request files exist while the job lives
    out = job.result()
    assert (out["status"] == "ok").any()
    job.to_parquet(tmp_path / "out.parquet")
    settings = resolve_settings(base_url=base_url, api_key=SENTINEL)
    connection = connect(settings)
    reprs = [
        job, out.attrs, job.batches, settings, connection, connection.files, keyed,
        Journal(home), out.to_string(), out.to_dict(),
    ]  # fmt: skip
    captured = capsys.readouterr()
    assert "netmind batch" in captured.err  # the progress bar did print
    assert_clean(*(repr(r) for r in reprs), where="a repr")
    assert_clean(*(str(r) for r in reprs), where="a str")
    assert_clean(captured.out, captured.err, where="stdout/stderr (progress)")
    loggers = {r.name.split(".")[0] for r in debug_logs.records}
    assert {"netmind_frames", "openai"} <= loggers, loggers  # DEBUG logging was really on
    assert_clean(debug_logs.text, *(r.getMessage() for r in debug_logs.records), where="logs")
    assert_clean(*(b for _, b in spool_during), *(b for _, b in home_bytes(home)), where="home")
    assert_clean((tmp_path / "out.parquet").read_bytes(), where="the Parquet file")
    batches = all_batches(keyed)
    assert batches and all(b.metadata for b in batches)
    assert_clean(*(b.model_dump_json() for b in batches), where="batch objects and metadata")
    assert_clean(*server_files(keyed), where="uploaded and result files")


def test_a_wrong_key_error_and_its_traceback_hold_no_key(debug_logs, capsys):
    """The client holds the sentinel; the server wants another key."""
    with (
        LocalBatchServer(api_key="sk-the-right-one") as srv,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        netmind_frames.batch_complete(
            frame(3), "{text}", model="m", base_url=srv.base_url, api_key=SENTINEL,
            poll_interval=0.05,
        )  # fmt: skip
    assert_clean(str(info.value), repr(info.value), where="the exception")
    assert_clean("".join(traceback.format_exception(info.value)), where="the traceback")
    assert_clean(debug_logs.text, capsys.readouterr().err, where="logs")


def test_a_timeout_error_and_its_traceback_hold_no_key(debug_logs, capsys):
    with (
        LocalBatchServer(api_key=SENTINEL, seconds_per_request=0.05) as srv,
        pytest.raises(JobTimeoutError) as info,
    ):
        netmind_frames.batch_complete(
            frame(20), "{text}", model="m", base_url=srv.base_url, api_key=SENTINEL,
            poll_interval=0.05, timeout=0.2,
        )  # fmt: skip
    assert info.value.job_id in str(info.value)
    assert_clean(str(info.value), repr(info.value), where="the exception")
    assert_clean("".join(traceback.format_exception(info.value)), where="the traceback")
    assert_clean(debug_logs.text, capsys.readouterr().err, where="logs and progress")


def test_a_bad_input_error_never_echoes_a_key_passed_in_the_wrong_place(debug_logs):
    """A key pasted into another argument is named by its type, never echoed."""
    for kwargs in ({"base_url": SENTINEL.encode()}, {"api_key": [SENTINEL]}):
        with pytest.raises(netmind_frames.NetmindFramesError) as info:
            netmind_frames.batch_complete(frame(2), "{text}", model="m", **kwargs)
        assert_clean(str(info.value), "".join(traceback.format_exception(info.value)))


CTRL_C = """
import logging, sys, pandas as pd, netmind_frames
logging.basicConfig(level=logging.DEBUG)
df = pd.DataFrame({{"text": [f"text {{i}}" for i in range(200)]}})
job = netmind_frames.submit(df, "{{text}}", model="m", base_url={base_url!r},
                            poll_interval=0.05, progress=True)
print(job.id, flush=True)
print(repr(job), flush=True)
job.result()
"""


def test_ctrl_c_prints_no_key(tmp_path):
    """SIGINT mid-poll: the reattach hint, the traceback and the DEBUG logs hold no key."""
    env = os.environ | {
        "NETMIND_API_KEY": SENTINEL,
        "NETMIND_FRAMES_HOME": str(tmp_path / "home"),
        "PYTHONUNBUFFERED": "1",
    }
    with LocalBatchServer(api_key=SENTINEL, seconds_per_request=0.05) as srv:
        script = textwrap.dedent(CTRL_C.format(base_url=srv.base_url))
        proc = subprocess.Popen(
            [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=ROOT, env=env,
        )  # fmt: skip
        assert proc.stdout is not None
        job_id = proc.stdout.readline().decode().strip()
        assert job_id.startswith("job-")
        proc.stdout.readline()  # the repr: the next statement is job.result()
        # Give result() a moment to start polling (the batch runs for ~10 s): a SIGINT before
        # it would interrupt the script, not the wait this test is about.
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert b"KeyboardInterrupt" in stderr and b"Reattach with" in stderr
    assert b"DEBUG" in stderr  # the logs were on
    assert_clean(stdout, stderr, where="the interrupted process's output")
    assert_clean(*(b for _, b in home_bytes(tmp_path / "home")), where="home")


@pytest.mark.parametrize(
    ("key", "code"),
    [pytest.param(SENTINEL, 0, id="success"), pytest.param("sk-wrong", 1, id="wrong-key")],
)
def test_cli_debug_shows_no_key(tmp_path, key, code):
    """``netmind-frames --debug complete``: DEBUG logs, the summary and, for a failure, the
    traceback ``--debug`` prints; the journal and the output file too."""
    frame(8).to_parquet(tmp_path / "in.parquet")
    server_key = SENTINEL if code == 0 else "sk-the-right-one"
    env = os.environ | {"NETMIND_API_KEY": key, "NETMIND_FRAMES_HOME": str(tmp_path / "home")}
    if code:
        env["NETMIND_API_KEY"] = SENTINEL  # the client sends the sentinel; it is refused
    with LocalBatchServer(api_key=server_key) as srv:
        argv = [
            sys.executable, "-m", "netmind_frames.cli", "--debug", "complete",
            str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--prompt", "{text}",
            "--model", "m", "--base-url", srv.base_url, "--poll-interval", "0.05",
        ]  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, cwd=ROOT, env=env, timeout=120)
    if code == 0:
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"DEBUG" in proc.stderr and b"rows ok" in proc.stderr
        assert_clean((tmp_path / "out.parquet").read_bytes(), where="the output file")
    else:
        assert proc.returncode != 0 and b"Traceback" in proc.stderr
        assert b"AuthenticationError" in proc.stderr
    assert_clean(proc.stdout, proc.stderr, where="the CLI's output")
    assert_clean(*(b for _, b in home_bytes(tmp_path / "home")), where="home")


def test_presigned_urls_never_reach_the_logs(caplog):
    """httpx2 logs each request's whole URL at INFO; a presigned URL's signature is a
    credential, so the library's filter must rewrite it before any handler sees it."""
    caplog.set_level(logging.INFO)
    with LocalBatchServer(seed=2) as srv:
        out = netmind_frames.batch_complete(
            frame(4), "{text}", model="m", base_url=srv.base_url, api_key=srv.api_key,
            poll_interval=0.05, progress=False,
        )  # fmt: skip
    assert (out["status"] == "ok").all()
    presigned = [r.getMessage() for r in caplog.records if "_presigned" in r.getMessage()]
    assert presigned, "the uploads and downloads were logged"
    assert all("sig=" not in m and "<redacted>" in m for m in presigned), presigned
