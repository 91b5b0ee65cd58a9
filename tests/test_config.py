"""Settings resolution: keyword > environment variable > default; provider detection."""

from __future__ import annotations

import httpx2
import openai
import pandas as pd
import pytest

from netmind_frames import ConfigurationError, LocalBatchServer, batch_complete
from netmind_frames.transport._config import (
    MAX_BYTES,
    detect_provider,
    netmind_files_url,
    resolve_settings,
)


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        pytest.param("https://api.netmind.ai/inference-api/openai/v1", "netmind", id="netmind"),
        pytest.param("https://api.netmind.ai/inference-api/openai/v1/", "netmind", id="slash"),
        pytest.param("http://127.0.0.1:9/inference-api/openai/v1", "netmind", id="local-netmind"),
        pytest.param("https://api.openai.com/v1", "openai", id="openai"),
        pytest.param("http://localhost:8000/v1", "openai", id="vllm"),
        pytest.param("https://api.netmind.ai", "netmind", id="netmind-root"),
        pytest.param("https://api.netmind.ai/", "netmind", id="netmind-root-slash"),
        pytest.param("https://eu.api.netmind.ai/", "netmind", id="netmind-subdomain"),
        pytest.param("https://proxy.example/netmind", "openai", id="proxy-not-forced"),
        pytest.param("https://notnetmind.ai/v1", "openai", id="lookalike-host"),
    ],
)
def test_provider_is_detected_from_the_base_url(url, provider):
    assert detect_provider(url) == provider


@pytest.mark.parametrize(
    ("base_url", "files_url"),
    [
        ("https://api.netmind.ai/inference-api/openai/v1", "https://api.netmind.ai/v1/files"),
        ("https://api.netmind.ai/inference-api/openai/v1/", "https://api.netmind.ai/v1/files"),
        # behind a proxy's path prefix, the files sit beside the inference base, as in
        # Netmind's own SDK (it strips the suffix from the base URL)
        (
            "https://gw.example/netmind/inference-api/openai/v1",
            "https://gw.example/netmind/v1/files",
        ),
        # provider="netmind" forced on another path: the origin's /v1/files
        ("https://gw.example/llm/v1", "https://gw.example/v1/files"),
    ],
)
def test_netmind_files_live_beside_the_inference_base(base_url, files_url):
    assert netmind_files_url(base_url) == files_url


def test_keyword_beats_environment_beats_default(monkeypatch):
    monkeypatch.setenv("NETMIND_API_KEY", "env-key")
    monkeypatch.setenv("NETMIND_BASE_URL", "https://env.example/v1")
    assert resolve_settings().base_url == "https://env.example/v1"
    assert resolve_settings().api_key == "env-key"
    chosen = resolve_settings(
        api_key="kw-key", base_url="https://kw.example/inference-api/openai/v1"
    )
    assert (chosen.api_key, chosen.provider) == ("kw-key", "netmind")
    monkeypatch.delenv("NETMIND_BASE_URL")
    assert resolve_settings().base_url == "https://api.netmind.ai/inference-api/openai/v1"


def test_files_url_and_home_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NETMIND_FILES_URL", "https://files.example/v1/files/")
    monkeypatch.setenv("NETMIND_FRAMES_HOME", str(tmp_path))
    settings = resolve_settings(api_key="k")
    assert settings.files_url == "https://files.example/v1/files"
    assert settings.home == tmp_path


def test_client_supplies_url_and_key(monkeypatch):
    monkeypatch.delenv("NETMIND_API_KEY", raising=False)
    client = openai.OpenAI(base_url="http://localhost:8000/v1", api_key="client-key")
    settings = resolve_settings(client=client)
    assert (settings.provider, settings.api_key) == ("openai", "client-key")
    assert resolve_settings(client=client, provider="netmind").provider == "netmind"


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param({"api_key": "k", "provider": "azure"}, "provider", id="bad-provider"),
        pytest.param({"local": True, "base_url": "http://x/v1"}, "local=True", id="local-and-url"),
    ],
)
def test_bad_settings_are_named(kwargs, needle):
    with pytest.raises(ConfigurationError, match=needle):
        resolve_settings(**kwargs)


def test_settings_repr_hides_the_key():
    assert "sk-secret" not in repr(resolve_settings(api_key="sk-secret"))


NETMIND_BASE = "https://api.netmind.ai/inference-api/openai/v1"
NETMIND_FILES = "https://api.netmind.ai/v1/files"


@pytest.mark.parametrize(
    ("base_url", "provider", "expected_base", "expected_files"),
    [
        pytest.param("https://api.netmind.ai", None, NETMIND_BASE, NETMIND_FILES, id="root"),
        pytest.param("https://api.netmind.ai/", None, NETMIND_BASE, NETMIND_FILES, id="root/"),
        pytest.param(NETMIND_BASE, None, NETMIND_BASE, NETMIND_FILES, id="inference-base"),
        pytest.param(NETMIND_BASE + "/", None, NETMIND_BASE, NETMIND_FILES, id="inference-base/"),
        pytest.param(
            "https://proxy.example/netmind",
            "netmind",
            "https://proxy.example/netmind/inference-api/openai/v1",
            "https://proxy.example/netmind/v1/files",
            id="proxy-prefix",
        ),
        pytest.param(
            "https://proxy.example/netmind/inference-api/openai/v1/",
            None,
            "https://proxy.example/netmind/inference-api/openai/v1",
            "https://proxy.example/netmind/v1/files",
            id="proxy-inference-base",
        ),
        pytest.param(
            "http://x/v1",
            "netmind",
            "http://x/v1/inference-api/openai/v1",
            "http://x/v1/v1/files",
            id="forced-provider",
        ),
        pytest.param("http://x/v1", None, "http://x/v1", "http://x/v1/files", id="openai"),
    ],
)
def test_base_url_may_be_netmind_root_or_inference_base(
    monkeypatch, base_url, provider, expected_base, expected_files
):
    for how in ("keyword", "environment"):
        if how == "keyword":
            settings = resolve_settings(api_key="k", base_url=base_url, provider=provider)
        else:
            monkeypatch.setenv("NETMIND_BASE_URL", base_url)
            settings = resolve_settings(api_key="k", provider=provider)
        assert settings.base_url == expected_base, how
        if settings.provider == "netmind":
            assert settings.files_url == expected_files, how
        else:
            assert expected_base == base_url  # an OpenAI-compatible URL is left alone


def test_files_url_environment_beats_the_root(monkeypatch):
    monkeypatch.setenv("NETMIND_FILES_URL", "https://files.example/v1/files")
    settings = resolve_settings(api_key="k", base_url="https://api.netmind.ai")
    assert (settings.base_url, settings.files_url) == (
        NETMIND_BASE,
        "https://files.example/v1/files",
    )


def test_netmind_shard_cap_is_a_hundred_million_bytes():
    assert MAX_BYTES["netmind"] == 100_000_000
    assert resolve_settings(api_key="k").max_bytes == 100_000_000


def test_a_local_root_with_forced_provider_runs_end_to_end():
    frame = pd.DataFrame({"text": ["alpha", "beta", "gamma"]})
    with LocalBatchServer(seed=3) as srv:
        out = batch_complete(
            frame,
            "Say {text}",
            model="meta-llama/Meta-Llama-3.1-8B-Instruct",
            base_url=srv.origin,  # the root: no /inference-api/openai/v1
            provider="netmind",
            api_key=srv.api_key,
            poll_interval=0.05,
            progress=False,
            keep_files=True,
        )
        files = srv.origin + "/v1/files"
        names = [f["file_name"] for f in httpx2.get(files, headers=_auth(srv)).json()]
    assert list(out["response"]) == ["Say alpha", "Say beta", "Say gamma"]
    assert (out["status"] == "ok").all()
    # the batches ran at root + /inference-api/openai/v1 (the origin itself serves no batches)
    assert [n for n in names if n.startswith("netmind_frames-")], names


def _auth(srv: LocalBatchServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {srv.api_key}"}
