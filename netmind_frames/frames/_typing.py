"""Static types of the entry points: a pandas frame in, a pandas frame out; Polars in,
Polars out; Arrow in, a ``pyarrow.Table`` out.

:func:`frame_function` is a decorator that changes nothing at run time (the function is
returned as it is, so its name, signature and docstring stay); for a type checker it gives
the function one overload per kind of input, each with the function's own keyword
arguments (a ``ParamSpec``), so ``batch_complete(pl_df, ...)`` is a ``pl.DataFrame`` rather
than ``Any``. Polars is only imported for the type checker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, overload

if TYPE_CHECKING:
    import pandas as pd
    import polars as pl
    import pyarrow as pa

__all__ = ["FrameFunction", "frame_function"]

P = ParamSpec("P")


class FrameFunction(Protocol[P]):
    """An entry point whose result is the caller's kind of table."""

    @overload
    def __call__(
        self, frame: pd.DataFrame, /, *args: P.args, **kwargs: P.kwargs
    ) -> pd.DataFrame: ...

    @overload
    def __call__(
        self, frame: pl.DataFrame | pl.LazyFrame, /, *args: P.args, **kwargs: P.kwargs
    ) -> pl.DataFrame: ...

    @overload
    def __call__(
        self, frame: pa.Table | pa.RecordBatchReader, /, *args: P.args, **kwargs: P.kwargs
    ) -> pa.Table: ...

    def __call__(self, frame: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any: ...


def frame_function(function: Callable[Concatenate[Any, P], Any]) -> FrameFunction[P]:
    """``function`` itself, typed as a :class:`FrameFunction` (see the module docstring)."""
    return function  # type: ignore[return-value,unused-ignore]
