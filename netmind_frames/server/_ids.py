"""Opaque ids: generation and the strict patterns every id is checked against.

An id from a request reaches the file system only as part of a file name, and only after it
matched one of these patterns, so ``../`` or an encoded separator can never become a path.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterator

FILE_ID_RE = re.compile(r"file-[0-9a-f]{24}")
BATCH_ID_RE = re.compile(r"batch_[0-9a-f]{24}")


def new_file_id() -> str:
    """Return a fresh file id, ``file-`` followed by 24 hex digits."""
    return "file-" + secrets.token_hex(12)


def new_batch_id() -> str:
    """Return a fresh batch id, ``batch_`` followed by 24 hex digits."""
    return "batch_" + secrets.token_hex(12)


def is_file_id(value: object) -> bool:
    """Tell whether ``value`` is a well-formed file id."""
    return isinstance(value, str) and FILE_ID_RE.fullmatch(value) is not None


def is_batch_id(value: object) -> bool:
    """Tell whether ``value`` is a well-formed batch id."""
    return isinstance(value, str) and BATCH_ID_RE.fullmatch(value) is not None


_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count()


def fast_hex() -> str:
    """Return 32 hex digits unique within this process: for per-request ids on hot paths.

    A random per-process prefix plus a counter: far cheaper than ``uuid4`` (three ids per
    request at 100,000 requests per batch) and never repeated by one server.
    """
    return f"{_PREFIX}{next(_COUNTER):016x}"


def prefix() -> bytes:
    """The id prefix of :func:`fast_hex`, as bytes (for ids formatted in bulk)."""
    return _PREFIX.encode()


def counter() -> Iterator[int]:
    """The counter of :func:`fast_hex`: ids formatted in bulk draw from it, so they never
    repeat one :func:`fast_hex` returns."""
    return _COUNTER
