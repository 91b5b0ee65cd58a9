"""Answer a block of batch request lines with the echo engines: the runner's hot path.

:func:`answer` turns request lines (in run order) into output and error lines, the usage they
add and the execution-log rows. Most chat lines are plain (a model, string messages, an optional
token limit): those take a lean path that builds the same answer :func:`complete_with_prompt`
would, without its per-request checks and calls. Every other line (a ``fail_rate`` draw, a
``response_format``, content parts, a bad body, embeddings) goes through the engines
themselves, so what a line gets never depends on which path answered it.
"""

from __future__ import annotations

import hashlib
import operator
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from . import _ids
from ._embed import embed_with_input
from ._engine import complete_with_prompt, last_user_text
from ._envelope import error_body

_FAILED = "The server had an error while processing your request. Sorry about that!"


def seed_of(*parts: object) -> int:
    """A 64-bit seed from ``parts`` (the same parts always give the same seed)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def run_order(n: int, shuffle_seed: int | None) -> list[int]:
    """The order a batch's ``n`` lines run in: file order, or (with a seed) numpy's seeded
    permutation (a Python shuffle of a million positions costs half a second)."""
    if shuffle_seed is None:
        return list(range(n))
    return np.random.default_rng(shuffle_seed).permutation(n).tolist()


def unit(*parts: object) -> float:
    """A seeded draw in [0, 1) from ``parts`` (the same parts always draw the same)."""
    return seed_of(*parts) / 2**64


def corrupt_seed(seed: int, scope: str, key: object, rate: float) -> str | None:
    """The seed of a ``corrupt_rate`` corruption for one answer, or None (keep it intact).

    Batch answers are drawn per (seed, batch, custom_id): a retry in a new batch draws again.
    """
    if rate and unit(seed, "corrupt", scope, key) < rate:
        return f"{seed}:{scope}:{key}"
    return None


@dataclass
class Answered:
    """What a block of requests produced: result lines, counts, usage and log rows."""

    out: bytes = b""
    err: bytes = b""
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    executed: list[tuple[str, Any, int, str | None]] = field(default_factory=list)
    out_path: Path | None = None
    """Where ``out`` was written instead (a worker process's answers), or None."""
    err_path: Path | None = None
    """Where ``err`` was written instead, or None."""


def _plain(body: Any) -> tuple[str, list[str], str, int | None] | None:
    """Model, message texts, last user text and token limit of a plain chat body; None when
    the body needs the engine (anything it might reject or answer differently)."""
    if type(body) is not dict:
        return None
    model = body.get("model")
    messages = body.get("messages")
    if type(model) is not str or not model or type(messages) is not list or not messages:
        return None
    if body.get("stream") or body.get("response_format") is not None:
        return None
    texts: list[str] = []
    last_user = ""
    for msg in messages:
        if type(msg) is not dict:
            return None
        role, content = msg.get("role"), msg.get("content")
        if type(role) is not str or type(content) is not str:
            return None
        texts.append(content)
        if role == "user":
            last_user = content
    limit: int | None = None
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            return None
        limit = value if limit is None else min(limit, value)
    return model, texts, last_user, limit


# The output line of a plain request, byte for byte what orjson writes for the dicts the
# engine builds (``test_server_speed`` checks it): formatting it costs a third of building and
# dumping those dicts. Ids are the id prefix and counter of ``_ids``, drawn in the engine's order.
_LINE = (
    b'{"id":"batch_req_%s%016x","custom_id":%s,"response":{"status_code":200,'
    b'"request_id":"req_%s%016x","body":{"id":"chatcmpl-%s%016x","object":"chat.completion",'
    b'"created":%d,"model":%s,"choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":%s,"refusal":null},"logprobs":null,"finish_reason":"%s"}],"usage":'
    b'{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d},'
    b'"system_fingerprint":"local-echo"}},"error":null}'
)


# ``str.split()``'s whitespace among ASCII characters becomes b" ", every other byte b"x".
_WORD_MARKS = bytes(32 if chr(byte).isspace() else 120 for byte in range(256))


def count_words(text: str) -> int:
    """``len(text.split())`` without making the words: a quarter of the cost for ASCII text.

    Counting every prompt's tokens was a fifth of answering a plain request.
    """
    if not text.isascii():  # O(1): a str knows whether it is ASCII
        return len(text.split())
    marks = text.encode().translate(_WORD_MARKS)
    return marks.count(b" x") + (marks[:1] == b"x")  # a word starts after each space, or first


def _echo(texts: list[str], text: str, limit: int | None) -> tuple[str, bytes, int, int]:
    """Answer, finish reason, prompt and completion tokens, as :func:`complete_with_prompt`."""
    words = count_words(text)
    if limit is not None and words > limit:
        answer, finish, completion_tokens = (
            " ".join(text.split(None, limit)[:limit]),
            b"length",
            limit,
        )
    else:
        answer, finish, completion_tokens = text, b"stop", words
    if len(texts) == 1 and texts[0] is text:
        prompt_tokens = words
    else:
        prompt_tokens = sum(count_words(t) for t in texts)
    return answer, finish, prompt_tokens, completion_tokens


def answer(lines: Iterable[bytes], **options: Any) -> Answered:
    """Answer ``lines`` (validated request lines, in run order): see :func:`answer_requests`."""
    return answer_requests(map(orjson.loads, lines), **options)


def answer_requests(
    requests: Iterable[Any],
    *,
    batch_id: str,
    seed: int,
    embeddings: bool,
    fail_rate: float,
    corrupt_rate: float,
    log: bool,
    run_order: Callable[[int], Sequence[int]] | None = None,
) -> Answered:
    """Answer ``requests`` (validated and parsed, in run order) as the echo engines do.

    ``fail_rate`` lines get a seeded 500 (per seed, batch and custom_id); ``corrupt_rate``
    breaks seeded ``json_schema`` answers. With ``log``, ``executed`` gets one row per line.
    ``run_order(n)``, when given, is the order to put the ``n`` answers in: the requests came
    in file order (answered as they were checked) and the batch runs in another.
    """
    answers: list[bytes] = []
    ok = bytearray()  # 1 where answers[i] is an output line, 0 an error line
    prompt = completion = 0
    executed: list[tuple[str, Any, int, str | None]] = []
    dumps, numpy = orjson.dumps, orjson.OPT_SERIALIZE_NUMPY
    fast_hex, prefix, counter, now = _ids.fast_hex, _ids.prefix(), _ids.counter(), time.time
    for req in requests:
        cid = req["custom_id"]
        body = req.get("body")
        text: str | None
        if fail_rate and unit(seed, batch_id, cid) < fail_rate:
            status, resp = 500, error_body(_FAILED, type="server_error")
            text = last_user_text(body)
        elif embeddings:
            status, resp, text = embed_with_input(body)
        elif (plain := _plain(body)) is not None:
            model, texts, text, limit = plain
            chat = next(counter)  # the engine draws the completion's id first
            reply, finish, used, made = _echo(texts, text, limit)
            line_id, request_id, created = next(counter), next(counter), int(now())
            fields = (prefix, line_id, dumps(cid), prefix, request_id, prefix, chat, created,
                      dumps(model), dumps(reply), finish, used, made, used + made)  # fmt: skip
            answers.append(_LINE % fields)
            ok.append(1)
            prompt += used
            completion += made
            if log:
                executed.append((batch_id, cid, 200, text))
            continue
        else:
            corrupt = corrupt_seed(seed, batch_id, cid, corrupt_rate)
            status, resp, text = complete_with_prompt(body, corrupt=corrupt)
        if log:
            executed.append((batch_id, cid, status, text))
        line = {
            "id": "batch_req_" + fast_hex(),
            "custom_id": cid,
            "response": {"status_code": status, "request_id": "req_" + fast_hex(), "body": resp},
            "error": None,
        }
        if status == 200:
            answers.append(dumps(line, option=numpy))
            ok.append(1)
            usage = resp["usage"]
            prompt += usage["prompt_tokens"]
            completion += usage.get("completion_tokens", 0)
        else:
            answers.append(dumps(line))
            ok.append(0)
    if run_order is not None:
        order = run_order(len(answers))
        answers, ok = [answers[i] for i in order], bytearray(map(ok.__getitem__, order))
        executed = [executed[i] for i in order] if log else executed
    out = list(compress(answers, ok))
    err = list(compress(answers, map(operator.not_, ok)))
    return Answered(
        out=b"\n".join([*out, b""]) if out else b"",
        err=b"\n".join([*err, b""]) if err else b"",
        completed=len(out),
        failed=len(err),
        prompt_tokens=prompt,
        completion_tokens=completion,
        executed=executed,
    )
