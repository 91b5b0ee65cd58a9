"""The options of one call that decide its requests and its result, kept together.

They are what ``BatchJob.attach`` needs to rebuild a job from its id, so they round-trip
through JSON (the journal stores them; never the API key, never any row's text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from ._requests import RequestPlan, build_plan, columns_used


@dataclass(frozen=True)
class JobOptions:
    """How rows become requests, and how results come back."""

    model: str
    max_bytes: int
    prompt: str | None = None
    prompt_column: str | None = None
    messages_column: str | None = None
    system: str | None = None
    custom_id_column: str | None = None
    max_requests: int = 50_000
    params: dict[str, Any] = field(default_factory=dict)
    prefix: str = ""
    completion_window: str = "24h"
    metadata: dict[str, str] = field(default_factory=dict)
    retries: int = 2
    chunk_rows: int | None = None
    """Rows per chunk of a streamed job (None: a multiple of ``max_requests``, ~200,000)."""

    def build(self, frame: pd.DataFrame, first_position: int = 0) -> RequestPlan:
        """The request plan of ``frame`` under these options (ids from ``first_position``)."""
        return build_plan(
            frame,
            self.prompt,
            model=self.model,
            prompt_column=self.prompt_column,
            messages_column=self.messages_column,
            system=self.system,
            custom_id_column=self.custom_id_column,
            max_requests=self.max_requests,
            max_bytes=self.max_bytes,
            params=self.params,
            first_position=first_position,
        )

    @property
    def columns(self) -> list[str]:
        """The input columns the requests are built from."""
        return columns_used(
            self.prompt, self.prompt_column, self.messages_column, self.custom_id_column
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the journal's record of a job)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobOptions:
        """Rebuild from :meth:`to_json`'s output, ignoring keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
