"""``df.netmind``: one-line delegations to the functional core in ``_api``.

pandas 3 builds a new accessor object on every ``df.netmind``, so nothing is kept here but the
frame; each method has the signature of the function it calls, minus the frame.

``_register`` registers it on ``pd.DataFrame`` (as soon as pandas is imported); this module is
imported on the first ``df.netmind``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openai
import pandas as pd

from ..jobs._job import BatchJob
from ..transport._config import MAX_CONCURRENT_BATCHES, MAX_REQUESTS
from . import _api
from ._api import Mode
from ._estimate import Estimate


class NetmindAccessor:
    """Batch LLM completions over the rows of a DataFrame: ``df.netmind.batch_complete(...)``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def batch_complete(
        self,
        prompt: str | None = None,
        *,
        model: str | None = None,
        prompt_column: str | None = None,
        messages_column: str | None = None,
        system: str | None = None,
        custom_id_column: str | None = None,
        model_column: str | None = None,
        params_column: str | None = None,
        schema: Any = None,
        prefix: str = "",
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        provider: str | None = None,
        local: bool = False,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        progress: bool = True,
        retries: int = 2,
        resubmit: bool = False,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        keep_files: bool = False,
        mode: Mode = "batch",
        max_concurrency: int = 8,
        sync_threshold: int | None = None,
        prices: Mapping[str, Any] | str | Path | None = None,
        max_cost: float | None = None,
        **params: Any,
    ) -> Any:
        """Run one chat completion per row; see :func:`netmind_frames.batch_complete`."""
        return _api.batch_complete(self._frame, **_arguments(locals()))

    def estimate(
        self,
        prompt: str | None = None,
        *,
        model: str | None = None,
        prompt_column: str | None = None,
        messages_column: str | None = None,
        system: str | None = None,
        custom_id_column: str | None = None,
        model_column: str | None = None,
        params_column: str | None = None,
        schema: Any = None,
        prefix: str = "",
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        provider: str | None = None,
        local: bool = False,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        progress: bool = True,
        retries: int = 2,
        resubmit: bool = False,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        keep_files: bool = False,
        mode: Mode = "batch",
        max_concurrency: int = 8,
        sync_threshold: int | None = None,
        prices: Mapping[str, Any] | str | Path | None = None,
        max_cost: float | None = None,
        **params: Any,
    ) -> Estimate:
        """What ``batch_complete`` would send and cost; see :func:`netmind_frames.estimate`."""
        return _api.estimate(self._frame, **_arguments(locals()))

    def submit(
        self,
        prompt: str | None = None,
        *,
        model: str | None = None,
        prompt_column: str | None = None,
        messages_column: str | None = None,
        system: str | None = None,
        custom_id_column: str | None = None,
        model_column: str | None = None,
        params_column: str | None = None,
        schema: Any = None,
        prefix: str = "",
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        provider: str | None = None,
        local: bool = False,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        poll_interval: float = 30.0,
        progress: bool = True,
        retries: int = 2,
        resubmit: bool = False,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        keep_files: bool = False,
        prices: Mapping[str, Any] | str | Path | None = None,
        max_cost: float | None = None,
        **params: Any,
    ) -> BatchJob:
        """Submit and return a :class:`BatchJob` at once; see :func:`netmind_frames.submit`."""
        return _api.submit(self._frame, **_arguments(locals()))

    def to_jsonl(
        self,
        path: str | Path | None = None,
        prompt: str | None = None,
        *,
        model: str | None = None,
        prompt_column: str | None = None,
        messages_column: str | None = None,
        system: str | None = None,
        custom_id_column: str | None = None,
        model_column: str | None = None,
        params_column: str | None = None,
        schema: Any = None,
        provider: str = "netmind",
        max_requests: int = MAX_REQUESTS,
        max_bytes: int | None = None,
        **params: Any,
    ) -> bytes | Path:
        """The exact JSONL bytes that would be uploaded; see :func:`netmind_frames.to_jsonl`."""
        return _api.to_jsonl(self._frame, **_arguments(locals()))

    def batch_embed(
        self,
        column: str,
        *,
        model: str | None = None,
        model_column: str | None = None,
        custom_id_column: str | None = None,
        params_column: str | None = None,
        prefix: str = "",
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.OpenAI | None = None,
        provider: str | None = None,
        local: bool = False,
        max_requests: int = MAX_REQUESTS,
        max_bytes: int | None = None,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
        poll_interval: float = 30.0,
        timeout: float | None = None,
        progress: bool = True,
        retries: int = 2,
        resubmit: bool = False,
        max_concurrent_batches: int = MAX_CONCURRENT_BATCHES,
        keep_files: bool = False,
        mode: Mode = "batch",
        max_concurrency: int = 8,
        sync_threshold: int | None = None,
        **params: Any,
    ) -> Any:
        """Embed every row's text; see :func:`netmind_frames.batch_embed`."""
        return _api.batch_embed(self._frame, **_arguments(locals()))


def _arguments(local_vars: dict[str, Any]) -> dict[str, Any]:
    """A method's own arguments as keywords: ``self`` dropped, ``**params`` spread out."""
    arguments = {k: v for k, v in local_vars.items() if k not in ("self", "params")}
    arguments.update(local_vars["params"])
    return arguments
