"""Tests of netmind_frames.build._requests: frame -> request lines, custom_ids and shards."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from netmind_frames._errors import ColumnError, InputError, RowError
from netmind_frames.build._requests import CHAT_ENDPOINT, CHUNK_ROWS, RequestPlan, build_plan

NASTY = [
    "plain",
    "",
    'quote " and backslash \\ and both \\"',
    "newline\nreturn\rtab\tbackspace\bformfeed\f",
    "nul \x00 bell \x07 escape \x1b unit \x1f del \x7f",
    "line separators \u2028 \u2029 and bom \ufeff",
    "emoji 😀 non-BMP 𝄞 𠜎 and zwj 👩\u200d💻",
    "accents café naïve Ελληνικά 中文 العربية",
    "braces {not a field} {{ }}",
    'json-ish {"a": [1, 2]}\\n not a newline',
    "\\u0000 literally",
    "ends with backslash \\",
]


def lines_of(plan: RequestPlan) -> list[dict[str, Any]]:
    """Every line of every shard, parsed; each must end with a newline."""
    out = []
    for shard in plan.shards:
        assert shard.data.endswith(b"\n")
        out.extend(json.loads(line) for line in shard.data.split(b"\n")[:-1])
    return out


def expected_line(custom_id: str, messages: list[dict[str, Any]], **params: Any) -> dict:
    body = {"model": "m", "messages": messages, **params}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body}


# -- content ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param("str", id="str"),
        pytest.param(object, id="object"),
        pytest.param("string[python]", id="string-python"),
        pytest.param(pd.ArrowDtype(pa.large_string()), id="arrow-dtype"),
        pytest.param("category", id="category"),
    ],
)
def test_nasty_strings_round_trip_through_json(dtype):
    frame = pd.DataFrame({"text": pd.Series(NASTY, dtype=dtype)})
    plan = build_plan(frame, 'Q: {text}\n"A":', model="m", system='be "brief"\n')
    expected = [
        expected_line(
            str(i),
            [
                {"role": "system", "content": 'be "brief"\n'},
                {"role": "user", "content": f'Q: {text}\n"A":'},
            ],
        )
        for i, text in enumerate(NASTY)
    ]
    assert lines_of(plan) == expected
    as_column = build_plan(frame, prompt_column="text", model="m")
    contents = [line["body"]["messages"][0]["content"] for line in lines_of(as_column)]
    assert contents == NASTY


def test_escaping_over_many_chunks_matches_json_dumps():
    """Every kind of special character, at chunk edges and in long strings."""
    rng = np.random.default_rng(1)
    alphabet = np.array([*map(chr, range(0x20)), '"', "\\", "a", "é", "😀", "\u2028", " "])
    n = CHUNK_ROWS + 77
    texts = ["".join(rng.choice(alphabet, size=rng.integers(0, 12))) for _ in range(n)]
    frame = pd.DataFrame({"t": texts})
    plan = build_plan(frame, prompt_column="t", model="m", max_requests=n)
    contents = [line["body"]["messages"][0]["content"] for line in lines_of(plan)]
    assert contents == texts


def test_template_fields_repeat_mix_types_and_escape_braces():
    frame = pd.DataFrame(
        {"a": ["x", "y"], "n": [1, 22], "f": [1.5, -0.25], "b": [True, False]},
        index=["r1", "r2"],
    )
    plan = build_plan(frame, "{a}{{lit}}{n} {f} {b} {a}", model="m")
    contents = [line["body"]["messages"][0]["content"] for line in lines_of(plan)]
    assert contents == ["x{lit}1 1.5 True x", "y{lit}22 -0.25 False y"]


def test_template_without_fields_gives_every_row_the_same_prompt():
    plan = build_plan(pd.DataFrame({"a": [1, 2]}), "same {{x}}", model="m")
    assert [line["body"]["messages"][0]["content"] for line in lines_of(plan)] == ["same {x}"] * 2


def test_prompt_column_and_params_are_copied_into_every_body():
    frame = pd.DataFrame({"q": ["one", "two"]})
    params = {"max_tokens": 5, "temperature": 0, "response_format": {"type": "json_object"}}
    plan = build_plan(frame, prompt_column="q", model="m", params=params)
    assert lines_of(plan) == [
        expected_line("0", [{"role": "user", "content": "one"}], **params),
        expected_line("1", [{"role": "user", "content": "two"}], **params),
    ]


def test_messages_column_is_sent_as_is_after_the_system_message():
    conversation = [
        {"role": "user", "content": "hi\n😀"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": 'say "x"'}]},
    ]
    frame = pd.DataFrame({"m": [conversation, [{"role": "developer", "content": "d"}]]})
    plan = build_plan(frame, messages_column="m", model="m", system="sys")
    system = {"role": "system", "content": "sys"}
    assert lines_of(plan) == [
        expected_line("0", [system, *conversation]),
        expected_line("1", [system, {"role": "developer", "content": "d"}]),
    ]


def test_messages_from_parquet_arrays_are_accepted(tmp_path):
    frame = pd.DataFrame({"m": [[{"role": "user", "content": "a"}]]})
    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    assert lines_of(build_plan(back, messages_column="m", model="m"))[0]["body"]["messages"] == [
        {"role": "user", "content": "a"}
    ]


def test_same_frame_and_arguments_give_the_same_bytes_and_fingerprint():
    frame = pd.DataFrame({"t": NASTY * 3})
    first = build_plan(frame, "x {t}", model="m", max_requests=7)
    second = build_plan(frame.copy(), "x {t}", model="m", max_requests=7)
    assert [s.data for s in first.shards] == [s.data for s in second.shards]
    assert [s.fingerprint for s in first.shards] == [s.fingerprint for s in second.shards]
    shard = first.shards[0]
    expected = hashlib.sha256(CHAT_ENDPOINT.encode() + b"\n" + shard.data).hexdigest()
    assert shard.fingerprint == expected
    assert len({s.fingerprint for s in first.shards}) == len(first.shards)


def test_the_frame_is_not_modified():
    frame = pd.DataFrame({"t": ["a", "b"], "n": [1, 2]}, index=["x", "x"])
    before = frame.copy()
    build_plan(frame, "{t} {n}", model="m", custom_id_column="t")
    pd.testing.assert_frame_equal(frame, before)


# -- shards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_rows", "max_requests", "max_bytes", "expected_sizes"),
    [
        pytest.param(10, 3, 10**9, [3, 3, 3, 1], id="by-count"),
        pytest.param(10, 50_000, 10**9, [10], id="one-shard"),
        pytest.param(10, 1, 10**9, [1] * 10, id="one-per-shard"),
        pytest.param(10, 50_000, 2 * 133 + 1, [2, 2, 2, 2, 2], id="by-bytes"),
        pytest.param(10, 3, 2 * 133, [2, 2, 2, 2, 2], id="bytes-before-count"),
        pytest.param(10, 50_000, 133, [1] * 10, id="exactly-one-line"),
    ],
)
def test_shards_split_consecutive_rows_within_limits(
    n_rows, max_requests, max_bytes, expected_sizes
):
    frame = pd.DataFrame({"t": [f"row-{i:03d}" for i in range(n_rows)]})
    limits = {"max_requests": max_requests, "max_bytes": max_bytes}
    plan = build_plan(frame, prompt_column="t", model="m", **limits)
    line_size = len(plan.shards[0].data.split(b"\n")[0]) + 1
    assert line_size == 133  # the sizes above are computed from it
    assert [s.n_requests for s in plan.shards] == expected_sizes
    assert all(len(s.data) <= max_bytes and s.n_requests <= max_requests for s in plan.shards)
    positions = np.concatenate([s.positions for s in plan.shards])
    np.testing.assert_array_equal(positions, np.arange(n_rows))
    ids = [line["custom_id"] for line in lines_of(plan)]
    assert ids == [str(i) for i in range(n_rows)]
    assert all(s.model == "m" and s.positions.dtype == np.int64 for s in plan.shards)


def test_shards_span_chunks_and_keep_every_row_once():
    n = 2 * CHUNK_ROWS + 5
    frame = pd.DataFrame({"t": np.arange(n)})
    plan = build_plan(frame, "{t}", model="m", max_requests=100_000)
    assert [s.n_requests for s in plan.shards] == [100_000, 100_000, n - 200_000]
    positions = np.concatenate([s.positions for s in plan.shards])
    np.testing.assert_array_equal(positions, np.arange(n))
    last = json.loads(plan.shards[-1].data.split(b"\n")[-2])
    assert last["custom_id"] == str(n - 1) and last["body"]["messages"][0]["content"] == str(n - 1)
    assert plan.n_rows == n and plan.endpoint == CHAT_ENDPOINT


def test_a_line_over_the_byte_limit_names_the_row():
    frame = pd.DataFrame({"t": ["short", "x" * 500, "short"]}, index=["a", "b", "c"])
    with pytest.raises(RowError, match=r"row 1 \(index 'b'\).*626 bytes.*300-byte") as info:
        build_plan(frame, prompt_column="t", model="m", max_bytes=300)
    assert info.value.position == 1


# -- custom ids -------------------------------------------------------------------------------


def test_default_ids_map_back_to_positions():
    plan = build_plan(pd.DataFrame({"t": ["a"] * 12}), "{t}", model="m")
    ids = pa.array(["11", "0", "5", "12", "-1", "007", "1.0", " 3", "x", None, "", "+4"])
    np.testing.assert_array_equal(
        plan.positions_of(ids), [11, 0, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1]
    )
    chunked = pa.chunked_array([pa.array(["1"]), pa.array(["2"])])
    np.testing.assert_array_equal(plan.positions_of(chunked), [1, 2])
    np.testing.assert_array_equal(plan.positions_of(pa.array([], pa.string())), [])


@pytest.mark.parametrize(
    "ids",
    [
        pytest.param(["b-1", "a:2", "c.3_x"], id="strings"),
        pytest.param([30, 10, 20], id="integers"),
        pytest.param(pd.array(["b", "a", "c"], dtype="string[pyarrow]"), id="string-dtype"),
        pytest.param(pd.Series(["x", 7, "z"], dtype=object), id="mixed-object"),
    ],
)
def test_user_ids_are_used_and_map_back(ids):
    frame = pd.DataFrame({"t": ["p", "q", "r"], "id": ids})
    plan = build_plan(frame, "{t}", model="m", custom_id_column="id")
    sent = [line["custom_id"] for line in lines_of(plan)]
    assert sent == [str(v) for v in frame["id"]]
    np.testing.assert_array_equal(
        plan.positions_of(pa.array([sent[2], "nope", sent[0]])), [2, -1, 0]
    )


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        pytest.param(["a", "b", "a"], r"custom_id 'a' is used by 2 rows: row 0 .*row 2", id="dup"),
        pytest.param(["a", None, "c"], r"row 1 \(index 11\): custom_id is null", id="null"),
        pytest.param(["a", "b c", "d"], r"row 1 .*'b c'.*64 characters", id="space"),
        pytest.param(["a", "x" * 65, "d"], r"row 1 .*64 characters", id="too-long"),
        pytest.param(["", "b", "c"], r"row 0 .*64 characters", id="empty"),
        pytest.param(["a", "é", "c"], r"row 1 .*'é'", id="non-ascii"),
        pytest.param(["a", 1.5, "c"], r"row 1 .*float.*strings or integers", id="float"),
    ],
)
def test_bad_user_ids_name_the_row(ids, message):
    frame = pd.DataFrame(
        {"t": ["p", "q", "r"], "id": pd.Series(ids, dtype=object, index=[10, 11, 12])},
        index=[10, 11, 12],
    )
    with pytest.raises(RowError, match=message):
        build_plan(frame, "{t}", model="m", custom_id_column="id")


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param(
            {"prompt": "{nope}"},
            ColumnError,
            r"'nope' is not in the frame; available columns: 'text', 'n'",
            id="template-column",
        ),
        pytest.param(
            {"prompt_column": "nope"}, ColumnError, r"'nope'.*available", id="prompt-column"
        ),
        pytest.param(
            {"messages_column": "nope"}, ColumnError, r"'nope'.*available", id="messages-column"
        ),
        pytest.param(
            {"prompt": "{text}", "custom_id_column": "nope"}, ColumnError, r"'nope'", id="id-column"
        ),
        pytest.param({}, InputError, r"exactly one of", id="no-prompt"),
        pytest.param(
            {"prompt": "{text}", "prompt_column": "text"},
            InputError,
            r"exactly one",
            id="two-prompts",
        ),
        pytest.param(
            {"prompt": "{text.upper}"},
            InputError,
            r"\{text.upper\} is not supported",
            id="attribute",
        ),
        pytest.param({"prompt": "{text[0]}"}, InputError, r"not supported", id="index"),
        pytest.param(
            {"prompt": "{text!r}"}, InputError, r"\{text!r\} is not supported", id="conversion"
        ),
        pytest.param(
            {"prompt": "{n:>5}"}, InputError, r"\{n:>5\} is not supported", id="format-spec"
        ),
        pytest.param({"prompt": "{}"}, InputError, r"not supported", id="positional"),
        pytest.param(
            {"prompt": "oops {text"}, InputError, r"not a valid str.format", id="unbalanced"
        ),
        pytest.param(
            {"prompt": "{text}", "max_requests": 0}, InputError, r"max_requests", id="max-requests"
        ),
        pytest.param(
            {"prompt": "{text}", "max_bytes": 0}, InputError, r"max_bytes", id="max-bytes"
        ),
        pytest.param(
            {"prompt": "{text}", "params": {"model": "x"}}, InputError, r"'model'", id="param-model"
        ),
        pytest.param(
            {"prompt": "{text}", "params": {"messages": []}},
            InputError,
            r"'messages'",
            id="param-messages",
        ),
        pytest.param(
            {"prompt": "{text}", "params": {"x": object()}},
            InputError,
            r"JSON",
            id="param-not-json",
        ),
        pytest.param({"prompt": "{text}", "model": ""}, InputError, r"model", id="empty-model"),
        pytest.param(
            {"prompt": "{text}", "system": "\ud800"},
            InputError,
            r"system or params cannot be encoded as JSON",
            id="system-surrogate",
        ),
    ],
)
def test_bad_arguments_are_rejected(kwargs, error, message):
    frame = pd.DataFrame({"text": ["a"], "n": [1]})
    kwargs = {"model": "m", **kwargs}
    with pytest.raises(error, match=message):
        build_plan(frame, **kwargs)


def test_an_empty_frame_is_rejected():
    with pytest.raises(InputError, match="empty"):
        build_plan(pd.DataFrame({"t": pd.Series([], dtype=str)}), "{t}", model="m")


def test_missing_column_error_is_a_key_error_listing_columns():
    with pytest.raises(KeyError) as info:
        build_plan(pd.DataFrame({"a": [1]}), "{b}", model="m")
    assert isinstance(info.value, ColumnError) and info.value.column == "b"
    assert "available columns: 'a'" in str(info.value)


@pytest.mark.parametrize(
    ("values", "kwargs", "message"),
    [
        pytest.param(
            ["a", None, "c"],
            {"prompt": "{t}"},
            r"row 1 \(index 'y'\): column 't' is null",
            id="template-none",
        ),
        pytest.param(
            ["a", "b", np.nan], {"prompt": "{t}"}, r"row 2 \(index 'z'\).*null", id="template-nan"
        ),
        pytest.param(
            pd.array([1, None, 3], dtype="Int64"),
            {"prompt": "{t}"},
            r"row 1 .*null",
            id="template-int-na",
        ),
        pytest.param(["a", None, "c"], {"prompt_column": "t"}, r"row 1 .*null", id="column-none"),
        pytest.param(
            ["a", 5, "c"],
            {"prompt_column": "t"},
            r"row 1 \(index 'y'\): column 't' holds a int \(5\), not a string",
            id="column-int",
        ),
        pytest.param([1, 2, 3], {"prompt_column": "t"}, r"row 0 .*int", id="column-int-dtype"),
        pytest.param(
            ["a", "b", "\ud83d"],
            {"prompt_column": "t"},
            r"row 2 \(index 'z'\).*not encodable as UTF-8",
            id="column-surrogate",
        ),
        pytest.param(
            ["a", "b\udc00", "c"],
            {"prompt": "x{t}"},
            r"row 1 .*not encodable",
            id="template-surrogate",
        ),
    ],
)
def test_bad_prompts_name_the_row(values, kwargs, message):
    dtype = object if isinstance(values, list) else None
    index = ["x", "y", "z"]
    frame = pd.DataFrame({"t": pd.Series(values, dtype=dtype, index=index)}, index=index)
    with pytest.raises(RowError, match=message) as info:
        build_plan(frame, model="m", **kwargs)
    assert info.value.position == int(message.split("row ")[1][0])


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        pytest.param("just text", r"row 1 \(index 'b'\).*list of messages, got str", id="string"),
        pytest.param([], r"row 1 .*non-empty list", id="empty"),
        pytest.param(None, r"row 1 .*NoneType", id="null"),
        pytest.param(["hi"], r"row 1 .*message 0 is a str", id="not-a-dict"),
        pytest.param([{"role": "robot", "content": "x"}], r"row 1 .*role 'robot'", id="role"),
        pytest.param([{"content": "x"}], r"row 1 .*role None", id="no-role"),
        pytest.param([{"role": "user", "content": 3}], r"row 1 .*content is a int", id="content"),
        pytest.param([{"role": "user"}], r"row 1 .*has no content", id="no-content"),
        pytest.param(
            [{"role": "user", "content": "\ud800"}], r"row 1 .*cannot be encoded", id="surrogate"
        ),
    ],
)
def test_bad_messages_name_the_row(cell, message):
    good = [{"role": "user", "content": "ok"}]
    column = pd.Series([good, cell], dtype=object, index=["a", "b"])
    frame = pd.DataFrame({"m": column}, index=["a", "b"])
    with pytest.raises(RowError, match=message):
        build_plan(frame, messages_column="m", model="m")


def test_duplicated_column_names_are_rejected():
    frame = pd.DataFrame([["a", "b"]], columns=["t", "t"])
    with pytest.raises(ColumnError, match="duplicated"):
        build_plan(frame, "{t}", model="m")


# -- per-row models and parameters, messages validation (issue 6) ----------------------------


def _bodies(plan: RequestPlan) -> dict[str, dict[str, Any]]:
    return {
        line["custom_id"]: line["body"]
        for shard in plan.shards
        for line in map(json.loads, shard.data.splitlines())
    }


def test_three_models_give_one_shard_each_with_their_rows():
    frame = pd.DataFrame({"t": list("abcdefg"), "m": ["x", "y", "z", "x", "y", "x", "z"]})
    plan = build_plan(frame, "{t}", model_column="m")
    assert [s.model for s in plan.shards] == ["x", "y", "z"]
    assert [s.positions.tolist() for s in plan.shards] == [[0, 3, 5], [1, 4], [2, 6]]
    for shard in plan.shards:
        lines = [json.loads(line) for line in shard.data.splitlines()]
        assert {line["body"]["model"] for line in lines} == {shard.model}
        assert [int(line["custom_id"]) for line in lines] == shard.positions.tolist()
    assert sorted(np.concatenate([s.positions for s in plan.shards])) == list(range(7))


def test_model_groups_obey_the_limits_and_a_null_takes_the_default():
    frame = pd.DataFrame({"t": list("abcde"), "m": ["x", None, "x", "y", "x"]})
    plan = build_plan(frame, "{t}", model="d", model_column="m", max_requests=2)
    assert [(s.model, s.positions.tolist()) for s in plan.shards] == [
        ("x", [0, 2]), ("x", [4]), ("d", [1]), ("y", [3])
    ]  # fmt: skip


def test_a_single_model_column_is_as_fast_as_model():
    frame = pd.DataFrame({"t": ["a", "b"], "m": ["x", "x"]})
    by_column = build_plan(frame, "{t}", model_column="m")
    assert by_column.shards[0].data == build_plan(frame, "{t}", model="x").shards[0].data


@pytest.mark.parametrize(
    ("models", "kwargs", "error", "message"),
    [
        pytest.param(["x", None], {}, RowError, r"row 1 .*null and no default model", id="null"),
        pytest.param(["x", 3], {}, RowError, r"row 1 .*models must be non-empty", id="number"),
        pytest.param(["x", ""], {}, RowError, r"row 1 .*models must be non-empty", id="empty"),
        pytest.param(
            ["x", "y"], {"model_column": "nope"}, ColumnError, "model column 'nope'", id="missing"
        ),
    ],
)
def test_bad_model_cells_name_the_row(models, kwargs, error, message):
    frame = pd.DataFrame({"t": ["a", "b"], "m": pd.Series(models, dtype=object)})
    with pytest.raises(error, match=message):
        build_plan(frame, "{t}", **{"model_column": "m", **kwargs})


def test_row_params_are_merged_after_the_common_ones():
    params = [
        {"temperature": 0.5},
        None,
        {"max_tokens": np.int64(3), "stop": np.array(["x", "y"], dtype=object)},
        {"seed": None, "top_p": 0.9},
    ]
    frame = pd.DataFrame({"t": list("abcd"), "p": params})
    plan = build_plan(frame, "{t}", model="m", params={"max_tokens": 9}, params_column="p")
    bodies = _bodies(plan)
    common = {"model": "m"}
    assert bodies["0"] == {**common, "messages": bodies["0"]["messages"], "max_tokens": 9,
                           "temperature": 0.5}  # fmt: skip
    assert {k: v for k, v in bodies["1"].items() if k != "messages"} == {**common, "max_tokens": 9}
    assert bodies["2"]["max_tokens"] == 3 and bodies["2"]["stop"] == ["x", "y"]
    assert "seed" not in bodies["3"] and bodies["3"]["top_p"] == 0.9


def test_row_params_from_a_parquet_struct_column(tmp_path):
    frame = pd.DataFrame({"t": ["a", "b"], "p": [{"temperature": 0.1, "seed": 1},
                                                 {"temperature": 0.2, "seed": None}]})  # fmt: skip
    frame.to_parquet(tmp_path / "f.parquet")
    back = pd.read_parquet(tmp_path / "f.parquet")
    bodies = _bodies(build_plan(back, "{t}", model="m", params_column="p"))
    assert bodies["0"]["seed"] == 1 and "seed" not in bodies["1"]
    assert bodies["1"]["temperature"] == 0.2


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        pytest.param([1], r"row 1 .*holds a list; per-row parameters must be a dict", id="list"),
        pytest.param({"model": "other"}, r"row 1 .*sets 'model'", id="model"),
        pytest.param({"messages": []}, r"row 1 .*sets 'messages'", id="messages"),
        pytest.param({1: 2}, r"row 1 .*non-string key", id="key"),
        pytest.param({"x": object()}, r"row 1 .*cannot be encoded as JSON", id="not-json"),
    ],
)
def test_bad_row_params_name_the_row(cell, message):
    frame = pd.DataFrame({"t": ["a", "b"], "p": [None, cell]})
    with pytest.raises(RowError, match=message):
        build_plan(frame, "{t}", model="m", params_column="p")


TOOL_CALL = {"id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": "{}"}}  # fmt: skip


@pytest.mark.parametrize(
    "messages",
    [
        pytest.param(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "hi"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                    ],
                }
            ],
            id="content-parts",
        ),
        pytest.param(
            [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "user", "content": "thanks", "name": "ann"},
            ],
            id="tool-round-trip",
        ),
        pytest.param(
            [{"role": "assistant", "tool_calls": [TOOL_CALL]}, {"role": "user", "content": ""}],
            id="assistant-without-content",
        ),
    ],
)
def test_valid_multi_turn_messages_are_sent_as_they_are(messages):
    frame = pd.DataFrame({"m": [messages]})
    (body,) = _bodies(build_plan(frame, messages_column="m", model="x")).values()
    assert body["messages"] == messages


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        pytest.param(
            [{"role": "tool", "content": "x"}], "needs a string tool_call_id", id="tool-without-id"
        ),
        pytest.param(
            [{"role": "assistant", "content": None}], "has no content", id="assistant-null"
        ),
        pytest.param(
            [{"role": "user", "content": "x", "tool_calls": [TOOL_CALL]}],
            "only assistant messages may",
            id="user-tool-calls",
        ),
        pytest.param(
            [{"role": "assistant", "tool_calls": [{"type": "function"}]}],
            "tool_calls must be a list of dicts",
            id="bad-tool-call",
        ),
        pytest.param([{"role": "user", "content": []}], "empty list of parts", id="no-parts"),
        pytest.param(
            [{"role": "user", "content": [{"text": "x"}]}],
            "part 0 is not a dict",
            id="part-without-type",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "text"}]}],
            "without a string 'text'",
            id="text-part-without-text",
        ),
        pytest.param(
            [{"role": "user", "content": "x", "name": 3}], "name must be a string", id="name"
        ),
    ],
)
def test_bad_multi_turn_messages_name_the_row_and_message(cell, message):
    frame = pd.DataFrame({"m": pd.Series([[{"role": "user", "content": "ok"}], cell])})
    with pytest.raises(RowError, match=rf"row 1 .*message 0 .*{message}"):
        build_plan(frame, messages_column="m", model="x")


def test_messages_with_tool_calls_from_parquet(tmp_path):
    messages = [{"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}]  # fmt: skip
    pd.DataFrame({"m": [messages]}).to_parquet(tmp_path / "m.parquet")
    back = pd.read_parquet(tmp_path / "m.parquet")
    (body,) = _bodies(build_plan(back, messages_column="m", model="x")).values()
    assert body["messages"] == messages


def test_columns_used_lists_the_per_row_columns():
    from netmind_frames.build._requests import columns_used

    assert columns_used("{a}{b}", model_column="m", params_column="p") == ["a", "b", "m", "p"]


def _json_dumps_jsonl(frame: pd.DataFrame, column: str) -> bytes:
    """The lines as per-row ``json.dumps`` writes them (UTF-8 as is, no spaces)."""
    lines = [
        json.dumps(
            expected_line(str(i), [{"role": "user", "content": text}]),
            ensure_ascii=False,
            separators=(",", ":"),
        )
        for i, text in enumerate(frame[column])
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize(
    "words",
    [
        pytest.param(['"q"', "back\\", "new\nline", "w", "x", "tab\t"], id="dense-third"),
        pytest.param(['{"a": "b\\"c"}', "[1,\n 2]", '"', "\\\\", "\r\n"], id="json-documents"),
        pytest.param(["товар", "产品", "😀", "𝄞", "é", "\u2028", '"'], id="non-ascii"),
        pytest.param([*map(chr, range(0x20)), '"', "\\", "z"], id="every-control-char"),
    ],
)
@pytest.mark.parametrize("dense_rows", [1.0, 0.3, 0.02], ids=["all", "many", "few"])
def test_dense_text_is_byte_identical_to_json_dumps(words, dense_rows):
    """Text dense in characters JSON escapes, in every row or some: the same bytes as
    ``json.dumps(..., ensure_ascii=False)`` per row (whole-array and per-row escaping)."""
    rng = np.random.default_rng(7)
    texts = []
    for _ in range(3000):
        pool = words if rng.random() < dense_rows else ["plain", "text", "é"]
        texts.append(" ".join(rng.choice(pool, size=rng.integers(0, 30))))
    frame = pd.DataFrame({"t": texts})
    plan = build_plan(frame, prompt_column="t", model="m", max_requests=1000)
    assert b"".join(s.data for s in plan.shards) == _json_dumps_jsonl(frame, "t")
