"""``netmind-frames doctor``: every assumption checked against a real local server."""

from __future__ import annotations

import json

import pytest
from conftest import closed_port, uploaded_files

from netmind_frames import LocalBatchServer, doctor
from netmind_frames.cli import EXIT_ERROR, EXIT_OK, main

KEY = "sk-doctor-SENTINEL-0123456789"
LIVE_FINDINGS = {
    "reachable",
    "authentication",
    "batches list",
    "files list",
    "upload",
    "create status",
    "create fields",
    "statuses",
    "finishes",
    "metadata",
    "list by input file",
    "request counts",
    "download",
    "output",
    "unknown file id",
    "cleanup",
}


def run(capsys, tmp_path, *args: str) -> tuple[int, str, dict]:
    out = tmp_path / "record.json"
    code = main(["doctor", "--output", str(out), "--timeout", "5", *args])
    printed = capsys.readouterr()
    text = printed.out + printed.err
    return code, text, json.loads(out.read_text())


def verdicts(record: dict) -> dict[str, str]:
    return {f["name"]: f["verdict"] for f in record["findings"]}


def base_url(srv: LocalBatchServer, dialect: str) -> str:
    return srv.base_url if dialect == "netmind" else srv.openai_base_url


def test_every_assumption_holds_on_the_local_server(dialect, capsys, tmp_path, monkeypatch):
    with LocalBatchServer(api_key=KEY) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", KEY)
        code, text, record = run(capsys, tmp_path, "--live", "--base-url", base_url(srv, dialect))
        left = uploaded_files(srv)
    assert code == EXIT_OK, text
    assert verdicts(record) == dict.fromkeys(LIVE_FINDINGS, "holds")
    assert record["config"]["provider"] == dialect
    assert record["config"]["sources"]["api key"] == "NETMIND_API_KEY"
    assert left == []  # input and output files deleted
    assert str(tmp_path / "record.json") in text
    assert KEY not in text and KEY not in (tmp_path / "record.json").read_text()


def test_metadata_not_echoed_is_exactly_that_difference(capsys, tmp_path, monkeypatch):
    with LocalBatchServer(echo_metadata=False) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        code, text, record = run(capsys, tmp_path, "--live", "--base-url", srv.base_url)
    differs = {name for name, v in verdicts(record).items() if v != "holds"}
    assert (code, differs) == (EXIT_OK, {"metadata"})
    assert "metadata not echoed: batches are found by their input file's name instead" in text
    assert record["live"]["list"]["metadata_echoed"] is False


def test_the_guides_create_answer_is_exactly_those_differences(capsys, tmp_path, monkeypatch):
    with LocalBatchServer(netmind_create_answer=True) as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        code, text, record = run(capsys, tmp_path, "--live", "--base-url", srv.base_url)
    differs = {name for name, v in verdicts(record).items() if v != "holds"}
    assert (code, differs) == (EXIT_OK, {"create status", "create fields"})
    assert record["live"]["create"]["status"] == "pending"
    assert record["live"]["create"]["input_file_id"] is None
    assert "create answered status 'pending', not one of OpenAI's" in text


def test_an_unknown_status_while_queued_differs(capsys, tmp_path, monkeypatch):
    with LocalBatchServer(queued_polls=2, queued_status="pending") as srv:
        monkeypatch.setenv("NETMIND_API_KEY", srv.api_key)
        code, text, record = run(capsys, tmp_path, "--live", "--base-url", srv.base_url)
    assert code == EXIT_OK
    assert verdicts(record)["statuses"] == "differs"
    assert [s["status"] for s in record["live"]["statuses"]] == ["pending", "completed"]
    assert "statuses outside OpenAI's lifecycle seen: ['pending']" in text


def test_a_closed_port_fails_fast_naming_the_url(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("NETMIND_API_KEY", KEY)
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/inference-api/openai/v1"
        code, text, record = run(capsys, tmp_path, "--live", "--base-url", url)
    assert code == EXIT_ERROR
    assert verdicts(record) == {"reachable": "fails"}
    assert f"fails    reachable: cannot reach {url}" in text
    assert KEY not in text


def test_a_wrong_key_reports_the_auth_failure(dialect, capsys, tmp_path, monkeypatch):
    with LocalBatchServer(api_key="the-right-key") as srv:
        monkeypatch.setenv("MY_KEY", KEY)
        code, text, record = run(
            capsys, tmp_path, "--base-url", base_url(srv, dialect), "--api-key-env", "MY_KEY"
        )
    assert code == EXIT_ERROR
    assert verdicts(record) == {"reachable": "holds", "authentication": "fails"}
    assert "the key was refused (HTTP 401)" in text
    assert record["config"]["sources"]["api key"] == "MY_KEY"
    assert KEY not in text and KEY not in json.dumps(record)


def test_no_key_says_which_variable(capsys, tmp_path):
    code, text, record = run(capsys, tmp_path, "--api-key-env", "NOT_SET_ANYWHERE")
    assert code == EXIT_ERROR
    assert "fails    api key: no API key: set NOT_SET_ANYWHERE" in text
    assert verdicts(record) == {"api key": "fails"}


def test_a_key_in_a_server_answer_is_redacted_from_the_record(tmp_path, monkeypatch):
    # An error body that echoes the key (a badly behaved proxy) must not reach the record.
    with LocalBatchServer(api_key="another-key-entirely") as srv:
        report = doctor(base_url=srv.base_url + "/" + KEY, api_key=KEY, output=tmp_path / "r.json")
    assert not report.ok
    assert KEY not in (tmp_path / "r.json").read_text()
    assert "[REDACTED]" in (tmp_path / "r.json").read_text()


def test_the_python_function_writes_under_home_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(tmp_path))
    report = doctor(local=True)
    assert report.ok, str(report)
    assert report.path is not None and report.path.parent == tmp_path / "doctor"
    assert json.loads(report.path.read_text())["config"]["sources"]["base url"] == "local=True"


@pytest.mark.parametrize("flag", ["--timeout", "--wait"])
def test_bad_seconds_are_a_usage_error(flag, capsys):
    assert main(["doctor", "--local", flag, "0"]) == 2
    assert flag in capsys.readouterr().err
