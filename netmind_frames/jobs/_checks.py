"""Argument checks: each raises ``InputError`` for a bad argument, before any request is sent.

The entry points in ``_api`` and ``BatchJob``'s waiting methods share them; this module
imports nothing of the package's but its errors, so every module can use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import openai

from .._errors import InputError

#: Metadata allows 16 pairs (batch-api.md §2.1); the library uses two of them.
_MAX_USER_METADATA = 14


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_seconds(name: str, value: float) -> None:
    """Raise ``InputError`` unless ``value`` is a finite number of seconds > 0."""
    if not _is_number(value) or not 0 < value < float("inf"):
        raise InputError(f"{name} must be a number of seconds > 0, not {value!r}.")


def check_timeout(timeout: float | None) -> None:
    """Raise ``InputError`` unless ``timeout`` is None, 0 or a finite number of seconds > 0
    (the entry points and ``BatchJob``'s waiting methods check it before any request)."""
    if timeout is None or (_is_number(timeout) and timeout == 0):
        return
    check_seconds("timeout", timeout)


def check_model(model: str | None, model_column: str | None) -> None:
    if model is None and model_column is None:
        raise InputError("pass model= (every row's model) or model_column= (one per row).")


def check_completion_window(completion_window: str) -> None:
    if completion_window != "24h":
        raise InputError(
            f"completion_window must be '24h' (the only window the Batch API accepts), "
            f"not {completion_window!r}."
        )


def check_retries(retries: int) -> None:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InputError(f"retries must be a whole number ≥ 0, not {retries!r}.")


def check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a whole number ≥ 1, not {value!r}.")


def check_flags(**flags: bool) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InputError(f"{name} must be True or False, not {value!r}.")


def check_connection_types(
    prefix: str, api_key: str | None, base_url: str | None, client: Any, local: bool
) -> None:
    if not isinstance(prefix, str):
        raise InputError(f"prefix must be a str (e.g. 'nm_'), not {prefix!r}.")
    for name, value in (("api_key", api_key), ("base_url", base_url)):
        if value is not None and not isinstance(value, str):
            # Never echo an api_key's value: it may be a secret in the wrong argument.
            raise InputError(f"{name} must be a str, not {type(value).__name__}.")
    if client is not None and not isinstance(client, openai.OpenAI):
        raise InputError(f"client must be an openai.OpenAI, not {type(client).__name__}.")
    check_flags(local=local)


def check_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata must be a dict of strings, not {type(metadata).__name__}.")
    if len(metadata) > _MAX_USER_METADATA:
        raise InputError(f"metadata takes at most {_MAX_USER_METADATA} pairs, got {len(metadata)}.")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InputError(f"metadata keys and values must be strings: {key!r}.")
        if len(key) > 64 or len(value) > 512:
            raise InputError(f"metadata key {key!r}: keys ≤ 64 and values ≤ 512 characters.")
    return dict(metadata)
