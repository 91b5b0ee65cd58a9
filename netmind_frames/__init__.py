"""netmind_frames: run an LLM over every row of a pandas DataFrame through a Batch API."""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
