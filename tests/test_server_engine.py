"""The echo engine's contract, checked through the sync endpoint and inside batches."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from conftest_server import content, jsonl, request_line, run_batch

from netmind_frames.server import LocalBatchServer


def valid(value: Any, schema: dict[str, Any], root: dict[str, Any] | None = None) -> bool:
    """A tiny JSON Schema validator for the subset the echo engine supports."""
    root = root if root is not None else schema
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        return valid(value, node, root)
    if "anyOf" in schema:
        return any(valid(value, branch, root) for branch in schema["anyOf"])
    if "enum" in schema and value not in schema["enum"]:
        return False
    if "const" in schema and value != schema["const"]:
        return False
    kinds = schema.get("type")
    if kinds is None:
        return True
    kinds = kinds if isinstance(kinds, list) else [kinds]
    checks = {
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "null": lambda v: v is None,
    }
    if not any(checks[k](value) for k in kinds):
        return False
    if isinstance(value, dict):
        if any(name not in value for name in schema.get("required", [])):
            return False
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False and set(value) - set(props):
            return False
        return all(valid(value[k], sub, root) for k, sub in props.items() if k in value)
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", 10**9):
            return False
        return all(valid(item, schema.get("items", {}), root) for item in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
        if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
            return False
    if isinstance(value, str):
        return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    return True


SCHEMAS = [
    pytest.param(
        {
            "type": "object",
            "properties": {
                "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "stars": {"type": "integer", "minimum": 1, "maximum": 5},
                "spam": {"type": "boolean"},
            },
            "required": ["sentiment", "confidence", "stars", "spam"],
            "additionalProperties": False,
        },
        id="flat-object",
    ),
    pytest.param(
        {
            "type": "object",
            "properties": {
                "people": {
                    "type": "array",
                    "minItems": 2,
                    "maxItems": 3,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string", "maxLength": 5},
                            "age": {"type": ["integer", "null"], "exclusiveMinimum": 17},
                            "tags": {"type": "array", "items": {"type": "string", "minLength": 3}},
                        },
                        "required": ["name", "age", "tags"],
                    },
                }
            },
            "required": ["people"],
        },
        id="nested-arrays",
    ),
    pytest.param(
        {
            "$defs": {"Label": {"type": "string", "enum": ["a", "b"]}},
            "type": "object",
            "properties": {
                "label": {"$ref": "#/$defs/Label"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "kind": {"const": "fixed"},
                "score": {"type": "number", "exclusiveMaximum": 0},
            },
            "required": ["label", "note", "kind", "score"],
        },
        id="refs-anyof-const",
    ),
    pytest.param({"type": "array", "items": {"type": "integer"}}, id="top-level-array"),
]


def chat(client: httpx2.Client, body: dict[str, Any], prefix: str = "/v1") -> httpx2.Response:
    """POST a chat completion body to the sync endpoint."""
    return client.post(f"{prefix}/chat/completions", json=body)


def body_for(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """A chat completion request body."""
    return {"model": "echo-1", "messages": messages, **extra}


@pytest.mark.parametrize(
    ("messages", "extra", "answer", "finish", "prompt_tokens"),
    [
        pytest.param(
            [{"role": "user", "content": "  keep   these\nspaces  "}],
            {},
            "  keep   these\nspaces  ",
            "stop",
            3,
            id="unmodified",
        ),
        pytest.param(
            [{"role": "user", "content": "a b c d"}],
            {"max_tokens": 4},
            "a b c d",
            "stop",
            4,
            id="at-limit",
        ),
        pytest.param(
            [{"role": "user", "content": "a  b\tc d"}],
            {"max_tokens": 2},
            "a b",
            "length",
            4,
            id="cut",
        ),
        pytest.param(
            [{"role": "user", "content": "a b c"}],
            {"max_completion_tokens": 1},
            "a",
            "length",
            3,
            id="max-completion-tokens",
        ),
        pytest.param(
            [
                {"role": "system", "content": "sys words here"},
                {"role": "user", "content": "first question"},
                {"role": "assistant", "content": "an answer"},
                {"role": "user", "content": "second question"},
            ],
            {},
            "second question",
            "stop",
            9,
            id="last-user-message",
        ),
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "part one "},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "text", "text": "part two"},
                    ],
                }
            ],
            {},
            "part one part two",
            "stop",
            4,
            id="content-parts",
        ),
        pytest.param(
            [{"role": "system", "content": "no user here"}], {}, "", "stop", 3, id="no-user-message"
        ),
    ],
)
def test_echo_answers(
    http: httpx2.Client,
    messages: list[dict[str, Any]],
    extra: dict[str, Any],
    answer: str,
    finish: str,
    prompt_tokens: int,
) -> None:
    response = chat(http, body_for(messages, **extra))
    assert response.status_code == 200
    out = response.json()
    assert out["object"] == "chat.completion" and out["model"] == "echo-1"
    assert out["id"].startswith("chatcmpl-") and isinstance(out["created"], int)
    choice = out["choices"][0]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == answer
    assert choice["finish_reason"] == finish
    completion_tokens = len(answer.split())
    assert out["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


@pytest.mark.parametrize("schema", SCHEMAS)
def test_json_schema_answers_are_valid(http: httpx2.Client, schema: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}}
    answers = []
    for text in ("first prompt", "first prompt", "another prompt"):
        response = chat(http, body_for([{"role": "user", "content": text}], response_format=fmt))
        assert response.status_code == 200
        document = json.loads(response.json()["choices"][0]["message"]["content"])
        assert valid(document, schema), document
        answers.append(document)
    assert answers[0] == answers[1]  # deterministic from the prompt


def test_json_object_answer(http: httpx2.Client) -> None:
    response = chat(
        http,
        body_for(
            [{"role": "user", "content": "hi there"}], response_format={"type": "json_object"}
        ),
    )
    document = json.loads(response.json()["choices"][0]["message"]["content"])
    assert isinstance(document, dict) and document == {"answer": "hi there"}


INVALID = [
    pytest.param({"messages": [{"role": "user", "content": "x"}]}, "model", id="no-model"),
    pytest.param({"model": "m"}, "messages", id="no-messages"),
    pytest.param({"model": "m", "messages": []}, "messages", id="empty-messages"),
    pytest.param({"model": "m", "messages": "hi"}, "messages", id="messages-not-list"),
    pytest.param({"model": "m", "messages": ["hi"]}, "messages[0]", id="message-not-object"),
    pytest.param({"model": "m", "messages": [{"content": "x"}]}, "messages[0]", id="no-role"),
    pytest.param(
        {"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", id="no-content"
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
        "messages[0].content",
        id="content-number",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"},
        "max_tokens",
        id="max-tokens-string",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        "max_tokens",
        id="max-tokens-zero",
    ),
    pytest.param(
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": True},
        "max_tokens",
        id="max-tokens-bool",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "xml"},
        },
        "response_format.type",
        id="unknown-format",
    ),
]


@pytest.mark.parametrize(("body", "param"), INVALID)
def test_invalid_requests_get_400(http: httpx2.Client, body: dict[str, Any], param: str) -> None:
    response = chat(http, body, prefix="/inference-api/openai/v1")
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_invalid_requests_become_400_error_lines(oai: openai.OpenAI) -> None:
    lines = []
    for i, param in enumerate(INVALID):
        body: dict[str, Any] = dict(param.values[0])  # type: ignore[call-overload]
        if "model" in body:
            body["model"] = "echo-1"  # one model per file, or validation fails the batch
        lines.append({**request_line(f"bad{i}", "x"), "body": body})
    lines.append(request_line("good", "fine answer"))
    batch = run_batch(oai, jsonl(lines))
    assert batch.status == "completed"
    assert batch.request_counts.failed == len(INVALID) and batch.request_counts.completed == 1
    errors = content(oai, batch.error_file_id)
    assert {line["custom_id"] for line in errors} == {f"bad{i}" for i in range(len(INVALID))}
    for line in errors:
        assert line["error"] is None and line["response"]["status_code"] == 400
        assert line["response"]["body"]["error"]["type"] == "invalid_request_error"
    [ok] = content(oai, batch.output_file_id)
    assert ok["response"]["body"]["choices"][0]["message"]["content"] == "fine answer"


def test_json_schema_inside_a_batch(local_server: LocalBatchServer, oai: openai.OpenAI) -> None:
    schema: dict[str, Any] = SCHEMAS[0].values[0]  # type: ignore[assignment]
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": schema}}
    batch = run_batch(
        oai, jsonl([request_line(str(i), f"text {i}", response_format=fmt) for i in range(10)])
    )
    for line in content(oai, batch.output_file_id):
        answer = line["response"]["body"]["choices"][0]["message"]["content"]
        assert valid(json.loads(answer), schema)
