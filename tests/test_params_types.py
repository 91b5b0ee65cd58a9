"""Integer-only request parameters stay integers after a Parquet round trip.

Written to Parquet and read back, a params column whose dicts set ``max_tokens`` in some rows
only comes back with floats (``{"max_tokens": 2.0, "temperature": None}``). Strict servers
(OpenAI, and the local server) reject ``"max_tokens":2.0``, so a whole float of an
integer-only key is sent as an int, and any other float is a ``RowError`` naming the row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import numpy as np
import openai
import pandas as pd
import pytest
from conftest import connection_kwargs

import netmind_frames
from netmind_frames import LocalBatchServer, RowError
from netmind_frames.frames._api import submit_file


def round_trip(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame.to_parquet(path)
    return pd.read_parquet(path)


def sent_bodies(srv: LocalBatchServer, batches: list[Any]) -> dict[str, dict[str, Any]]:
    """The request body of each custom_id, from the input files the server kept."""
    bodies = {}
    with openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key) as client:
        for batch in batches:
            for line in client.files.content(batch.input_file_id).text.splitlines():
                request = json.loads(line)
                bodies[request["custom_id"]] = request["body"]
    return bodies


PARAMS = [{"max_tokens": 2}, {"temperature": 1.0}, None, {"max_tokens": 3, "seed": 7}]


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "text": ["one two three four", "five six", "seven eight nine", "ten eleven twelve"],
            "params": PARAMS,
        },
        index=pd.Index(["a", "b", "c", "d"], name="key"),
    )


def test_parquet_turns_a_nullable_int_into_a_float(frame, tmp_path):
    """The premise: what the cells hold after the round trip."""
    cells = list(round_trip(frame, tmp_path / "in.parquet")["params"])
    assert cells[0] == {"max_tokens": 2.0, "temperature": None, "seed": None}
    assert type(cells[0]["max_tokens"]) is float
    assert cells[2] is None


def test_a_parquet_round_trip_sends_ints_and_every_row_succeeds(server, dialect, frame, tmp_path):
    back = round_trip(frame, tmp_path / "in.parquet")
    job = netmind_frames.submit(
        back, "{text}", model="m", params_column="params", keep_files=True,
        **connection_kwargs(server, dialect),
    )  # fmt: skip
    out = job.result()
    # The local server, like OpenAI, rejects "max_tokens": 2.0 (invalid_type).
    assert list(out["status"]) == ["ok"] * 4
    assert list(out["response"]) == ["one two", "five six", "seven eight nine", "ten eleven twelve"]
    assert list(out["finish_reason"]) == ["length", "stop", "stop", "stop"]

    bodies = sent_bodies(server, job.batches)
    assert bodies["0"]["max_tokens"] == 2 and type(bodies["0"]["max_tokens"]) is int
    assert "temperature" not in bodies["0"] and "seed" not in bodies["0"]
    assert bodies["1"]["temperature"] == 1.0 and type(bodies["1"]["temperature"]) is float
    assert "max_tokens" not in bodies["1"]
    assert "max_tokens" not in bodies["2"] and "temperature" not in bodies["2"]
    assert type(bodies["3"]["max_tokens"]) is int and type(bodies["3"]["seed"]) is int
    assert (bodies["3"]["max_tokens"], bodies["3"]["seed"]) == (3, 7)


def test_a_streamed_parquet_file_sends_ints(server, frame, tmp_path):
    """The CLI's path: the rows are read from the file chunk by chunk, not from a frame."""
    path = tmp_path / "in.parquet"
    frame.to_parquet(path)
    job = submit_file(
        path, "{text}", model="m", params_column="params", keep_files=True,
        **connection_kwargs(server, "netmind"),
    )  # fmt: skip
    counts = job.to_parquet(tmp_path / "out.parquet")
    assert counts == {"ok": 4}
    bodies = sent_bodies(server, job.batches)
    assert [type(bodies[k].get("max_tokens")) for k in "0123"] == [int, type(None), type(None), int]


def test_embedding_dimensions_read_back_as_floats_are_sent_as_ints(server, tmp_path):
    frame = pd.DataFrame(
        {
            "text": ["a b", "c d", "e f"],
            "params": [{"dimensions": 4}, {"user": "u"}, {"dimensions": 6}],
        }
    )
    back = round_trip(frame, tmp_path / "in.parquet")
    assert type(back["params"].iloc[0]["dimensions"]) is float
    out = netmind_frames.batch_embed(
        back, "text", model="e", params_column="params", **connection_kwargs(server, "openai")
    )
    # The local server rejects a non-int ``dimensions``; the default is 256.
    assert [len(v) for v in out["embedding"]] == [4, 256, 6]


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        pytest.param({"max_tokens": np.float64(2.0)}, {"max_tokens": 2}, id="numpy-float64"),
        pytest.param(
            {"max_completion_tokens": np.float32(5.0)},
            {"max_completion_tokens": 5},
            id="numpy-float32",
        ),
        pytest.param({"n": 1.0, "top_logprobs": 0.0}, {"n": 1, "top_logprobs": 0}, id="n"),
        pytest.param({"top_k": 40.0, "top_p": 1.0}, {"top_k": 40, "top_p": 1.0}, id="top_k"),
        pytest.param({"seed": -3.0}, {"seed": -3}, id="negative"),
        pytest.param({"seed": float("nan"), "temperature": 0.5}, {"temperature": 0.5}, id="nan"),
        pytest.param({"max_tokens": 4}, {"max_tokens": 4}, id="int"),
        pytest.param({"logit_bias": {"50256": 2.0}}, {"logit_bias": {"50256": 2.0}}, id="other"),
    ],
)
def test_whole_floats_of_integer_keys_become_ints_and_others_stay(cell, expected, server):
    frame = pd.DataFrame({"text": ["hello"], "params": [cell]})
    job = netmind_frames.submit(
        frame,
        "{text}",
        model="m",
        params_column="params",
        keep_files=True,  # the test reads the sent bodies back from the input file
        **connection_kwargs(server, "openai"),
    )
    job.wait()
    body = sent_bodies(server, job.batches)["0"]
    sent = {k: v for k, v in body.items() if k not in ("model", "messages")}
    assert sent == expected
    assert [type(v) for v in sent.values()] == [type(v) for v in expected.values()]


@pytest.fixture(scope="module")
def quiet_server() -> Iterator[LocalBatchServer]:
    """A server of this module's own: nothing may ever reach it."""
    with LocalBatchServer(seed=3) as srv:
        yield srv


@pytest.fixture
def nothing_uploaded(quiet_server: LocalBatchServer) -> Iterator[LocalBatchServer]:
    yield quiet_server
    with httpx2.Client(base_url=quiet_server.origin) as http:
        assert http.get("/v1/files").json() == []
        assert http.get("/v1/batches").json()["data"] == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        pytest.param(2.5, "2.5", id="float"),
        pytest.param(np.float64(0.5), "0.5", id="numpy"),
        pytest.param(float("inf"), "inf", id="inf"),
    ],
)
def test_a_fractional_integer_parameter_names_the_row_and_uploads_nothing(
    nothing_uploaded, tmp_path, value, shown
):
    frame = pd.DataFrame(
        {
            "text": ["a", "b", "c"],
            "opts": [{"max_tokens": 2}, {"temperature": 0.3}, {"max_tokens": value}],
        },
        index=pd.Index(["x", "y", "z"]),
    )
    back = round_trip(frame, tmp_path / "in.parquet")
    with pytest.raises(RowError) as info:
        netmind_frames.batch_complete(
            back,
            "{text}",
            model="m",
            params_column="opts",
            **connection_kwargs(nothing_uploaded, "netmind"),
        )
    assert info.value.position == 2
    message = str(info.value)
    assert message.startswith("row 2 (index 'z'): column 'opts': ")
    assert f"'max_tokens' must be a whole number, not {shown}" in message


def test_a_whole_float_keyword_parameter_is_sent_as_an_int(server):
    """max_tokens=np.float64(2.0), e.g. taken from a frame's statistics, is sent as 2."""
    job = netmind_frames.submit(
        pd.DataFrame({"text": ["one two three"]}), "{text}", model="m",
        max_tokens=np.float64(2.0), temperature=1.0, keep_files=True,
        **connection_kwargs(server, "netmind"),
    )  # fmt: skip
    out = job.result()
    assert list(out["response"]) == ["one two"]
    body = sent_bodies(server, job.batches)["0"]
    assert type(body["max_tokens"]) is int and type(body["temperature"]) is float


def test_a_fractional_keyword_parameter_is_an_error_and_uploads_nothing(nothing_uploaded):
    with pytest.raises(netmind_frames.InputError, match="'max_tokens' must be a whole number"):
        netmind_frames.batch_complete(
            pd.DataFrame({"text": ["a"]}), "{text}", model="m", max_tokens=2.5,
            **connection_kwargs(nothing_uploaded, "netmind"),
        )  # fmt: skip
