"""Start-up time of the CLI and the import overhead of the package.

Runs each command N times, each in a fresh Python process started the way the console script
starts it (``from netmind_frames.cli import main``), and prints the best and median wall time
and the best CPU time (user + system: steadier than wall time on a shared machine) of
``--help``, ``list``, ``status JOB`` (one job of 3 shards on a local batch server started by
this script; the status asks the server about each batch) and ``complete --help``. Then the
import-time overhead of ``import netmind_frames`` over ``import pandas, openai``, measured
inside fresh processes that import pandas and openai first.

    python benchmarks/bench_startup.py [--runs 15]

``python -X importtime -c "import netmind_frames.cli"`` shows which imports cost the time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import netmind_frames
from netmind_frames.server import LocalBatchServer

#: What the console script `netmind-frames` runs.
CLI = "import sys; from netmind_frames.cli import main; sys.argv[0] = 'netmind-frames'; " + (
    "sys.exit(main())"
)
#: Prints the seconds `import netmind_frames` takes after pandas and openai are imported.
OVERHEAD = (
    "import time, pandas, openai; t = time.perf_counter(); import netmind_frames; "
    "print(time.perf_counter() - t)"
)


class Times(list[float]):
    """Wall seconds of each run, and ``cpu``: the CPU seconds (user + system) of each."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[float] = []


def timed(argv: list[str], env: dict[str, str], runs: int) -> Times:
    """Wall and CPU seconds of ``runs`` fresh processes of ``argv`` (each must exit 0). CPU
    time varies far less than wall time when other work shares the cores."""
    times = Times()
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times


def overhead(env: dict[str, str], runs: int) -> list[float]:
    """Seconds ``import netmind_frames`` adds after ``import pandas, openai``, per process."""
    return [
        float(subprocess.run([sys.executable, "-c", OVERHEAD], env=env, check=True,
                             capture_output=True, text=True).stdout)
        for _ in range(runs)
    ]  # fmt: skip


def line(label: str, times: list[float]) -> str:
    text = f"  {label:<42} best {min(times):6.3f} s   median {statistics.median(times):6.3f} s"
    if isinstance(times, Times):
        text += f"   CPU best {min(times.cpu):6.3f} s"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="fresh processes per command")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalBatchServer(seed=0) as server:
        home = Path(tmp) / "home"
        env = os.environ | {
            "NETMIND_FRAMES_HOME": str(home),
            "NETMIND_API_KEY": server.api_key,
            "NETMIND_BASE_URL": server.base_url,
        }
        os.environ.update(env)  # the job below goes into the same journal
        frame = pd.DataFrame({"text": [f"row {i}" for i in range(9)]})
        job = netmind_frames.submit(
            frame,
            "{text}",
            model="meta-llama/Meta-Llama-3.1-8B-Instruct",
            max_requests=3,
            progress=False,
        )
        job.wait(timeout=60)
        commands = {
            "netmind-frames --help": ["--help"],
            "netmind-frames list": ["list"],
            f"netmind-frames status JOB ({job.n_shards} shards)": ["status", job.id],
            "netmind-frames complete --help": ["complete", "--help"],
        }
        print(f"{args.runs} fresh processes each ({sys.executable}, {os.cpu_count()} cores)")
        for label, argv in commands.items():
            print(line(label, timed([sys.executable, "-c", CLI, *argv], env, args.runs)))
        python = timed([sys.executable, "-c", "pass"], env, args.runs)
        print(line("python -c pass (the floor)", python))
        # `status` reads the batches with the standard library's http.client (no openai,
        # httpx2 or pandas): importing it is part of its floor; httpx2 and openai, which it
        # used before, are shown for comparison.
        for module in ("http.client", "httpx2", "openai"):
            floor = timed([sys.executable, "-c", f"import {module}"], env, args.runs)
            print(line(f"python -c 'import {module}'", floor))
        print(line("import netmind_frames over pandas+openai", overhead(env, args.runs)))


if __name__ == "__main__":
    main()
