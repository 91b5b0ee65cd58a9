"""What the end-to-end benchmarks share: a `netmind-frames serve` of their own, and a child
process measured alone (its CPU time, wall time and peak RSS)."""

from __future__ import annotations

import compileall
import contextlib
import functools
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import netmind_frames

#: The API key the benchmarks' servers accept (and their clients send).
KEY = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit("the server did not start")


@functools.cache
def _compile_package() -> None:
    """Compile the package's bytecode, as pip does when it installs a wheel: a checkout run
    with ``PYTHONDONTWRITEBYTECODE`` set would compile every module on every start (~50 ms
    of each CLI run, not what a user's installed package costs)."""
    compileall.compile_dir(Path(netmind_frames.__file__).parent, quiet=1)


def exe() -> list[str]:
    """The `netmind-frames` command of this interpreter's environment."""
    _compile_package()
    script = Path(sys.executable).parent / "netmind-frames"
    return [str(script)] if script.exists() else [sys.executable, "-m", "netmind_frames.cli"]


@dataclass(frozen=True)
class Serve:
    """A running `netmind-frames serve`: its origin and process id."""

    origin: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server has used so far, its worker processes
        included: the live ones from their ``/proc`` entries, the ended ones from the
        server's own children counters."""
        tick = os.sysconf("SC_CLK_TCK")
        total = _ticks(self.pid, children=True)
        for child in Path(f"/proc/{self.pid}/task").glob("*/children"):
            total += sum(_ticks(int(pid)) for pid in child.read_text().split())
        return total / tick


def _ticks(pid: int, children: bool = False) -> int:
    """utime + stime of ``pid`` (and, with ``children``, of its waited-for children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # ended meanwhile
        return 0
    # After the command: state is field 3, utime/stime fields 14/15, cutime/cstime 16/17.
    own = int(fields[11]) + int(fields[12])
    return own + (int(fields[13]) + int(fields[14]) if children else 0)


@contextlib.contextmanager
def serve_process(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[Serve]:
    """A `netmind-frames serve` (immediate engine, key :data:`KEY`) for the block."""
    port = free_port()
    serve = subprocess.Popen(
        [*exe(), "serve", "--port", str(port), "--seconds-per-request", "0",
         "--data-dir", str(data_dir), "--api-key-env", "BENCH_KEY"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**(env or os.environ), "BENCH_KEY": KEY},
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield Serve(f"http://127.0.0.1:{port}", serve.pid)
    finally:
        serve.terminate()
        serve.wait(30)


@contextlib.contextmanager
def local_serve(data_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """A `netmind-frames serve` for the block; its origin, ``http://127.0.0.1:PORT`` (add
    ``/inference-api/openai/v1`` or ``/openai/v1``)."""
    with serve_process(data_dir, env) as serve:
        yield serve.origin


@dataclass(frozen=True)
class Measured:
    """One child's run: CPU seconds (user + sys), wall seconds, peak RSS, what it wrote to
    stderr."""

    cpu_s: float
    wall_s: float
    rss_mib: float
    stderr: str


def measure(argv: list[str], env: Mapping[str, str]) -> Measured:
    """Run ``argv`` to its end and measure it alone; exits the benchmark if it fails."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: no stall when it is full
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL, stderr=errors)
        # wait4 gives this child's own rusage (RUSAGE_CHILDREN would hold the largest so far).
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        stderr = errors.read()
    if child.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({child.returncode}):\n{stderr}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Measured(usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss * scale / 2**20, stderr)
