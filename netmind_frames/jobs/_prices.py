"""Token prices, given by the user (never invented): per model, US dollars per million tokens.

A ``prices`` mapping (Python ``prices=``, CLI ``--prices FILE.json``, or the file
``NETMIND_FRAMES_HOME/prices.json``) looks like::

    {"meta-llama/Meta-Llama-3.1-8B-Instruct": {"input": 0.09, "output": 0.09}}

``input``/``output`` are the Batch API's rates. The synchronous rates are ``sync_input`` /
``sync_output`` when given, else twice the batch rates (the providers' documented discount:
batches cost half of the synchronous price).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._errors import InputError
from ..transport._config import resolve_home

PRICES_FILE = "prices.json"
#: What the costs printed mean, said next to them.
PRICE_RULE = (
    "your prices, USD per million tokens; the synchronous rate is sync_input/sync_output "
    "when given, else twice the batch rate"
)


@dataclass(frozen=True)
class Price:
    """One model's rates, USD per million tokens."""

    input: float
    output: float
    sync_input: float
    sync_output: float

    def batch_cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What the tokens cost through the Batch API."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6

    def sync_cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What the same tokens cost through the synchronous API."""
        return (prompt_tokens * self.sync_input + completion_tokens * self.sync_output) / 1e6


def load_prices(prices: Mapping[str, Any] | str | Path | None) -> dict[str, Price]:
    """The prices of ``prices`` (a mapping or a JSON file), or of ``NETMIND_FRAMES_HOME/
    prices.json`` when None (no file: no prices). InputError names a bad entry."""
    if prices is None:
        path = resolve_home() / PRICES_FILE
        if not path.is_file():
            return {}
        prices = path
    if isinstance(prices, (str, Path)):
        try:
            prices = json.loads(Path(prices).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"prices file {prices}: {exc}") from None
    if not isinstance(prices, Mapping):
        raise InputError(
            'prices must map each model to {"input": usd_per_million, "output": '
            f"usd_per_million}}, not {type(prices).__name__}"
        )
    return {str(model): _price(str(model), entry) for model, entry in prices.items()}


def _price(model: str, entry: Any) -> Price:
    if not isinstance(entry, Mapping) or "input" not in entry or "output" not in entry:
        raise InputError(
            f'prices[{model!r}] must be {{"input": usd_per_million, "output": '
            f"usd_per_million}} (optionally sync_input, sync_output), not {entry!r}"
        )
    unknown = sorted(set(entry) - {"input", "output", "sync_input", "sync_output"})
    if unknown:
        raise InputError(f"prices[{model!r}] has unknown key {unknown[0]!r}")
    rates = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise InputError(f"prices[{model!r}][{key!r}] must be a number ≥ 0, not {value!r}")
        rates[key] = float(value)
    return Price(
        input=rates["input"],
        output=rates["output"],
        sync_input=rates.get("sync_input", 2 * rates["input"]),
        sync_output=rates.get("sync_output", 2 * rates["output"]),
    )
