"""The options of one call that decide its requests and its result, kept together.

They are what ``BatchJob.attach`` needs to rebuild a job from its id, so they round-trip
through JSON (the journal stores them; never the API key, never any row's text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from ..build._requests import RequestPlan, build_embedding_plan, build_plan, columns_used
from ..results._embeddings import EMBEDDING_COLUMNS
from ..results._results import RESULT_COLUMNS
from ..results._schema import OutputSchema, output_schema


@dataclass(frozen=True)
class JobOptions:
    """How rows become requests, and how results come back."""

    model: str | None
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
    """Rows per chunk of a streamed job (None: a multiple of ``max_requests``, ~100,000)."""
    model_column: str | None = None
    params_column: str | None = None
    schema: dict[str, Any] | None = None
    """The JSON Schema answers are checked against (structured outputs), or None."""
    schema_model: Any = field(default=None, compare=False, repr=False)
    """The pydantic model ``schema`` came from, if any (not stored in the journal)."""
    embed_column: str | None = None
    """Set for an embeddings job: the column of texts to embed (``/v1/embeddings``)."""

    @property
    def result_columns(self) -> tuple[str, ...]:
        """The columns the results add (before any structured-output fields)."""
        return EMBEDDING_COLUMNS if self.embed_column is not None else RESULT_COLUMNS

    def build(self, frame: pd.DataFrame, first_position: int = 0) -> RequestPlan:
        """The request plan of ``frame`` under these options (ids from ``first_position``)."""
        if self.embed_column is not None:
            return build_embedding_plan(
                frame,
                self.embed_column,
                model=self.model,
                model_column=self.model_column,
                custom_id_column=self.custom_id_column,
                max_requests=self.max_requests,
                max_bytes=self.max_bytes,
                params=self.params,
                params_column=self.params_column,
                first_position=first_position,
            )
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
            model_column=self.model_column,
            params_column=self.params_column,
        )

    @property
    def columns(self) -> list[str]:
        """The input columns the requests are built from."""
        if self.embed_column is not None:
            extra = (self.custom_id_column, self.model_column, self.params_column)
            return [self.embed_column, *(c for c in extra if c is not None)]
        return columns_used(
            self.prompt,
            self.prompt_column,
            self.messages_column,
            self.custom_id_column,
            model_column=self.model_column,
            params_column=self.params_column,
        )

    @cached_property
    def output(self) -> OutputSchema | None:
        """The structured-output schema, normalised; None without ``schema``."""
        if self.schema is None:
            return None
        return output_schema(self.schema_model if self.schema_model is not None else self.schema)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the journal's record of a job)."""
        data = asdict(self)
        del data["schema_model"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobOptions:
        """Rebuild from :meth:`to_json`'s output, ignoring keys this version does not know."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
