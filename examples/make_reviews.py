"""Regenerate ``examples/reviews.parquet``, the README's sample data (48 short product reviews)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pandas as pd

PRODUCTS = ["kettle", "headphones", "backpack", "desk lamp", "coffee grinder", "running shoes"]
OPINIONS = [
    ("positive", "Works perfectly and arrived a day early. Would buy again."),
    ("positive", "Great value for the price; my whole family loves it."),
    ("negative", "Broke after two weeks and support never answered my emails."),
    ("negative", "Much smaller than the photos suggest, and it smells of plastic."),
    ("neutral", "Does what it says. Nothing special, nothing wrong."),
    ("neutral", "Fine for now; ask me again in a year."),
    ("positive", "Quiet, sturdy, and the battery lasts all week."),
    ("negative", "The strap snapped on day one. Returned it."),
]


def make() -> pd.DataFrame:
    rows = [
        {
            "review_id": f"R{n:03d}",
            "product": product,
            "review": f"The {product}: {text}",
            "label": label,
        }
        for n, (product, (label, text)) in enumerate(itertools.product(PRODUCTS, OPINIONS))
    ]
    return pd.DataFrame(rows)


if __name__ == "__main__":
    make().to_parquet(Path(__file__).with_name("reviews.parquet"), index=False)
