"""The local batch server: Netmind's and OpenAI's Batch + File APIs on loopback.

Install with the ``[local]`` extra. Not Netmind: an emulation of the wire contract, answered
by a deterministic ``echo`` engine, for tests, CI and offline work, or by an ``upstream``
OpenAI-compatible server (vLLM, Ollama, llama.cpp): a Batch API in front of a self-hosted model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import LocalBatchServer

__all__ = ["LocalBatchServer"]


def __getattr__(name: str) -> Any:
    # The HTTP server (starlette, uvicorn: ~0.15 s) is imported on first use: the worker
    # processes import this package for the answering code alone, each as a batch waits.
    if name != "LocalBatchServer":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._server import LocalBatchServer

    globals()[name] = LocalBatchServer  # the next lookup is a plain attribute
    return LocalBatchServer


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
