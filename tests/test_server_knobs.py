"""The issue-6 knobs of the local server: corrupt_rate, endpoints, and their serve flags."""

from __future__ import annotations

import argparse

import orjson
import pytest

from netmind_frames.server import LocalBatchServer
from netmind_frames.server._cli import add_serve_parser
from netmind_frames.server._engine import CORRUPTIONS, complete_with_prompt, corrupted

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "score": {"type": "number"}},
    "required": ["label", "score"],
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}}


def parse(argv: list[str]) -> argparse.Namespace:
    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    return top.parse_args(["serve", *argv])


def test_serve_flags_for_the_new_knobs():
    args = parse(["--corrupt-rate", "0.1", "--endpoints", "/v1/chat/completions"])
    assert args.corrupt_rate == 0.1 and args.endpoints == ("/v1/chat/completions",)
    defaults = parse([])
    assert defaults.corrupt_rate == 0 and set(defaults.endpoints) == {
        "/v1/chat/completions", "/v1/embeddings"
    }  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--corrupt-rate", "2"], id="rate-over-1"),
        pytest.param(["--endpoints", "/v1/moderations"], id="unknown-endpoint"),
        pytest.param(["--endpoints", ","], id="no-endpoint"),
    ],
)
def test_bad_serve_flags(argv, capsys):
    with pytest.raises(SystemExit):
        parse(argv)
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"corrupt_rate": -0.1}, id="negative-rate"),
        pytest.param({"endpoints": ()}, id="no-endpoints"),
        pytest.param({"endpoints": ("/v1/responses",)}, id="unknown"),
        pytest.param({"endpoints": "/v1/embeddings"}, id="a-string"),
    ],
)
def test_bad_knobs_are_refused(kwargs):
    with pytest.raises(ValueError):
        LocalBatchServer(**kwargs)


@pytest.mark.parametrize("seed", [pytest.param(str(i), id=f"seed-{i}") for i in range(12)])
def test_corrupted_answers_are_never_valid_and_are_deterministic(seed):
    good = orjson.dumps({"label": "ok", "score": 0.5}).decode()
    bad = corrupted(good, seed)
    assert bad == corrupted(good, seed) and bad != good
    try:
        doc = orjson.loads(bad)
    except orjson.JSONDecodeError:
        return
    assert set(doc) != {"label", "score"} or not isinstance(doc["label"], str)


def test_every_kind_of_corruption_occurs():
    good = orjson.dumps({"label": "ok", "score": 0.5}).decode()
    shapes = set()
    for i in range(40):
        bad = corrupted(good, f"s{i}")
        if bad.startswith("Sure!"):
            shapes.add("fenced")
        elif bad == good[: len(good) // 2]:
            shapes.add("truncated")
        elif set(orjson.loads(bad)) != {"label", "score"}:
            shapes.add("missing_field")
        else:
            shapes.add("wrong_type")
    assert shapes == set(CORRUPTIONS)


def test_corruption_applies_only_to_json_schema_answers():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert complete_with_prompt(body, corrupt="s")[1]["choices"][0]["message"]["content"] == "hi"
    as_object = {**body, "response_format": {"type": "json_object"}}
    content = complete_with_prompt(as_object, corrupt="s")[1]["choices"][0]["message"]["content"]
    assert orjson.loads(content) == {"answer": "hi"}
    structured = {**body, "response_format": FORMAT}
    intact = complete_with_prompt(structured)[1]["choices"][0]["message"]["content"]
    broken = complete_with_prompt(structured, corrupt="s")[1]["choices"][0]["message"]["content"]
    assert broken == corrupted(intact, "s")


def test_embedding_batches_are_logged_with_their_input(fresh_server):
    import openai
    from conftest_server import jsonl, upload, wait_terminal

    line = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings",
            "body": {"model": "e", "input": "some words"}}  # fmt: skip
    with openai.OpenAI(base_url=fresh_server.openai_base_url, api_key="k") as client:
        batch = client.batches.create(
            input_file_id=upload(client, jsonl([line])),
            endpoint="/v1/embeddings",
            completion_window="24h",
        )
        done = wait_terminal(client, batch.id)
        mismatch = client.batches.create(
            input_file_id=upload(client, jsonl([{**line, "url": "/v1/chat/completions"}])),
            endpoint="/v1/embeddings",
            completion_window="24h",
        )
        failed = wait_terminal(client, mismatch.id)
    assert done.status == "completed" and done.request_counts.completed == 1
    assert done.usage.input_tokens == 2
    assert failed.status == "failed" and failed.errors.data[0].code == "url_mismatch"
    (entry,) = [e for e in fresh_server.executions() if e["batch_id"] == batch.id]
    assert entry["prompt"] == "some words" and entry["status_code"] == 200
