"""``ddf.netmind`` on a real ``distributed.LocalCluster`` (worker processes) against the local
batch server over loopback, in both dialects: the pandas path's results, a worker killed while
submitting and while joining, the driver killed while waiting, and the validation pass."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

from conftest import (  # noqa: E402
    assert_paid_once,
    connection_kwargs,
    server_batches,
    until_answered,
    uploaded_files,
)

from netmind_frames import InputError  # noqa: E402
from netmind_frames.server import LocalBatchServer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CALL = {"model": "m", "max_tokens": 6, "max_requests": 4, "max_concurrent_batches": 3}


@pytest.fixture(scope="session")
def cluster() -> Iterator[Any]:
    """Two single-threaded worker processes, for the whole session; the client is current."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    with (
        distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=1,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture
def client(cluster: Any, tmp_path: Path) -> Any:
    """The cluster, each worker with its own empty journal (a worker's journal is its own, so
    a re-run on another worker can only find the first batch on the server)."""
    cluster.run(_own_home, str(tmp_path / "workers"))
    return cluster


def _own_home(root: str) -> None:
    home = Path(root) / str(os.getpid())
    home.mkdir(parents=True, exist_ok=True)
    os.environ["NETMIND_FRAMES_HOME"] = str(home)


def _frame(rows: int = 30, partitions: int = 3) -> Any:
    texts = [f"row {i} is {'good' if i % 3 else 'bad'}" for i in range(rows)]
    df = pd.DataFrame({"text": texts, "n": range(rows)}, index=pd.RangeIndex(100, 100 + rows))
    return dd.from_pandas(df, npartitions=partitions)


def test_results_equal_the_pandas_path(client: Any, fresh_server: Any, dialect: str) -> None:
    ddf = _frame()
    kwargs = {**connection_kwargs(fresh_server, dialect), **CALL}
    out = ddf.netmind.batch_complete("Say {text}", **kwargs)
    reference = ddf.compute().netmind.batch_complete("Say {text}", **kwargs)
    # meta is right before anything is computed; partitions and divisions are the input's.
    assert list(out._meta.columns) == list(reference.columns)
    assert out._meta.dtypes.to_dict() == reference.dtypes.to_dict()
    assert out.npartitions == ddf.npartitions
    assert out.divisions == ddf.divisions
    result = out.compute()
    result.attrs, reference.attrs = {}, {}
    pd.testing.assert_frame_equal(result, reference)
    assert (result["status"] == "ok").all()


def test_empty_partitions_keep_their_place(client: Any, fresh_server: Any) -> None:
    frame = _frame(rows=12, partitions=1).compute()
    ddf = dd.from_pandas(frame.assign(cid=[f"r{i}" for i in range(12)]), npartitions=3)
    ddf = ddf[ddf["n"] >= 4]
    assert ddf.map_partitions(len).compute().tolist() == [0, 4, 4]  # the first one is empty
    kwargs = {**connection_kwargs(fresh_server, "openai"), **CALL, "custom_id_column": "cid"}
    out = ddf.netmind.batch_complete("Say {text}", **kwargs)
    reference = ddf.compute().netmind.batch_complete("Say {text}", **kwargs)
    assert out.npartitions == 3
    result = out.compute()
    result.attrs, reference.attrs = {}, {}
    pd.testing.assert_frame_equal(result, reference)


def test_embeddings_equal_the_pandas_path(client: Any, fresh_server: Any) -> None:
    ddf = _frame(rows=12, partitions=2)
    kwargs = {**connection_kwargs(fresh_server, "openai"), "model": "emb", "max_requests": 4}
    out = ddf.netmind.batch_embed("text", **kwargs).compute()
    reference = ddf.compute().netmind.batch_embed("text", **kwargs)
    assert out.index.equals(reference.index)
    assert out.dtypes.to_dict() == reference.dtypes.to_dict()
    for got, want in zip(out["embedding"], reference["embedding"], strict=True):
        assert (got == want).all()


def _exit_after(target: str, marker: str) -> None:
    """In a worker: once ``marker`` exists, end this process (no cleanup) right after
    ``target`` returned: ``submit`` (a shard's batch was created) or ``collect`` (a shard's
    results were downloaded and parsed)."""
    from netmind_frames.jobs import _rounds

    def fire() -> None:
        try:
            os.unlink(marker)  # one worker only
        except FileNotFoundError:
            return
        os._exit(1)

    if target == "submit":
        real_submit = _rounds.submit_shard
        if getattr(real_submit, "_patched", False):
            return

        def submit_then_exit(*args: Any, **kwargs: Any) -> str:
            batch_id = real_submit(*args, **kwargs)
            fire()
            return batch_id

        submit_then_exit._patched = True  # type: ignore[attr-defined]
        _rounds.submit_shard = submit_then_exit  # type: ignore[assignment]
    else:
        real_collect = _rounds.Driver.collect
        if getattr(real_collect, "_patched", False):
            return

        def collect_then_exit(self: Any, *args: Any, **kwargs: Any) -> Any:
            table = real_collect(self, *args, **kwargs)
            fire()
            return table

        collect_then_exit._patched = True  # type: ignore[attr-defined]
        _rounds.Driver.collect = collect_then_exit  # type: ignore[method-assign]


@pytest.mark.parametrize("target", ["submit", "collect"])
def test_a_worker_killed_mid_task_costs_nothing_twice(
    client: Any, fresh_server: Any, tmp_path: Path, target: str
) -> None:
    marker = tmp_path / "exit-once"
    marker.touch()
    client.run(_exit_after, target, str(marker))
    ddf = _frame()
    kwargs = {**connection_kwargs(fresh_server, "netmind"), **CALL, "max_concurrent_batches": 9}
    job = ddf.netmind.submit("Say {text}", **kwargs)
    result = job.result().compute()
    assert not marker.exists()  # a worker did exit at that point
    assert list(result.index) == list(range(100, 130))
    assert (result["status"] == "ok").all()
    assert list(result["response"]) == ["Say " + text for text in result["text"]]  # each its own
    assert_paid_once(fresh_server, sum(t.n_shards for t in job.tickets))


def test_a_bad_row_in_partition_37_of_40_stops_before_any_upload(
    client: Any, fresh_server: Any
) -> None:
    ddf = _frame(rows=400, partitions=40)
    bad = ddf.partitions[36].index.compute()[3]
    frame = ddf.compute()
    frame.loc[bad, "text"] = None
    ddf = dd.from_pandas(frame, npartitions=40)
    kwargs = {**connection_kwargs(fresh_server, "netmind"), **CALL}
    with pytest.raises(InputError) as caught:
        ddf.netmind.batch_complete("Say {text}", **kwargs)
    message = str(caught.value)
    assert "partition 37 of 40" in message
    assert f"row 3 (index {bad})" in message
    assert "'text'" in message
    assert uploaded_files(fresh_server) == []
    assert server_batches(fresh_server) == []


def test_what_cannot_apply_says_so(client: Any) -> None:
    with pytest.raises(InputError, match=r"local=True cannot be used with Dask"):
        _frame().netmind.batch_complete("Say {text}", model="m", local=True)
    with pytest.raises(InputError, match=r"mode='sync' cannot be used with Dask"):
        _frame().netmind.batch_complete("Say {text}", model="m", mode="sync", api_key="k")


_DRIVER = """
import sys
import pandas as pd, dask.dataframe as dd, distributed
import netmind_frames

if __name__ == "__main__":
    address, base_url, api_key = sys.argv[1:4]
    with distributed.Client(address):
        texts = [f"row {i} is {'good' if i % 3 else 'bad'}" for i in range(30)]
        df = pd.DataFrame({"text": texts, "n": range(30)}, index=pd.RangeIndex(100, 130))
        ddf = dd.from_pandas(df, npartitions=3)
        ddf.netmind.batch_complete(
            "Say {text}", model="m", max_tokens=6, max_requests=4, max_concurrent_batches=9,
            base_url=base_url, api_key=api_key, poll_interval=0.05, progress=False,
        ).compute()
        print("FINISHED")
"""


def _recorded(home: Path) -> int:
    """The batches the driver's journal records (0 before it has written its record)."""
    for path in (home / "partitioned").glob("job-*.json"):
        with contextlib.suppress(ValueError):
            return sum(len(p["batch_ids"]) for p in json.loads(path.read_text())["partitions"])
    return 0


def test_the_driver_killed_while_waiting_then_the_same_call_reattaches(
    client: Any, tmp_path: Path
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER))
    home = Path(os.environ["NETMIND_FRAMES_HOME"])
    with LocalBatchServer(seed=2, seconds_per_request=0.5) as srv:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [sys.executable, str(script), client.scheduler.address, srv.openai_base_url]
        driver = subprocess.Popen(
            [*argv, srv.api_key], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            # Killed once the driver's record lists all 9 batches: it is waiting for them.
            deadline = time.monotonic() + 120
            while _recorded(home) < 9 and time.monotonic() < deadline:
                assert driver.poll() is None, driver.communicate()
                time.sleep(0.05)
            assert _recorded(home) == 9
        finally:
            driver.kill()
            stdout, stderr = driver.communicate()
        assert b"FINISHED" not in stdout, stderr  # killed while waiting
        before = {b.id for b in server_batches(srv)}
        ddf = _frame()
        kwargs = {**connection_kwargs(srv, "openai"), **CALL, "max_concurrent_batches": 9}
        result = ddf.netmind.batch_complete("Say {text}", **kwargs).compute()
        assert (result["status"] == "ok").all()
        assert len(result) == 30
        after = {b.id for b in server_batches(srv)}
        assert after == before  # nothing submitted again...
        assert_paid_once(srv, len(after))  # ...and 9 shards, 9 batches
        assert len(after) == 9


def test_cancel_stops_the_batches_and_submits_no_more(client: Any) -> None:
    # 3 partitions of 3 shards, 3 batches at a time: the first wave is partition 0 alone.
    with LocalBatchServer(seed=2, seconds_per_request=2) as srv:
        kwargs = {**connection_kwargs(srv, "openai"), **CALL}
        ddf = _frame()
        job = ddf.netmind.submit("Say {text}", **kwargs)
        first = {b.id for b in server_batches(srv)}
        assert len(first) == 3
        until_answered(srv)
        assert job.cancel(timeout=60) is job
        batches = server_batches(srv)
        assert {b.id for b in batches} == first  # no further wave
        assert {b.status for b in batches} <= {"cancelled", "completed"}
        assert "cancelled" in {b.status for b in batches}
        answered = sum(b.request_counts.completed for b in batches)
        assert answered >= 1

        result = job.result().compute()
        assert len(result) == 30
        assert result.index.tolist() == list(range(100, 130))
        assert set(result["status"]) <= {"ok", "cancelled"}
        # Partitions 1 and 2 were never submitted: all their rows are cancelled.
        assert (result["status"].iloc[10:] == "cancelled").all()
        ok = result[result["status"] == "ok"]
        assert len(ok) == answered  # what ran keeps its answer, on its own row
        pairs = zip(ok["response"], ok["n"], strict=True)
        assert all(r.startswith(f"Say row {n} ") for r, n in pairs)
        assert {b.id for b in server_batches(srv)} == first  # the join paid for nothing

        # The same call again reattaches to the cancelled job: it submits nothing.
        again = ddf.netmind.batch_complete("Say {text}", **kwargs).compute()
        assert again["status"].tolist() == result["status"].tolist()
        assert {b.id for b in server_batches(srv)} == first


def test_cancel_while_another_thread_waits_stops_its_waves(client: Any) -> None:
    with LocalBatchServer(seed=2, seconds_per_request=2) as srv:
        # 3 partitions of 2 four-row shards, 2 batches at a time: each batch takes 8 s, so
        # no slot frees up before the cancel, and the first wave is partition 0 alone.
        kwargs = {**connection_kwargs(srv, "netmind"), **CALL, "max_concurrent_batches": 2}
        ddf = _frame(rows=24)
        assert ddf.map_partitions(len).compute().tolist() == [8, 8, 8]
        job = ddf.netmind.submit("Say {text}", **kwargs)
        waiter = threading.Thread(target=job.wait)
        waiter.start()
        until_answered(srv)
        job.cancel(timeout=60)
        waiter.join(timeout=60)
        assert not waiter.is_alive()  # the wait saw the cancel and ended
        batches = server_batches(srv)
        assert len(batches) == 2  # the first wave only
        assert {b.status for b in batches} <= {"cancelled", "completed"}
        statuses = job.result().compute()["status"]
        assert (statuses.iloc[8:] == "cancelled").all()


def test_the_cli_names_a_dask_job_and_points_to_its_methods(
    client: Any, fresh_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from netmind_frames.cli import EXIT_ERROR, main

    kwargs = {**connection_kwargs(fresh_server, "netmind"), **CALL}
    job = _frame().netmind.submit("Say {text}", **kwargs)
    for command in ("status", "cancel"):
        assert main([command, job.id, "--base-url", fresh_server.base_url]) == EXIT_ERROR
        message = capsys.readouterr().err
        assert f"{job.id} is a Dask or Spark job" in message
        assert "cancel()" in message
    assert job.cancel(timeout=60) is job  # the job itself can


def test_a_wave_submitted_while_a_cancel_is_made_is_cancelled_too() -> None:
    """The core alone: a cancel made elsewhere knows only the batches in the record when it
    began; the waiting driver cancels those of a wave it was submitting meanwhile."""
    from netmind_frames.frames import _partitions as core

    # One shard per partition and one batch at a time: each wave is exactly one partition.
    frames = [_frame(rows=4, partitions=1).compute() for _ in range(3)]
    frames = [f.assign(text=f["text"] + f" in part {i}") for i, f in enumerate(frames)]
    with LocalBatchServer(seed=3, seconds_per_request=1) as srv:
        kwargs = {**connection_kwargs(srv, "netmind"), "model": "m", "max_requests": 4}
        call, _ = core.make_call(frames[0].iloc[:1], "Say {text}", kwargs)
        plans = [core.validate_partition(f, call, i, len(frames)) for i, f in enumerate(frames)]
        waves: list[list[Any]] = []

        def submit_wave(wave: list[tuple[Any, int]]) -> list[Any]:
            if waves:  # the second wave: a cancel elsewhere has just saved its mark
                record = core._record(plans, call)
                tickets = record.load(plans)
                record.cancelled = True
                record.save(plans, tickets)
            out = [core.submit_partition(frames[p.number], call, p, n) for p, n in wave]
            waves.append([b for t in out for b in t.batch_ids])
            return out

        tickets = core.wait_partitions(
            plans, call, submit_wave, poll_interval=0.05, progress=False, max_concurrent_batches=1
        )
        by_id = {b.id: b for b in server_batches(srv)}
    assert len(waves) == 2  # the third partition was never submitted
    assert [by_id[b].status for b in waves[0]] == ["completed"]
    assert [by_id[b].status for b in waves[1]] == ["cancelled"]
    assert all(t.cancelled for t in tickets)
    assert [len(t.batch_ids) for t in tickets] == [1, 1, 0]


def test_the_driver_keeps_max_concurrent_batches_across_partitions(tmp_path: Path) -> None:
    """The core alone (no engine): each wave asks for no more batches than there are free
    slots in the whole job, counted on the server when the wave starts."""
    from netmind_frames.frames import _partitions as core

    frames = [_frame(rows=8, partitions=1).compute().iloc[:8] for _ in range(6)]
    frames = [f.assign(n=f["n"] + 100 * i) for i, f in enumerate(frames)]  # distinct rows
    frames = [f.assign(text=f["text"] + f" in part {i}") for i, f in enumerate(frames)]
    with LocalBatchServer(seed=3, seconds_per_request=0.02) as srv:
        kwargs = {**connection_kwargs(srv, "netmind"), "model": "m", "max_requests": 4}
        call, _ = core.make_call(frames[0].iloc[:1], "Say {text}", kwargs)
        plans = [core.validate_partition(f, call, i, len(frames)) for i, f in enumerate(frames)]
        peaks = []

        def submit_wave(wave: list[tuple[Any, int]]) -> list[Any]:
            running = [b for b in server_batches(srv) if b.status not in core.TERMINAL_STATUSES]
            have = {t.number: len(t.batch_ids) for t in tickets_so_far}
            asked = sum(shards - have.get(plan.number, 0) for plan, shards in wave)
            peaks.append(len(running) + asked)
            out = [core.submit_partition(frames[p.number], call, p, n) for p, n in wave]
            tickets_so_far.extend(out)
            return out

        tickets_so_far: list[Any] = []
        tickets = core.wait_partitions(
            plans, call, submit_wave, poll_interval=0.05, progress=False, max_concurrent_batches=3
        )
        assert sum(t.n_shards for t in tickets) == 12
        assert len(peaks) >= 4  # in waves...
        assert max(peaks) <= 3  # ...never more than 3 batches at once
        assert_paid_once(srv, 12)
