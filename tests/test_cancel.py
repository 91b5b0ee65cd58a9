"""Cancelling takes time on Netmind (a batch stays `cancelling` until its in-flight requests
finish, up to 10 minutes): the local server's `cancel_after` knob emulates it, and both
`job.cancel(timeout=...)` and `netmind-frames cancel --timeout` stop waiting without losing
anything. A batch that finishes between the status fetch and the cancel is no error."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from conftest import connection_kwargs

import netmind_frames
from netmind_frames import JobTimeoutError, LocalBatchServer
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, main
from netmind_frames.jobs._rounds import POLL_FAILURES, PollBlips

ROWS = 30


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(ROWS)]})


def _wait_for(predicate, seconds: float = 10.0) -> None:
    end = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def test_the_server_keeps_a_cancelled_batch_cancelling_for_cancel_after(dialect):
    with LocalBatchServer(seconds_per_request=0.05, cancel_after=1.0) as srv:
        job = netmind_frames.submit(
            _frame(), "{text}", model="m", **connection_kwargs(srv, dialect)
        )
        client = job._connection.client
        (batch_id,) = job.batch_ids
        _wait_for(lambda: client.batches.retrieve(batch_id).status == "in_progress")
        client.batches.cancel(batch_id)
        ran = len(srv.executions())
        time.sleep(0.5)
        assert client.batches.retrieve(batch_id).status == "cancelling"
        assert len(srv.executions()) == ran  # no request starts while cancelling
        _wait_for(lambda: client.batches.retrieve(batch_id).status == "cancelled")


def test_cancel_with_a_timeout_stops_waiting_and_cancelling_again_finishes(dialect):
    with LocalBatchServer(seconds_per_request=0.05, cancel_after=1.5) as srv:
        job = netmind_frames.submit(
            _frame(), "{text}", model="m", **connection_kwargs(srv, dialect)
        )
        client = job._connection.client
        (batch_id,) = job.batch_ids
        _wait_for(lambda: client.batches.retrieve(batch_id).completed_at is None
                  and len(srv.executions()) >= 3)  # fmt: skip
        with pytest.raises(JobTimeoutError, match="still cancelling") as info:
            job.cancel(timeout=0.2)
        assert info.value.job_id == job.id
        assert client.batches.retrieve(batch_id).status == "cancelling"

        job.cancel()  # waits for the rest of cancel_after
        assert client.batches.retrieve(batch_id).status == "cancelled"
        out = job.result()
    statuses = out["status"].value_counts().to_dict()
    assert set(statuses) <= {"ok", "cancelled"} and statuses.get("cancelled", 0) > 0
    assert len(out) == ROWS
    ok = out["status"] == "ok"
    assert (out.loc[ok, "response"] == out.loc[ok, "text"]).all()


def test_cli_cancel_timeout_exits_with_an_error_then_cancel_finishes(tmp_path, monkeypatch, capsys):
    _frame().to_parquet(tmp_path / "in.parquet")
    with LocalBatchServer(seconds_per_request=0.05, cancel_after=1.5) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        submit = ["submit", str(tmp_path / "in.parquet"), "--prompt", "{text}", "--model", "m"]
        assert main([*submit, "--quiet", "--base-url", srv.base_url]) == EXIT_OK
        job_id = capsys.readouterr().out.strip()
        _wait_for(lambda: len(srv.executions()) >= 3)

        assert main(["cancel", job_id, "--timeout", "0.2"]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert "still cancelling" in err and job_id in err
        assert main(["status", job_id]) == EXIT_OK
        assert "cancelling" in capsys.readouterr().out

        assert main(["cancel", job_id]) == EXIT_OK
        assert "cancelled" in capsys.readouterr().err
        assert main(["status", job_id]) == EXIT_OK
        status = capsys.readouterr().out
    assert "cancelled" in status and "cancelling" not in status


def test_a_batch_that_finishes_before_its_cancel_is_no_error(tmp_path, monkeypatch, capsys):
    """The status fetch still says in_progress; by the time the cancel arrives the batch has
    completed and the server refuses the cancel (400)."""
    _frame().to_parquet(tmp_path / "in.parquet")
    with LocalBatchServer(seconds_per_request=0.01) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        submit = ["submit", str(tmp_path / "in.parquet"), "--prompt", "{text}", "--model", "m"]
        assert main([*submit, "--quiet", "--base-url", srv.base_url]) == EXIT_OK
        job_id = capsys.readouterr().out.strip()
        # `cancel` fetches the batches before it cancels: that fetch is answered at once but
        # held back 1 s, so it reports the batch as it was, running; the batch (0.3 s of
        # work) completes meanwhile.
        srv.inject_fault("GET", "/batches/[^/]+", "delay:1.0", times=1)
        assert main(["cancel", job_id]) == EXIT_OK
        assert main(["status", job_id]) == EXIT_OK
        assert "completed" in capsys.readouterr().out
        out = tmp_path / "out.parquet"
        assert main(["result", job_id, str(out), "--quiet", "--poll-interval", "0.05"]) == EXIT_OK
    assert (pd.read_parquet(out)["status"] == "ok").all()


@pytest.mark.parametrize("timeout", ["1", True, -1.0, float("nan")])
def test_cancel_checks_its_timeout_before_cancelling_anything(server, timeout):
    job = netmind_frames.submit(
        _frame(), "{text}", model="m", **connection_kwargs(server, "netmind")
    )
    with pytest.raises(netmind_frames.InputError, match="timeout"):
        job.cancel(timeout=timeout)
    job.wait()
    assert (job.result()["status"] == "ok").all()  # nothing was cancelled


def test_cancel_after_must_be_a_non_negative_number():
    with pytest.raises(ValueError, match="cancel_after"):
        LocalBatchServer(cancel_after=-1)


def test_a_cli_cancel_reaches_the_retry_round_of_the_process_that_waits(dialect):
    """`netmind-frames cancel` knows the first round's batches only (the journal's); the
    process running a retry round cancels that round's batches when it notices the cancel."""
    import threading

    from netmind_frames.jobs._status import cancel_job

    with LocalBatchServer(seconds_per_request=0.05, fail_rate=0.5, seed=1) as srv:
        job = netmind_frames.submit(
            _frame(), "{text}", model="m", retries=1, **connection_kwargs(srv, dialect)
        )
        outcome: dict[str, object] = {}
        waiter = threading.Thread(target=lambda: outcome.update(out=job.result()), daemon=True)
        waiter.start()
        _wait_for(lambda: len(job.retry_batch_ids) == 1, seconds=20)
        (retry_id,) = job.retry_batch_ids
        client = job._connection.client
        _wait_for(lambda: client.batches.retrieve(retry_id).status == "in_progress")

        cancel_job(job.id, base_url=connection_kwargs(srv, dialect)["base_url"],
                   api_key=srv.api_key)  # fmt: skip
        waiter.join(timeout=20)
        assert not waiter.is_alive()
        retry = client.batches.retrieve(retry_id)
    assert retry.status == "cancelled"
    assert retry.request_counts.completed + retry.request_counts.failed < retry.request_counts.total
    out = outcome["out"]
    assert isinstance(out, pd.DataFrame) and len(out) == ROWS
    assert set(out["status"]) <= {"ok", "failed", "cancelled"}
    ok = out["status"] == "ok"
    assert (out.loc[ok, "response"] == out.loc[ok, "text"]).all()


def test_polls_outlast_blips_until_too_many_fail_in_a_row(caplog):
    """The job's poll and the cancel's wait share one rule: a success starts the count again;
    the POLL_FAILURES-th failure in a row is raised, the earlier ones only logged."""
    caplog.set_level("INFO", logger="netmind_frames")
    blips, error = PollBlips("poll while cancelling"), RuntimeError("blip")
    for _ in range(POLL_FAILURES - 1):
        blips.outlast(error, 0.5)
    blips.passed()
    for _ in range(POLL_FAILURES - 1):
        blips.outlast(error, 0.5)
    with pytest.raises(RuntimeError) as caught:
        blips.outlast(error, 0.5)
    assert caught.value is error
    assert "poll while cancelling failed; trying again in 0.5 s" in caplog.text
