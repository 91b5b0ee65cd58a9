"""The ``echo`` engine: a deterministic stand-in for a chat model.

Contract (tests of the client rely on it):

* The answer is the text of the **last** ``user`` message (a string, or the concatenation of
  the ``text`` parts of a list), unchanged when it has at most ``max_tokens`` (or
  ``max_completion_tokens``; the smaller when both are given) whitespace-separated tokens,
  with ``finish_reason`` ``"stop"``; otherwise its first ``max_tokens`` tokens joined by
  single spaces, with ``finish_reason`` ``"length"``.
* ``usage.prompt_tokens`` counts whitespace-separated tokens over every message's text;
  ``completion_tokens`` those of the answer; ``total_tokens`` their sum.
* ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": ...}}`` answers a
  JSON document valid against the schema (see ``_schema``), ``{"type": "json_object"}`` the
  object ``{"answer": <text>}``; neither is cut by ``max_tokens``.
* A body that is not a valid chat completion request gets status 400 and OpenAI's envelope.
* ``corrupt`` (the ``corrupt_rate`` knob): a ``json_schema`` answer is replaced by a broken one,
  chosen by the seed: cut in half (not JSON), wrapped in a Markdown code fence (not JSON), its
  first property given a value of the wrong type, or its first property removed.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from ._envelope import error_body
from ._ids import fast_hex
from ._schema import instance


class InvalidRequest(Exception):
    """The body is not a valid chat completion request."""

    def __init__(self, message: str, param: str | None, code: str | None = "invalid_value"):
        super().__init__(message)
        self.param = param
        self.code = code


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise InvalidRequest(f"Invalid content part in {where}.", where, "invalid_type")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise InvalidRequest(f"Missing text in {where}.", where, "invalid_type")
                parts.append(part["text"])
        return "".join(parts)
    raise InvalidRequest(f"Invalid type for '{where}.content'.", f"{where}.content", "invalid_type")


def _limit(body: dict[str, Any]) -> int | None:
    limits = []
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidRequest(
                f"Invalid type for '{key}': expected an integer.", key, "invalid_type"
            )
        if value < 1:
            raise InvalidRequest(f"'{key}' must be at least 1, got {value}.", key)
        limits.append(value)
    return min(limits) if limits else None


def require_model(body: Any) -> str:
    """Check that a request body is a JSON object naming a model; return the model."""
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", None, "invalid_type")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest(
            "You must provide a model parameter.", "model", "missing_required_parameter"
        )
    return model


def _parse(body: Any) -> tuple[str, list[str], str]:
    """Check the model and messages; return the model, every message's text, last user text."""
    model = require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise InvalidRequest("'messages' must be a list of messages.", "messages", "invalid_type")
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", "messages")
    if body.get("stream"):
        raise InvalidRequest("Streaming is not supported by the local server.", "stream")
    texts: list[str] = []
    last_user = ""
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise InvalidRequest(
                f"'{where}' must be an object with a 'role'.", where, "invalid_type"
            )
        if "content" not in msg:
            raise InvalidRequest(
                f"Missing required parameter: '{where}.content'.", f"{where}.content"
            )
        text = _text(msg["content"], where)
        texts.append(text)
        if msg["role"] == "user":
            last_user = text
    return model, texts, last_user


def _structured(fmt: Any, text: str, seed: str) -> str | None:
    if fmt is None:
        return None
    if not isinstance(fmt, dict) or not isinstance(fmt.get("type"), str):
        raise InvalidRequest("Invalid 'response_format'.", "response_format", "invalid_type")
    kind = fmt["type"]
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema", {}), dict):
            raise InvalidRequest("Invalid 'response_format.json_schema'.", "response_format")
        doc = instance(spec.get("schema", {}), text=text, seed=seed)
        return orjson.dumps(doc).decode()
    if kind == "json_object":
        return orjson.dumps({"answer": text}).decode()
    if kind == "text":
        return None
    raise InvalidRequest(f"Unknown response_format type '{kind}'.", "response_format.type")


def complete(body: Any) -> tuple[int, dict[str, Any]]:
    """Answer one chat completion request; return ``(status_code, response body)``.

    Example
    -------
    >>> status, resp = complete({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    >>> status, resp["choices"][0]["message"]["content"]
    (200, 'hi')
    """
    status, resp, _ = complete_with_prompt(body)
    return status, resp


def last_user_text(body: Any) -> str | None:
    """The last ``user`` message text of a request, or None when its messages are invalid."""
    try:
        return _parse(body)[2]
    except InvalidRequest:
        return None


CORRUPTIONS = ("truncated", "fenced", "wrong_type", "missing_field")


def corrupted(answer: str, seed: str) -> str:
    """A broken version of a JSON ``answer``: one of :data:`CORRUPTIONS`, chosen by ``seed``."""
    digest = hashlib.blake2b(seed.encode(), digest_size=8).digest()
    kind = CORRUPTIONS[int.from_bytes(digest, "big") % len(CORRUPTIONS)]
    doc = orjson.loads(answer)
    if kind in ("wrong_type", "missing_field") and isinstance(doc, dict) and doc:
        first = next(iter(doc))
        if kind == "missing_field":
            del doc[first]
        else:
            doc[first] = 12345 if isinstance(doc[first], str) else "not the right type"
        return orjson.dumps(doc).decode()
    if kind == "fenced":
        return f"Sure! Here is the JSON:\n```json\n{answer}\n```"
    return answer[: max(1, len(answer) // 2)]


def complete_with_prompt(
    body: Any, *, corrupt: str | None = None
) -> tuple[int, dict[str, Any], str | None]:
    """Like :func:`complete`, plus the last ``user`` message text the engine read.

    The text is None when the request was rejected before its messages were read. With
    ``corrupt`` (a seed), a ``json_schema`` answer is replaced by :func:`corrupted`.
    """
    text: str | None = None
    try:
        model, texts, text = _parse(body)
        limit = _limit(body)
        structured = _structured(body.get("response_format"), text, "\x00".join(texts))
    except InvalidRequest as exc:
        return 400, error_body(str(exc), param=exc.param, code=exc.code), text
    fmt = body.get("response_format")
    if corrupt is not None and structured is not None and fmt.get("type") == "json_schema":
        structured = corrupted(structured, corrupt)
    finish = "stop"
    if structured is not None:
        answer = structured
        completion_tokens = len(answer.split())
    else:
        tokens = text.split()
        if limit is not None and len(tokens) > limit:
            answer, finish = " ".join(tokens[:limit]), "length"
            completion_tokens = limit
        else:
            answer, completion_tokens = text, len(tokens)
    prompt_tokens = sum(len(t.split()) for t in texts)
    response = {
        "id": "chatcmpl-" + fast_hex(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "local-echo",
    }
    return 200, response, text
