"""Results joined onto an Arrow table, with native types; and that table as a Polars frame.

The Arrow and Polars front ends get the same columns as a pandas caller, typed the way their
users expect rather than as pandas dtypes:

=============================================  =================================================
result column / schema property                Arrow type (Polars type)
=============================================  =================================================
``response``, ``error_code``, ... (text)       ``large_string`` (``String``)
``prompt_tokens``, ``completion_tokens``       ``int64`` (``Int64``), null where missing
``integer`` / ``number`` / ``boolean``         ``int64`` / ``float64`` / ``bool``
``string``                                     ``large_string`` (``String``)
``enum`` of strings (top level)                ``dictionary<int32, large_string>`` holding the
                                               schema's values in order (``Enum``)
``array`` / ``object`` with ``properties``     ``large_list`` / ``struct`` (``List`` / ``Struct``)
anything else (unions, free-form objects)      JSON text, ``large_string``
``embedding``                                  ``fixed_size_list<float32>[d]`` (``Array``)
=============================================  =================================================

Polars is never imported at module level: only :func:`to_polars` needs it, and a Polars
caller has imported it already.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from .._errors import ColumnError, InputError
from ._schema import OutputSchema, parse_native

__all__ = ["join_table", "native_typed", "to_polars"]

_STR = pa.large_string()
_SCALARS: dict[str, pa.DataType] = {
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "string": _STR,
}


def join_table(
    table: pa.Table,
    results: pa.Table,
    prefix: str = "",
    columns: Sequence[str] = (),
    spec: OutputSchema | None = None,
) -> pa.Table:
    """``table``'s columns, unchanged and in order, then the (prefixed) result ``columns`` and
    the typed columns of ``spec``'s properties. Text is ``large_string``; nothing is a Python
    object."""
    if results.num_rows != table.num_rows:
        raise InputError(f"{results.num_rows} results for a table of {table.num_rows} rows")
    added = {name: _plain(results.column(name)) for name in columns}
    if spec is not None:
        added.update(native_typed(results, spec))
    out = table
    for name, values in added.items():
        if prefix + name in out.column_names:
            raise ColumnError(
                f"result column {prefix + name!r} already exists in the input; pass prefix= "
                "to rename the result columns",
                column=prefix + name,
            )
        out = out.append_column(prefix + name, values)
    return out


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Text as ``large_string``, other result types as they are."""
    kind = column.type
    if pa.types.is_string(kind) or str(kind) == "string_view" or pa.types.is_null(kind):
        return column.cast(_STR)
    return column


def native_typed(results: pa.Table, spec: OutputSchema) -> dict[str, pa.Array]:
    """One Arrow array per top-level property of ``spec``, typed from the schema alone (so
    every chunk, and an all-null column, gets the same type), built straight from Arrow."""
    return parse_native(results.column("response"), results.column("status"), spec).columns


def to_polars(original: Any, joined: pa.Table) -> Any:
    """A Polars DataFrame: ``original``'s columns as they are (not round-tripped through
    Arrow), then the columns ``joined`` adds after them, dictionaries as ``Enum``."""
    import polars as pl  # the caller holds a Polars frame: it is imported already

    added = _as_views(joined.select(joined.column_names[original.width :]))
    result = pl.from_arrow(added)
    assert isinstance(result, pl.DataFrame)
    enums = []
    for field in added.schema:
        if pa.types.is_dictionary(field.type):
            categories = added.column(field.name).combine_chunks().dictionary.to_pylist()
            enums.append(pl.col(field.name).cast(pl.Enum(categories)))
    if enums:
        result = result.with_columns(enums)
    return original.hstack(result.get_columns())


def _as_views(table: pa.Table) -> pa.Table:
    """``table`` with its ``large_string`` columns as ``string_view``, the layout of Polars'
    ``String``: Polars then takes them without a copy. Arrow makes the views, one column
    per core at once, where Polars would convert them one after another."""
    if not hasattr(pa, "string_view"):  # pyarrow < 16: Polars converts them itself
        return table
    texts = [i for i, f in enumerate(table.schema) if pa.types.is_large_string(f.type)]
    if len(texts) < 2:
        return table
    with ThreadPoolExecutor(min(len(texts), os.cpu_count() or 1)) as pool:
        views = list(pool.map(lambda i: table.column(i).cast(pa.string_view()), texts))
    for i, column in zip(texts, views, strict=True):
        table = table.set_column(i, table.field(i).with_type(pa.string_view()), column)
    return table
