"""The local batch server: Netmind's and OpenAI's Batch + File APIs on loopback.

Install with the ``[local]`` extra. Not Netmind: an emulation of the wire contract, answered
by a deterministic ``echo`` engine, for tests, CI and offline work, or by an ``upstream``
OpenAI-compatible server (vLLM, Ollama, llama.cpp): a Batch API in front of a self-hosted model.
"""

from __future__ import annotations

from ._server import LocalBatchServer

__all__ = ["LocalBatchServer"]
