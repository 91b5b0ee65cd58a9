"""Provider storage is not ours to fill (issue #13, item 4): a job's input files are deleted
once its result is written (unless keep_files), ``job.delete_files()`` deletes the rest, the
journal knows every file, and ``netmind-frames files`` lists and deletes them."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import openai
import pandas as pd
import pytest
from conftest import connection_kwargs, uploaded_files

from netmind_frames import BatchJob, InputError
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, main
from netmind_frames.jobs._journal import SCHEMA_VERSION, Journal
from netmind_frames.server import LocalBatchServer
from netmind_frames.transport._config import resolve_home, resolve_settings
from netmind_frames.transport._connection import connect

TEXTS = pd.DataFrame({"text": [f"row {i} says hello" for i in range(6)]})


def inputs_on(srv: LocalBatchServer) -> list[str]:
    """The ids of the request files on the server (our uploads are named netmind_frames-*)."""
    return [f["id"] for f in uploaded_files(srv) if f["file_name"].startswith("netmind_frames-")]


def results_on(srv: LocalBatchServer) -> list[str]:
    return [f["id"] for f in uploaded_files(srv) if f["purpose"] != "batch"]


def batches_on(srv: LocalBatchServer) -> int:
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
        return len(client.batches.list(limit=100).data)


def test_batch_complete_deletes_the_inputs_and_keeps_the_outputs(fresh_server, dialect):
    out = TEXTS.netmind.batch_complete(
        "{text}", model="m", max_requests=2, **connection_kwargs(fresh_server, dialect)
    )
    assert (out["status"] == "ok").all()
    assert inputs_on(fresh_server) == []
    assert len(results_on(fresh_server)) == 3  # one output file per shard, still there


def test_keep_files_keeps_the_inputs(fresh_server, dialect):
    kwargs = connection_kwargs(fresh_server, dialect)
    out = TEXTS.netmind.batch_complete(
        "{text}", model="m", max_requests=2, keep_files=True, **kwargs
    )
    assert (out["status"] == "ok").all()
    assert len(inputs_on(fresh_server)) == 3


def test_a_rerun_after_the_inputs_are_gone_pays_nothing(fresh_server, dialect):
    """The journal finds the finished batches; their outputs are still there to download."""
    kwargs = connection_kwargs(fresh_server, dialect)
    first = TEXTS.netmind.batch_complete("{text}", model="m", **kwargs)
    assert inputs_on(fresh_server) == []
    again = TEXTS.netmind.batch_complete("{text}", model="m", **kwargs)
    assert batches_on(fresh_server) == 1
    pd.testing.assert_frame_equal(first, again)


def test_to_parquet_deletes_the_inputs_after_writing(fresh_server, dialect, tmp_path):
    job = TEXTS.netmind.submit("{text}", model="m", **connection_kwargs(fresh_server, dialect))
    assert len(inputs_on(fresh_server)) == 1
    counts = job.to_parquet(tmp_path / "out.parquet")
    assert counts == {"ok": len(TEXTS)}
    assert inputs_on(fresh_server) == []


def test_a_failed_deletion_is_logged_and_the_job_succeeds(fresh_server, dialect, caplog):
    caplog.set_level(logging.WARNING, "netmind_frames")
    fresh_server.inject_fault("DELETE", "/files/.*", "500", times=2)  # both tries fail
    out = TEXTS.netmind.batch_complete(
        "{text}", model="m", **connection_kwargs(fresh_server, dialect)
    )
    assert (out["status"] == "ok").all()
    assert len(inputs_on(fresh_server)) == 1
    assert any("could not delete input file" in r.message for r in caplog.records)
    # the journal still lists it, so `files --delete` can try again
    (stored,) = Journal(resolve_home()).files(kinds=("input",))
    assert stored.file_id == inputs_on(fresh_server)[0]


def test_delete_files_deletes_inputs_and_results(fresh_server, dialect):
    kwargs = connection_kwargs(fresh_server, dialect)
    job = TEXTS.netmind.submit("{text}", model="m", max_requests=3, keep_files=True, **kwargs)
    job.result()
    on_server = {f["id"] for f in uploaded_files(fresh_server)}
    assert len(inputs_on(fresh_server)) == 2 and len(results_on(fresh_server)) == 2
    assert set(job.delete_files()) == on_server
    assert uploaded_files(fresh_server) == []
    assert job.delete_files() == []  # nothing left to delete


def test_delete_files_of_an_attached_job_finds_its_results(fresh_server, dialect):
    """A job attached in another process (no result collected there) still knows its
    output files: they are asked of the server."""
    kwargs = connection_kwargs(fresh_server, dialect)
    job = TEXTS.netmind.submit("{text}", model="m", keep_files=True, **kwargs)
    job.wait()
    attached = BatchJob.attach(
        job.id, frame=TEXTS, base_url=kwargs["base_url"], api_key=fresh_server.api_key
    )
    assert len(attached.delete_files()) == 2  # the input and the output
    assert uploaded_files(fresh_server) == []


def test_delete_files_refuses_while_a_batch_runs(dialect):
    with LocalBatchServer(seed=1, seconds_per_request=0.5) as srv:
        job = TEXTS.netmind.submit("{text}", model="m", **connection_kwargs(srv, dialect))
        with pytest.raises(InputError, match="still runs"):
            job.delete_files()
        assert len(inputs_on(srv)) == 1
        job.cancel()


def test_the_journal_knows_each_file_with_its_size(fresh_server):
    kwargs = connection_kwargs(fresh_server, "netmind")
    job = TEXTS.netmind.submit("{text}", model="m", keep_files=True, **kwargs)
    job.result()
    files = {f.kind: f for f in Journal(resolve_home()).files(job_id=job.id)}
    assert set(files) == {"input", "output"}
    assert files["input"].bytes == len(TEXTS.netmind.to_jsonl(prompt="{text}", model="m"))
    assert files["output"].bytes and files["output"].bytes > 0
    assert files["input"].batch_id == files["output"].batch_id == job.batch_ids[0]


def test_an_older_journal_gains_the_files_table(tmp_path):
    """The table is added, not a new schema: a journal written before it keeps its jobs."""
    path = tmp_path / f"journal-{SCHEMA_VERSION}.sqlite3"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE jobs (job_id TEXT PRIMARY KEY, base_url TEXT, options TEXT, created_at REAL)"
    )
    db.execute("INSERT INTO jobs VALUES ('job-old', 'http://x', '{\"model\": \"m\"}', 1.0)")
    db.commit()
    db.close()
    journal = Journal(tmp_path)
    assert journal.path == path
    assert journal.job_options("job-old") == {"model": "m"}
    journal.record_file("http://x", "file-1", "job-old", "input", size=10)
    assert [f.file_id for f in journal.files()] == ["file-1"]


@pytest.mark.parametrize("provider", ["netmind", "openai"])
def test_transport_delete_says_whether_the_file_was_there(fresh_server, provider):
    base_url = fresh_server.base_url if provider == "netmind" else fresh_server.openai_base_url
    connection = connect(resolve_settings(base_url=base_url, api_key=fresh_server.api_key))
    file_id = connection.files.upload(b'{"a": 1}\n', "x.jsonl")
    assert connection.files.delete(file_id) is True
    assert connection.files.delete(file_id) is False  # gone already (404): not an error
    assert uploaded_files(fresh_server) == []


# -- the CLI ----------------------------------------------------------------------------------


def run_complete(srv: LocalBatchServer, tmp_path: Path, *extra: str) -> int:
    TEXTS.to_csv(tmp_path / "in.csv", index=False)
    args = ["complete", str(tmp_path / "in.csv"), str(tmp_path / "out.parquet")]
    args += ["--prompt", "{text}", "--model", "m", "--poll-interval", "0.05", "--quiet"]
    return main([*args, "--base-url", srv.base_url, *extra])


def test_cli_complete_deletes_inputs_unless_keep_files(fresh_server, tmp_path, monkeypatch):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    assert run_complete(fresh_server, tmp_path, "--max-requests", "3") == EXIT_OK
    assert inputs_on(fresh_server) == []
    assert run_complete(fresh_server, tmp_path, "--keep-files", "--max-requests", "2") == EXIT_OK
    assert len(inputs_on(fresh_server)) == 3


def test_cli_result_keep_files(fresh_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    TEXTS.to_csv(tmp_path / "in.csv", index=False)
    submit = ["submit", str(tmp_path / "in.csv"), "--prompt", "{text}", "--model", "m"]
    assert main([*submit, "--base-url", fresh_server.base_url, "--quiet"]) == EXIT_OK
    job_id = capsys.readouterr().out.strip()
    result = ["result", job_id, str(tmp_path / "out.parquet"), "--poll-interval", "0.05"]
    assert main([*result, "--quiet", "--keep-files"]) == EXIT_OK
    assert len(inputs_on(fresh_server)) == 1
    assert main([*result, "--quiet"]) == EXIT_OK  # the result again, from the outputs
    assert inputs_on(fresh_server) == []


def test_cli_files_lists_and_deletes(fresh_server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    assert run_complete(fresh_server, tmp_path, "--keep-files", "--max-requests", "3") == EXIT_OK
    (job,) = Journal(resolve_home()).recent_jobs()
    capsys.readouterr()

    assert main(["files"]) == EXIT_OK
    listed = capsys.readouterr()
    rows = listed.out.splitlines()
    assert len(rows) == 4  # 2 inputs, 2 outputs
    assert sorted(r.split()[1] for r in rows) == ["input", "input", "output", "output"]
    assert all(r.split()[-1] == job.job_id for r in rows)
    assert all(r.split()[3] in ("B", "kB") for r in rows)  # every size known (not "?")
    assert "4 file(s)" in listed.err
    assert main(["files", "--job", "job-000000000000000000000000"]) == EXIT_OK
    assert capsys.readouterr().out == ""
    assert main(["files", "--older-than", "1"]) == EXIT_OK  # made just now: none that old
    assert capsys.readouterr().out == ""

    assert main(["files", "--job", job.job_id, "--delete"]) == EXIT_OK
    assert "deleted 4 file(s)" in capsys.readouterr().err
    assert uploaded_files(fresh_server) == []
    assert main(["files"]) == EXIT_OK
    assert capsys.readouterr().out == ""


def test_cli_files_delete_reports_what_it_could_not_delete(
    fresh_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    assert run_complete(fresh_server, tmp_path, "--keep-files") == EXIT_OK
    capsys.readouterr()
    # One file's delete fails twice (its try and its retry); files are deleted a few at once.
    failing = uploaded_files(fresh_server)[0]["id"]
    fresh_server.inject_fault("DELETE", f"/files/{failing}", "500", times=2)
    assert main(["files", "--delete"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "deleted 1 file(s)" in err and "deletion failed" in err
    assert [f["id"] for f in uploaded_files(fresh_server)] == [failing]
    assert main(["files", "--delete"]) == EXIT_OK  # tried again: gone
    assert uploaded_files(fresh_server) == []


def test_cli_files_rejects_a_negative_age(capsys):
    with pytest.raises(SystemExit) as info:
        main(["files", "--older-than", "-1"])
    assert info.value.code == 2
    assert "--older-than" in capsys.readouterr().err
