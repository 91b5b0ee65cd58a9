"""Settings resolution: keyword > environment variable > default; provider detection."""

from __future__ import annotations

import openai
import pytest

from netmind_frames import ConfigurationError
from netmind_frames.transport._config import detect_provider, netmind_files_url, resolve_settings


@pytest.mark.parametrize(
    ("url", "provider"),
    [
        pytest.param("https://api.netmind.ai/inference-api/openai/v1", "netmind", id="netmind"),
        pytest.param("https://api.netmind.ai/inference-api/openai/v1/", "netmind", id="slash"),
        pytest.param("http://127.0.0.1:9/inference-api/openai/v1", "netmind", id="local-netmind"),
        pytest.param("https://api.openai.com/v1", "openai", id="openai"),
        pytest.param("http://localhost:8000/v1", "openai", id="vllm"),
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
