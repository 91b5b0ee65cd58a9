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


def cli_section_lines() -> list[str]:
    """Every ``netmind-frames ...`` line in the code blocks of the README's command-line
    section (read from the README itself, so the test follows its edits)."""
    section = re.search(
        r"^## [^\n]*(?:Command line|CLI)[^\n]*\n(.*?)(?=^## |\Z)", README, re.S | re.M
    )
    assert section, "the README has no '## Command line' section"
    lines = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", section.group(1), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()  # a trailing shell comment
            if line.startswith("netmind-frames "):
                lines.append(line)
    assert lines, "the README's command-line section shows no netmind-frames command"
    return lines


@pytest.mark.parametrize("line", cli_section_lines())
def test_every_command_of_the_readme_cli_section_runs_with_help(line, capsys):
    """Each documented command exists and takes every option the README shows for it."""
    from netmind_frames.cli import main

    words = shlex.split(line)
    command = words[1]
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0, line
    shown = capsys.readouterr().out
    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line):
        assert re.search(rf"{re.escape(flag)}(?![\w-])", shown), f"{line}: {command} has no {flag}"


def cli_section_bullets() -> list[tuple[str, str]]:
    """``(command, bullet)`` for each bullet of the command-line section that starts with a
    command (``* `netmind-frames result JOB OUT` waits, retries failed rows (`--retries`)``)."""
    section = re.search(
        r"^## [^\n]*(?:Command line|CLI)[^\n]*\n(.*?)(?=^## |\Z)", README, re.S | re.M
    )
    assert section
    bullets = re.findall(
        r"^\* (`netmind-frames (\w+)[^`]*`.*?)(?=^\* |^\n|\Z)", section.group(1), re.S | re.M
    )
    return [(command, text) for text, command in bullets]


@pytest.mark.parametrize(("command", "bullet"), cli_section_bullets())
def test_every_option_a_readme_bullet_names_exists(command, bullet, capsys):
    from netmind_frames.cli import main

    with pytest.raises(SystemExit):
        main([command, "--help"])
    shown = capsys.readouterr().out
    for flag in re.findall(r"`(--[a-z][a-z0-9-]*)", bullet):
        assert re.search(rf"{re.escape(flag)}(?![\w-])", shown), (
            f"`netmind-frames {command}` has no {flag}"
        )
