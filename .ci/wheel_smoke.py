"""The wheel users install, tested as they install it (issue #19).

Builds the sdist and the wheel (``python -m build``), checks the wheel's contents
(``check-wheel-contents``, and that ``py.typed`` and the license are in it), installs the wheel,
not editable, with the ``[local]`` extra into a fresh virtual environment, and from a folder
outside the repository runs ``netmind-frames --version`` and the README's first-run command
(read from the README, as tests/test_readme.py does, so the two stay in sync). The output must
hold the 48 sample reviews, all ``ok``.

Run from the repository's virtual environment (``.ci/run`` does): ``python .ci/wheel_smoke.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"


def run(*argv: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Run a command, echo it, fail loudly with its output; return its stdout."""
    start = time.monotonic()
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    print(f"+ {shlex.join(map(str, argv))}  ({time.monotonic() - start:.1f} s)", flush=True)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def build() -> Path:
    """The sdist and the wheel in dist/, from a clean slate; the wheel's path."""
    # setuptools reuses build/lib: a module deleted since the last build would ship again.
    for stale in (DIST, ROOT / "build"):
        shutil.rmtree(stale, ignore_errors=True)
    run(sys.executable, "-m", "build", "--outdir", DIST, ROOT)
    (wheel,) = DIST.glob("netmind_frames-*.whl")
    (_sdist,) = DIST.glob("netmind_frames-*.tar.gz")
    return wheel


def check(wheel: Path) -> None:
    run(Path(sys.executable).parent / "check-wheel-contents", wheel)
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("netmind_frames/py.typed", "netmind_frames/server/_server.py"):
        if needed not in names:
            sys.exit(f"{wheel.name} lacks {needed}")
    if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names):
        sys.exit(f"{wheel.name} lacks the license file")


def readme_command() -> list[str]:
    """The `netmind-frames complete ...` line of the README's first shell block, as argv."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert match, "README.md has no bash block"
    block = match.group(1).replace("\\\n", " ")
    (line,) = [ln for ln in block.splitlines() if ln.strip().startswith("netmind-frames complete")]
    return shlex.split(line)


def smoke(wheel: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="netmind-frames-wheel-") as tmp:
        work = Path(tmp)
        # A fresh environment, filled by this one's pip (--python): faster than ensurepip, and
        # --no-compile skips byte-compiling pandas & co., the slowest part of the install.
        venv.create(work / "venv", with_pip=False)
        bin_dir = work / "venv" / "bin"
        # Nothing of the repository may leak in: no PYTHONPATH, no key, a private home.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NETMIND_API_KEY")}
        env["NETMIND_FRAMES_HOME"] = str(work / "home")
        run(
            sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "--quiet",
            "--no-compile", f"{wheel}[local]", env=env,
        )  # fmt: skip

        version = run(bin_dir / "netmind-frames", "--version", cwd=work, env=env).strip()
        expected = wheel.name.split("-")[1]
        if version != f"netmind-frames {expected}":
            sys.exit(f"--version says {version!r}, the wheel is {expected}")
        where = run(
            bin_dir / "python", "-c", "import netmind_frames; print(netmind_frames.__file__)",
            cwd=work, env=env,
        ).strip()  # fmt: skip
        if not Path(where).is_relative_to(work / "venv"):
            sys.exit(f"the installed package was not the one imported: {where}")

        (work / "examples").mkdir()
        shutil.copy(ROOT / "examples" / "reviews.parquet", work / "examples")
        argv = readme_command()
        run(bin_dir / argv[0], *argv[1:], "--quiet", cwd=work, env=env)
        counts = run(
            bin_dir / "python", "-c",
            "import pandas as pd; s = pd.read_parquet('out.parquet')['status']; "
            "print(len(s), int((s == 'ok').sum()))",
            cwd=work, env=env,
        ).split()  # fmt: skip
        if counts != ["48", "48"]:
            sys.exit(f"out.parquet: {counts[0]} rows, {counts[1]} ok; expected 48 ok rows")
    print(f"wheel smoke test passed: {wheel.name} ({version})")


def main() -> None:
    wheel = build()
    check(wheel)
    smoke(wheel)


if __name__ == "__main__":
    main()
