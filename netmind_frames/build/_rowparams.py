"""Per-row request settings: a model per row (``model_column``) and parameters per row
(``params_column``). Both are validated row by row before anything is built, and every error
names the row."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from .._errors import InputError, RowError

RowLabel = Callable[[int], str]

#: Request parameters the OpenAI API types as integers (``CompletionCreateParams``,
#: ``EmbeddingCreateParams``), plus ``top_k``/``min_tokens`` of vLLM-style servers. A Parquet
#: round trip turns a nullable int into a float (2 -> 2.0), which strict servers reject.
INTEGER_PARAMS = frozenset(
    {"max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs", "best_of",
     "dimensions", "top_k", "min_tokens"}
)  # fmt: skip


def _number(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
            value, (bool, np.bool_)
        )
        if ok and (value != value or low <= value <= high):  # NaN is sent as null
            return None
        return f"a number from {low:g} to {high:g}"

    return check


def _whole(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
        if ok and low <= value and (high is None or value <= high):
            return None
        return f"a whole number ≥ {low}" if high is None else f"a whole number from {low} to {high}"

    return check


def _of(*kinds: type, what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool):  # a bool is an int to Python, never to the API
            return None if bool in kinds else what
        return None if isinstance(value, kinds) else what

    return check


def _stop(value: Any) -> str | None:
    if isinstance(value, str):
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return None
    return "a string or a list of strings"


#: The types of the request parameters the chat and embeddings APIs document (OpenAI's
#: ``CompletionCreateParams`` / ``EmbeddingCreateParams``, the ones Netmind lists), plus
#: vLLM-style extras; each check returns what was expected, or None. A value of another
#: type is refused before anything is uploaded: the server would refuse every request.
PARAM_TYPES: dict[str, Callable[[Any], str | None]] = {
    "max_tokens": _whole(1),
    "max_completion_tokens": _whole(1),
    "n": _whole(1),
    "seed": _whole(-(2**63)),
    "top_logprobs": _whole(0, 20),
    "best_of": _whole(1),
    "dimensions": _whole(1),
    "top_k": _whole(-1),
    "min_tokens": _whole(0),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "min_p": _number(0, 1),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "repetition_penalty": _number(0, float("inf")),
    "stop": _stop,
    "logprobs": _of(bool, what="true or false"),
    "parallel_tool_calls": _of(bool, what="true or false"),
    "store": _of(bool, what="true or false"),
    "response_format": _of(Mapping, what='an object, e.g. {"type": "json_object"}'),
    "logit_bias": _of(Mapping, what="an object of token ids to numbers"),
    "metadata": _of(Mapping, what="an object of strings"),
    "stream_options": _of(Mapping, what="an object"),
    "prediction": _of(Mapping, what="an object"),
    "audio": _of(Mapping, what="an object"),
    "web_search_options": _of(Mapping, what="an object"),
    "tools": _of(list, tuple, what="a list of tool objects"),
    "functions": _of(list, tuple, what="a list of function objects"),
    "modalities": _of(list, tuple, what="a list of strings"),
    "tool_choice": _of(str, Mapping, what="a string or an object"),
    "function_call": _of(str, Mapping, what="a string or an object"),
    "user": _of(str, what="a string"),
    "reasoning_effort": _of(str, what="a string"),
    "service_tier": _of(str, what="a string"),
    "encoding_format": _of(str, what="a string"),
    "stream": _of(bool, what="true or false"),
}


def check_param_types(params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the key for a documented parameter of the wrong type or
    range, or for an unknown key that is a likely typo of one (``max_token``). Other keys
    pass through unchanged: providers have their own extras."""
    for key, value in params.items():
        check = PARAM_TYPES.get(key)
        if check is None:
            close = difflib.get_close_matches(key, PARAM_TYPES, n=1, cutoff=0.85)
            if close:
                raise ValueError(f"unknown request parameter {key!r}: did you mean {close[0]!r}?")
            continue
        if value is None:
            continue
        expected = check(value)
        if expected is not None:
            raise ValueError(f"{key!r} must be {expected}, not {value!r}")


def plain(value: Any) -> Any:
    """``value`` with NumPy arrays (lists read back from Parquet) turned into lists, deeply."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()] if value.dtype == object else value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    return value


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def whole_numbers(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with each float of an integer-only key (``INTEGER_PARAMS``) made an int.

    ``2.0`` becomes ``2``; a NaN or NA is left out (as None is); any other float raises
    ``ValueError`` naming the key. Values of other keys, and non-floats, are kept as they are.
    Then the documented parameters' types are checked (:func:`check_param_types`).
    """
    out = dict(params)
    for key in [k for k in out if k in INTEGER_PARAMS]:
        value = out[key]
        if value is pd.NA or (isinstance(value, (float, np.floating)) and value != value):
            del out[key]
        elif isinstance(value, (float, np.floating)):
            if not float(value).is_integer():
                raise ValueError(f"{key!r} must be a whole number, not {float(value)!r}")
            out[key] = int(value)
    check_param_types(out)
    return out


def model_groups(
    column: pd.Series | None, model: str | None, label: RowLabel, name: str | None
) -> list[tuple[str, np.ndarray | None]]:
    """``[(model, rows)]`` in order of first appearance; ``rows`` None means every row.

    A null cell takes ``model`` (the default); without a default it is an error.
    """
    if model is not None and (not isinstance(model, str) or not model):
        raise InputError(f"model must be a non-empty str, got {model!r}")
    if column is None:
        if model is None:
            raise InputError("give model= (or model_column= for a model per row)")
        return [(model, None)]
    values = column.array
    nulls = np.asarray(column.isna(), dtype=bool)
    if nulls.any():
        if model is None:
            position = int(np.flatnonzero(nulls)[0])
            raise RowError(
                f"{label(position)}: column {name!r} is null and no default model= was given",
                position=position,
            )
        values = column.astype(object).where(~nulls, model).array
    codes, uniques = pd.factorize(values, sort=False)
    for k, value in enumerate(uniques):
        if not isinstance(value, str) or not value:
            position = int(np.flatnonzero(codes == k)[0])
            raise RowError(
                f"{label(position)}: column {name!r} holds {value!r}; models must be "
                "non-empty strings",
                position=position,
            )
    if len(uniques) == 1:
        return [(str(uniques[0]), None)]
    return [(str(m), np.flatnonzero(codes == k).astype(np.int64)) for k, m in enumerate(uniques)]


def params_fragments(
    column: pd.Series, params: Mapping[str, Any], reserved: frozenset[str], label: RowLabel,
    name: str,
) -> pa.Array:  # fmt: skip
    """Per row, ``,"key":value,...`` (or empty): ``params`` updated with the row's dict.

    A cell is a dict or null (only ``params`` then). Keys must be strings and not in
    ``reserved``; a key whose value is None is left out (struct columns read from Parquet
    hold every key of every row). The values must be JSON-serialisable; a float for an
    integer-only key (``max_tokens``, ``seed``, ...) must be whole and is sent as an int
    (see :func:`whole_numbers`).
    """
    base = orjson.dumps(dict(params), option=orjson.OPT_SERIALIZE_NUMPY)
    base_fragment = b"," + base[1:-1] if len(base) > 2 else b""
    out: list[bytes] = []
    for position, cell in enumerate(column.array):
        if _is_null(cell):
            out.append(base_fragment)
            continue
        if not isinstance(cell, Mapping):
            raise RowError(
                f"{label(position)}: column {name!r} holds a {type(cell).__name__}; "
                "per-row parameters must be a dict or null",
                position=position,
            )
        row = {}
        for key, value in cell.items():
            if not isinstance(key, str):
                raise RowError(
                    f"{label(position)}: column {name!r} has a non-string key {key!r}",
                    position=position,
                )
            if key in reserved:
                raise RowError(
                    f"{label(position)}: column {name!r} sets {key!r}, which netmind_frames "
                    f"sets itself; per-row parameters may not set {sorted(reserved)}",
                    position=position,
                )
            if value is not None:
                row[key] = plain(value)
        try:
            row = whole_numbers(row)
        except ValueError as exc:
            raise RowError(
                f"{label(position)}: column {name!r}: {exc}", position=position
            ) from None
        try:
            merged = orjson.dumps({**params, **row}, option=orjson.OPT_SERIALIZE_NUMPY)
        except (TypeError, orjson.JSONEncodeError) as exc:
            raise RowError(
                f"{label(position)}: parameters in column {name!r} cannot be encoded as "
                f"JSON: {exc}",
                position=position,
            ) from None
        out.append(b"," + merged[1:-1] if len(merged) > 2 else b"")
    return pa.array(out, type=pa.large_binary())
