"""Read-ahead of input windows and results (issue #16, goal 1): ``build._prefetch``.

The next window is produced in a thread while the caller builds or writes the one before; the
caller still sees every item in order, an error where the item that raised it would be, and
the source is closed when the caller stops early.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from netmind_frames.build._prefetch import prefetched


def test_items_come_in_order_each_made_in_the_read_ahead_thread():
    made_by: list[str] = []

    def source() -> Iterator[int]:
        for i in range(5):
            made_by.append(threading.current_thread().name)
            yield i

    assert list(prefetched(source(), "reader")) == [0, 1, 2, 3, 4]
    assert len(made_by) == 5
    assert all(name.startswith("reader") for name in made_by)


def test_the_next_item_is_made_while_the_caller_holds_this_one():
    made = threading.Event()

    def source() -> Iterator[int]:
        yield 1
        made.set()
        yield 2

    items = prefetched(source(), "reader")
    assert next(items) == 1
    assert made.wait(10), "the second item was not made while the first was held"
    assert list(items) == [2]


def test_an_error_is_raised_after_the_items_before_it():
    def source() -> Iterator[int]:
        yield 1
        raise ValueError("window 2 is bad")

    items = prefetched(source(), "reader")
    assert next(items) == 1
    with pytest.raises(ValueError, match="window 2 is bad"):
        next(items)


def test_stopping_early_closes_the_source():
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(100)
        finally:
            closed.set()

    items = prefetched(source(), "reader")
    assert next(items) == 0
    items.close()
    assert closed.is_set()
