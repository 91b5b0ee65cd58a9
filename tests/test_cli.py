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


@pytest.mark.parametrize("command", ["complete", "serve"])
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
