"""The README documents every public name and command, and its first command really works."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import netmind_frames
from netmind_frames.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [n for n in netmind_frames.__all__ if n != "__version__"])
def test_public_name_is_documented(name):
    assert re.search(rf"\b{re.escape(name)}\b", README), f"{name} is not in the README"


def cli_commands() -> list[str]:
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(subparsers.choices)


@pytest.mark.parametrize("command", cli_commands())
def test_cli_command_is_documented(command):
    assert f"netmind-frames {command}" in README


def first_shell_block() -> str:
    match = re.search(r"```bash\n(.*?)```", README, re.S)
    assert match
    return match.group(1)


def test_readme_first_command_produces_the_output_file(tmp_path):
    """Run the README's `netmind-frames complete` line as written (from a copy of examples/)."""
    block = first_shell_block().replace("\\\n", " ")
    (line,) = [ln for ln in block.splitlines() if ln.strip().startswith("netmind-frames complete")]
    argv = shlex.split(line)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "reviews.parquet").write_bytes(
        (ROOT / "examples" / "reviews.parquet").read_bytes()
    )
    exe = Path(sys.executable).parent / "netmind-frames"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "netmind_frames.cli"]
    env = {k: v for k, v in os.environ.items() if k != "NETMIND_API_KEY"}
    proc = subprocess.run(
        [*command, *argv[1:], "--quiet"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert len(out) == 48 and (out["status"] == "ok").all()
