"""The local server's knobs for Netmind's unknowns: metadata not echoed, the guide's create
answer, a queued status before a batch runs; and their serve flags."""

from __future__ import annotations

import argparse

import openai
import pytest
from conftest_server import rows, start_batch, upload, wait_terminal

from netmind_frames.server import LocalBatchServer
from netmind_frames.server._cli import add_serve_parser


def client_for(srv: LocalBatchServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=srv.api_key, max_retries=0)


def test_metadata_is_stored_and_echoed_by_default():
    with LocalBatchServer() as srv, client_for(srv) as client:
        batch = start_batch(client, rows(2), metadata={"k": "v"})
        assert client.batches.retrieve(batch.id).metadata == {"k": "v"}
        assert [b.metadata for b in client.batches.list()] == [{"k": "v"}]


def test_echo_metadata_false_hides_it_everywhere():
    with LocalBatchServer(echo_metadata=False) as srv, client_for(srv) as client:
        batch = start_batch(client, rows(2), metadata={"k": "v"})
        assert batch.metadata is None
        assert client.batches.retrieve(batch.id).metadata is None
        assert [b.metadata for b in client.batches.list()] == [None]
        # The batch itself runs as usual, and list still shows its input file.
        assert wait_terminal(client, batch.id).status == "completed"
        assert next(iter(client.batches.list())).input_file_id == batch.input_file_id


def test_echo_input_file_id_false_hides_it_in_list_and_retrieve():
    with LocalBatchServer(echo_input_file_id=False) as srv, client_for(srv) as client:
        batch = start_batch(client, rows(2), metadata={"k": "v"})
        assert client.batches.retrieve(batch.id).input_file_id is None
        assert [b.input_file_id for b in client.batches.list()] == [None]
        # Only the file id is hidden: the batch runs on its file, metadata still shows.
        done = wait_terminal(client, batch.id)
        assert done.status == "completed" and done.metadata == {"k": "v"}
        assert done.request_counts is not None and done.request_counts.completed == 2


def test_netmind_create_answer_is_the_guides_shape():
    with LocalBatchServer(netmind_create_answer=True) as srv, client_for(srv) as client:
        file_id = upload(client, rows(2))
        batch = client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert batch.id.startswith("batch")
        assert (batch.status, batch.endpoint, batch.completion_window) == ("pending", "", "")
        assert batch.input_file_id is None and batch.created_at is None
        done = wait_terminal(client, batch.id)
        assert done.status == "completed" and done.input_file_id == file_id


def test_queued_polls_show_the_queued_status_first():
    with LocalBatchServer(queued_polls=2, queued_status="mystery") as srv, client_for(srv) as c:
        batch = start_batch(c, rows(1))
        seen = [c.batches.retrieve(batch.id).status for _ in range(2)]
        assert seen == ["mystery", "mystery"]
        assert wait_terminal(c, batch.id).status == "completed"


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"queued_polls": -1}, id="negative-polls"),
        pytest.param({"queued_polls": True}, id="bool-polls"),
        pytest.param({"queued_status": ""}, id="empty-status"),
    ],
)
def test_bad_quirk_values_are_refused(kwargs):
    with pytest.raises(ValueError):
        LocalBatchServer(**kwargs)


def test_serve_flags():
    top = argparse.ArgumentParser(prog="netmind-frames")
    add_serve_parser(top.add_subparsers(dest="command"))
    args = top.parse_args(
        ["serve", "--no-echo-metadata", "--netmind-create-answer", "--queued-polls", "3"]
    )
    assert not args.no_echo_input_file_id
    assert top.parse_args(["serve", "--no-echo-input-file-id"]).no_echo_input_file_id
    assert (args.no_echo_metadata, args.netmind_create_answer, args.queued_polls) == (
        True,
        True,
        3,
    )
    defaults = top.parse_args(["serve"])
    assert (defaults.no_echo_metadata, defaults.netmind_create_answer, defaults.queued_polls) == (
        False,
        False,
        0,
    )
