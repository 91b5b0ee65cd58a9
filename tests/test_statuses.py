"""Batch statuses we have not seen (issue #13, item 3): Netmind's ``pending`` and any unknown one
are taken as still running, shown as the provider names them, and warned about once; our own
"not submitted yet" is ``not_submitted`` and never mixes with them."""

from __future__ import annotations

import logging
import uuid

import pandas as pd
import pytest
from conftest import connection_kwargs

from netmind_frames.cli import EXIT_OK, main
from netmind_frames.jobs._status import job_shards
from netmind_frames.server import LocalBatchServer

TEXTS = pd.DataFrame({"text": [f"row {i} says hello" for i in range(6)]})


def unknown_status() -> str:
    """A status name no test has used: the warning is once per name per process."""
    return f"mystery_{uuid.uuid4().hex[:8]}"


def warnings_about(caplog: pytest.LogCaptureFixture, status: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "netmind_frames" and r.levelno == logging.WARNING and status in r.message
    ]


@pytest.mark.parametrize(
    "knobs",
    [
        pytest.param({"queued_polls": 3, "queued_status": "pending"}, id="queued-pending"),
        pytest.param({"netmind_create_answer": True}, id="netmind-create-answer"),
        pytest.param(
            {"netmind_create_answer": True, "queued_polls": 2, "queued_status": "pending"},
            id="both",
        ),
    ],
)
def test_a_job_completes_through_netminds_pending(dialect, knobs, caplog):
    caplog.set_level(logging.WARNING, "netmind_frames")
    with LocalBatchServer(seed=3, **knobs) as srv:
        job = TEXTS.netmind.submit("{text}", model="m", **connection_kwargs(srv, dialect))
        if knobs.get("queued_polls"):
            assert job.status == "pending"  # the provider's queued state, as it names it
        out = job.result()
    assert (out["status"] == "ok").all()
    assert list(out["response"]) == list(TEXTS["text"])
    assert not warnings_about(caplog, "pending")  # a status we know: no warning


def test_an_unknown_status_is_running_shown_verbatim_and_warned_once(dialect, caplog):
    caplog.set_level(logging.WARNING, "netmind_frames")
    status = unknown_status()
    with LocalBatchServer(seed=3, queued_polls=4, queued_status=status) as srv:
        job = TEXTS.netmind.submit(
            "{text}", model="m", max_requests=2, **connection_kwargs(srv, dialect)
        )
        assert job.status == status
        assert job.status == status  # polled again: still running, not terminal, no crash
        out = job.result()
    assert (out["status"] == "ok").all()
    assert len(warnings_about(caplog, status)) == 1  # three batches, many polls: one warning


def test_the_progress_bar_shows_an_unknown_status_verbatim(capsys):
    status = unknown_status()
    with LocalBatchServer(seed=3, queued_polls=3, queued_status=status) as srv:
        kwargs = connection_kwargs(srv, "netmind") | {"progress": True}
        out = TEXTS.netmind.batch_complete("{text}", model="m", **kwargs)
    assert (out["status"] == "ok").all()
    assert status in capsys.readouterr().err


def test_not_submitted_and_a_providers_pending_never_mix(dialect):
    """One shard queued at the provider (``pending``, with a batch), two waiting for a slot
    (``not_submitted``, no batch)."""
    with LocalBatchServer(seed=3, queued_polls=5, queued_status="pending") as srv:
        kwargs = connection_kwargs(srv, dialect)
        job = TEXTS.netmind.submit(
            "{text}", model="m", max_requests=2, max_concurrent_batches=1, **kwargs
        )
        _, states = job_shards(job.id, base_url=kwargs["base_url"], api_key=srv.api_key)
        assert [(s.batch_id is not None, s.status) for s in states] == [
            (True, "pending"),
            (False, "not_submitted"),
            (False, "not_submitted"),
        ]
        assert job.status == "pending"  # the least advanced shard that runs
        out = job.result()
        _, states = job_shards(job.id, base_url=kwargs["base_url"], api_key=srv.api_key)
    assert (out["status"] == "ok").all()
    assert [s.status for s in states] == ["completed"] * 3


def test_cli_status_shows_an_unknown_status_verbatim(tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.WARNING, "netmind_frames")
    status = unknown_status()
    TEXTS.to_csv(tmp_path / "in.csv", index=False)
    with LocalBatchServer(seed=3, queued_polls=20, queued_status=status) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        submit = ["submit", str(tmp_path / "in.csv"), "--prompt", "{text}", "--model", "m"]
        submit += ["--max-requests", "3", "--max-concurrent-batches", "1"]
        assert main([*submit, "--base-url", srv.base_url, "--quiet"]) == EXIT_OK
        job_id = capsys.readouterr().out.strip()
        assert main(["status", job_id]) == EXIT_OK
        assert main(["status", job_id]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    shard_lines = [line for line in lines if line.strip().startswith("shard")]
    assert [status in line for line in shard_lines] == [True, False, True, False]
    assert ["not_submitted" in line for line in shard_lines] == [False, True, False, True]
    assert len(warnings_about(caplog, status)) == 1
