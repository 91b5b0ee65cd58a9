"""Exactly-once submission: re-running reattaches, crashes and lost answers never pay twice."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import openai
import pandas as pd
import pytest
from conftest import connection_kwargs

import netmind_frames
from netmind_frames import LocalBatchServer, batch_complete

ROOT = Path(__file__).resolve().parents[1]


def count_batches(srv: LocalBatchServer) -> int:
    # Retries enough to outlast a fault_rate server: the count itself must not be the fault.
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=10) as client:
        return sum(1 for _ in client.batches.list(limit=100))


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(30)]})


def test_running_the_same_call_again_reattaches(fresh_server, frame, dialect, caplog):
    kwargs = connection_kwargs(fresh_server, dialect)
    first = batch_complete(frame, "{text}", model="m", max_requests=10, **kwargs)
    assert count_batches(fresh_server) == 3
    with caplog.at_level("INFO", logger="netmind_frames"):
        second = batch_complete(frame, "{text}", model="m", max_requests=10, **kwargs)
    assert count_batches(fresh_server) == 3
    pd.testing.assert_frame_equal(first, second)
    assert "attached to batch" in caplog.text


def test_the_journal_gone_the_batch_is_found_by_its_fingerprint(
    fresh_server, frame, tmp_path, monkeypatch
):
    kwargs = connection_kwargs(fresh_server, "netmind")
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(tmp_path / "a"))
    first = batch_complete(frame, "{text}", model="m", **kwargs)
    shutil.rmtree(tmp_path / "a")
    second = batch_complete(frame, "{text}", model="m", **kwargs)
    assert count_batches(fresh_server) == 1
    pd.testing.assert_frame_equal(first, second)


def test_a_different_call_is_a_new_batch_and_resubmit_forces_one(fresh_server, frame):
    kwargs = connection_kwargs(fresh_server, "openai")
    batch_complete(frame, "{text}", model="m", **kwargs)
    batch_complete(frame, "{text}!", model="m", **kwargs)
    assert count_batches(fresh_server) == 2
    batch_complete(frame, "{text}", model="m", resubmit=True, **kwargs)
    assert count_batches(fresh_server) == 3


def test_two_submitters_at_once_make_one_batch(fresh_server, frame):
    """Two threads (each with its own journal handle) submit the same frame at the same time."""
    kwargs = connection_kwargs(fresh_server, "netmind")
    jobs: list[netmind_frames.BatchJob] = []
    start = threading.Barrier(2)

    def run() -> None:
        start.wait()
        jobs.append(netmind_frames.submit(frame, "{text}", model="m", **kwargs))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(jobs) == 2 and jobs[0].id == jobs[1].id
    assert count_batches(fresh_server) == 1


SCRIPT = """
import sys, pandas as pd, netmind_frames
df = pd.read_parquet(sys.argv[1])
job = df.netmind.submit("{{text}}", model="m", base_url={base_url!r}, api_key={key!r},
                        poll_interval=0.05, progress=False)
print(job.id, flush=True)
out = job.result()
out.to_parquet(sys.argv[2])
"""


@pytest.mark.parametrize("keep_journal", [True, False], ids=["journal", "journal-deleted"])
def test_client_killed_while_polling_then_rerun_pays_nothing_twice(frame, tmp_path, keep_journal):
    frame.to_parquet(tmp_path / "in.parquet")
    home = tmp_path / "home"
    env = os.environ | {"NETMIND_FRAMES_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with LocalBatchServer(seconds_per_request=0.03) as srv:
        script = textwrap.dedent(SCRIPT.format(base_url=srv.base_url, key=srv.api_key))
        argv = [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "in.parquet"),
            str(tmp_path / "out.parquet"),
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        assert proc.stdout is not None
        job_id = proc.stdout.readline().strip()
        assert job_id.startswith("job-")
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        proc.stdout.close()
        assert not (tmp_path / "out.parquet").exists()
        if not keep_journal:
            shutil.rmtree(home)

        rerun = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.strip() == job_id
        assert count_batches(srv) == 1
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert list(out["response"]) == list(frame["text"])
    assert (out["status"] == "ok").all()


def test_attach_by_id_alone_from_a_new_process(fresh_server, frame, tmp_path):
    """The journal knows the options: attach needs only the id and the frame."""
    kwargs = connection_kwargs(fresh_server, "netmind")
    job = netmind_frames.submit(frame, "Q: {text}", model="m", max_tokens=3, **kwargs)
    frame.to_parquet(tmp_path / "in.parquet")
    script = textwrap.dedent(
        f"""
        import pandas as pd, netmind_frames
        df = pd.read_parquet({str(tmp_path / "in.parquet")!r})
        job = netmind_frames.BatchJob.attach(
            {job.id!r}, frame=df, base_url={fresh_server.base_url!r},
            api_key={fresh_server.api_key!r}, progress=False, poll_interval=0.05,
        )
        job.result().to_parquet({str(tmp_path / "out.parquet")!r})
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    expected = job.result()
    assert list(out["response"]) == list(expected["response"])
    assert list(out["response"]) == [" ".join(f"Q: {t}".split()[:3]) for t in frame["text"]]
    assert count_batches(fresh_server) == 1


def test_fault_rate_everywhere_gives_the_clean_result(frame, dialect):
    """30% of API calls, presigned URLs included, answer 429/500 or drop: same result."""
    kwargs = dict(model="m", max_requests=10)
    with LocalBatchServer(seed=5) as clean:
        expected = batch_complete(frame, "{text}", **kwargs, **connection_kwargs(clean, dialect))
    with LocalBatchServer(fault_rate=0.3, seed=5) as faulty:
        out = batch_complete(frame, "{text}", **kwargs, **connection_kwargs(faulty, dialect))
        assert count_batches(faulty) == 3
    pd.testing.assert_frame_equal(out.drop(columns=[]), expected, check_like=False)


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        pytest.param("POST", "/batches", "drop_after", id="create-answer-lost"),
        pytest.param("POST", "/batches", "500", id="create-500"),
        pytest.param("POST", "/batches", "drop_before", id="create-dropped"),
        pytest.param("POST", "/files", "drop_after", id="file-create-answer-lost"),
        pytest.param("PUT", "/_presigned/.*", "drop_after", id="presigned-put-lost"),
        pytest.param("GET", "/files/.*/content", "drop_after", id="download-lost"),
        pytest.param("GET", "/_presigned/.*", "500", id="presigned-download-500"),
    ],
)
def test_lost_answers_never_make_a_second_batch(fresh_server, frame, dialect, method, path, action):
    fresh_server.inject_fault(method, path, action, times=2)
    out = batch_complete(frame, "{text}", model="m", **connection_kwargs(fresh_server, dialect))
    assert count_batches(fresh_server) == 1
    assert list(out["response"]) == list(frame["text"])
    assert (out["status"] == "ok").all()
