"""A type checker sees each entry point return the caller's kind of table (frames/_typing.py)."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path

import pytest

import netmind_frames
from netmind_frames.frames import _api

SNIPPET = """
    import pandas as pd
    import polars as pl
    from typing import assert_type

    import netmind_frames

    assert_type(netmind_frames.batch_complete(pd.DataFrame(), "x", model="m"), pd.DataFrame)
    assert_type(netmind_frames.batch_complete(pl.DataFrame(), "x", model="m"), pl.DataFrame)
    assert_type(netmind_frames.batch_complete(pl.LazyFrame(), "x", model="m"), pl.DataFrame)
    assert_type(netmind_frames.batch_embed(pl.DataFrame(), "text", model="m"), pl.DataFrame)
    netmind_frames.batch_complete(pd.DataFrame(), "x", model=3)  # the one error expected
"""


def test_the_decorator_changes_nothing_at_run_time():
    assert _api.batch_complete.__name__ == "batch_complete"
    assert "schema" in inspect.signature(_api.batch_complete).parameters
    assert netmind_frames.batch_embed is _api.batch_embed


@pytest.mark.slow
def test_mypy_sees_pandas_polars_and_a_wrong_keyword_type(tmp_path: Path):
    api = pytest.importorskip("mypy.api")
    path = tmp_path / "uses.py"
    path.write_text(textwrap.dedent(SNIPPET))
    root = Path(__file__).resolve().parents[1]
    out, err, _ = api.run(
        [str(path), "--config-file", str(root / "pyproject.toml"), "--no-error-summary",
         "--cache-dir", str(root / ".mypy_cache")]
    )  # fmt: skip
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert len(errors) == 1 and 'argument types "DataFrame", "str", "int"' in errors[0], out + err
