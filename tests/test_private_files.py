"""NETMIND_FRAMES_HOME is private: folders 0700, files 0600, whatever the umask (issue #19).

The home holds prompts (spooled shards), results, templates and ids (the journal): on a shared
machine nobody else may read them. Each test runs under umask 0o022 (the usual one) and 0o000
(the worst), set for the test and restored after it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import openai
import pandas as pd
import pytest

import netmind_frames
from netmind_frames.jobs._journal import Journal
from netmind_frames.transport._files import NetmindFiles, OpenAIFiles


@pytest.fixture(params=[0o022, 0o000], ids=["umask022", "umask000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home that does not exist yet, two folders down, so the library creates it."""
    path = tmp_path / "cache" / "netmind_frames"
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(path))
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(home: Path) -> dict[str, int]:
    """The mode of the home and of everything below it, by relative path."""
    found = {".": mode(home)}
    for path in home.rglob("*"):
        found[str(path.relative_to(home))] = mode(path)
    return found


def assert_private(home: Path) -> None:
    found = modes_under(home)
    wrong = {
        name: oct(m)
        for name, m in found.items()
        if m != (0o700 if (home / name).is_dir() else 0o600)
    }
    assert not wrong, f"not owner-only: {wrong}"


def test_a_job_leaves_only_owner_only_folders_and_files(umask, home, fresh_server):
    frame = pd.DataFrame({"text": [f"secret prompt {i}" for i in range(6)]})
    job = netmind_frames.submit(
        frame, "{text}", model="m", base_url=fresh_server.base_url,
        api_key=fresh_server.api_key, poll_interval=0.05, progress=False, max_requests=2,
    )  # fmt: skip
    out = job.result()
    assert list(out["status"]) == ["ok"] * 6
    # The job object is alive: its spool (shards and chunk results) is still there.
    names = modes_under(home)
    assert any(name.endswith(".jsonl") for name in names), names  # the spooled shards
    assert any(name.endswith(".arrow") for name in names), names  # the chunk results
    assert "journal-1.sqlite3" in names
    assert_private(home)
    assert mode(home.parent) == 0o777 & ~umask  # the parent is an ordinary folder


def test_the_journals_wal_files_are_owner_only(umask, home):
    journal = Journal(home)
    reader = sqlite3.connect(journal.path)  # keeps -wal and -shm in place
    try:
        reader.execute("SELECT count(*) FROM shards").fetchone()
        journal.claim("http://x", "f" * 64)
        side = [Path(f"{journal.path}{suffix}") for suffix in ("-wal", "-shm")]
        assert all(p.exists() for p in side)
        assert [oct(mode(p)) for p in [journal.path, *side]] == [oct(0o600)] * 3
    finally:
        reader.close()
    assert_private(home)


def test_downloads_are_owner_only(umask, server, tmp_path):
    netmind = NetmindFiles(f"{server.origin}/v1/files", server.api_key)
    try:
        file_id = netmind.upload(b'{"a": 1}\n', "x.jsonl")
        assert mode(netmind.download(file_id, tmp_path / "netmind.jsonl")) == 0o600
    finally:
        netmind.close()
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client:
        assert mode(OpenAIFiles(client).download(file_id, tmp_path / "openai.jsonl")) == 0o600


def test_doctor_records_are_owner_only(umask, home, fresh_server):
    report = netmind_frames.doctor(base_url=fresh_server.base_url, api_key=fresh_server.api_key)
    assert report.path is not None and report.path.parent == home / "doctor"
    assert_private(home)


def test_an_open_home_gets_one_warning_naming_the_fix(home, caplog):
    home.mkdir(parents=True)
    os.chmod(home, 0o755)
    with caplog.at_level(logging.WARNING, logger="netmind_frames"):
        Journal(home)
        Journal(home)
    warnings = [r for r in caplog.records if "NETMIND_FRAMES_HOME" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].name == "netmind_frames"
    assert f"chmod -R go-rwx {home}" in warnings[0].getMessage()
    assert mode(home) == 0o755  # a warning, not a change behind the user's back


def test_a_private_existing_home_gets_no_warning(home, caplog):
    home.mkdir(parents=True, mode=0o700)
    with caplog.at_level(logging.WARNING, logger="netmind_frames"):
        Journal(home)
    assert not [r for r in caplog.records if "NETMIND_FRAMES_HOME" in r.getMessage()]
