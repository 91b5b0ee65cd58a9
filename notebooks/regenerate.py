"""Re-execute the notebooks in this folder and save them in place, with their outputs.

    python notebooks/regenerate.py            # every notebook
    python notebooks/regenerate.py quickstart # only notebooks/quickstart.ipynb

Needs the ``[test]`` extra (nbclient, ipykernel, matplotlib, polars). Each notebook runs in a
fresh ``python3`` kernel, from this folder, as ``tests/test_notebooks.py`` runs it, with:

* a fresh, empty ``NETMIND_FRAMES_HOME`` and no ``NETMIND_*`` variables from your shell, so
  nothing of your own (journal, key, base URL) shows or is used;
* the local servers' file and batch ids drawn from a counter instead of at random. The job ids
  are derived from the requests already, and the seeded ``fail_rate``/``corrupt_rate`` draw
  per batch id, so the same notebook gives the same ids, failures and retries on every run:
  a regenerated notebook differs from the committed one only where the code changed (and in
  the counts of the cancel example, which depend on timing). The hidden setup cell that does
  this is removed before saving;
* progress-bar widgets dropped from the outputs (a saved widget shows nothing without the
  live kernel, and carries random model ids); plots kept as PNG.

The outputs are then checked for what must never be committed: absolute paths of this
machine, loopback ports (they change per run) and the local servers' keys. A hit stops the
script before the notebook is written.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent

#: Executed first in the kernel, then removed: deterministic server ids (see the docstring).
SETUP = """\
import hashlib as _hashlib
import itertools as _itertools

import netmind_frames.server._store as _store

_counter = _itertools.count()


def _next_hex() -> str:
    return _hashlib.sha256(f"notebook-{next(_counter)}".encode()).hexdigest()[:24]


_store.new_file_id = lambda: "file-" + _next_hex()
_store.new_batch_id = lambda: "batch_" + _next_hex()
"""

WIDGET = "application/vnd.jupyter.widget-view+json"


def machine_paths() -> list[str]:
    """Absolute paths of this machine that would give it away in an output."""
    paths = {str(HERE.parent), str(Path.home()), tempfile.gettempdir(), "/home/", "/Users/"}
    return sorted(p for p in paths if len(p.strip("/")) > 1)  # never "/" (a home of "/")


#: What may not appear in a committed output, with the reason.
FORBIDDEN = {
    "a loopback address with its port": re.compile(r"(127\.0\.0\.1|localhost):\d+"),
    "an absolute path of this machine": re.compile("|".join(map(re.escape, machine_paths()))),
}


def environment(home: Path) -> dict[str, str]:
    """This process's environment without NETMIND_* settings, with a fresh home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETMIND_")}
    env["NETMIND_FRAMES_HOME"] = str(home)
    # The headless inline backend: ipykernel picks it only when MPLBACKEND is unset or says so.
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def strip(notebook: nbformat.NotebookNode) -> None:
    """Drop widget outputs and the widget state; keep everything else as executed."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.metadata.pop("execution", None)
        cell.outputs = [o for o in cell.outputs if WIDGET not in o.get("data", {})]


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What the outputs hold that must not be committed."""
    found = []
    for number, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")]
            texts += [v for k, v in output.get("data", {}).items() if not k.startswith("image/")]
            text = "\n".join(t if isinstance(t, str) else "".join(t) for t in texts)
            for what, pattern in FORBIDDEN.items():
                match = pattern.search(text)
                if match:
                    found.append(f"cell {number}: {what}: {match.group(0)!r}")
            if output.get("name") == "stderr" and "Warning" in text:
                found.append(f"cell {number}: a warning on stderr: {text.strip()[:200]}")
    return found


def regenerate(path: Path) -> None:
    """Execute ``path`` in a fresh kernel and write it back with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    setup = nbformat.v4.new_code_cell(SETUP)
    notebook.cells.insert(0, setup)
    with tempfile.TemporaryDirectory(prefix="netmind-frames-notebook-") as home:
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(environment(Path(home)))  # the kernel inherits this environment
        try:
            NotebookClient(
                notebook,
                kernel_name="python3",
                timeout=120,
                record_timing=False,
                resources={"metadata": {"path": str(HERE)}},
            ).execute()
        finally:
            os.environ.clear()
            os.environ.update(saved)
    notebook.cells.remove(setup)
    # Number the cells from 1 as if the setup cell had never run.
    for cell in notebook.cells:
        if cell.cell_type == "code" and cell.execution_count is not None:
            cell.execution_count -= 1
    strip(notebook)
    found = problems(notebook)
    if found:
        sys.exit(f"{path.name}: not written:\n  " + "\n  ".join(found))
    nbformat.write(notebook, path)
    print(f"{path.name}: {path.stat().st_size // 1024} KiB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebook names (default: every notebook)")
    args = parser.parse_args(argv)
    paths = [HERE / f"{n.removesuffix('.ipynb')}.ipynb" for n in args.names] or sorted(
        HERE.glob("*.ipynb")
    )
    for path in paths:
        regenerate(path)


if __name__ == "__main__":
    main()
