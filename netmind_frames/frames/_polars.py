"""``pl.DataFrame.netmind`` and ``pl.LazyFrame.netmind``: the pandas accessor, on Polars.

The methods are the pandas accessor's (:class:`~._accessor.NetmindAccessor`), with its
signatures: the functional core takes any frame and returns the caller's kind, so a Polars
frame gets a Polars DataFrame back (native types: see :mod:`..results._tables`). A LazyFrame is
collected first (all its columns: the result keeps them). ``submit`` returns a
:class:`~netmind_frames.BatchJob` whose ``result()`` is a Polars DataFrame too.

This module imports Polars, so it is imported only once Polars is (see :mod:`._register`).
"""

from __future__ import annotations

import polars as pl

from ._accessor import NetmindAccessor

__all__ = ["PolarsNetmind"]


@pl.api.register_lazyframe_namespace("netmind")
@pl.api.register_dataframe_namespace("netmind")
class PolarsNetmind(NetmindAccessor):
    """Batch LLM completions over the rows of a Polars frame: ``df.netmind.batch_complete(...)``.

    Example:
        >>> import polars as pl, netmind_frames
        >>> out = pl.DataFrame({"text": ["hi"]}).netmind.batch_complete(
        ...     "Say {text}", model="m", local=True)
    """

    def __init__(self, frame: pl.DataFrame | pl.LazyFrame) -> None:
        self._frame = frame  # type: ignore[assignment]
