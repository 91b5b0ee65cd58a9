"""The server's fast paths answer exactly what the engines answer (issue #16, server speed).

``_answer.answer`` takes a lean path for plain chat lines and the engines for the rest; large
batches are validated and answered in worker processes. Neither may change a byte of what a
line gets, apart from ids (each process has its own id prefix) and ``created`` times.
"""

from __future__ import annotations

import argparse
import itertools
import random
import re
import time
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from conftest_server import run_batch, wait_for
from hypothesis import given
from hypothesis import strategies as st

from netmind_frames.server import LocalBatchServer, _ids, _pool, _runner, _store
from netmind_frames.server._answer import answer, corrupt_seed, count_words, run_order, unit
from netmind_frames.server._cli import add_serve_parser
from netmind_frames.server._embed import embed_with_input
from netmind_frames.server._engine import complete_with_prompt, last_user_text
from netmind_frames.server._envelope import error_body
from netmind_frames.server._runner import Runner
from netmind_frames.server._store import Store
from netmind_frames.server._validate import validate_input

SCHEMA = {
    "type": "object",
    "properties": {"a": {"type": "string"}, "n": {"type": "integer"}, "e": {"enum": ["x", "y"]}},
}
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def _body(i: int, kind: int) -> Any:
    """Chat bodies of every shape: plain ones and each kind the lean path hands on."""
    if (i // 18) % 2:  # every body shape with both texts (18 shapes, see mixed_lines)
        text = f"row {i} a  b\tc \u00e9t\u00e9 \u2003 x\n" * (1 + i % 3)
    else:  # ASCII only: words are counted without splitting (str.split's ASCII whitespace)
        text = f" row {i} a  b\tc\x1fd\re\x0bf \n" * (1 + i % 3)
    msgs: list[dict[str, Any]] = [{"role": "user", "content": text}]
    body: dict[str, Any] = {"model": "echo-1", "messages": msgs}
    extra: list[dict[str, Any]] = [
        {},
        {"max_tokens": 1 + i % 5},
        {"max_completion_tokens": 3, "max_tokens": 5},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": SCHEMA},
            }
        },
        {"response_format": {"type": "json_object"}},
        {"response_format": {"type": "text"}},
        {"response_format": None, "max_tokens": None},
        {
            "messages": [
                {"role": "system", "content": "be nice"},
                *msgs,
                {"role": "assistant", "content": "ok"},
            ]
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "you"}],
                }
            ]
        },
        {"messages": [{"role": "system", "content": "no user here"}]},
        {"messages": [{"role": "user"}]},
        {"messages": []},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": 2.0},
        {"stream": True},
        {"model": None},
    ]
    if kind == len(extra):
        return ["not", "an", "object"]
    return {**body, **extra[kind]}


def mixed_lines(n: int) -> list[bytes]:
    """``n`` chat request lines cycling through every body shape."""
    kinds = 18
    return [
        orjson.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": _body(i, i % kinds),
            }
        )
        for i in range(n)
    ]


def engines_only(
    lines: list[bytes], *, batch_id: str, seed: int, fail_rate: float, corrupt_rate: float
) -> bytes:
    """The runner's answer loop before the lean path: every line through the engines."""
    out: list[bytes] = []
    for raw in lines:
        req = orjson.loads(raw)
        cid = req["custom_id"]
        if fail_rate and unit(seed, batch_id, cid) < fail_rate:
            message = "The server had an error while processing your request. Sorry about that!"
            status, body = 500, error_body(message, type="server_error")
            last_user_text(req.get("body"))
        else:
            corrupt = corrupt_seed(seed, batch_id, cid, corrupt_rate)
            status, body, _ = complete_with_prompt(req.get("body"), corrupt=corrupt)
        line = {
            "id": "batch_req_" + _ids.fast_hex(),
            "custom_id": cid,
            "response": {
                "status_code": status,
                "request_id": "req_" + _ids.fast_hex(),
                "body": body,
            },
            "error": None,
        }
        out.append(orjson.dumps(line))
    return b"".join(x + b"\n" for x in out)


@pytest.mark.parametrize(
    ("fail_rate", "corrupt_rate"), [(0.0, 0.0), (0.3, 0.0), (0.0, 1.0), (0.2, 0.5)]
)
def test_the_lean_path_answers_byte_for_byte_as_the_engines(monkeypatch, fail_rate, corrupt_rate):
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    lines = mixed_lines(540)
    options = {"batch_id": "batch_x", "seed": 5, "fail_rate": fail_rate}
    monkeypatch.setattr(_ids, "_COUNTER", itertools.count())
    expected = engines_only(lines, corrupt_rate=corrupt_rate, **options)
    monkeypatch.setattr(_ids, "_COUNTER", itertools.count())
    got = answer(lines, embeddings=False, corrupt_rate=corrupt_rate, log=True, **options)
    assert got.out + got.err != b""
    # The engines' lines, split as the runner splits them: 200s to output, the rest to errors.
    want = expected.splitlines(keepends=True)
    ok = b"".join(x for x in want if b'"status_code":200' in x)
    assert got.out == ok
    assert got.err == b"".join(x for x in want if b'"status_code":200' not in x)
    assert got.completed + got.failed == len(lines) == len(got.executed)
    assert got.completed > 0 and got.failed > 0


_WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u2003\u3000"


@given(st.text(alphabet=st.sampled_from([*_WHITESPACE, "a", "Z", "\x00", "\x7f", '"', "\u00e9"])))
def test_words_are_counted_as_str_split_counts_them(text):
    assert count_words(text) == len(text.split())


def test_embedding_lines_are_answered_by_the_embedding_engine():
    lines = [
        orjson.dumps(
            {"custom_id": str(i), "body": {"model": "e", "input": f"w{i}", "dimensions": 4}}
        )
        for i in range(3)
    ] + [orjson.dumps({"custom_id": "bad", "body": {"model": "e", "input": ""}})]
    got = answer(
        lines, batch_id="b", seed=0, embeddings=True, fail_rate=0, corrupt_rate=0, log=False
    )
    bodies = [orjson.loads(x)["response"]["body"] for x in got.out.splitlines()]
    assert [len(b["data"][0]["embedding"]) for b in bodies] == [4, 4, 4]
    assert bodies[0]["data"][0]["embedding"] == pytest.approx(
        embed_with_input({"model": "e", "input": "w0", "dimensions": 4})[1]["data"][0]["embedding"]
    )
    assert got.failed == 1 and b'"status_code":400' in got.err


_ID = rb"(batch_req_|req_|chatcmpl-)[0-9a-f]{16}([0-9a-f]{16})"


def _normalised(data: bytes, *, counters: bool = False) -> bytes:
    """Ids without their per-process prefix (and, with ``counters``, without the counter
    after it), and no ``created`` times."""
    data = re.sub(rb'"created":\d+', b'"created":0', data)
    counter = b"0" * 16 if counters else rb"\g<2>"
    return re.sub(_ID, rb"\g<1>" + b"0" * 16 + counter, data)


def _run_alone(root: Path, data: bytes, **knobs: Any) -> tuple[dict[str, Any], bytes, bytes]:
    """One batch on a fresh store under ``root`` through a started Runner."""
    store = Store(root)
    src = store.new_tmp_path()
    src.write_bytes(data)
    file = store.add_file("in.jsonl", "batch", source=src)
    obj = {
        "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": file.id,
        "status": "validating", "model": None, "errors": None,
        "output_file_id": None, "error_file_id": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
    }  # fmt: skip
    batch = store.add_batch(obj, deadline=None, seed=3, shuffle=True, output_expires_seconds=None)
    runner = Runner(store, seconds_per_request=0, fail_rate=0.2, corrupt_rate=0.5, **knobs)
    runner.start()
    try:
        rec = wait_for(
            lambda: (b := store.get_batch(batch["id"])) and b["status"] in TERMINAL and b
        )
    finally:
        runner.stop()

    def read(key: str) -> bytes:
        return store.data_path(rec[key]).read_bytes() if rec[key] else b""

    return rec, read("output_file_id"), read("error_file_id")


@pytest.mark.parametrize("process_chunk", [50_000, 128])
def test_a_batch_answered_in_a_worker_process_gets_the_same_lines(
    tmp_path, monkeypatch, process_chunk
):
    """A worker writes its answers to files that the server moves (one chunk: the whole
    batch, answered while it is checked) or appends (several chunks) to the batch's results:
    the same lines, in the same order, either way. A worker that answers while it checks
    draws the ids' counters in file order (and, for a file of several chunks, draws some in
    vain), so those are compared for uniqueness only."""
    monkeypatch.setattr(_store, "new_batch_id", lambda: "batch_" + "a" * 24)  # same draws
    monkeypatch.setattr(_runner, "PROCESS_CHUNK", process_chunk)
    rng = random.Random(1)
    lines = mixed_lines(900)
    rng.shuffle(lines)
    data = b"\n".join(lines) + b"\n"
    monkeypatch.setattr(_ids, "_COUNTER", itertools.count())  # a fresh worker counts from 0
    here = _run_alone(tmp_path / "here", data, processes=0)
    away = _run_alone(tmp_path / "away", data, processes=1, process_min_bytes=0)
    assert here[0]["status"] == away[0]["status"] == "completed"
    assert here[0]["request_counts"] == away[0]["request_counts"]
    assert here[0]["usage"] == away[0]["usage"]
    assert _normalised(here[1], counters=True) == _normalised(away[1], counters=True) != b""
    assert _normalised(here[2], counters=True) == _normalised(away[2], counters=True) != b""
    ids = [m.group(0) for m in re.finditer(_ID, away[1] + away[2])]
    assert len(ids) == len(set(ids)) > 2 * len(lines)  # every line's ids, all distinct
    # Only the worker's ids carry another prefix: the batch really was answered elsewhere.
    assert _ids._PREFIX.encode() in here[1] and _ids._PREFIX.encode() not in away[1]
    assert list((tmp_path / "away" / "tmp").iterdir()) == []  # no answers file left behind


def test_an_invalid_large_file_fails_validation_in_the_worker():
    data = b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions"}\n' * 2
    with (
        LocalBatchServer(processes=1, process_min_bytes=0) as server,
        openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as client,
    ):
        batch = run_batch(client, data)
    assert batch.status == "failed"
    assert [(e.code, e.line) for e in batch.errors.data] == [("duplicate_custom_id", 2)]


def test_process_knobs_are_checked():
    for bad in ({"processes": -1}, {"processes": True}, {"process_min_bytes": -1}):
        with pytest.raises(ValueError, match="process"):
            LocalBatchServer(**bad)


def test_serve_flags_for_the_worker_processes():
    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(["serve", "--processes", "0", "--process-min-bytes", "5"])
    assert (args.processes, args.process_min_bytes) == (0, 5)
    defaults = top.parse_args(["serve"])
    assert (defaults.processes, defaults.process_min_bytes) == (2, 16_000_000)


def test_validation_skips_blank_lines_and_numbers_errors_by_file_line():
    good = b'{"custom_id": "%d", "url": "/v1/chat/completions", "body": {"model": "m"}}'
    data = b"\n".join([good % 1, b"", b"  \t", b" " + good % 2 + b"\r", b"\x0c", good % 3, b""])
    checked = validate_input(data, "/v1/chat/completions")
    assert checked.errors == [] and checked.model == "m"
    assert [orjson.loads(x)["custom_id"] for x in checked.lines] == ["1", "2", "3"]
    bad = validate_input(data + b" {nope\n" + good % 1, "/v1/chat/completions")
    assert [(e["code"], e["line"]) for e in bad.errors] == [
        ("invalid_json_line", 7),
        ("duplicate_custom_id", 8),
    ]
    assert validate_input(b"\n \n", "/v1/chat/completions").errors[0]["code"] == "empty_file"


def test_a_batch_is_answered_in_the_server_when_no_worker_can_start(tmp_path, monkeypatch):
    monkeypatch.setattr(_pool.sys, "executable", str(tmp_path / "no-such-python"))
    lines = mixed_lines(300)
    rec, out, err = _run_alone(
        tmp_path, b"\n".join(lines) + b"\n", processes=1, process_min_bytes=0
    )
    assert rec["status"] == "completed"
    assert rec["request_counts"]["completed"] + rec["request_counts"]["failed"] == len(lines)
    assert _ids._PREFIX.encode() in out  # answered here, after the worker was given up
    assert len(out.splitlines()) + len(err.splitlines()) == len(lines)


def test_a_worker_reads_the_lines_it_answers_at_their_offsets_in_run_order(tmp_path, monkeypatch):
    path = tmp_path / "input.jsonl"
    lines = mixed_lines(40)
    path.write_bytes(b"\n\n".join(lines))  # blank lines between: offsets, not line numbers
    checked = validate_input(path, "/v1/chat/completions")
    order = list(range(len(lines)))
    random.Random(3).shuffle(order)
    starts, ends = checked.lines.offsets_at(order)  # type: ignore[attr-defined]
    options = {"batch_id": "b", "seed": 1, "embeddings": False, "fail_rate": 0.2,
               "corrupt_rate": 0.0, "log": True}  # fmt: skip
    out_path, err_path = tmp_path / "answers.out", tmp_path / "answers.err"
    monkeypatch.setattr(_ids, "_COUNTER", itertools.count())  # the same ids both times
    there = _pool.answer_lines_at(path, starts, ends, out_path, err_path, **options)
    monkeypatch.setattr(_ids, "_COUNTER", itertools.count())
    here = answer([lines[i] for i in order], **options)
    # The lines went to the files, not back through the pipe.
    assert (there.out, there.err) == (b"", b"")
    assert (there.out_path, there.err_path) == (out_path, err_path)
    assert _normalised(out_path.read_bytes()) == _normalised(here.out) != b""
    assert _normalised(err_path.read_bytes()) == _normalised(here.err) != b""
    assert [row[1] for row in there.executed] == [f"c{i}" for i in order]
    assert [row[1:] for row in there.executed] == [row[1:] for row in here.executed]
    assert (there.completed, there.failed) == (here.completed, here.failed)


def test_a_worker_answers_a_file_while_it_checks_it_in_the_batchs_run_order(tmp_path):
    path = tmp_path / "input.jsonl"
    lines = mixed_lines(60)
    path.write_bytes(b"\n\n".join(lines) + b"\n")  # blank lines are skipped, not answered
    options = {"batch_id": "b", "seed": 1, "embeddings": False, "fail_rate": 0.2,
               "corrupt_rate": 0.0, "log": True}  # fmt: skip
    out_path, err_path = tmp_path / "answers.out", tmp_path / "answers.err"
    errors, model, starts, ends, done = _pool.validate_and_answer(
        path, "/v1/chat/completions", None, out_path, err_path,
        most=60, shuffle_seed=7, **options,
    )  # fmt: skip
    checked = validate_input(path, "/v1/chat/completions")
    assert (errors, model) == (checked.errors, checked.model) == ([], "echo-1")
    assert (starts, ends) == checked.lines.offsets()  # type: ignore[attr-defined]
    order = run_order(len(lines), 7)
    assert order != sorted(order)
    here = answer([lines[i] for i in order], **options)
    assert done is not None and (done.out_path, done.err_path) == (out_path, err_path)
    assert _normalised(out_path.read_bytes(), counters=True) == _normalised(here.out, counters=True)
    assert _normalised(err_path.read_bytes(), counters=True) == _normalised(here.err, counters=True)
    assert [row[1] for row in done.executed] == [f"c{i}" for i in order]
    assert (done.completed, done.failed) == (here.completed, here.failed)
    assert done.completed > 0 and done.failed > 0


@pytest.mark.parametrize("broken", ["an invalid line", "more lines than one chunk"])
def test_a_worker_keeps_no_answers_for_a_file_it_cannot_answer_whole(tmp_path, broken):
    path = tmp_path / "input.jsonl"
    lines = mixed_lines(30)
    if broken == "an invalid line":
        lines.insert(20, b'{"custom_id": "c0", "url": "/v1/chat/completions"}')  # a duplicate
    path.write_bytes(b"\n".join(lines) + b"\n")
    options = {"batch_id": "b", "seed": 1, "embeddings": False, "fail_rate": 0.0,
               "corrupt_rate": 0.0, "log": False}  # fmt: skip
    out_path, err_path = tmp_path / "answers.out", tmp_path / "answers.err"
    most = 10 if broken == "more lines than one chunk" else 100
    errors, _, starts, ends, done = _pool.validate_and_answer(
        path, "/v1/chat/completions", None, out_path, err_path,
        most=most, shuffle_seed=None, **options,
    )  # fmt: skip
    checked = validate_input(path, "/v1/chat/completions")
    assert done is None and not out_path.exists() and not err_path.exists()
    assert errors == checked.errors  # every line was still checked
    assert len(starts) == len(ends) == len(lines)
    if broken == "an invalid line":
        assert [(e["code"], e["line"]) for e in errors] == [("duplicate_custom_id", 21)]
