"""batch_complete / submit / to_jsonl end to end, through the real local server in both dialects."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
from conftest import connection_kwargs, uploaded_files

import netmind_frames
from netmind_frames import (
    ColumnError,
    ConfigurationError,
    InputError,
    LocalBatchServer,
    RowError,
    batch_complete,
    to_jsonl,
)

RESULT_COLUMNS = [
    "response",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "error_code",
    "error_message",
    "status",
]


def wait_until(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def expected_answers(frame: pd.DataFrame, template: str) -> list[str]:
    """The echo engine answers with the prompt itself: what each row's answer must be."""
    return [template.format(**row) for row in frame.to_dict("records")]


@pytest.mark.parametrize(
    "index",
    [
        pytest.param(pd.Index(["b", "a", "b", "c", "a", "a"]), id="duplicated-strings"),
        pytest.param(
            pd.MultiIndex.from_tuples(
                [("x", 2), ("x", 1), ("y", 9), ("y", 9), ("z", 0), ("a", 5)], names=["g", "n"]
            ),
            id="multiindex",
        ),
        pytest.param(pd.date_range("2026-01-01", periods=6, freq="h")[::-1], id="datetime-desc"),
        pytest.param(pd.Index([50, 3, 7, 3, 1, 0]), id="shuffled-ints"),
    ],
)
def test_every_answer_lands_on_its_own_row(server, dialect, index):
    frame = pd.DataFrame(
        {"text": [f'row {i} ünïcode ✓ "q" \\ {i * 7}' for i in range(6)], "n": range(6)},
        index=index,
    )
    before = frame.copy(deep=True)

    out = batch_complete(frame, "Echo {n}: {text}", model="m", **connection_kwargs(server, dialect))

    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert out.index.equals(frame.index)
    assert list(out.columns) == [*frame.columns, *RESULT_COLUMNS]
    pd.testing.assert_frame_equal(out[frame.columns], frame)
    assert list(out["response"]) == expected_answers(frame, "Echo {n}: {text}")
    assert (out["status"] == "ok").all()
    assert (out["finish_reason"] == "stop").all()
    assert out["error_code"].isna().all()
    assert str(out["prompt_tokens"].dtype) == "Int64"
    assert (out["completion_tokens"] == out["response"].str.split().str.len()).all()
    assert out.attrs["netmind_frames"]["batch_ids"]


def test_accessor_gives_the_same_frame_as_the_function(server, reviews):
    kwargs = connection_kwargs(server, "netmind")
    via_accessor = reviews.netmind.batch_complete("Rate: {text}", model="m", **kwargs)
    via_function = netmind_frames.batch_complete(reviews, "Rate: {text}", model="m", **kwargs)
    pd.testing.assert_frame_equal(via_accessor, via_function)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"prompt_column": "text"}, lambda f: list(f["text"]), id="prompt-column"),
        pytest.param(
            {"messages_column": "messages"},
            lambda f: [m[-1]["content"] for m in f["messages"]],
            id="messages-column",
        ),
        pytest.param(
            {"prompt": "{text}", "system": "Be brief."},
            lambda f: list(f["text"]),
            id="system",
        ),
    ],
)
def test_prompt_inputs(server, reviews, kwargs, expected):
    frame = reviews.assign(
        messages=[
            [{"role": "user", "content": "hi"}, {"role": "user", "content": f"second {i}"}]
            for i in range(len(reviews))
        ]
    )
    out = batch_complete(frame, model="m", **kwargs, **connection_kwargs(server, "openai"))
    assert list(out["response"]) == expected(frame)


def test_parameters_reach_every_request_body(server, reviews):
    out = batch_complete(
        reviews, "{text}", model="m", max_tokens=2, **connection_kwargs(server, "netmind")
    )
    assert (out["finish_reason"] == "length").all()
    assert list(out["response"]) == [" ".join(t.split()[:2]) for t in reviews["text"]]
    assert (out["completion_tokens"] == 2).all()


def test_custom_id_column(server, reviews):
    frame = reviews.assign(uid=[f"id-{i:03d}" for i in range(len(reviews))])
    out = batch_complete(
        frame, "{text}", model="m", custom_id_column="uid", **connection_kwargs(server, "openai")
    )
    assert list(out["response"]) == list(frame["text"])


def test_prefix_renames_result_columns(server, reviews):
    out = batch_complete(
        reviews, "{text}", model="m", prefix="nm_", **connection_kwargs(server, "netmind")
    )
    assert list(out.columns) == [*reviews.columns, *(f"nm_{c}" for c in RESULT_COLUMNS)]


def test_fail_rate_rows_are_failed_with_code_and_message(dialect):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(200)]})
    with LocalBatchServer(fail_rate=0.3, seed=3) as srv:
        out = batch_complete(
            frame, "{text}", model="m", retries=0, **connection_kwargs(srv, dialect)
        )
    failed = out[out["status"] == "failed"]
    ok = out[out["status"] == "ok"]
    assert 20 < len(failed) < 120
    assert failed["error_code"].notna().all() and failed["error_message"].notna().all()
    assert failed["response"].isna().all()
    assert list(ok["response"]) == list(ok["text"])


def test_all_failed_batch_is_completed_without_output_file(dialect):
    """An all-failed batch ends `completed` with no output file: every row failed, none lost."""
    frame = pd.DataFrame({"text": ["a", "b", "c"]})
    with LocalBatchServer(fail_rate=1.0) as srv:
        job = netmind_frames.submit(
            frame, "{text}", model="m", retries=0, **connection_kwargs(srv, dialect)
        )
        out = job.result()
        batch = job.batches[0]
    assert batch.status == "completed" and batch.output_file_id is None
    assert (out["status"] == "failed").all()
    assert out["error_code"].notna().all()


def test_expired_batch_keeps_finished_rows(dialect):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(40)]})
    with LocalBatchServer(seconds_per_request=0.02, expire_after=0.3) as srv:
        out = batch_complete(
            frame, "{text}", model="m", retries=0, **connection_kwargs(srv, dialect)
        )
    counts = out["status"].value_counts()
    assert counts.get("expired", 0) > 0
    assert set(counts.index) <= {"ok", "expired"}
    expired = out[out["status"] == "expired"]
    assert (expired["error_code"] == "batch_expired").all()
    ok = out[out["status"] == "ok"]
    assert list(ok["response"]) == list(ok["text"])


def test_cancel_gives_partial_results(dialect):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(60)]})
    with LocalBatchServer(seconds_per_request=0.02) as srv:
        job = netmind_frames.submit(frame, "{text}", model="m", **connection_kwargs(srv, dialect))
        wait_until(lambda: (job.refresh().batches[0].request_counts.completed or 0) >= 5)
        job.cancel()
        job.wait()
        out = job.result()
        assert job.batches[0].status == "cancelled"
    assert (out["status"] == "cancelled").sum() > 0
    assert set(out["status"]) <= {"ok", "cancelled"}
    ok = out[out["status"] == "ok"]
    assert list(ok["response"]) == list(ok["text"])


@pytest.mark.parametrize(
    ("frame", "kwargs", "error", "needle"),
    [
        pytest.param(
            pd.DataFrame({"t": ["x"]}),
            {"prompt": "{text}"},
            ColumnError,
            "text",
            id="missing-column",
        ),
        pytest.param(
            pd.DataFrame({"text": ["x", None]}),
            {"prompt": "{text}"},
            RowError,
            "1",
            id="null-prompt",
        ),
        pytest.param(
            pd.DataFrame({"text": ["x", 3]}, dtype=object),
            {"prompt_column": "text"},
            RowError,
            "1",
            id="non-string-prompt",
        ),
        pytest.param(
            pd.DataFrame({"text": []}), {"prompt": "{text}"}, InputError, "empty", id="empty-frame"
        ),
        pytest.param(
            pd.DataFrame({"text": ["a", "b"], "u": ["x", "x"]}),
            {"prompt": "{text}", "custom_id_column": "u"},
            InputError,
            "x",
            id="duplicate-ids",
        ),
        pytest.param(
            pd.DataFrame({"text": ["a"], "u": ["x" * 65]}),
            {"prompt": "{text}", "custom_id_column": "u"},
            InputError,
            "64",
            id="long-id",
        ),
        pytest.param(
            pd.DataFrame({"text": ["a", "b" * 5000]}),
            {"prompt": "{text}", "max_bytes": 2000},
            RowError,
            "1",
            id="line-over-limit",
        ),
        pytest.param(
            pd.DataFrame({"text": ["a"]}),
            {"prompt": "{text}", "completion_window": "48h"},
            InputError,
            "24h",
            id="window",
        ),
        pytest.param(
            pd.DataFrame({"text": ["a"], "response": ["r"]}),
            {"prompt": "{text}"},
            ColumnError,
            "response",
            id="column-collision",
        ),
    ],
)
def test_bad_input_fails_before_anything_is_uploaded(fresh_server, frame, kwargs, error, needle):
    with pytest.raises(error, match=needle):
        batch_complete(frame, model="m", **kwargs, **connection_kwargs(fresh_server, "netmind"))
    assert uploaded_files(fresh_server) == []


def test_missing_key_says_how_to_fix(monkeypatch):
    monkeypatch.delenv("NETMIND_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=r"NETMIND_API_KEY.*local=True"):
        batch_complete(pd.DataFrame({"t": ["a"]}), "{t}", model="m")


def test_local_true_needs_no_key(monkeypatch, reviews):
    monkeypatch.delenv("NETMIND_API_KEY", raising=False)
    out = reviews.netmind.batch_complete(
        "{text}", model="m", local=True, poll_interval=0.05, progress=False
    )
    assert list(out["response"]) == list(reviews["text"])


def test_to_jsonl_is_the_exact_upload(server, reviews, tmp_path):
    data = to_jsonl(reviews, prompt="Rate: {text}", model="m", max_tokens=3)
    assert isinstance(data, bytes)
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert [line["custom_id"] for line in lines] == [str(i) for i in range(len(reviews))]
    assert lines[4]["body"] == {
        "model": "m",
        "messages": [{"role": "user", "content": f"Rate: {reviews['text'].iloc[4]}"}],
        "max_tokens": 3,
    }
    path = reviews.netmind.to_jsonl(tmp_path / "x.jsonl", "Rate: {text}", model="m", max_tokens=3)
    assert path.read_bytes() == data

    job = reviews.netmind.submit(
        "Rate: {text}", model="m", max_tokens=3, **connection_kwargs(server, "openai")
    )
    batch = job.refresh().batches[0]
    uploaded = job._connection.client.files.content(batch.input_file_id).content
    assert uploaded == data


def test_several_shards_join_as_one_result(server, dialect):
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(25)]}, index=np.arange(25)[::-1])
    job = netmind_frames.submit(
        frame, "{text}", model="m", max_requests=7, **connection_kwargs(server, dialect)
    )
    assert len(job.batch_ids) == 4
    out = job.result()
    assert out.index.equals(frame.index)
    assert list(out["response"]) == list(frame["text"])


def test_to_jsonl_says_when_a_template_lands_in_the_path_argument(reviews):
    with pytest.raises(InputError, match="prompt="):
        reviews.netmind.to_jsonl("Rate: {text}", model="m")
