"""Validation of a batch input file: the checks that make a batch end ``failed``.

Error codes (``errors.data[].code``), each with the 1-based ``line`` it concerns:
``invalid_json_line`` (not a JSON object), ``missing_custom_id`` (absent, empty or not a
string), ``duplicate_custom_id``, ``invalid_method`` (``method`` other than ``POST``),
``url_mismatch`` (``url`` is not the batch's endpoint), ``model_mismatch`` (a second model in
the file), ``model_not_found`` (a model outside the server's ``model_allowlist``, as OpenAI
fails a batch whose lines name a model its Batch API does not serve; ``param`` ``body.model``)
and ``empty_file`` (no request line; ``line`` null). Blank lines are skipped. A line
whose ``body`` is not a valid request is *not* a validation error: it runs and gets a 400
error line, as at OpenAI.
"""

from __future__ import annotations

import mmap
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import orjson

MAX_ERRORS = 1000
_BLANK = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() removes


class Lines(Sequence[bytes]):
    """The request lines of an input file, read on demand from a memory map.

    Only two offsets per line stay in memory: a 100 MB input file is never held whole, each
    line is read (and its page mapped by the OS) when the runner gets to it.
    """

    def __init__(self, buffer: bytes | mmap.mmap) -> None:
        self._buffer = buffer
        self._starts = array("q")
        self._ends = array("q")

    @classmethod
    def of_file(cls, path: Path) -> Lines:
        """The lines of the file at ``path`` (memory-mapped; an empty file maps to nothing)."""
        with path.open("rb") as handle:
            if handle.seek(0, 2) == 0:
                return cls(b"")
            return cls(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ))

    @classmethod
    def of_offsets(cls, path: Path, starts: array[int], ends: array[int]) -> Lines:
        """The lines of the file at ``path`` at known offsets (a validation done elsewhere)."""
        lines = cls.of_file(path)
        lines._starts, lines._ends = starts, ends
        return lines

    def offsets(self) -> tuple[array[int], array[int]]:
        """The start and end offsets of every kept line (what :meth:`of_offsets` takes)."""
        return self._starts, self._ends

    def offsets_at(self, positions: Sequence[int]) -> tuple[array[int], array[int]]:
        """The start and end offsets of the lines at ``positions``, in that order."""
        at = np.asarray(positions, dtype=np.intp)
        picked = []
        for offsets in (self._starts, self._ends):
            chosen = array("q")
            chosen.frombytes(np.frombuffer(offsets, dtype=np.int64)[at].tobytes())
            picked.append(chosen)
        return picked[0], picked[1]

    def numbered(self) -> Iterator[tuple[int, int, int]]:
        """Every line as (1-based number, start, end), blank ones included, in file order."""
        buffer, size, start, number = self._buffer, len(self._buffer), 0, 1
        while start < size:
            end = buffer.find(b"\n", start)
            end = size if end < 0 else end
            yield number, start, end
            start, number = end + 1, number + 1

    @property
    def buffer(self) -> bytes | mmap.mmap:
        """The whole file."""
        return self._buffer

    def keep(self, start: int, end: int) -> None:
        """Add the line at ``buffer[start:end]``."""
        self._starts.append(start)
        self._ends.append(end)

    def raw(self, start: int, end: int) -> bytes:
        """The bytes of ``buffer[start:end]``."""
        return bytes(self._buffer[start:end])

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[bytes]:
        # Sequence's own iteration indexes one line at a time through __getitem__: this loop
        # runs once per request the runner answers.
        buffer = self._buffer
        for start, end in zip(self._starts, self._ends, strict=True):
            yield buffer[start:end]

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return bytes(self._buffer[self._starts[index] : self._ends[index]])


@dataclass(frozen=True)
class Validated:
    """The request lines of a valid file (blank lines dropped), or the errors of an invalid one."""

    lines: Sequence[bytes]
    model: str | None
    errors: list[dict[str, Any]]


def _error(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def validate_input(
    data: bytes | Path, endpoint: str, models: frozenset[str] | None = None
) -> Validated:
    """Check every line of ``data`` (bytes, or a file read through a memory map); with
    ``models``, a line naming another model is an error."""
    lines = Lines.of_file(data) if isinstance(data, Path) else Lines(data)
    checks = Checks(endpoint, models)
    for _ in checks.requests(lines):
        pass
    return checks.result(lines)


@dataclass
class Checks:
    """The checks of one input file, line by line: its errors and its model so far."""

    endpoint: str
    models: frozenset[str] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    def requests(self, lines: Lines) -> Iterator[dict[str, Any]]:
        """Check every line of ``lines`` (keeping the non-blank ones); yield each parsed
        request, in file order, as long as no line has failed (so they can be answered on
        the way, and the file is parsed once)."""
        errors, endpoint, models = self.errors, self.endpoint, self.models
        seen: set[str] = set()
        buffer, loads, keep = lines.buffer, orjson.loads, lines.keep
        # Lines are read through a memoryview (no copy) and blank ones told apart by their
        # first byte: this loop runs once per request of files with millions of them.
        view = memoryview(buffer)
        try:
            for number, start, end in lines.numbered():
                if start == end or (buffer[start] in _BLANK and not buffer[start:end].strip()):
                    continue
                if len(errors) >= MAX_ERRORS:
                    break
                keep(start, end)
                try:
                    req = loads(view[start:end])
                except orjson.JSONDecodeError:
                    req = None
                if not isinstance(req, dict):
                    message = "This line is not parseable as valid JSON."
                    errors.append(_error("invalid_json_line", message, number))
                    continue
                cid = req.get("custom_id")
                if not isinstance(cid, str) or not cid:
                    errors.append(
                        _error("missing_custom_id", "This line has no custom_id.", number)
                    )
                elif cid in seen:
                    message = "The custom_id for this request is a duplicate."
                    errors.append(_error("duplicate_custom_id", message, number))
                else:
                    seen.add(cid)
                if req.get("method", "POST") != "POST":
                    message = "Only the POST method is supported."
                    errors.append(_error("invalid_method", message, number))
                if req.get("url") != endpoint:
                    message = (
                        f"The url for this request does not match the batch endpoint {endpoint}."
                    )
                    errors.append(_error("url_mismatch", message, number))
                body = req.get("body")
                line_model = body.get("model") if isinstance(body, dict) else None
                if models is not None and line_model not in models:
                    message = (
                        f"The provided model {line_model!r} is not supported by the Batch API."
                    )
                    errors.append(_error("model_not_found", message, number, "body.model"))
                if isinstance(line_model, str):
                    if self.model is None:
                        self.model = line_model
                    elif line_model != self.model:
                        message = (
                            f"All requests must use the same model; this line uses "
                            f"{line_model!r}, earlier lines {self.model!r}."
                        )
                        errors.append(_error("model_mismatch", message, number))
                if not errors:
                    yield req
        finally:
            view.release()

    def result(self, lines: Lines) -> Validated:
        """What the checks found, once :meth:`requests` has gone through ``lines``."""
        if not lines:
            self.errors.append(_error("empty_file", "The input file contains no requests.", None))
        return Validated(
            lines=lines if not self.errors else [], model=self.model, errors=self.errors
        )
