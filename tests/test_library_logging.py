"""The library logs through ``logging`` under ``netmind_frames.*`` and never writes to stdout or
stderr itself: only the CLI modules print (issue #19). The tqdm progress bar is no print."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pandas as pd
import pytest

import netmind_frames
from netmind_frames.jobs import _sync

PACKAGE = Path(netmind_frames.__file__).parent
#: The command-line shells, the only modules that may print, and the local server's worker
#: process entry point, whose stdin and stdout are its pipe to the server (not a terminal).
CLI_MODULES = {"cli.py", "server/_cli.py", "server/_worker.py"}


def writes_to_the_terminal(source: str) -> list[str]:
    """Each ``print(...)`` call and each use of ``sys.stdout``/``sys.stderr`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id == "print":
                found.append(f"line {node.lineno}: print(...)")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "sys"
            and node.attr.strip("_") in ("stdout", "stderr")
        ):
            found.append(f"line {node.lineno}: sys.{node.attr}")
    return found


def test_no_module_outside_the_cli_prints():
    offenders = {
        name: hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if (name := path.relative_to(PACKAGE).as_posix()) not in CLI_MODULES
        and (hits := writes_to_the_terminal(path.read_text()))
    }
    assert not offenders, f"the library writes to the terminal outside the CLI: {offenders}"


@pytest.mark.parametrize(
    "source",
    [
        "print('hi')",
        "import sys\nprint('hi', file=sys.stderr)",
        "import sys\nsys.stderr.write('hi')",
        "import sys\nsys.__stdout__.write('hi')",
    ],
)
def test_the_scan_sees_a_print(source):
    """The rule above must be able to fail."""
    assert writes_to_the_terminal(source)


def test_a_print_in_a_docstring_is_no_print():
    assert not writes_to_the_terminal('def f():\n    """>>> print(f())"""\n')


def test_every_module_logger_is_under_netmind_frames():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, ast.Assign) else None
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "getLogger"
            ):
                name = ast.literal_eval(value.args[0]) if value.args else None
                if not (isinstance(name, str) and name.split(".")[0] == "netmind_frames"):
                    wrong.append(f"{path.relative_to(PACKAGE)}: getLogger({name!r})")
    assert not wrong, wrong


def test_sync_mode_ctrl_c_is_a_warning_not_a_print(server, monkeypatch, capsys, caplog):
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the requests are in flight

    monkeypatch.setattr(_sync, "_drain", interrupted)
    frame = pd.DataFrame({"text": ["a", "b"]})
    caplog.set_level(logging.WARNING, logger="netmind_frames")
    with pytest.raises(KeyboardInterrupt):
        frame.netmind.batch_complete(
            "{text}", model="m", mode="sync", base_url=server.base_url,
            api_key=server.api_key, progress=False,
        )  # fmt: skip
    printed = capsys.readouterr()
    assert printed.out == "" and printed.err == ""
    notices = [r for r in caplog.records if "sync mode keeps nothing running" in r.getMessage()]
    assert [(r.name, r.levelname) for r in notices] == [("netmind_frames", "WARNING")]
