"""``netmind-frames serve``: the parser hook and the command, run in-process."""

from __future__ import annotations

import argparse
import io
import re
import threading

import httpx2
import pytest

from netmind_frames.server._cli import SERVE_SECONDS_PER_REQUEST, add_serve_parser, run_serve


def parser() -> argparse.ArgumentParser:
    """A top-level parser with ``serve`` registered, as the package CLI does."""
    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    return top


def test_defaults() -> None:
    args = parser().parse_args(["serve"])
    assert args.func is run_serve
    assert (args.host, args.port) == ("127.0.0.1", 8000)
    assert args.seconds_per_request == SERVE_SECONDS_PER_REQUEST > 0
    assert (args.fail_rate, args.fault_rate, args.expire_after, args.seed) == (0.0, 0.0, None, 0)
    assert (args.data_dir, args.api_key_env, args.no_shuffle) == (None, None, False)
    assert args.max_body_bytes == 200 * 1024 * 1024


def test_every_flag() -> None:
    args = parser().parse_args(
        [
            "serve", "--host", "0.0.0.0", "--port", "0", "--seconds-per-request", "0",
            "--fail-rate", "0.1", "--fault-rate", "0.2", "--expire-after", "30", "--seed", "4",
            "--data-dir", "state", "--api-key-env", "MY_KEY", "--no-shuffle",
            "--max-body-bytes", "1000",
        ]
    )  # fmt: skip
    assert (args.host, args.port, args.seconds_per_request) == ("0.0.0.0", 0, 0.0)
    assert (args.fail_rate, args.fault_rate, args.expire_after, args.seed) == (0.1, 0.2, 30.0, 4)
    assert (args.data_dir, args.api_key_env, args.no_shuffle) == ("state", "MY_KEY", True)
    assert args.max_body_bytes == 1000


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--fail-rate", "1.5"], id="fail-rate-above-1"),
        pytest.param(["--fault-rate", "-0.1"], id="fault-rate-negative"),
        pytest.param(["--seconds-per-request", "-1"], id="negative-pace"),
        pytest.param(["--api-key", "sk-abc"], id="no-secret-flag-nor-abbreviation"),
        pytest.param(["--api-key-env", "sk-abc.def"], id="key-given-as-env-name"),
    ],
)
def test_bad_flags(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", *argv])
    assert "sk-abc" not in capsys.readouterr().err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    assert "example:" in text and "netmind-frames serve --port" in text and "not Netmind" in text


def test_serve_prints_urls_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_TEST_KEY", "sk-very-secret")
    args = parser().parse_args(
        ["serve", "--port", "0", "--seconds-per-request", "0", "--api-key-env", "LOCAL_TEST_KEY"]
    )
    out = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(run_serve(args, stop=stop, out=out)))
    thread.start()
    try:
        match = None
        for _ in range(2000):
            match = re.search(r"OpenAI base URL:\s+(\S+)", out.getvalue())
            if match and "Ctrl-C" in out.getvalue():
                break
            stop.wait(0.005)
        assert match is not None
        base = match.group(1)
        assert "/inference-api/openai/v1" in out.getvalue()
        with httpx2.Client() as http:
            assert http.get(f"{base}/batches").status_code == 401
            ok = http.get(f"{base}/batches", headers={"Authorization": "sk-very-secret"})
            assert ok.status_code == 200
    finally:
        stop.set()
        thread.join()
    assert result == [0]
    assert "sk-very-secret" not in out.getvalue()


def test_serve_refuses_a_missing_key_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    args = parser().parse_args(["serve", "--port", "0", "--api-key-env", "NO_SUCH_KEY_VAR"])
    assert run_serve(args, stop=threading.Event()) == 2
    assert "NO_SUCH_KEY_VAR" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1", "my-host.example"])
@pytest.mark.parametrize("upstream", [[], ["--upstream", "http://127.0.0.1:9/v1"]])
def test_serve_refuses_an_open_host_without_a_key(
    host: str, upstream: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """No open gateway: beyond loopback, no key and no --no-auth is exit 2, nothing served."""
    args = parser().parse_args(["serve", "--host", host, "--port", "0", *upstream])
    stopped = threading.Event()
    stopped.set()  # had it started, it would stop at once and return 0
    assert run_serve(args, stop=stopped, out=io.StringIO()) == 2
    err = capsys.readouterr().err
    assert f"--host {host} without --api-key-env" in err
    assert "anyone who can reach port" in err and "--api-key-env NAME" in err and "--no-auth" in err
    assert ("spend the upstream's key" in err) == bool(upstream)


@pytest.mark.parametrize(
    "flags",
    [
        pytest.param(["--no-auth"], id="no-auth"),
        pytest.param(["--api-key-env", "LOCAL_TEST_KEY"], id="a-key"),
    ],
)
def test_serve_beyond_loopback_with_a_key_or_no_auth_starts(
    flags: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_TEST_KEY", "sk-very-secret")
    args = parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "0", *flags])
    stopped = threading.Event()
    stopped.set()  # start, print the banner, stop
    out = io.StringIO()
    assert run_serve(args, stop=stopped, out=out) == 0
    assert "Press Ctrl-C to stop." in out.getvalue()
    err = capsys.readouterr().err
    assert "reachable from other machines" in err
    assert ("by anyone (--no-auth)" in err) == (flags == ["--no-auth"])


def test_serve_refuses_no_auth_with_a_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOCAL_TEST_KEY", "sk-very-secret")
    args = parser().parse_args(["serve", "--no-auth", "--api-key-env", "LOCAL_TEST_KEY"])
    assert run_serve(args, stop=threading.Event()) == 2
    assert "contradict" in capsys.readouterr().err
