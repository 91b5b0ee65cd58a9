"""A finished job's summary: how it went (rows by status, failures by error code), what it
used (tokens, wall time) and, when the user gave prices, what it cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._prices import PRICE_RULE, Price

#: The result columns :func:`summarize` reads.
SUMMARY_COLUMNS = ("status", "error_code", "prompt_tokens", "completion_tokens")

_END_FIELDS = ("completed_at", "failed_at", "expired_at", "cancelled_at", "finalizing_at")


def summarize(
    job_id: str,
    tables: Iterable[pa.Table],
    batches: Iterable[Any],
    *,
    model: str | None,
    prices: Mapping[str, Price],
    reused: int,
    n_shards: int,
) -> dict[str, Any]:
    """The summary of a job from its result tables and its batches (see ``BatchJob.summary``).

    ``reused``: first-round batches that existed before this run (reattached, not paid again).
    """
    statuses: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    prompt = completion = 0
    for table in tables:
        for item in pc.value_counts(table.column("status")).to_pylist():
            statuses[str(item["values"])] += int(item["counts"])
        is_failed = pc.equal(table.column("status"), "failed").fill_null(False)
        codes = pc.filter(table.column("error_code"), is_failed).fill_null("unknown")
        for item in pc.value_counts(codes).to_pylist():
            failed[str(item["values"])] += int(item["counts"])
        if "prompt_tokens" in table.column_names:
            prompt += int(pc.sum(table.column("prompt_tokens")).as_py() or 0)
        if "completion_tokens" in table.column_names:
            completion += int(pc.sum(table.column("completion_tokens")).as_py() or 0)
    summary: dict[str, Any] = {
        "job_id": job_id,
        "rows": sum(statuses.values()),
        "ok": statuses.get("ok", 0),
        "failed": dict(sorted(failed.items())),
        "expired": statuses.get("expired", 0),
        "cancelled": statuses.get("cancelled", 0),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "wall_seconds": _wall_seconds(list(batches)),
        "reattached": reused > 0,
        "batches_reused": reused,
        "batches_new": n_shards - reused,
        "cost": None,
    }
    price = prices.get(model) if model is not None else None
    if price is not None:
        summary["cost"] = {
            "model": model,
            "batch_usd": round(price.batch_cost(prompt, completion), 6),
            "sync_usd": round(price.sync_cost(prompt, completion), 6),
            "rule": PRICE_RULE,
        }
    return summary


def _wall_seconds(batches: list[Any]) -> float | None:
    """From the first batch's creation to the last one's end, by the server's clock."""
    starts = [b.created_at for b in batches if getattr(b, "created_at", None)]
    ends = [end for b in batches for end in (getattr(b, name, None) for name in _END_FIELDS) if end]
    if not starts or not ends:
        return None
    return float(max(0, max(ends) - min(starts)))


def reattach_line(job_id: str, reused: int, n_shards: int) -> str:
    """What a re-run did: reattached to batches that existed, and how many it created."""
    if reused >= n_shards:
        return f"reattached to job {job_id}: no new batch, nothing paid again"
    return (
        f"reattached to job {job_id}: {reused} of {n_shards} batches existed (not paid "
        f"again), {n_shards - reused} new"
    )


def format_summary(summary: Mapping[str, Any]) -> str:
    """The summary as a few lines for people."""
    parts = [f"{summary['ok']} of {summary['rows']} rows ok"]
    failed = summary["failed"]
    if failed:
        codes = ", ".join(f"{n} {code}" for code, n in failed.items())
        parts.append(f"{sum(failed.values())} failed ({codes})")
    for status in ("expired", "cancelled"):
        if summary[status]:
            parts.append(f"{summary[status]} {status}")
    lines = [f"job {summary['job_id']}: " + ", ".join(parts)]
    tokens = f"tokens: {summary['prompt_tokens']} prompt, {summary['completion_tokens']} completion"
    if summary["wall_seconds"] is not None:
        tokens += f"; batch wall time {summary['wall_seconds']:.0f} s"
    lines.append(tokens)
    cost = summary["cost"]
    if cost is not None:
        lines.append(
            f"cost: ${cost['batch_usd']:.4f} at the batch rate (${cost['sync_usd']:.4f} at the "
            f"synchronous rate) for {cost['model']} ({cost['rule']})"
        )
    else:
        lines.append(
            "cost: no price known for this model: pass prices= to see it (none is invented)"
        )
    if summary["reattached"]:
        lines.append(reattach_line(summary["job_id"], summary["batches_reused"],
                                   summary["batches_reused"] + summary["batches_new"]))  # fmt: skip
    return "\n".join(lines)
