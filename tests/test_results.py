"""Tests of netmind_frames.results._results: result files -> Arrow table -> joined DataFrame."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netmind_frames._errors import ColumnError, InputError, MissingResultWarning
from netmind_frames.build._requests import RequestPlan, build_plan
from netmind_frames.results._results import (
    RESULT_COLUMNS,
    ShardOutcome,
    check_result_columns,
    collect_results,
    join_results,
)


def ok_line(custom_id: Any, content: str | None = "answer", **extra: Any) -> dict[str, Any]:
    """A success line as the server writes it (with fields the parser must ignore)."""
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        **extra,
    }
    response = {"status_code": 200, "request_id": "req_1", "body": body}
    return {"id": "batch_req_1", "custom_id": custom_id, "response": response, "error": None}


def http_error_line(
    custom_id: str, status: int = 400, code: str | None = "context_length_exceeded"
):
    """Shape (a): the request ran and the model API answered 4xx/5xx; top-level error null."""
    error = {"message": "too long", "type": "invalid_request_error", "param": None, "code": code}
    response = {"status_code": status, "request_id": "req_2", "body": {"error": error}}
    return {"id": "batch_req_2", "custom_id": custom_id, "response": response, "error": None}


def batch_error_line(custom_id: str, code: str = "batch_expired", message: str = "expired"):
    """Shape (b): never executed; response null, error {code, message}."""
    error = {"code": code, "message": message}
    return {"id": "batch_req_3", "custom_id": custom_id, "response": None, "error": error}


def jsonl(*lines: dict[str, Any] | str) -> bytes:
    return b"".join(
        (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n" for line in lines
    )


def make_plan(n: int, **kwargs: Any) -> RequestPlan:
    frame = pd.DataFrame({"t": [f"q{i}" for i in range(n)]})
    return build_plan(frame, "{t}", model="m", **kwargs)


def table_for(plan: RequestPlan, status: str, *files: bytes | Path) -> pa.Table:
    """The result table of a one-shard plan."""
    assert len(plan.shards) == 1
    return collect_results(plan, [ShardOutcome(plan.shards[0].positions, status, list(files))])


def collect(plan: RequestPlan, status: str, *files: bytes | Path) -> pd.DataFrame:
    """Results of a one-shard plan as a plain frame, for easy comparison."""
    table = table_for(plan, status, *files)
    assert table.column_names == list(RESULT_COLUMNS)
    assert table.num_rows == plan.n_rows
    types = {pa.large_string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=types.get)


# -- parsing ----------------------------------------------------------------------------------


def test_success_and_both_error_shapes_in_any_order_and_file():
    plan = make_plan(4)
    output = jsonl(ok_line("2", "two"), ok_line("0", "zero"))
    errors = jsonl(batch_error_line("3", "batch_expired", "ran out"), http_error_line("1"))
    got = collect(plan, "expired", errors, output)
    assert got["response"].tolist() == ["zero", pd.NA, "two", pd.NA]
    assert got["finish_reason"].tolist() == ["stop", pd.NA, "stop", pd.NA]
    assert got["prompt_tokens"].tolist() == [7, pd.NA, 7, pd.NA]
    assert got["completion_tokens"].tolist() == [2, pd.NA, 2, pd.NA]
    assert got["error_code"].tolist() == [pd.NA, "context_length_exceeded", pd.NA, "batch_expired"]
    assert got["error_message"].tolist() == [pd.NA, "too long", pd.NA, "ran out"]
    assert got["status"].tolist() == ["ok", "failed", "ok", "expired"]


@pytest.mark.parametrize(
    ("line", "code", "message", "status"),
    [
        pytest.param(http_error_line("0"), "context_length_exceeded", "too long", "failed", id="a"),
        pytest.param(
            http_error_line("0", 429, None),
            "invalid_request_error",
            "too long",
            "failed",
            id="a-type-only",
        ),
        pytest.param(batch_error_line("0"), "batch_expired", "expired", "expired", id="b-expired"),
        pytest.param(
            batch_error_line("0", "batch_cancelled", "c"),
            "batch_cancelled",
            "c",
            "cancelled",
            id="b-cancelled",
        ),
        pytest.param(
            batch_error_line("0", "server_error", "boom"),
            "server_error",
            "boom",
            "failed",
            id="b-other",
        ),
        pytest.param(
            {"custom_id": "0", "response": {"status_code": 500, "body": {}}, "error": None},
            "http_500",
            None,
            "failed",
            id="status-only",
        ),
        pytest.param(
            {"custom_id": "0", "response": {"status_code": 0, "body": None}, "error": None},
            "http_0",
            None,
            "failed",
            id="status-0",
        ),
        pytest.param(
            {**ok_line("0"), "error": {"code": "x", "message": "y"}},
            "x",
            "y",
            "failed",
            id="200-with-error",
        ),
    ],
)
def test_error_code_and_message_come_from_whichever_shape_has_them(line, code, message, status):
    for data in (jsonl(line), jsonl(line, ok_line("1"))):  # with and without the Arrow path
        got = collect(make_plan(2), "expired", data)
        assert got["error_code"][0] == code
        assert (
            (got["error_message"][0] is pd.NA)
            if message is None
            else (got["error_message"][0] == message)
        )
        assert got["status"][0] == status
        assert got["response"][0] is pd.NA


def test_vllm_string_error_falls_back_to_the_tolerant_parser():
    """vLLM writes ``error`` as a plain string, which Arrow cannot read as a struct."""
    vllm = {"id": "vllm-1", "custom_id": "1", "error": "Invalid prompt",
            "response": {"status_code": 400, "request_id": "r", "body": None}}  # fmt: skip
    got = collect(make_plan(2), "completed", jsonl(ok_line("0", "fine"), vllm))
    assert got["status"].tolist() == ["ok", "failed"]
    assert got["error_code"].tolist() == [pd.NA, "http_400"]
    assert got["error_message"].tolist() == [pd.NA, "Invalid prompt"]
    assert got["response"].tolist() == ["fine", pd.NA]
    assert got["prompt_tokens"].tolist() == [7, pd.NA]


def test_choices_empty_or_content_null_give_na_response():
    lines = [ok_line("0", "x"), ok_line("1", None), ok_line("2")]
    lines[2]["response"]["body"]["choices"] = []
    for data in (jsonl(*lines), jsonl(*lines, "not json")):
        with pytest.warns(MissingResultWarning) if b"not json" in data else _no_warning():
            got = collect(make_plan(3), "completed", data)
        assert got["response"].tolist() == ["x", pd.NA, pd.NA]
        assert got["finish_reason"].tolist() == ["stop", "stop", pd.NA]
        assert got["status"].tolist() == ["ok"] * 3


def test_a_success_without_usage_or_with_null_counts_has_na_tokens():
    lines = [ok_line("2"), ok_line("0"), ok_line("1"), ok_line("3")]
    del lines[1]["response"]["body"]["usage"]
    lines[2]["response"]["body"]["usage"]["completion_tokens"] = None
    got = collect(make_plan(5), "expired", jsonl(*lines))
    assert got["status"].tolist() == ["ok"] * 4 + ["expired"]
    assert got["prompt_tokens"].tolist() == [pd.NA, 7, 7, 7, pd.NA]
    assert got["completion_tokens"].tolist() == [pd.NA, pd.NA, 2, 2, pd.NA]


def test_shuffled_large_file_with_blank_lines_maps_every_line_to_its_row():
    n = 5000
    lines = [ok_line(str(i), f"answer {i}") for i in range(n)]
    random.Random(3).shuffle(lines)
    data = b"\n".join(json.dumps(line).encode() for line in lines[:100]) + b"\n\n  \n"
    data += jsonl(*lines[100:])
    got = collect(make_plan(n), "completed", data)
    assert got["response"].tolist() == [f"answer {i}" for i in range(n)]


def test_files_may_be_paths(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(jsonl(ok_line("1", "b"), ok_line("0", "a")))
    broken = tmp_path / "err.jsonl"
    broken.write_bytes(b"")
    assert collect(make_plan(2), "completed", path, broken)["response"].tolist() == ["a", "b"]


def test_numeric_custom_ids_are_read_as_strings():
    got = collect(make_plan(2), "completed", jsonl(ok_line(1, "b"), ok_line("0", "a")))
    assert got["response"].tolist() == ["a", "b"]


# -- rows without a line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch_status", "status", "code"),
    [
        pytest.param("expired", "expired", "batch_expired", id="expired"),
        pytest.param("cancelled", "cancelled", "batch_cancelled", id="cancelled"),
        pytest.param("cancelling", "cancelled", "batch_cancelled", id="cancelling"),
        pytest.param("failed", "failed", "batch_failed", id="failed"),
    ],
)
def test_rows_without_a_line_take_the_batch_status(batch_status, status, code):
    got = collect(make_plan(3), batch_status, jsonl(ok_line("1")))
    assert got["status"].tolist() == [status, "ok", status]
    assert got["error_code"].tolist() == [code, pd.NA, code]
    assert got["error_message"].notna().tolist() == [True, False, True]


def test_completed_batch_that_omits_rows_warns_and_marks_them_missing():
    with pytest.warns(MissingResultWarning, match="2 row"):
        got = collect(make_plan(3), "completed", jsonl(ok_line("1")))
    assert got["status"].tolist() == ["failed", "ok", "failed"]
    assert got["error_code"].tolist() == ["missing_result", pd.NA, "missing_result"]


def test_a_batch_with_no_files_at_all():
    got = collect(make_plan(2), "expired")
    assert got["status"].tolist() == ["expired", "expired"]
    with pytest.warns(MissingResultWarning, match="2 row"):
        got = collect(make_plan(2), "completed", b"", b"\n")
    assert got["error_code"].tolist() == ["missing_result"] * 2


def test_several_shards_keep_their_own_status():
    plan = make_plan(5, max_requests=2)
    outcomes = [
        ShardOutcome(plan.shards[0].positions, "completed", [jsonl(ok_line("0"), ok_line("1"))]),
        ShardOutcome(plan.shards[1].positions, "cancelled", [jsonl(ok_line("3"))]),
        ShardOutcome(plan.shards[2].positions, "expired", []),
    ]
    status = collect_results(plan, outcomes).column("status").to_pylist()
    assert status == ["ok", "ok", "cancelled", "ok", "expired"]


# -- robustness -------------------------------------------------------------------------------


def test_unknown_ids_are_warned_about_and_never_joined():
    lines = jsonl(ok_line("0", "a"), ok_line("7", "x"), ok_line("01", "y"), ok_line("-1", "z"))
    with pytest.warns(MissingResultWarning, match="3 result line"):
        got = collect(make_plan(2), "expired", lines)
    assert got["response"].tolist() == ["a", pd.NA]
    assert got["status"].tolist() == ["ok", "expired"]


def test_a_line_from_another_shards_file_is_not_joined():
    plan = make_plan(4, max_requests=2)
    outcomes = [
        ShardOutcome(plan.shards[0].positions, "expired", [jsonl(ok_line("0"), ok_line("3"))]),
        ShardOutcome(plan.shards[1].positions, "expired", []),
    ]
    with pytest.warns(MissingResultWarning, match="1 result line"):
        status = collect_results(plan, outcomes).column("status").to_pylist()
    assert status == ["ok", "expired", "expired", "expired"]


@pytest.mark.parametrize(
    "lines",
    [
        pytest.param([http_error_line("0"), ok_line("0", "won")], id="success-second"),
        pytest.param([ok_line("0", "won"), http_error_line("0")], id="success-first"),
        pytest.param([ok_line("0", "won"), ok_line("0", "won")], id="two-successes"),
    ],
)
def test_duplicate_lines_keep_one_preferring_a_success(lines):
    with pytest.warns(MissingResultWarning, match="1 duplicate"):
        got = collect(make_plan(1), "completed", jsonl(*lines))
    assert got["response"].tolist() == ["won"]
    assert got["status"].tolist() == ["ok"]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(jsonl(ok_line("0", "a")) + json.dumps(ok_line("1")).encode()[:40], id="cut"),
        pytest.param(jsonl(ok_line("0", "a"), "{not json", ok_line("1", "b"))[:-1], id="garbage"),
        pytest.param(jsonl(ok_line("0", "a"), "[1, 2]", ok_line("1", "b")), id="array-line"),
    ],
)
def test_invalid_lines_are_warned_about_and_ignored(data):
    expect_missing = b'"b"' not in data
    with pytest.warns(MissingResultWarning) as record:
        got = collect(make_plan(2), "completed", data)
    assert any("not valid JSON" in str(w.message) for w in record)
    assert got["response"][0] == "a"
    assert any("missing_result" in str(w.message) for w in record) == expect_missing
    assert got["status"][1] == ("failed" if expect_missing else "ok")


def test_user_ids_map_back_to_their_rows():
    frame = pd.DataFrame({"t": ["x", "y", "z"], "id": ["c-3", "a-1", "b-2"]})
    plan = build_plan(frame, "{t}", model="m", custom_id_column="id")
    data = jsonl(ok_line("b-2", "z!"), ok_line("c-3", "x!"), ok_line("a-1", "y!"))
    assert collect(plan, "completed", data)["response"].tolist() == ["x!", "y!", "z!"]


# -- joining ----------------------------------------------------------------------------------


INDEXES = [
    pytest.param(pd.Index(["b", "a", "b"]), id="duplicated-strings"),
    pytest.param(pd.MultiIndex.from_tuples([("x", 1), ("x", 2), ("y", 1)]), id="multiindex"),
    pytest.param(pd.date_range("2026-01-01", periods=3, tz="UTC"), id="datetime"),
    pytest.param(pd.Index([5, 3, 5]), id="duplicated-ints"),
    pytest.param(pd.RangeIndex(10, 13), id="range"),
]


@pytest.mark.parametrize("index", INDEXES)
@pytest.mark.parametrize("prefix", [pytest.param("", id="no-prefix"), pytest.param("nm_", id="nm")])
def test_join_keeps_index_order_and_columns_and_adds_typed_results(index, prefix):
    frame = pd.DataFrame({"t": ["q0", "q1", "q2"], "n": [1, 2, 3]}, index=index)
    before = frame.copy()
    plan = build_plan(frame, "{t}", model="m")
    data = jsonl(ok_line("2", "q2!"), http_error_line("1"), ok_line("0", "q0!"))
    table = collect_results(plan, [ShardOutcome(plan.shards[0].positions, "completed", [data])])
    out = join_results(frame, table, prefix=prefix)

    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert out is not frame
    pd.testing.assert_index_equal(out.index, frame.index)
    assert list(out.columns) == ["t", "n", *(prefix + c for c in RESULT_COLUMNS)]
    pd.testing.assert_frame_equal(out[["t", "n"]], frame)
    assert out[prefix + "response"].tolist() == ["q0!", pd.NA, "q2!"]
    assert out[prefix + "status"].tolist() == ["ok", "failed", "ok"]
    strings = pd.StringDtype("pyarrow")
    expected = {c: strings for c in RESULT_COLUMNS} | {
        "prompt_tokens": pd.Int64Dtype(),
        "completion_tokens": pd.Int64Dtype(),
    }
    assert {c: out[prefix + c].dtype for c in RESULT_COLUMNS} == expected
    assert out[prefix + "prompt_tokens"].tolist() == [7, pd.NA, 7]


def test_writing_to_the_result_does_not_reach_the_input():
    frame = pd.DataFrame({"t": ["a", "b"]})
    before = frame.copy()
    plan = build_plan(frame, "{t}", model="m")
    out = join_results(frame, table_for(plan, "expired"))
    out.loc[0, "t"] = "changed"
    pd.testing.assert_frame_equal(frame, before)


@pytest.mark.parametrize(
    ("columns", "prefix", "clash"),
    [
        pytest.param(["t", "status"], "", "'status'", id="status"),
        pytest.param(["response", "error_code"], "", "'response', 'error_code'", id="two"),
        pytest.param(["nm_response"], "nm_", "'nm_response'", id="prefixed"),
    ],
)
def test_a_result_column_colliding_with_an_input_column_is_an_error(columns, prefix, clash):
    frame = pd.DataFrame([[1] * len(columns)], columns=columns)
    before = frame.copy()
    with pytest.raises(ColumnError, match=f"{clash}.*prefix"):
        check_result_columns(frame, prefix)
    table = table_for(build_plan(frame, "x", model="m"), "expired")
    with pytest.raises(ColumnError):
        join_results(frame, table, prefix)
    pd.testing.assert_frame_equal(frame, before)


def test_no_collision_with_a_prefix():
    frame = pd.DataFrame({"status": [1]})
    check_result_columns(frame, "nm_")


def test_a_table_of_the_wrong_length_is_rejected():
    frame = pd.DataFrame({"t": ["a", "b"]})
    with pytest.raises(InputError, match="1 results for a frame of 2 rows"):
        join_results(frame, table_for(make_plan(1), "expired"))


class _no_warning:
    """A context manager that asserts nothing (warnings are errors anyway)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def test_result_table_strings_and_ints_are_arrow_typed():
    table = collect_results(make_plan(1), [ShardOutcome(np.array([0]), "expired", [])])
    assert table.schema.field("prompt_tokens").type == pa.int64()
    assert pa.types.is_large_string(table.schema.field("status").type)


@pytest.mark.parametrize(
    "id_column",
    [pytest.param(None, id="position-ids"), pytest.param("key", id="user-ids")],
)
def test_round_trip_over_shards_puts_every_answer_on_its_own_row(id_column):
    """Build, answer each request with its own prompt (like the echo engine), shuffle, join."""
    index = pd.MultiIndex.from_product([["a", "b"], [1, 1, 2, 3, 5]])
    frame = pd.DataFrame({"text": [f"prompt {i}" for i in range(10)]}, index=index)
    frame["key"] = [f"k{i * 7 % 10}" for i in range(10)]
    plan = build_plan(frame, "{text}", model="m", max_requests=3, custom_id_column=id_column)
    outcomes = []
    for number, shard in enumerate(plan.shards):
        requests = [json.loads(line) for line in shard.data.splitlines()]
        answers = [ok_line(r["custom_id"], r["body"]["messages"][0]["content"]) for r in requests]
        random.Random(number).shuffle(answers)
        outcomes.append(ShardOutcome(shard.positions, "completed", [jsonl(*answers)]))
    out = join_results(frame, collect_results(plan, outcomes), prefix="nm_")
    assert out["nm_response"].tolist() == frame["text"].tolist()
    assert (out["nm_status"] == "ok").all()
    pd.testing.assert_index_equal(out.index, frame.index)


def test_many_shuffled_lines_are_gathered_in_slices_to_their_rows():
    """Over 65,536 rows the columns are gathered in slices on several threads: every row
    still gets its own line's answer, tokens and finish_reason, and failures their errors."""
    n = 70_001
    plan = make_plan(n, max_requests=n)
    order = list(range(n))
    random.Random(5).shuffle(order)
    lines = []
    for i in order:
        if i % 97 == 0:
            lines.append(http_error_line(str(i)))
        else:
            line = ok_line(str(i), f"answer {i}")
            line["response"]["body"]["usage"]["prompt_tokens"] = i
            line["response"]["body"]["choices"][0]["finish_reason"] = ["stop", "length"][i % 2]
            lines.append(line)
    got = collect(plan, "completed", jsonl(*lines))
    failed = np.arange(n) % 97 == 0
    assert got["status"].tolist() == np.where(failed, "failed", "ok").tolist()
    assert got["response"].tolist() == [pd.NA if f else f"answer {i}" for i, f in enumerate(failed)]
    assert got["prompt_tokens"].tolist() == [pd.NA if f else i for i, f in enumerate(failed)]
    finish = [pd.NA if f else ["stop", "length"][i % 2] for i, f in enumerate(failed)]
    assert got["finish_reason"].tolist() == finish
    assert got["error_code"].tolist() == ["context_length_exceeded" if f else pd.NA for f in failed]
