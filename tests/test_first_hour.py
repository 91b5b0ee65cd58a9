"""The first hour of a real user (issue 15): each mistake is caught before it costs a batch or
a minute, in the words of the caller (CLI options on the CLI, keywords in Python)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import closed_port, uploaded_files

import netmind_frames
from netmind_frames import ConfigurationError, InputError, LocalBatchServer, RowError
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, EXIT_USAGE, main
from netmind_frames.jobs._journal import Journal
from netmind_frames.transport._config import resolve_home

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reviews.parquet"
PRICES = {"m": {"input": 1.0, "output": 2.0}}


def frame(n: int = 4) -> pd.DataFrame:
    return pd.DataFrame({"text": [f"row {i}" for i in range(n)]})


@contextlib.contextmanager
def closed_port_url() -> Iterator[str]:
    with closed_port() as port:
        yield f"http://127.0.0.1:{port}/v1"


def cli(srv: LocalBatchServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
    return ["--base-url", srv.base_url, "--poll-interval", "0.05", "--quiet"]


def complete(out: Path, *extra: str, source: Path = EXAMPLE) -> list[str]:
    return ["complete", str(source), str(out), "--prompt", "{review}", "--model", "m", *extra]


# -- 1. check before paying ---------------------------------------------------------------


@pytest.mark.parametrize("out", ["o.csv", "missing/o.parquet"])
def test_a_bad_output_path_is_refused_before_anything_is_uploaded(
    out, tmp_path, fresh_server, monkeypatch, capsys
):
    args = complete(tmp_path / out, *cli(fresh_server, monkeypatch))
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "OUT" in err and ("parquet" in err or "does not exist" in err)
    assert uploaded_files(fresh_server) == []
    assert not (tmp_path / out).exists()


def test_a_moved_input_gets_a_hint_to_pass_input(tmp_path, fresh_server, monkeypatch, capsys):
    source = tmp_path / "in.parquet"
    source.write_bytes(EXAMPLE.read_bytes())
    submit = ["submit", str(source), "--prompt", "{review}", "--model", "m"]
    assert main([*submit, *cli(fresh_server, monkeypatch)[:2], "--quiet"]) == EXIT_OK
    job_id = capsys.readouterr().out.strip()
    source.rename(tmp_path / "moved.parquet")
    args = ["result", job_id, str(tmp_path / "o.parquet"), *cli(fresh_server, monkeypatch)]
    assert main(args) == EXIT_USAGE
    assert "--input" in capsys.readouterr().err
    assert main([*args, "--input", str(tmp_path / "moved.parquet")]) == EXIT_OK


def test_a_failed_write_after_the_batch_names_the_job_and_how_to_get_it(
    tmp_path, fresh_server, monkeypatch, capsys
):
    out = tmp_path / "o.parquet"
    # Where the result is written first: a directory there makes the write fail after the
    # batch ran (and was paid for).
    (tmp_path / f".o.parquet.{os.getpid()}.tmp").mkdir()
    assert main(complete(out, *cli(fresh_server, monkeypatch))) == EXIT_ERROR
    err = capsys.readouterr().err
    (job,) = Journal(resolve_home()).recent_jobs()
    assert f"netmind-frames result {job.job_id}" in err and ".tmp" not in err


# -- 2. a wrong address answers in seconds ------------------------------------------------


def test_a_closed_port_fails_at_once_naming_the_url():
    with closed_port_url() as url, pytest.raises(ConfigurationError) as info:
        netmind_frames.submit(frame(), "{text}", model="m", api_key="k", base_url=url)
    message = str(info.value)
    assert url in message and "/v1" in message and "netmind_frames.doctor()" in message


def test_the_cli_says_doctor_for_an_unreachable_url(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("NETMIND_API_KEY", "k")
    with closed_port_url() as url:
        assert main(complete(tmp_path / "o.parquet", "--base-url", url)) == EXIT_ERROR
    err = capsys.readouterr().err
    assert url in err and "netmind-frames doctor" in err and "netmind_frames." not in err


def test_a_url_without_a_scheme_is_a_configuration_error():
    with pytest.raises(
        ConfigurationError, match=re.escape("no scheme: did you mean 'https://api.x.ai/v1'")
    ):
        netmind_frames.submit(frame(), "{text}", model="m", api_key="k", base_url="api.x.ai/v1")


def test_a_server_that_is_no_batch_api_at_that_path_says_what_is_expected(fresh_server):
    with pytest.raises(ConfigurationError, match=r"not a Batch API.*inference-api/openai/v1"):
        netmind_frames.submit(
            frame(), "{text}", model="m", api_key=fresh_server.api_key, base_url=fresh_server.origin
        )
    assert uploaded_files(fresh_server) == []


@pytest.mark.parametrize("action", ["429", "500", "drop_before"])
def test_a_busy_server_on_first_contact_is_reachable(fresh_server, action):
    fresh_server.inject_fault("GET", "/batches", action)
    out = netmind_frames.batch_complete(
        frame(), "{text}", model="m", api_key=fresh_server.api_key,
        base_url=fresh_server.base_url, poll_interval=0.05, progress=False,
    )  # fmt: skip
    assert (out["status"] == "ok").all()


# -- 3. --param cannot do harm --------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("model=x", "--model"),
        ("retries=3", "--retries"),
        ("max_tokens=5", "--max-tokens"),
        ("messages=[]", "--messages-column"),
        ('stop=["x"', "not valid JSON"),
    ],
)
def test_param_may_not_set_what_an_option_owns_nor_be_broken_json(param, said, tmp_path, capsys):
    assert main(complete(tmp_path / "o.parquet", "--local", "--param", param)) == EXIT_USAGE
    assert said in capsys.readouterr().err


@pytest.mark.parametrize(
    ("param", "said"),
    [
        ("max_token=5", "did you mean 'max_tokens'"),
        ('presence_penalty="hot"', "'presence_penalty' must be a number from -2 to 2"),
        ("top_logprobs=50", "'top_logprobs' must be a whole number from 0 to 20"),
        ("stop=7", "'stop' must be a string or a list of strings"),
    ],
)
def test_typos_and_wrong_types_are_caught_before_upload(
    param, said, tmp_path, fresh_server, monkeypatch, capsys
):
    args = complete(tmp_path / "o.parquet", *cli(fresh_server, monkeypatch), "--param", param)
    assert main(args) == EXIT_ERROR
    assert said in capsys.readouterr().err
    assert uploaded_files(fresh_server) == []


def test_other_parameters_pass_through_unchanged():
    data = netmind_frames.to_jsonl(frame(1), prompt="{text}", model="m", top_k=5, vendor_x="y")
    body = json.loads(data)["body"]
    assert body["top_k"] == 5 and body["vendor_x"] == "y"


def test_python_keywords_and_per_row_params_are_checked_too():
    with pytest.raises(InputError, match="'max_tokens' must be a whole number ≥ 1, not 0"):
        netmind_frames.to_jsonl(frame(), prompt="{text}", model="m", max_tokens=0)
    rows = frame(3).assign(p=[{"temperature": 0.5}, None, {"temperature": 7}])
    with pytest.raises(RowError, match=r"row 2.*'temperature' must be a number"):
        netmind_frames.to_jsonl(rows, prompt="{text}", model="m", params_column="p")


# -- 4. errors in the caller's words --------------------------------------------------------


def test_a_missing_key_is_said_in_each_callers_words(tmp_path, capsys):
    assert main(complete(tmp_path / "o.parquet")) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "NETMIND_API_KEY" in err and "--api-key-env" in err and "--local" in err
    assert "api_key=" not in err and "local=True" not in err
    with pytest.raises(ConfigurationError) as info:
        netmind_frames.submit(frame(), "{text}", model="m")
    assert "api_key=" in str(info.value) and "--" not in str(info.value)


def test_api_key_env_names_the_variable_holding_the_key(
    tmp_path, fresh_server, monkeypatch, capsys
):
    args = complete(tmp_path / "o.parquet", "--base-url", fresh_server.base_url, "--quiet")
    assert main([*args, "--api-key-env", "MY_KEY"]) == EXIT_USAGE
    assert "MY_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("MY_KEY", fresh_server.api_key)
    assert main([*args, "--api-key-env", "MY_KEY", "--poll-interval", "0.05"]) == EXIT_OK


def test_embedding_batches_on_local_say_the_cli_option(tmp_path, capsys):
    args = ["embed", str(EXAMPLE), str(tmp_path / "v.parquet"), "--column", "review",
            "--model", "e", "--local", "--quiet"]  # fmt: skip
    assert main(args) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "--mode sync" in err and "mode='sync'" not in err and "local=True" not in err
    assert main([*args, "--mode", "sync"]) == EXIT_OK
    assert len(pd.read_parquet(tmp_path / "v.parquet")["embedding"]) == 48


def test_a_template_with_json_braces_suggests_doubling_them():
    with pytest.raises(InputError, match=r'double.*\{\{"s": "x"\}\}'):
        netmind_frames.to_jsonl(frame(), prompt='Reply as {"s": "x"}: {text}', model="m")


# -- 5. re-runs say what they did -----------------------------------------------------------


def test_a_rerun_says_it_reattached_and_keeps_the_first_submission_time(
    tmp_path, fresh_server, monkeypatch, capsys
):
    args = [*complete(tmp_path / "o.parquet", *cli(fresh_server, monkeypatch))]
    args.remove("--quiet")
    assert main(args) == EXIT_OK
    (first,) = Journal(resolve_home()).recent_jobs()
    assert "reattached" not in capsys.readouterr().err
    assert main(args) == EXIT_OK
    assert "nothing paid again" in capsys.readouterr().err
    (again,) = Journal(resolve_home()).recent_jobs()
    assert again.created_at == first.created_at
    assert main(["list"]) == EXIT_OK
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("JOB") and "FIRST SUBMITTED" in listed[0]


def test_a_python_rerun_reattaches_and_its_summary_says_so(fresh_server, caplog):
    kwargs = {"api_key": fresh_server.api_key, "base_url": fresh_server.base_url,
              "poll_interval": 0.05, "progress": False}  # fmt: skip
    first = netmind_frames.submit(frame(), "{text}", model="m", **kwargs)
    assert not first.reattached and not first.summary()["reattached"]
    with caplog.at_level(logging.INFO, logger="netmind_frames"):
        again = netmind_frames.submit(frame(), "{text}", model="m", **kwargs)
    assert again.reattached and again.summary()["batches_new"] == 0
    assert f"reattached to job {again.id}: no new batch, nothing paid again" in caplog.text


# -- 6. --local and Ctrl-C ------------------------------------------------------------------


def test_ctrl_c_with_local_says_nothing_keeps_running(caplog):
    job = netmind_frames.submit(frame(), "{text}", model="m", local=True, progress=False)

    def interrupt(batch_ids: object) -> None:
        raise KeyboardInterrupt

    job._driver.fetch = interrupt  # Ctrl-C during the first poll
    with pytest.raises(KeyboardInterrupt):
        job.wait()
    # A WARNING of the library's logger (shown even with logging unconfigured), not a print.
    err = "".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "stops with the process" in err and "netmind-frames serve" in err
    assert "Reattach" not in err


def test_reattaching_in_the_same_process_after_local_works():
    data = frame()
    job = netmind_frames.submit(data, "{text}", model="m", local=True, progress=False)
    again = netmind_frames.BatchJob.attach(job.id, frame=data, progress=False, poll_interval=0.05)
    assert list(again.result()["response"]) == list(data["text"])


# -- 7. summary, prices, estimate, max_cost -------------------------------------------------


def test_the_summary_counts_rows_tokens_and_prices_them(fresh_server):
    job = netmind_frames.submit(
        frame(), "{text}", model="m", api_key=fresh_server.api_key, max_tokens=5,
        base_url=fresh_server.base_url, poll_interval=0.05, progress=False, prices=PRICES,
    )  # fmt: skip
    out = job.result()
    summary = job.summary()
    assert summary["rows"] == 4 and summary["ok"] == 4 and summary["failed"] == {}
    assert summary["prompt_tokens"] == out["prompt_tokens"].sum() > 0
    assert summary["completion_tokens"] == out["completion_tokens"].sum() > 0
    cost = summary["cost"]
    expected = (summary["prompt_tokens"] * 1.0 + summary["completion_tokens"] * 2.0) / 1e6
    assert cost["batch_usd"] == pytest.approx(expected) and cost["sync_usd"] == pytest.approx(
        2 * expected
    )


def test_without_a_price_the_summary_has_tokens_only_and_home_prices_are_read(fresh_server):
    kwargs = {"api_key": fresh_server.api_key, "base_url": fresh_server.base_url,
              "poll_interval": 0.05, "progress": False}  # fmt: skip
    job = netmind_frames.submit(frame(), "{text}", model="m", **kwargs)
    assert job.summary()["cost"] is None
    rates = {"input": 1, "output": 1, "sync_input": 5, "sync_output": 5}
    (resolve_home() / "prices.json").write_text(json.dumps({"m": rates}))
    again = netmind_frames.BatchJob.attach(job.id, frame=frame(), **kwargs)
    cost = again.summary()["cost"]
    assert cost["sync_usd"] == pytest.approx(5 * cost["batch_usd"])


def test_estimate_counts_what_would_be_sent():
    est = frame(10).netmind.estimate("{text}", model="m", max_tokens=7, max_requests=4,
                                     prices=PRICES)  # fmt: skip
    data = netmind_frames.to_jsonl(frame(10), prompt="{text}", model="m", max_tokens=7,
                                   max_requests=4)  # fmt: skip
    assert (est.rows, est.shards, est.bytes) == (10, 3, len(data))
    assert est.max_completion_tokens == 70 and est.prompt_tokens == -(-len(data) // 4)
    assert est.low_usd == pytest.approx(est.prompt_tokens / 1e6)
    assert est.high_usd == pytest.approx((est.prompt_tokens + 140) / 1e6)
    assert "bytes / 4" in str(est) and "no upper bound" in str(
        netmind_frames.estimate(frame(), "{text}", model="m")
    )


def test_max_cost_refuses_before_anything_is_uploaded(fresh_server):
    kwargs = {"api_key": fresh_server.api_key, "base_url": fresh_server.base_url,
              "progress": False, "prices": PRICES}  # fmt: skip
    with pytest.raises(InputError, match="above max_cost"):
        netmind_frames.submit(frame(), "{text}", model="m", max_tokens=1000, max_cost=0.001,
                              **kwargs)  # fmt: skip
    with pytest.raises(InputError, match="needs max_tokens="):
        netmind_frames.submit(frame(), "{text}", model="m", max_cost=1, **kwargs)
    assert uploaded_files(fresh_server) == []
    job = netmind_frames.submit(frame(), "{text}", model="m", max_tokens=5, max_cost=1, **kwargs)
    assert len(job.batch_ids) == 1


def test_cli_estimate_and_max_cost(tmp_path, fresh_server, monkeypatch, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    args = ["estimate", str(EXAMPLE), "--prompt", "{review}", "--model", "m", "--max-tokens",
            "10", "--prices", str(prices), "--json"]  # fmt: skip
    assert main(args) == EXIT_OK
    est = json.loads(capsys.readouterr().out)
    assert est["rows"] == 48 and est["max_completion_tokens"] == 480 and est["high_usd"] > 0
    run = complete(tmp_path / "o.parquet", *cli(fresh_server, monkeypatch), "--max-tokens", "10",
                   "--prices", str(prices), "--max-cost", "0.000001")  # fmt: skip
    assert main(run) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "--max-cost" in err and "max_cost=" not in err
    assert uploaded_files(fresh_server) == []


def test_the_cli_prints_the_summary_with_the_cost(tmp_path, fresh_server, monkeypatch, capsys):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(PRICES))
    args = complete(tmp_path / "o.parquet", *cli(fresh_server, monkeypatch), "--prices",
                    str(prices), "--max-tokens", "3")  # fmt: skip
    args.remove("--quiet")
    assert main(args) == EXIT_OK
    err = capsys.readouterr().err
    assert "48 of 48 rows ok" in err and "tokens:" in err and "at the batch rate" in err


# -- 8. the CLI matches its docs ------------------------------------------------------------


def test_result_retries_custom_id_and_messages_columns(tmp_path, fresh_server, monkeypatch):
    source = tmp_path / "in.jsonl"
    rows = [{"id": f"r{i}", "m": [{"role": "user", "content": f"hi {i}"}]} for i in range(3)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = cli(fresh_server, monkeypatch)
    out = tmp_path / "o.parquet"
    args = ["complete", str(source), str(out), "--messages-column", "m", "--custom-id-column",
            "id", "--model", "m", *base]  # fmt: skip
    assert main(args) == EXIT_OK
    assert list(pd.read_parquet(out)["response"]) == ["hi 0", "hi 1", "hi 2"]
    (job,) = Journal(resolve_home()).recent_jobs()
    assert main(["result", job.job_id, str(out), "--retries", "0", *base]) == EXIT_OK


def test_list_piped_into_head_has_no_broken_pipe(tmp_path):
    journal = Journal(resolve_home())
    for i in range(3000):  # more than a pipe's buffer
        journal.save_plan(f"job-{i:024d}", "http://x/v1", f"/data/in-{i}.parquet", 10, ["k"])
    exe = Path(sys.executable).parent / "netmind-frames"
    command = shlex.quote(str(exe)) if exe.exists() else f"{sys.executable} -m netmind_frames.cli"
    proc = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {command} list --limit 3000 | head -n 2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == EXIT_OK
    assert len(proc.stdout.splitlines()) == 2


def test_serve_without_the_local_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "netmind_frames.server._cli", None)
    assert main(["serve", "--port", "8000"]) == EXIT_USAGE
    assert "pip install -e '.[local]'" in capsys.readouterr().err


def test_nothing_suggests_installing_from_the_index():
    for path in (ROOT / "netmind_frames").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "pip install netmind-frames" not in text, path
        assert "pip install 'netmind-frames" not in text, path
        assert 'pip install "netmind-frames' not in text, path


@pytest.mark.parametrize(
    ("command", "said"),
    [("complete", "stops"), ("embed", "--mode sync"), ("doctor", "self-test"), ("submit", None)],
)
def test_local_help_is_right_per_command(command, said, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    options = " ".join(capsys.readouterr().out.split()).split("options:", 1)[1]
    if said is None:
        assert "--local" not in options
    else:
        assert said in options.split("--local", 1)[1][:200]
