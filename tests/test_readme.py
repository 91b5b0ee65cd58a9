"""The README's first command really works.

The public names and the CLI are documented in docs/ (checked by tests/test_docs.py)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


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
