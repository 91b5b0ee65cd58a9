"""Structured outputs: response_format, validation messages, typed columns, and the local
server's corrupt_rate turning answers into invalid_output rows."""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Literal

import numpy as np
import openai
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from conftest_server import upload, wait_terminal

from netmind_frames._errors import InputError
from netmind_frames.build._requests import build_plan
from netmind_frames.results._results import ShardOutcome, collect_results, mark_invalid_output
from netmind_frames.results._schema import output_schema, parse_structured, response_format_for
from netmind_frames.server import LocalBatchServer

pydantic = pytest.importorskip("pydantic")


class Author(pydantic.BaseModel):
    name: str
    age: int | None = None


class Review(pydantic.BaseModel):
    sentiment: Literal["positive", "negative", "neutral"]
    confidence: float = pydantic.Field(ge=0, le=1)
    stars: int
    spam: bool
    topics: list[str]
    author: Author
    note: str | None = None


REVIEW_SCHEMA: dict[str, Any] = {
    "title": "review label!",
    "type": "object",
    "$defs": {"Author": {"type": "object", "properties": {"name": {"type": "string"}},
                         "required": ["name"], "additionalProperties": False}},
    "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "stars": {"type": "integer", "minimum": 1, "maximum": 5},
        "spam": {"type": "boolean"},
        "topics": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "author": {"$ref": "#/$defs/Author"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["sentiment", "confidence", "stars", "spam", "topics", "author"],
    "additionalProperties": False,
}  # fmt: skip

DTYPES = {
    "sentiment": "category",
    "confidence": "Float64",
    "stars": "Int64",
    "spam": "boolean",
    "topics": "object",
    "author": "object",
    "note": "string",
}

GOOD = {
    "sentiment": "negative",
    "confidence": 0.25,
    "stars": 2,
    "spam": False,
    "topics": ["battery"],
    "author": {"name": "Ann"},
}


def answer(**changes: Any) -> str:
    doc = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...}).decode()


@pytest.mark.parametrize("schema", [pytest.param(Review, id="pydantic"),
                                    pytest.param(REVIEW_SCHEMA, id="json-schema")])  # fmt: skip
def test_valid_answers_become_typed_columns(schema):
    responses = [answer(), answer(note="short", stars=5), None]
    columns, invalid, messages = parse_structured(responses, ["ok", "ok", "failed"], schema)
    assert {c: str(t) for c, t in columns.dtypes.items()} == DTYPES
    assert list(columns["sentiment"].cat.categories) == ["positive", "negative", "neutral"]
    assert columns["stars"].tolist() == [2, 5, pd.NA]
    assert columns["confidence"][0] == 0.25 and columns["spam"][0] == False  # noqa: E712
    assert columns["topics"][0] == ["battery"] and columns["author"][0] == {"name": "Ann"}
    assert columns["note"].isna().tolist() == [True, False, True]
    assert columns.iloc[2].isna().all()
    assert not invalid.any() and messages.isna().all()


@pytest.mark.parametrize(
    ("response", "message"),
    [
        pytest.param('{"sentiment": "neg', "not valid JSON", id="truncated"),
        pytest.param("```json\n{}\n```", "not valid JSON", id="fenced"),
        pytest.param(None, "empty", id="no-content"),
        pytest.param(
            answer(confidence="high"),
            "field 'confidence': expected number, got string",
            id="wrong-type",
        ),
        pytest.param(answer(stars=...), "field 'stars': required but missing", id="missing"),
        pytest.param(
            answer(sentiment="meh"), "field 'sentiment': \"meh\" is not one of", id="enum"
        ),
        pytest.param(
            answer(confidence=1.5), "field 'confidence': 1.5 is not at most 1", id="maximum"
        ),
        pytest.param(
            answer(topics=["a", 3]), r"field 'topics\[1\]': expected string", id="array-item"
        ),
        pytest.param(
            answer(author={"name": 1}), "field 'author.name': expected string", id="nested"
        ),
        pytest.param(answer(extra=1), "field 'extra': not allowed", id="additional"),
        pytest.param(
            answer(stars=True), "field 'stars': expected integer, got boolean", id="bool-is-not-int"
        ),
        pytest.param("[1]", "the answer: expected object, got array", id="not-object"),
    ],
)
def test_invalid_answers_say_what_failed(response, message):
    columns, invalid, messages = parse_structured([answer(), response], None, REVIEW_SCHEMA)
    assert invalid.tolist() == [False, True]
    found = [isinstance(m, str) and re.search(message, m) is not None for m in messages]
    assert found == [False, True]
    assert columns.iloc[1].isna().all()


@pytest.mark.parametrize(
    ("response", "message"),
    [
        pytest.param(
            answer(confidence="high"),
            "field 'confidence': expected number, got string",
            id="wrong-type",
        ),
        pytest.param(answer(stars="5"), "field 'stars': expected integer, got string", id="strict"),
        pytest.param(
            answer(stars=True), "field 'stars': expected integer, got boolean", id="bool-is-not-int"
        ),
        pytest.param(answer(stars=...), "field 'stars': required but missing", id="missing"),
        pytest.param(answer(sentiment="meh"), "field 'sentiment': Input should be", id="literal"),
        pytest.param(answer(confidence=1.5), "field 'confidence': .*less than or equal", id="le"),
        pytest.param(
            answer(topics=["a", 3]), r"field 'topics\[1\]': expected string", id="array-item"
        ),
        pytest.param(
            answer(author={"name": 1}), "field 'author.name': expected string", id="nested"
        ),
        pytest.param(
            answer(stars="x", spam="y"), r"field 'stars': .* \(and 1 more\)$", id="several"
        ),
        pytest.param("[1]", "the answer: expected object, got array", id="not-object"),
    ],
)
def test_a_models_own_validation_says_what_failed_in_the_same_words(response, message):
    columns, invalid, messages = parse_structured([answer(), response], None, Review)
    assert invalid.tolist() == [False, True]
    assert messages[0] is pd.NA and re.search(message, messages[1]), messages[1]
    assert columns.iloc[1].isna().all()


@pytest.mark.parametrize(
    ("schema", "response", "message"),
    [
        pytest.param(
            {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "5",
            "field 'a': expected null or string, got integer",
            id="optional",
        ),
        pytest.param({"const": "k"}, '"z"', "field 'a': expected \"k\", got \"z\"", id="const"),
        pytest.param(
            {"type": "string", "maxLength": 2}, '"abc"', "expected at most 2 characters, got 3",
            id="max-length",
        ),
        pytest.param(
            {"type": "string", "pattern": "^x"}, '"y"', "does not match the pattern '\\^x'",
            id="pattern",
        ),
        pytest.param(
            {"type": "number", "multipleOf": 2}, "3", "not a multiple of 2", id="multiple"
        ),
        pytest.param(
            {"oneOf": [{"type": "integer"}, {"type": "number"}]}, "1",
            "matches more than one branch of oneOf", id="one-of-many",
        ),
        pytest.param(False, "1", "field 'a': no value is allowed here", id="false-schema"),
        pytest.param({"uniqueItems": True}, "[1, 1]", "field 'a': .*unique", id="other-keyword"),
    ],
)  # fmt: skip
def test_every_keyword_failure_names_the_field(schema, response, message):
    document = {"type": "object", "properties": {"a": schema}}
    _, invalid, messages = parse_structured(['{"a": ' + response + "}"], None, document)
    assert invalid.tolist() == [True]
    assert re.search(message, messages[0]), messages[0]


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        pytest.param({"type": "strnig"}, 'at properties/a/type: "strnig"', id="unknown-type"),
        pytest.param({"type": "string", "pattern": "("}, "not a valid JSON Schema", id="pattern"),
    ],
)
def test_an_invalid_json_schema_is_rejected_up_front(schema, message):
    with pytest.raises(InputError, match=message):
        output_schema({"type": "object", "properties": {"a": schema}})


def test_pydantic_validators_run_after_the_schema():
    class Word(pydantic.BaseModel):
        word: str

        @pydantic.field_validator("word")
        @classmethod
        def lower(cls, value: str) -> str:
            if value != value.lower():
                raise ValueError("must be lower case")
            return value

    _, invalid, messages = parse_structured(['{"word": "ok"}', '{"word": "NO"}'], None, Word)
    assert invalid.tolist() == [False, True]
    assert "field 'word'" in messages[1] and "lower case" in messages[1]


def test_optional_fields_are_na_and_strict_form_requires_them():
    spec = output_schema(Review)
    assert spec.schema["required"] == list(Review.model_fields)
    assert spec.schema["additionalProperties"] is False
    assert spec.schema["$defs"]["Author"]["required"] == ["name", "age"]
    columns, invalid, _ = parse_structured([answer()], None, Review)  # no "note": still valid
    assert not invalid.any() and columns["note"].isna().all()


@pytest.mark.parametrize(
    ("schema", "name"),
    [
        pytest.param(Review, "Review", id="model"),
        pytest.param(REVIEW_SCHEMA, "review_label", id="title-sanitised"),
        pytest.param({"type": "object", "properties": {"a": {}}}, "output", id="no-title"),
        pytest.param(
            {"title": "x" * 99, "type": "object", "properties": {"a": {}}},
            "x" * 64,
            id="long-title",
        ),
    ],
)
def test_response_format_names_the_schema(schema, name):
    fmt = response_format_for(schema)
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == name and fmt["json_schema"]["strict"] is True
    assert isinstance(fmt["json_schema"]["schema"], dict)
    assert response_format_for(schema, strict=False)["json_schema"]["strict"] is False


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        pytest.param("{}", "pydantic model class or a JSON Schema dict", id="string"),
        pytest.param({"type": "array", "items": {}}, "object with 'properties'", id="array"),
        pytest.param({"type": "object"}, "object with 'properties'", id="no-properties"),
        pytest.param(
            {"type": "object", "properties": {"a": {"$ref": "http://x"}}},
            "not local",
            id="remote-ref",
        ),
        pytest.param(
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/B"}}},
            "points nowhere",
            id="dangling-ref",
        ),
    ],
)
def test_unusable_schemas_are_rejected_up_front(schema, message):
    with pytest.raises(InputError, match=message):
        response_format_for(schema)


def test_recursive_refs_one_of_and_integer_overflow():
    schema = {
        "type": "object",
        "$defs": {"Node": {"type": "object", "properties": {
            "v": {"type": "integer"}, "kids": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            "required": ["v"]}},
        "properties": {
            "tree": {"$ref": "#/$defs/Node"},
            "id": {"oneOf": [{"type": "integer"}, {"type": "string", "pattern": "^x"}]},
            "n": {"type": "integer"},
        },
    }  # fmt: skip
    responses = [
        '{"tree": {"v": 1, "kids": [{"v": 2, "kids": []}]}, "id": "x1", "n": 3.0}',
        '{"tree": {"v": 1, "kids": [{"kids": []}]}}',
        '{"id": "y"}',
        '{"n": 123456789012345678901234567890}',
    ]
    columns, invalid, messages = parse_structured(pd.Series(responses), None, schema)
    assert invalid.tolist() == [False, True, True, True]
    assert messages[1] == "field 'tree.kids[0].v': required but missing"
    assert "matches no branch of oneOf" in messages[2]
    assert "out of range" in messages[3]
    assert columns["n"].tolist() == [3, pd.NA, pd.NA, pd.NA]
    assert str(columns["id"].dtype) == "object"


def _chat_batch(client: openai.OpenAI, data: bytes) -> Any:
    file_id = upload(client, data)
    batch = client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return wait_terminal(client, batch.id)


def _results(client: openai.OpenAI, plan: Any, batch: Any) -> pa.Table:
    files = [client.files.content(f).content for f in (batch.output_file_id,) if f]
    return collect_results(plan, [ShardOutcome(plan.shards[0].positions, batch.status, files)])


@pytest.mark.parametrize("schema", [pytest.param(Review, id="pydantic"),
                                    pytest.param(REVIEW_SCHEMA, id="json-schema")])  # fmt: skip
def test_through_the_local_server_answers_are_valid_and_typed(schema, fresh_server):
    frame = pd.DataFrame({"text": [f"review {i}" for i in range(30)]})
    fmt = response_format_for(schema)
    plan = build_plan(frame, "Label: {text}", model="echo", params={"response_format": fmt})
    with openai.OpenAI(base_url=fresh_server.openai_base_url, api_key="k") as client:
        table = _results(client, plan, _chat_batch(client, plan.shards[0].data))
    columns, invalid, _ = parse_structured(table.column("response"), table.column("status"), schema)
    assert not invalid.any()
    assert {c: str(t) for c, t in columns.dtypes.items()} == DTYPES
    assert columns["sentiment"].notna().all() and columns["stars"].notna().all()


def test_corrupt_rate_gives_invalid_output_rows_and_a_new_batch_repairs_them():
    frame = pd.DataFrame({"text": [f"review {i}" for i in range(200)]})
    fmt = response_format_for(REVIEW_SCHEMA)
    plan = build_plan(frame, "{text}", model="echo", params={"response_format": fmt})
    with (
        LocalBatchServer(corrupt_rate=0.25, seed=3) as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key="k") as client,
    ):
        first = _results(client, plan, _chat_batch(client, plan.shards[0].data))
        parsed = parse_structured(first.column("response"), first.column("status"), REVIEW_SCHEMA)
        marked = mark_invalid_output(first, parsed.invalid, parsed.messages)
        bad = np.flatnonzero(parsed.invalid)
        assert 20 < len(bad) < 80  # about a quarter, seeded
        assert set(marked.column("error_code").to_pylist()) == {None, "invalid_output"}
        assert set(np.array(marked.column("status"))[bad]) == {"failed"}
        assert marked.column("response").to_pylist() == first.column("response").to_pylist()
        kinds = pd.Series(np.array(parsed.messages, dtype=object)[bad]).str.extract(
            r"(not valid JSON|expected|required but missing)"
        )[0]
        assert set(kinds) == {"not valid JSON", "expected", "required but missing"}
        # The same rows again, in a new batch: each is drawn afresh, most come back valid.
        retry = build_plan(frame.iloc[bad], "{text}", model="echo",
                           params={"response_format": fmt})  # fmt: skip
        second = _results(client, retry, _chat_batch(client, retry.shards[0].data))
    again = parse_structured(second.column("response"), second.column("status"), REVIEW_SCHEMA)
    assert again.invalid.sum() < len(bad) / 2


def test_corrupt_rate_spares_answers_without_a_schema():
    with (
        LocalBatchServer(corrupt_rate=1.0) as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key="k") as client,
    ):
        plain = client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "hello there"}]
        )
        structured = client.chat.completions.create(
            model="echo",
            messages=[{"role": "user", "content": "hello there"}],
            response_format=response_format_for(REVIEW_SCHEMA),  # type: ignore[arg-type]
        )
    assert plain.choices[0].message.content == "hello there"
    _, invalid, _ = parse_structured([structured.choices[0].message.content], None, REVIEW_SCHEMA)
    assert invalid.all()


def test_arrow_read_columns_equal_the_value_by_value_ones():
    """Arrow proves most answers valid in bulk; pretty-printed answers (newlines and
    carriage returns as whitespace), unknown fields, unicode and a mix of valid, invalid and
    failed rows give exactly what the one-by-one path gives."""
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"enum": ["positive", "negative"]},
            "stars": {"type": "integer"},
            "score": {"type": "number"},
            "spam": {"type": "boolean"},
            "note": {"type": ["string", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    }
    docs = [
        {"sentiment": "positive", "stars": 4, "score": 1, "spam": True, "note": "a\nb 😀"},
        {"sentiment": "negative", "stars": -3, "score": 0.5, "tags": ["x"], "other": {"k": 1}},
        {"stars": "four"},  # invalid: its row's columns are NA
        {"note": None, "spam": False},
    ]
    texts = [orjson.dumps(d, option=orjson.OPT_INDENT_2).decode() for d in docs]
    texts[0] = texts[0].replace("\n", "\r\n")
    responses = [*texts, None, texts[0]]
    status = ["ok", "ok", "ok", "ok", "failed", "expired"]
    spec = output_schema(schema)
    assert spec.plan is not None
    proven = spec.plan.prove(pa.array(texts))
    assert (proven.at >= 0).tolist() == [True, True, False, True]  # all but the invalid one
    via_arrow = parse_structured(responses, status, spec)
    by_value = parse_structured(responses, status, dataclasses.replace(spec, plan=None))
    pd.testing.assert_frame_equal(via_arrow.columns, by_value.columns)
    assert list(via_arrow.messages) == list(by_value.messages)
    assert via_arrow.invalid.tolist() == [False, False, True, False, False, False]
    assert via_arrow.columns["stars"].tolist() == [4, -3, pd.NA, pd.NA, pd.NA, pd.NA]
    assert via_arrow.columns["note"][0] == "a\nb 😀"
    assert via_arrow.columns["tags"][1] == ["x"]


def test_an_integral_float_for_an_integer_falls_back_to_the_value_by_value_path():
    """``5.0`` is a valid JSON Schema integer; Arrow refuses it for int64, so the columns are
    built value by value (and it becomes 5), as are integers beyond int64 (invalid)."""
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    columns, invalid, messages = parse_structured(['{"n": 5.0}', '{"n": 2}'], None, schema)
    assert columns["n"].tolist() == [5, 2] and not invalid.any()
    columns, invalid, messages = parse_structured(['{"n": 1}', '{"n": 1e0}', f'{{"n": {2**70}}}'],
                                                  None, schema)  # fmt: skip
    assert invalid.tolist() == [False, False, True]
    assert "out of range" in messages[2]


def test_a_schema_pickles_for_dask_and_spark_workers():
    # Dask and Spark ship a job's options to their workers by pickling them: the compiled
    # validator inside must survive (it pickles as its document and compiles again).
    import pickle

    schema = {
        "type": "object",
        "properties": {"stars": {"type": "integer", "minimum": 1}},
        "required": ["stars"],
    }
    spec = output_schema(schema)
    again = pickle.loads(pickle.dumps(spec))
    answers = [{"stars": 3}, {"stars": 0}, {"stars": "x"}]
    texts = [orjson.dumps(a).decode() for a in answers]
    failed = again.failures(answers, texts)
    assert sorted(failed) == [1, 2]
    assert failed == spec.failures(answers, texts)
    assert "stars" in failed[2]
