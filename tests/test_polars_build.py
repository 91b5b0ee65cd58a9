"""A Polars frame on its way into the request builders: its text columns become large strings
that share the frame's bytes when they lie back to back (else Arrow's cast copies them), every
column keeps the type of Polars' own ``to_arrow()``, and the request lines are the same bytes
as from pandas, whatever the layout of the Polars columns."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import netmind_frames
from netmind_frames.build._source import TableSource, as_source
from netmind_frames.build._views import large_from_view

pl = pytest.importorskip("polars")
if not hasattr(pa, "string_view"):  # pragma: no cover - pyarrow < 16
    pytest.skip("pyarrow has no string views", allow_module_level=True)

LONG = [f'row {i}: "quoted" text\nwith a newline, é and 😀 {"x" * (i % 40)}' for i in range(3000)]
MIXED = [None if i % 7 == 0 else "" if i % 11 == 0 else t for i, t in enumerate(LONG)]


def _table(frame: Any) -> pa.Table:
    """The Arrow table the request builders read for ``frame``."""
    source = as_source(frame)
    assert isinstance(source, TableSource)
    return source.table


LAYOUTS = {
    "one buffer, back to back": lambda: pl.from_arrow(pa.array(LONG, pa.large_string())),
    "nulls and empty rows": lambda: pl.from_arrow(pa.array(MIXED, pa.large_string())),
    "all empty": lambda: pl.Series([""] * 5),
    "short strings inside views": lambda: pl.Series(["a", "bb" * 10, "c", None]),
    "several buffers": lambda: pl.Series(LONG * 40),
    "rows out of order": lambda: pl.from_arrow(pa.array(LONG, pa.large_string())).sort(),
    "a slice": lambda: pl.from_arrow(pa.array(LONG, pa.large_string())).slice(100, 700),
    "binary": lambda: pl.Series([t.encode() for t in LONG], dtype=pl.Binary),
    "empty": lambda: pl.Series([], dtype=pl.String),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_views_become_the_same_values_as_arrows_cast(layout):
    views = LAYOUTS[layout]().to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(views, pa.ChunkedArray):
        views = views.combine_chunks()
    assert str(views.type) in ("string_view", "binary_view")
    got = large_from_view(views)
    expected = views.cast(
        pa.large_binary() if views.type == pa.binary_view() else pa.large_string()
    )
    got.validate(full=True)
    assert got.type == expected.type and got.equals(expected)
    assert got.to_pylist() == views.to_pylist()


def test_a_frame_made_from_arrow_shares_its_text_bytes():
    """The fix itself: Polars' to_arrow() copied every text byte (~75 ms per 300 MB)."""
    original = pa.table({"text": pa.array(LONG, pa.large_string()), "n": range(len(LONG))})
    frame = pl.from_arrow(original)
    table = _table(frame)
    data = original.column("text").chunk(0).buffers()[2]
    shared = table.column("text").chunk(0).buffers()[2]
    assert data.address <= shared.address < data.address + data.size
    assert table.equals(original.replace_schema_metadata(None))


def test_every_column_keeps_the_type_of_polars_own_conversion(tmp_path: Path):
    frame = pl.DataFrame(
        {
            "text": ["x" * 20, "short", None, "", "é" * 30],
            "binary": [b"y" * 20, b"z", None, b"", b"w" * 13],
            "int": [1, 2, None, 4, 5],
            "float": [1.5, None, 3.0, 4.0, 5.0],
            "bool": [True, False, None, True, True],
            "categorical": pl.Series(["a", "b", "a", None, "b"], dtype=pl.Categorical),
            "enum": pl.Series(["a", "b", "a", None, "b"], dtype=pl.Enum(["b", "a"])),
            "list": [["a" * 20, "b"], None, [], ["c"], ["d"]],
            "struct": [{"k": "v" * 20, "n": i} for i in range(5)],
            "time": [dt.datetime(2026, 1, 1, i) for i in range(5)],
            "null": [None] * 5,
        }
    )
    frame.write_parquet(tmp_path / "f.parquet")
    for case in (frame, pl.read_parquet(tmp_path / "f.parquet"), frame.lazy()):
        table = _table(case)
        expected = (case.collect() if isinstance(case, pl.LazyFrame) else case).to_arrow()
        assert table.schema.equals(expected.schema, check_metadata=True)
        assert table.equals(expected)


def _polars_frames(data: dict[str, list[Any]], tmp_path: Path) -> dict[str, Any]:
    """The same rows as Polars frames in the layouts users hold."""
    rows = pd.DataFrame(data)
    table = pa.Table.from_pandas(rows, preserve_index=False)
    pq.write_table(table, tmp_path / "rows.parquet")
    return {
        "from_arrow": pl.from_arrow(table),
        "from_pandas": pl.from_pandas(rows),
        "read_parquet": pl.read_parquet(tmp_path / "rows.parquet"),
        "from_lists": pl.DataFrame(data),  # several buffers
    }


def test_request_lines_are_the_bytes_pandas_makes_in_every_layout(tmp_path: Path):
    data: dict[str, list[Any]] = {
        "text": LONG,
        "short": [f"s{i % 9}" for i in range(len(LONG))],
        "stars": [i % 5 + 1 for i in range(len(LONG))],
        "unused": MIXED,  # nulls in a column no request reads
    }
    rows = pd.DataFrame(data)
    prompt = "Rate ({stars} stars, {short}):\n{text}"
    expected = netmind_frames.to_jsonl(rows, prompt=prompt, model="m", system="Be brief.")
    for layout, frame in _polars_frames(data, tmp_path).items():
        got = netmind_frames.to_jsonl(frame, prompt=prompt, model="m", system="Be brief.")
        assert got == expected, layout
        assert netmind_frames.to_jsonl(frame, prompt_column="text", model="m") == (
            netmind_frames.to_jsonl(rows, prompt_column="text", model="m")
        ), layout
