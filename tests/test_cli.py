"""The CLI, driven in-process through main() and once as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from netmind_frames import LocalBatchServer
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, EXIT_ROWS_FAILED, EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reviews.parquet"


def complete_args(out: Path, *extra: str) -> list[str]:
    return [
        "complete",
        str(EXAMPLE),
        str(out),
        "--prompt",
        "Review: {review}",
        "--model",
        "m",
        "--poll-interval",
        "0.05",
        "--quiet",
        *extra,
    ]


def test_complete_local_writes_every_row_in_order(tmp_path):
    out = tmp_path / "out.parquet"
    assert main(complete_args(out, "--local", "--max-tokens", "50")) == EXIT_OK
    source, result = pd.read_parquet(EXAMPLE), pd.read_parquet(out)
    pd.testing.assert_frame_equal(result[source.columns], source)
    assert list(result["response"]) == [f"Review: {r}" for r in source["review"]]
    assert (result["status"] == "ok").all()


def test_complete_reads_csv_and_jsonl_and_keeps_leading_zeros(tmp_path):
    frame = pd.DataFrame({"code": ["0001", "0420"], "text": ["a", "b"]})
    frame.to_json(tmp_path / "in.jsonl", orient="records", lines=True)
    frame.to_csv(tmp_path / "in.csv", index=False)
    for name in ("in.jsonl", "in.csv"):
        out = tmp_path / f"{name}.parquet"
        args = [
            "complete",
            str(tmp_path / name),
            str(out),
            "--prompt",
            "{code} {text}",
            "--model",
            "m",
            "--local",
            "--quiet",
            "--poll-interval",
            "0.05",
        ]
        assert main(args) == EXIT_OK
        assert list(pd.read_parquet(out)["response"]) == ["0001 a", "0420 b"], name


def test_some_rows_failed_exits_3(tmp_path, monkeypatch):
    with LocalBatchServer(fail_rate=0.5, seed=2) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        code = main(complete_args(tmp_path / "out.parquet", "--base-url", srv.base_url))
    assert code == EXIT_ROWS_FAILED
    assert (pd.read_parquet(tmp_path / "out.parquet")["status"] == "failed").any()


def test_bad_input_exits_1_with_one_readable_line(tmp_path, capsys):
    args = [
        "complete",
        str(EXAMPLE),
        str(tmp_path / "o.parquet"),
        "--prompt",
        "{nope}",
        "--model",
        "m",
        "--local",
    ]
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "o.parquet").exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["complete", "in.parquet"])
    assert info.value.code == EXIT_USAGE
    assert main([]) == EXIT_USAGE


@pytest.mark.parametrize("value", ["0", "-3", "five"])
def test_a_bad_count_is_named_by_its_flag_before_anything_runs(value, tmp_path, capsys):
    args = ["complete", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), "--local"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--prompt", "{t}", "--model", "m", "--max-tokens", value])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"argument --max-tokens: must be a whole number >= 1, not '{value}'" in err
    assert "_positive" not in err and "max_tokens" not in err


@pytest.mark.parametrize(
    "command", ["complete", "submit", "status", "wait", "result", "cancel", "list", "serve"]
)
def test_every_command_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    assert "netmind-frames" in capsys.readouterr().out


def test_console_script_runs_as_a_subprocess(tmp_path):
    out = tmp_path / "out.parquet"
    bin_dir = Path(sys.executable).parent
    exe = bin_dir / "netmind-frames"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "netmind_frames.cli"]
    proc = subprocess.run(
        [*command, *complete_args(out, "--local")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "NETMIND_API_KEY"},
    )
    assert proc.returncode == EXIT_OK, proc.stderr
    assert len(pd.read_parquet(out)) == len(pd.read_parquet(EXAMPLE))


def remote_args(srv: LocalBatchServer, *extra: str) -> list[str]:
    return ["--base-url", srv.base_url, "--poll-interval", "0.05", "--quiet", *extra]


def test_a_file_needing_many_shards_keeps_every_row_in_order(tmp_path, server, monkeypatch):
    """Small --max-requests and --max-bytes, few batches at once, several chunks: same rows."""
    from netmind_frames.build import _source

    monkeypatch.setattr(_source, "CHUNK_TARGET", 40)  # several chunks of a small file
    monkeypatch.setenv("NETMIND_API_KEY", server.api_key)
    frame = pd.DataFrame(
        {"n": range(203), "text": [f"text {i} " + "x" * (i % 17) for i in range(203)]}
    )
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=50)
    out = tmp_path / "out.parquet"
    args = ["complete", str(tmp_path / "in.parquet"), str(out), "--prompt", "{n}: {text}"]
    args += ["--model", "m", "--max-requests", "7", "--max-bytes", "900"]
    args += ["--max-concurrent-batches", "3", *remote_args(server)]
    assert main(args) == EXIT_OK
    result = pd.read_parquet(out)
    pd.testing.assert_frame_equal(result[frame.columns], frame)
    assert list(result["response"]) == [
        f"{n}: {t}" for n, t in zip(frame["n"], frame["text"], strict=True)
    ]
    (job,) = netmind_frames_jobs()
    assert len(job.shard_keys) > 203 // 7


def netmind_frames_jobs():
    from netmind_frames.jobs._journal import Journal
    from netmind_frames.transport._config import resolve_home

    return Journal(resolve_home()).recent_jobs()


def test_submit_status_wait_result_list(tmp_path, fresh_server, monkeypatch, capsys):
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(25)]})
    frame.to_csv(tmp_path / "in.csv", index=False)
    submit = ["submit", str(tmp_path / "in.csv"), "--prompt", "{text}", "--model", "m"]
    submit += ["--max-requests", "5", "--max-concurrent-batches", "2", "--base-url"]
    assert main([*submit, fresh_server.base_url, "--quiet"]) == EXIT_OK
    job_id = capsys.readouterr().out.strip()
    assert job_id.startswith("job-")

    assert main(["status", job_id]) == EXIT_OK
    status = capsys.readouterr().out
    assert job_id in status and status.count("not_submitted") == 3  # 2 of 5 shards submitted
    assert "pending" not in status  # a provider's status, never our own

    assert main(["wait", job_id, "--poll-interval", "0.05", "--quiet"]) == EXIT_OK
    assert main(["status", job_id]) == EXIT_OK
    assert capsys.readouterr().out.count("completed") == 5

    out = tmp_path / "out.parquet"
    assert main(["result", job_id, str(out), "--poll-interval", "0.05", "--quiet"]) == EXIT_OK
    assert list(pd.read_parquet(out)["response"]) == list(frame["text"])

    assert main(["list"]) == EXIT_OK
    assert job_id in capsys.readouterr().out
    # Submitting again is reattaching: the same id, no new batch.
    assert main([*submit, fresh_server.base_url, "--quiet"]) == EXIT_OK
    assert capsys.readouterr().out.strip() == job_id


def test_cancel_keeps_finished_rows_and_submits_no_more(tmp_path, monkeypatch, capsys):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(40)]})
    frame.to_parquet(tmp_path / "in.parquet")
    with LocalBatchServer(seconds_per_request=0.02) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        submit = ["submit", str(tmp_path / "in.parquet"), "--prompt", "{text}", "--model", "m"]
        submit += ["--max-requests", "10", "--max-concurrent-batches", "1", "--quiet"]
        assert main([*submit, "--base-url", srv.base_url]) == EXIT_OK
        job_id = capsys.readouterr().out.strip()
        assert main(["cancel", job_id]) == EXIT_OK
        out = tmp_path / "out.parquet"
        code = main(["result", job_id, str(out), "--poll-interval", "0.05", "--quiet"])
    assert code == EXIT_ROWS_FAILED
    result = pd.read_parquet(out)
    assert len(result) == 40
    assert set(result["status"]) <= {"ok", "cancelled"}
    assert (result["status"].iloc[10:] == "cancelled").all()  # shards 2-4: never submitted


def test_unknown_job_and_local_job_commands_fail_clearly(tmp_path, capsys):
    assert main(["status", "job-000000000000000000000000"]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no job" in err[0]
    assert main(["wait", "job-000000000000000000000000", "--local"]) == EXIT_USAGE
    assert "serve" in capsys.readouterr().err
    args = ["submit", str(EXAMPLE), "--prompt", "{review}", "--model", "m", "--local"]
    assert main(args) == EXIT_USAGE


def test_bad_param_and_bad_extension_are_errors(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("x")
    args = ["complete", str(tmp_path / "in.txt"), str(tmp_path / "o.parquet")]
    assert main([*args, "--prompt", "{x}", "--model", "m", "--local"]) == EXIT_ERROR
    assert "unknown input format" in capsys.readouterr().err
    args = complete_args(tmp_path / "o.parquet", "--local", "--param", "novalue")
    assert main(args) == EXIT_USAGE


def test_list_with_an_empty_journal(capsys):
    assert main(["list"]) == EXIT_OK
    assert "no jobs" in capsys.readouterr().err


def test_dropped_downloads_are_retried_whole(tmp_path, fresh_server, monkeypatch, dialect):
    """A download whose connection drops mid-body is fetched again from the start."""
    monkeypatch.setenv("NETMIND_API_KEY", fresh_server.api_key)
    path = "/files/.*/content" if dialect == "openai" else "/_presigned/.*"
    fresh_server.inject_fault("GET", path, "drop_after", times=2)
    base_url = fresh_server.base_url if dialect == "netmind" else fresh_server.openai_base_url
    out = tmp_path / "out.parquet"
    args = complete_args(out, "--base-url", base_url)
    assert main(args) == EXIT_OK
    assert fresh_server.pending_faults() == []
    source, result = pd.read_parquet(EXAMPLE), pd.read_parquet(out)
    assert list(result["response"]) == [f"Review: {r}" for r in source["review"]]
