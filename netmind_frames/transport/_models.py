"""The models Netmind's batch guide lists, and a warning for any other (batch-api.md §5.0).

The list is the guide's and it changes: a model outside it is sent anyway, with a warning that
names the documented ids and the closest one (a typo costs an upload and a failed batch).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable

log = logging.getLogger("netmind_frames")

#: The models Netmind documents for ``/v1/chat/completions`` batches, cheapest first.
NETMIND_BATCH_MODELS = (
    "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "meta-llama/Llama-3.3-70B-Instruct",
    "google/gemma-2-27b-it",
    "google/gemma-2-9b-it",
    "Qwen/Qwen2.5-7B-Instruct",
)
#: The model ``netmind-frames doctor --live`` spends its one request on.
CHEAPEST_BATCH_MODEL = NETMIND_BATCH_MODELS[0]


def closest_batch_model(model: str) -> str:
    """The documented batch model nearest to ``model`` (case does not count)."""
    lowered = {m.lower(): m for m in NETMIND_BATCH_MODELS}
    best = difflib.get_close_matches(model.lower(), list(lowered), n=1, cutoff=0.0)
    return lowered[best[0]] if best else NETMIND_BATCH_MODELS[0]


def warn_unlisted_models(provider: str, models: Iterable[str]) -> list[str]:
    """Log a WARNING for each model Netmind does not document for batches; return them.

    Only for provider ``netmind``: other providers have their own model lists.
    """
    if provider != "netmind":
        return []
    unlisted = sorted(set(models) - set(NETMIND_BATCH_MODELS))
    for model in unlisted:
        log.warning(
            "model %r is not among the models Netmind documents for batches (%s); closest: %r. "
            "Sending it anyway (the list changes), but check the name: a wrong one fails the "
            "batch after the upload.",
            model,
            ", ".join(NETMIND_BATCH_MODELS),
            closest_batch_model(model),
        )
    return unlisted
