"""The ``echo`` embedding model: deterministic unit vectors from the text's words.

Contract (tests of the client rely on it):

* ``input`` is a non-empty string or a non-empty list of non-empty strings; ``model`` a
  non-empty string; ``dimensions`` (optional) an integer from 1 to 4096, default 256;
  ``encoding_format`` ``"float"`` (default) or ``"base64"`` (little-endian float32).
* A vector is the normalised sum of one pseudo-random vector per lower-cased whitespace
  token (seeded by the token), so the same text always gets the same vector, every vector has
  unit length, and texts sharing words have a positive cosine similarity. A text without
  tokens gets the vector of the empty token.
* ``usage.prompt_tokens`` (and ``total_tokens``) count whitespace-separated tokens.
* A bad body gets status 400 and OpenAI's error envelope.
"""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from typing import Any

import numpy as np

from ._engine import InvalidRequest, require_model
from ._envelope import error_body

DEFAULT_DIMENSIONS = 256
MAX_DIMENSIONS = 4096


@lru_cache(maxsize=65_536)
def _token_vector(token: str, dimensions: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "big")
    return np.random.default_rng(seed).standard_normal(dimensions)


def vector(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """The unit-length float32 vector of ``text``."""
    tokens = text.lower().split() or [""]
    total = np.zeros(dimensions)
    for token in tokens:
        total += _token_vector(token, dimensions)
    norm = float(np.linalg.norm(total))
    return (total / norm if norm else total).astype(np.float32)


def _inputs(body: Any) -> tuple[str, list[str], int, str]:
    model = require_model(body)
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts:
        raise InvalidRequest("'input' must be a string or a list of strings.", "input")
    if not all(isinstance(t, str) and t for t in texts):
        raise InvalidRequest("'input' cannot contain empty or non-string values.", "input")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    ok = isinstance(dimensions, int) and not isinstance(dimensions, bool)
    if not ok or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise InvalidRequest(
            f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", "dimensions"
        )
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    return model, texts, dimensions, encoding


def embed_with_input(body: Any) -> tuple[int, dict[str, Any], str | None]:
    """Answer one embeddings request: ``(status_code, response body, first input text)``.

    Example
    -------
    >>> status, resp, _ = embed_with_input({"model": "e", "input": "hi", "dimensions": 4})
    >>> status, len(resp["data"][0]["embedding"])
    (200, 4)
    """
    raw = body.get("input") if isinstance(body, dict) else None
    first = raw if isinstance(raw, str) else None
    try:
        model, texts, dimensions, encoding = _inputs(body)
    except InvalidRequest as exc:
        return 400, error_body(str(exc), param=exc.param, code=exc.code), first
    data = []
    for index, text in enumerate(texts):
        vec = vector(text, dimensions)
        value: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode()
        if encoding == "float":
            value = vec  # orjson writes float32 arrays compactly (OPT_SERIALIZE_NUMPY)
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = sum(len(t.split()) for t in texts)
    response = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return 200, response, texts[0]
