"""Arrow's bulk proof of structured answers (results/_bulk.py) agrees with the exact check.

Every answer here is parsed twice: with the schema's bulk plan (Arrow proves most rows valid,
the rest go to orjson + jsonschema-rs) and without it (every row checked one by one). The
typed columns, the invalid rows and their messages must be identical.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from netmind_frames.results._bulk import bulk_plan
from netmind_frames.results._schema import output_schema, parse_native, parse_structured

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["pos", "neg", "neutral"]},
        "score": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "spam": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]},
        "lang": {"type": "string", "description": "optional, not nullable"},
        "kind": {"const": "review"},
    },
    "required": ["label", "score", "stars", "note"],
    "additionalProperties": False,
}

GOOD = {"label": "pos", "score": 0.5, "stars": 3, "spam": False, "tags": ["a"], "note": None}

#: Answers that are hard to judge from Arrow's values alone.
TRICKY = [
    orjson.dumps(GOOD).decode(),
    '{"label": "pos", "score": 0, "stars": 5, "note": "héllo"}',  # bounds at the edges, é
    '{"label": "pos", "score": 1, "stars": 5, "note": null}',  # exclusiveMaximum
    '{"label": "pos", "score": 0.1, "stars": 0, "note": null}',  # below minimum
    '{"label": "bad", "score": 0.1, "stars": 1, "note": null}',  # not in the enum
    '{"label": "pos", "score": "high", "stars": 1, "note": null}',  # wrong kind
    '{"label": "pos", "score": 0.1, "stars": 2.0, "note": null}',  # 2.0 is an integer
    '{"label": "pos", "score": 0.1, "stars": 2.5, "note": null}',
    '{"label": "pos", "score": 0.1, "stars": 99999999999999999999999, "note": null}',
    '{"label": "pos", "score": 0.1, "stars": 1}',  # required nullable missing
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "lang": null}',  # null, optional
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "l\\u0061ng": null}',  # escaped
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "extra": null}',  # not allowed
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "extra": {"a": 1}}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "tags": ["a", null]}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "tags": ["a", 1]}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "tags": ["a", "b", "c", "d"]}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": "toolong"}',  # maxLength 5
    '{"label": "pos", "score": 0.1, "stars": 1, "note": "😀😀😀😀😀"}',  # 5 code points
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "kind": "review"}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "kind": "other"}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "spam": 1}',
    '{"label": "pos", "score": 0.1, "stars": 1, "stars": 2, "note": null}',  # duplicate key
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null}{"label": "neg"}',  # two objects
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null} tail',
    '["pos", 0.1]',
    "",
    "   ",
    "null",
    '{"label": "pos", "score": 0.1,\n "stars": 1,\r\n "note": null}',  # pretty-printed
    '{"label": "pos", "score": 0.1, "stars": 1, "note": null, "inner": {"label": 5}}',
    '{"label": "pos", "score": 1e-3, "stars": -0, "note": null}',
    '{"label": "pos", "score": 1e400, "stars": 1, "note": null}',
    '{"label": "pos", "score": 0.1, "stars": 1, "note": "\\ud800"}',  # lone surrogate
]


def both(texts: list[Any], schema: Any = SCHEMA) -> tuple[Any, Any]:
    spec = output_schema(schema)
    assert spec.plan is not None
    status = ["ok"] * len(texts)
    bulk = parse_structured(texts, status, spec)
    exact = parse_structured(texts, status, dataclasses.replace(spec, plan=None))
    return bulk, exact


def assert_same(bulk: Any, exact: Any) -> None:
    pd.testing.assert_frame_equal(bulk.columns, exact.columns)
    assert bulk.invalid.tolist() == exact.invalid.tolist()
    assert list(bulk.messages.fillna("-")) == list(exact.messages.fillna("-"))


def test_tricky_answers_are_judged_exactly_as_one_by_one():
    bulk, exact = both(TRICKY * 3)  # over 64 rows: failed reads are halved, not all dropped
    assert_same(bulk, exact)
    assert bulk.invalid.sum() > 10 and (~bulk.invalid).sum() > 10


def test_most_rows_are_proven_by_arrow_even_beside_rows_that_break_a_read():
    """A duplicate key passes the pre-check but fails Arrow's read: the halving keeps the
    other pieces, so most rows are still proven in bulk."""
    rows = [orjson.dumps({**GOOD, "stars": 1 + i % 5}).decode() for i in range(1000)]
    rows[500] = '{"label": "pos", "score": 0.1, "stars": 1, "stars": 2, "note": null}'
    rows[10] = '{"label": "pos", "score": "high", "stars": 1, "note": null}'
    proven = output_schema(SCHEMA).plan.prove(pa.array(rows))  # type: ignore[union-attr]
    assert (proven.at < 0).sum() <= 65  # the piece of 64 holding the duplicate, and row 10
    assert proven.at[10] == -1 and proven.at[500] == -1
    assert_same(*both(rows))


@pytest.mark.parametrize("seed", range(4))
def test_random_answers_agree(seed):
    rng = random.Random(seed)
    # Property -> (valid values, invalid ones); an invalid one is drawn now and then.
    pool: dict[str, tuple[list[Any], list[Any]]] = {
        "label": (["pos", "neg", "neutral"], ["x", 1, None]),
        "score": ([0, 0.5, 0.999], [1, -0.1, "0.5", None, True]),
        "stars": ([1, 3, 5, 2.0], [0, 6, "3", None, False]),
        "spam": ([True, False], [None, 0]),
        "tags": ([[], ["a"], ["a", "b", "c"]], [["a"] * 4, [None], [1], None, "a"]),
        "note": ([None, "", "abc"], ["abcdef", 5]),
        "lang": (["en"], [None, 3]),
        "kind": (["review"], ["x", None]),
        "extra": ([], [1, None, {"k": []}]),
    }
    texts = []
    for _ in range(400):
        doc = {
            key: rng.choice(bad if not good or rng.random() < 0.03 else good)
            for key, (good, bad) in pool.items()
            if rng.random() < {"extra": 0.05}.get(key, 0.97 if key in SCHEMA["required"] else 0.5)
        }
        texts.append(orjson.dumps(doc).decode())
    bulk, exact = both(texts)
    assert_same(bulk, exact)
    assert 0 < bulk.invalid.sum() < len(texts) / 2


def test_native_columns_from_bulk_and_one_by_one_rows_agree():
    spec = output_schema(SCHEMA)
    texts = TRICKY * 3
    bulk = parse_native(texts, None, spec)
    exact = parse_native(texts, None, dataclasses.replace(spec, plan=None))
    for name in spec.columns:
        assert bulk.columns[name].equals(exact.columns[name]), name
    assert bulk.columns["label"].type == pa.dictionary(pa.int32(), pa.large_string())
    assert bulk.columns["tags"].type == pa.large_list(pa.large_string())
    assert np.array_equal(bulk.invalid, exact.invalid)


@pytest.mark.parametrize(
    "change",
    [
        {"patternProperties": {"x": {}}},
        {"properties": {"a": {"type": "string", "pattern": "^a"}}},
        {"properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}}}},
        {"properties": {"a": {"type": ["string", "integer"]}}},
        {"properties": {"a": {"type": "integer", "multipleOf": 2}}},
        {"properties": {"a b": {"type": "integer"}}},
        {"properties": {"a": {"type": "integer"}}, "required": ["a", "b"]},
        {"allOf": [{"type": "object"}]},
    ],
)
def test_schemas_outside_the_subset_are_checked_one_by_one(change):
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, **change}
    assert bulk_plan(schema) is None
