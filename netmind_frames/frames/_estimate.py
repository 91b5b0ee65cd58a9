"""``estimate``: what a call would send and cost, before anything is sent or paid.

The requests are built exactly as the call would build them (same shards, same bytes), then
counted; nothing is uploaded. Prompt tokens are approximate (see ``TOKEN_RULE``); completion
tokens have an upper bound only with ``max_tokens``; a price range only with the user's prices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._errors import InputError
from ..build._source import Source, chunk_rows_for
from ..jobs._checks import check_model, check_positive
from ..jobs._options import JobOptions
from ..jobs._prices import PRICE_RULE, load_prices

#: How prompt tokens are approximated (no tokenizer is shipped): said next to the number.
BYTES_PER_TOKEN = 4
TOKEN_RULE = (
    f"≈ request bytes / {BYTES_PER_TOKEN} (an approximation on the high side: it counts the "
    "JSON around each prompt too; real tokenizers differ)"
)


@dataclass(frozen=True)
class Estimate:
    """What a call would send, and its cost range when prices are known."""

    rows: int
    shards: int
    bytes: int
    prompt_tokens: int
    """Approximate: see ``prompt_tokens_rule``."""
    prompt_tokens_rule: str
    max_completion_tokens: int | None
    """rows times max_tokens (times n); None without ``max_tokens``: no upper bound."""
    model: str | None
    low_usd: float | None
    """The prompt tokens at the batch rate (answers of no tokens); None without a price."""
    high_usd: float | None
    """Plus every row's ``max_tokens`` at the batch rate; None without a price or max_tokens."""
    high_sync_usd: float | None
    """The same upper bound at the synchronous rate."""
    price_rule: str | None

    def as_dict(self) -> dict[str, Any]:
        """The estimate as a plain dict."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [
            f"{self.rows} rows in {self.shards} shard(s), {self.bytes} bytes of requests",
            f"prompt tokens: {self.prompt_tokens} ({self.prompt_tokens_rule})",
        ]
        if self.max_completion_tokens is None:
            lines.append("completion tokens: no upper bound (set max_tokens to have one)")
        else:
            lines.append(
                f"completion tokens: at most {self.max_completion_tokens} (rows times max_tokens)"
            )
        if self.low_usd is None:
            lines.append(
                f"cost: no price known for {self.model or 'these models'} (none is invented)"
            )
        elif self.high_usd is None:
            lines.append(
                f"cost: at least ${self.low_usd:.4f} at the batch rate; no upper bound "
                "without max_tokens"
            )
        else:
            lines.append(
                f"cost: ${self.low_usd:.4f} to ${self.high_usd:.4f} at the batch rate (up to "
                f"${self.high_sync_usd:.4f} at the synchronous rate; {self.price_rule})"
            )
        return "\n".join(lines)


def estimate_source(
    source: Source, options: JobOptions, prices: Mapping[str, Any] | str | Path | None = None
) -> Estimate:
    """Build the requests of ``source`` as a call with ``options`` would, count them and price
    them; nothing is sent."""
    check_positive("max_requests", options.max_requests)
    check_model(options.model, options.model_column)
    if source.n_rows == 0:
        raise InputError("the input is empty: there is nothing to send")
    shards = size = 0
    for start, frame in source.frames(chunk_rows_for(options.max_requests), options.columns):
        plan = options.build(frame, start)
        shards += len(plan.shards)
        size += sum(len(shard.data) for shard in plan.shards)
    return _priced(
        source.n_rows, shards, size, options.model_column, options.model, options.params, prices
    )


def _priced(
    rows: int,
    shards: int,
    size: int,
    model_column: str | None,
    model: str | None,
    params: Mapping[str, Any],
    prices: Mapping[str, Any] | str | Path | None,
) -> Estimate:
    prompt_tokens = -(-size // BYTES_PER_TOKEN)
    per_row = params.get("max_tokens", params.get("max_completion_tokens"))
    completion = None if per_row is None else rows * int(per_row) * int(params.get("n", 1))
    one_model = None if model_column is not None else model
    price = load_prices(prices).get(one_model) if one_model is not None else None
    low = high = high_sync = None
    if price is not None:
        low = price.batch_cost(prompt_tokens, 0)
        if completion is not None:
            high = price.batch_cost(prompt_tokens, completion)
            high_sync = price.sync_cost(prompt_tokens, completion)
    return Estimate(
        rows=rows,
        shards=shards,
        bytes=size,
        prompt_tokens=prompt_tokens,
        prompt_tokens_rule=TOKEN_RULE,
        max_completion_tokens=completion,
        model=one_model,
        low_usd=low,
        high_usd=high,
        high_sync_usd=high_sync,
        price_rule=None if price is None else PRICE_RULE,
    )


def check_max_cost(max_cost: float | None, estimate: Estimate) -> None:
    """Refuse (InputError, before anything is uploaded) a call whose upper bound is above
    ``max_cost``, or has no upper bound."""
    if max_cost is None:
        return
    if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not max_cost >= 0:
        raise InputError(f"max_cost must be a number of US dollars ≥ 0, not {max_cost!r}.")
    if estimate.low_usd is None:
        raise InputError(
            f"max_cost= needs a price for {estimate.model or 'the model (one model= only)'}: "
            "pass prices={model: {'input': usd_per_million, 'output': usd_per_million}} or "
            "put them in NETMIND_FRAMES_HOME/prices.json. Nothing was submitted."
        )
    if estimate.high_usd is None:
        raise InputError(
            "max_cost= needs max_tokens=: without it the answers' length, hence the cost, "
            "has no upper bound. Nothing was submitted."
        )
    if estimate.high_usd > max_cost:
        raise InputError(
            f"the cost may reach ${estimate.high_usd:.4f} at the batch rate (rows times "
            f"max_tokens, prompt tokens {TOKEN_RULE}), above max_cost=${max_cost:g}: nothing "
            "was submitted. Lower max_tokens=, send fewer rows, or raise max_cost=."
        )
