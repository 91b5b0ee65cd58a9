"""A client written elsewhere: Netmind's official SDK (``netmind`` 0.1.11) against a server.

Run with the Python of the SDK's own virtual environment (it pins ``openai<2``; this project
needs ``openai>=3``), never imported by the tests. ``NETMIND_BASE_URL`` (the ROOT, as the SDK
reads it) and ``NETMIND_API_KEY`` say where; argv[1] is a file to upload. Every step's result is
printed as one JSON object on stdout, as the SDK's own types show it.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version

import httpx
from netmind import NetMind
from netmind.types.files import FileId, FileObject, FilePresigned, FilePurpose


def main(path: str) -> None:
    """Create/upload, list, retrieve, download URL + fetch, delete; print what came back."""
    client = NetMind(max_retries=0)
    results: dict[str, object] = {"sdk_version": version("netmind")}
    created = client.files.create(path, purpose=FilePurpose.batch)
    assert isinstance(created, FileId)
    results["created"] = created.model_dump()
    listed = client.files.list()
    assert isinstance(listed, list) and all(isinstance(f, FileObject) for f in listed)
    results["listed"] = [f.model_dump(mode="json") for f in listed]
    got = client.files.retrieve(created.id)
    assert isinstance(got, FileObject)
    results["retrieved"] = got.model_dump(mode="json")
    url = client.files.retrieve_url(created.id)
    assert isinstance(url, FilePresigned)
    results["url_id"] = url.id
    fetched = httpx.get(str(url.presigned_url), timeout=30)
    fetched.raise_for_status()
    results["downloaded"] = fetched.text
    results["delete_answer"] = client.files.delete(created.id)
    try:
        client.files.retrieve(created.id)
        results["after_delete"] = "still there"
    except Exception as exc:  # the openai client's NotFoundError, through the SDK
        results["after_delete"] = f"{type(exc).__name__}:{getattr(exc, 'status_code', None)}"
    results["listed_after_delete"] = [f.id for f in client.files.list()]
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
