"""Ollama: the exact requests sent, and what the probe reports."""

from __future__ import annotations

from crucible.config.settings import ProviderKind
from crucible.providers.base import FimRequest
from tests.fakes.provider import FakeProvider
from tests.providers.conftest import MakeProvider
from tests.providers.support import CHAT, FIM, MODEL, collect

OLLAMA = ProviderKind.OLLAMA


async def test_fim_uses_the_native_suffix_field(make: MakeProvider, fake: FakeProvider) -> None:
    await collect(make(OLLAMA).stream_fim(FIM))
    request = fake.requests[-1]
    assert (request.method, request.path) == ("POST", "/api/generate")
    # No raw, no template of ours, no other files: Ollama applies the model's FIM template.
    assert request.body == {
        "model": MODEL,
        "prompt": FIM.prefix,
        "suffix": FIM.suffix,
        "stream": True,
        "options": {"num_predict": 64, "temperature": 0.1, "stop": ["\n\n"]},
    }


async def test_no_stop_key_when_the_request_has_none(
    make: MakeProvider, fake: FakeProvider
) -> None:
    # An explicit list would replace the stop parameters of the model's Modelfile.
    request = FimRequest(prefix="a", suffix="b", language_id="python", path="a.py")
    await collect(make(OLLAMA).stream_fim(request))
    assert fake.requests[-1].body["options"] == {"num_predict": 128, "temperature": 0.2}


async def test_chat_request(make: MakeProvider, fake: FakeProvider) -> None:
    await collect(make(OLLAMA).stream_chat(CHAT))
    request = fake.requests[-1]
    assert request.path == "/api/chat"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Explain E501."},
        ],
        "stream": True,
        "options": {"num_predict": 100, "temperature": 0.3, "stop": ["END"]},
    }


async def test_probe_finds_the_model(make: MakeProvider, fake: FakeProvider) -> None:
    result = await make(OLLAMA).probe()
    assert (result.ok, result.detail) == (True, f"ok: model {MODEL} available")
    assert fake.requests[-1].path == "/api/tags"


async def test_probe_treats_a_missing_tag_as_latest(make: MakeProvider, fake: FakeProvider) -> None:
    fake.models = ["starcoder2:latest"]
    assert (await make(OLLAMA, model="starcoder2").probe()).ok


async def test_probe_lists_the_models_it_has(make: MakeProvider, fake: FakeProvider) -> None:
    fake.models = ["llama3:8b", "qwen2.5-coder:7b"]
    result = await make(OLLAMA).probe()
    assert not result.ok
    assert result.detail == f"model {MODEL} not found (have: llama3:8b, qwen2.5-coder:7b)"


async def test_probe_of_a_server_that_is_down(make: MakeProvider, refused_port: int) -> None:
    root = f"http://127.0.0.1:{refused_port}"
    result = await make(OLLAMA, root=root).probe()
    assert (result.ok, result.detail) == (False, f"connection refused ({root})")


async def test_api_key_header_only_when_configured(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    await collect(make(OLLAMA).stream_fim(FIM))
    assert "authorization" not in fake.requests[-1].headers
    await collect(make(OLLAMA, api_key_env="CRUCIBLE_TEST_API_KEY").stream_fim(FIM))
    assert fake.requests[-1].headers["authorization"] == f"Bearer {with_key}"
