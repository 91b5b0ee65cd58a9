"""Every notebook in notebooks/ runs top to bottom against the local batch server.

The notebooks are committed with their outputs (plots included), produced by
``python notebooks/regenerate.py`` against seeded local servers; here their outputs are
checked (complete, in order, nothing of this machine in them), and each notebook is executed
again in a fresh ``python3`` kernel (ipykernel from this environment), with the notebooks
folder as the working directory, as Jupyter would start it. A cell that raises fails the test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

#: Seconds any one cell may take (each notebook as a whole runs in well under a minute).
CELL_TIMEOUT = 120


def test_notebooks_exist():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"


def regenerate_module() -> ModuleType:
    """notebooks/regenerate.py, which knows what a committed output may not hold."""
    spec = importlib.util.spec_from_file_location("regenerate", NOTEBOOK_DIR / "regenerate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_its_outputs(path):
    """Executed top to bottom (counts 1, 2, ...), every plot drawn, nothing to hide in them."""
    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    counts = [cell.execution_count for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: not executed top to bottom; run python notebooks/regenerate.py"
    )
    assert any(cell.outputs for cell in code), f"{path.name}: committed without outputs"
    for cell in code:
        if "plt.show()" in cell.source:
            assert any("image/png" in o.get("data", {}) for o in cell.outputs), (
                f"{path.name}: the committed outputs lack the plot of:\n{cell.source}"
            )
    problems = regenerate_module().problems(notebook)
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
    assert path.stat().st_size < 300_000, f"{path.name}: keep the outputs small"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, monkeypatch):
    """A raising cell, a plot cell that draws nothing, or a warning on stderr fails it."""
    # The kernel inherits this environment: conftest already points NETMIND_FRAMES_HOME at a
    # fresh folder and removes NETMIND_API_KEY / NETMIND_BASE_URL. Matplotlib gets the
    # headless inline backend, which ipykernel picks only when MPLBACKEND is unset: with
    # MPLBACKEND=Agg, plt.show() would silently draw nothing, and with a GUI backend left
    # in a developer's shell it would try to open windows.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(NOTEBOOK_DIR)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, when one fails

    for cell in notebook.cells:
        if cell.cell_type == "code" and "plt.show()" in cell.source:
            images = [o for o in cell.outputs if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: this cell draws no figure:\n{cell.source}"

    noisy = [
        output["text"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("name") == "stderr" and "Warning" in output["text"]
    ]
    assert not noisy, f"{path.name} shows warnings:\n" + "\n".join(noisy)
