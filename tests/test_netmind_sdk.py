"""A real client written elsewhere: Netmind's official SDK against the local server.

``netmind`` 0.1.11 pins ``openai>=1.86,<2`` while this project needs ``openai>=3``, so it gets
its own virtual environment (``.venv-netmind-sdk`` at the repository root, gitignored, reused
while it imports) and runs as a separate process: ``tests/netmind_sdk_client.py`` drives every
file call of the SDK and prints what came back as JSON. ``NETMIND_BASE_URL`` is the server's
ORIGIN: the SDK treats it as the root and builds ``{root}/v1/files`` itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_server import rows

from netmind_frames.server import LocalBatchServer

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-netmind-sdk"
SDK = "netmind==0.1.11"
CLIENT = Path(__file__).with_name("netmind_sdk_client.py")


def _python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _sdk_ready(venv: Path) -> bool:
    check = "from importlib.metadata import version; import netmind; print(version('netmind'))"
    try:
        done = subprocess.run(
            [_python(venv), "-c", check], capture_output=True, text=True, timeout=120
        )
    except OSError:
        return False
    return done.returncode == 0 and done.stdout.strip() == SDK.split("==")[1]


def _create(venv: Path) -> str | None:
    """Build the venv; return None, or what went wrong (pip's last lines)."""
    shutil.rmtree(venv, ignore_errors=True)
    steps = (
        [sys.executable, "-m", "venv", str(venv)],
        [str(_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK],
    )
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            return "\n".join((done.stdout + done.stderr).strip().splitlines()[-5:])
    return None


@pytest.fixture(scope="session")
def sdk_python() -> Iterator[Path]:
    """The Python of a virtual environment holding Netmind's SDK (made once, then reused)."""
    with (ROOT / ".venv-netmind-sdk.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions build it once
        problem = None if _sdk_ready(VENV) else _create(VENV)
        if problem is None and not _sdk_ready(VENV):
            problem = "the new environment does not import netmind"
    if problem is not None:
        message = f"could not install {SDK} into {VENV} (network?): {problem}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    yield _python(VENV)


def run_sdk(python: Path, srv: LocalBatchServer, upload: Path) -> dict[str, Any]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "NETMIND_BASE_URL": srv.origin,
        "NETMIND_API_KEY": srv.api_key,
    }
    done = subprocess.run(
        [str(python), str(CLIENT), str(upload)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_file_call_of_netmind_sdk_works(sdk_python: Path, tmp_path: Path) -> None:
    data = rows(3)
    upload = tmp_path / "my input (v1).jsonl"
    upload.write_bytes(data)
    with LocalBatchServer(api_key="sdk-key") as srv:
        result = run_sdk(sdk_python, srv, upload)
    assert result["sdk_version"] == "0.1.11"
    file_id = result["created"]["id"]
    assert file_id.startswith("file-")  # the SDK's own tests assert this prefix
    # The SDK sanitises the name's stem; the list is a bare array of its FileObjects.
    expected = {"id": file_id, "file_name": "my_input__v1_.jsonl", "purpose": "batch"}
    (listed,) = result["listed"]
    assert {k: listed[k] for k in expected} == expected
    assert isinstance(listed["created_at"], int)
    assert {k: result["retrieved"][k] for k in expected} == expected
    assert result["retrieved"]["bytes"] == len(data)
    assert result["url_id"] == file_id
    assert result["downloaded"].encode() == data  # the bytes, exactly as the SDK put them
    assert result["delete_answer"] is None
    assert result["after_delete"] == "NotFoundError:404"
    assert result["listed_after_delete"] == []


def test_the_sdk_needs_the_api_key(sdk_python: Path, tmp_path: Path) -> None:
    upload = tmp_path / "in.jsonl"
    upload.write_bytes(rows(1))
    with LocalBatchServer(api_key="the-right-key") as srv:
        env = {"PATH": os.environ.get("PATH", ""), "NETMIND_BASE_URL": srv.origin}
        done = subprocess.run(
            [str(sdk_python), str(CLIENT), str(upload)],
            capture_output=True,
            text=True,
            env={**env, "NETMIND_API_KEY": "wrong"},
            timeout=120,
        )
    assert done.returncode != 0
    assert "AuthenticationError" in done.stderr and "the-right-key" not in done.stderr
