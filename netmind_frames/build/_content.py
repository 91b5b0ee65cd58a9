"""The variable values of request lines: each row's prompt text or message list.

A ``str.format`` template is parsed into literals and column names; text columns become
UTF-8 Arrow arrays (JSON-escaped later, as lines are built); a messages column is validated
row by row and encoded as JSON.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from .._errors import InputError, RowError
from ._escape import BINARY, escape_constant
from ._frame import get_column, is_string_dtype, row_label
from ._rowparams import plain

_ROLES = frozenset({"system", "user", "assistant", "tool", "developer"})


@dataclass(frozen=True)
class Source:
    """Where each row's content comes from.

    ``pieces`` alternates literal, already JSON-escaped bytes and whole-frame Arrow arrays:
    raw UTF-8 text for a prompt (escaped chunk by chunk, to bound memory) or JSON for
    messages (exactly one array piece, not escaped).
    """

    pieces: tuple[bytes | pa.Array, ...]
    is_messages: bool

    def parts(self) -> list[bytes | pa.Array | Raw]:
        """The pieces, messages JSON marked raw (prompt text is escaped as lines are built)."""
        return [Raw(p) if self.is_messages and isinstance(p, pa.Array) else p
                for p in self.pieces]  # fmt: skip


@dataclass(frozen=True)
class Raw:
    """An array of bytes that go into lines as they are (ids, JSON), not JSON-escaped."""

    values: pa.Array


def content_source(
    frame: pd.DataFrame,
    prompt: str | None,
    prompt_column: str | None,
    messages_column: str | None,
    system: str | None,
) -> Source:
    if messages_column is not None:
        return Source((_messages_json(frame, messages_column, system),), is_messages=True)
    if prompt_column is not None:
        return Source((text_values(frame, prompt_column, strict=True),), is_messages=False)
    assert prompt is not None
    pieces: list[bytes | pa.Array] = []
    arrays: dict[str, pa.Array] = {}
    for literal, name in parse_template(prompt):
        if literal:
            pieces.append(escape_constant(literal, "prompt template"))
        if name is not None:
            if name not in arrays:
                arrays[name] = text_values(frame, name, strict=False)
            pieces.append(arrays[name])
    return Source(tuple(pieces), is_messages=False)


def parse_template(prompt: str) -> list[tuple[str, str | None]]:
    """Split a template into (literal, column or None) pairs; only plain names are allowed."""
    if not isinstance(prompt, str):
        raise InputError(f"prompt must be a str template, got {type(prompt).__name__}")
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise InputError(
            f"prompt is not a valid str.format template: {exc}. Literal braces are written "
            "doubled: {{ and }}"
        ) from None
    out: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (name == "" or spec or conversion or re.search(r"[.\[]", name)):
            shown = "{" + name + ("!" + conversion if conversion else "")
            shown += (":" + spec if spec else "") + "}"
            if re.search(r"[\"']", name) or (spec or "").startswith(" "):  # JSON, not a column
                doubled = "{" + shown + "}"
                raise InputError(
                    f"prompt field {shown} looks like JSON, not a column name: literal braces "
                    f"in a template are written doubled, e.g. {doubled}"
                )
            raise InputError(
                f"prompt field {shown} is not supported: fields must be plain column names "
                "such as {text}, without positions, attributes, indexing, conversions or "
                "format specs (rename the column, or format it into a new column first)"
            )
        out.append((literal, name))
    return out


def text_values(frame: pd.DataFrame, name: str, *, strict: bool) -> pa.Array:
    """A column as UTF-8 text (large_binary), after checking every row.

    ``strict`` (``prompt_column``): cells must be strings. Otherwise (template fields) any
    non-null value is formatted with ``str()``, as ``str.format`` would.
    """
    column = get_column(frame, name, "prompt" if strict else "template")
    nulls = np.flatnonzero(np.asarray(column.isna(), dtype=bool))
    if nulls.size:
        position = int(nulls[0])
        raise RowError(
            f"{row_label(frame, position)}: column {name!r} is null "
            f"({nulls.size} null row(s) in all); prompts must be non-null",
            position=position,
        )
    if not is_string_dtype(column):
        if strict:
            _raise_first_non_string(frame, column, name)
        column = column.astype(object).map(str) if column.dtype == object else column.astype(str)
    return _to_arrow_text(frame, column, name)


def _raise_first_non_string(frame: pd.DataFrame, column: pd.Series, name: str) -> None:
    for position, value in enumerate(column.array):
        if not isinstance(value, str):
            raise RowError(
                f"{row_label(frame, position)}: column {name!r} holds a "
                f"{type(value).__name__} ({value!r}), not a string; prompts must be strings",
                position=position,
            )


def _to_arrow_text(frame: pd.DataFrame, column: pd.Series, name: str) -> pa.Array:
    """One large_binary array of UTF-8 bytes (zero-copy for Arrow-backed string columns)."""
    try:
        values = pa.array(column, type=pa.large_string(), from_pandas=True)
    except UnicodeEncodeError:
        for position, value in enumerate(column.array):
            try:
                str(value).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RowError(
                    f"{row_label(frame, position)}: column {name!r} is not encodable as "
                    f"UTF-8 ({exc.reason} at character {exc.start})",
                    position=position,
                ) from None
        raise
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values.view(BINARY)


def _messages_json(frame: pd.DataFrame, name: str, system: str | None) -> pa.Array:
    """Each row's message list as compact JSON bytes, validated (per row: not a hot path)."""
    column = get_column(frame, name, "messages")
    prefix = [{"role": "system", "content": system}] if system is not None else []
    out: list[bytes] = []
    for position, cell in enumerate(column.array):
        messages = _check_messages(frame, position, name, cell)
        try:
            out.append(orjson.dumps(prefix + messages, option=orjson.OPT_SERIALIZE_NUMPY))
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise RowError(
                f"{row_label(frame, position)}: messages in column {name!r} cannot be "
                f"encoded as JSON: {exc}",
                position=position,
            ) from None
    return pa.array(out, type=BINARY)


def _check_messages(frame: pd.DataFrame, position: int, name: str, cell: Any) -> list[Any]:
    """A row's messages as plain lists and dicts, after checking them one by one.

    Every message is a dict with a known ``role``. ``content`` is a string or a non-empty
    list of parts (dicts with a string ``type``; a ``text`` part has a string ``text``); an
    ``assistant`` message may have null or no content when it carries ``tool_calls`` (or a
    ``function_call``); a ``tool`` message needs a string ``tool_call_id``; ``name`` is a
    string; ``tool_calls`` is a list of dicts with an ``id``, a ``type`` and a ``function``.
    """

    def bad(why: str) -> RowError:
        return RowError(f"{row_label(frame, position)}: column {name!r}: {why}", position)

    if not isinstance(cell, (list, tuple, np.ndarray)) or len(cell) == 0:
        raise bad(f"expected a non-empty list of messages, got {type(cell).__name__}")
    messages = []
    for i, message in enumerate(plain(cell)):
        if not isinstance(message, Mapping):
            raise bad(f"message {i} is a {type(message).__name__}, not a dict")
        role = message.get("role")
        if role not in _ROLES:
            raise bad(f"message {i} has role {role!r}; expected one of {sorted(_ROLES)}")
        why = _message_problem(message, role)
        if why is not None:
            raise bad(f"message {i} ({role}) {why}")
        messages.append(dict(message))
    return messages


def _message_problem(message: Mapping[str, Any], role: str) -> str | None:
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if role != "assistant":
            return "has tool_calls; only assistant messages may"
        if not isinstance(tool_calls, list) or not all(
            isinstance(c, Mapping) and isinstance(c.get("id"), str) and "function" in c
            for c in tool_calls
        ):
            return "tool_calls must be a list of dicts with an 'id' and a 'function'"
    if not isinstance(message.get("name", ""), str):
        return "name must be a string"
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        return "needs a string tool_call_id"
    if content is None:
        if role == "assistant" and (tool_calls or message.get("function_call")):
            return None
        return "has no content (only an assistant message with tool_calls may)"
    if isinstance(content, str):
        return None
    if not isinstance(content, list):
        return f"content is a {type(content).__name__}, not a str or list of parts"
    if not content:
        return "content is an empty list of parts"
    for j, part in enumerate(content):
        if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
            return f"content part {j} is not a dict with a string 'type'"
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return f"content part {j} is a text part without a string 'text'"
    return None
