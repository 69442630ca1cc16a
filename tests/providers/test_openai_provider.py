"""OpenAI-compatible: the exact requests sent, API keys, and what the probe reports."""

from __future__ import annotations

import pytest

from crucible.config.settings import ProviderKind
from crucible.context.fim import TEMPLATES
from crucible.providers.errors import AuthError
from tests.fakes.provider import FakeProvider
from tests.providers.conftest import MakeProvider
from tests.providers.support import CHAT, FIM, KEY_ENV, MODEL, collect

OPENAI = ProviderKind.OPENAI


async def test_fim_renders_the_model_family_template_into_the_prompt(
    make: MakeProvider, fake: FakeProvider
) -> None:
    await collect(make(OPENAI).stream_fim(FIM))
    request = fake.requests[-1]
    # base_url ends in /v1: the relative path must land under it, not replace it.
    assert (request.method, request.path) == ("POST", "/v1/completions")
    qwen = TEMPLATES["qwen"]
    assert request.body == {
        "model": MODEL,
        "prompt": qwen.render(FIM.prefix, FIM.suffix, path=FIM.path, extra=FIM.extra),
        "max_tokens": 64,
        "temperature": 0.1,
        "stop": [*qwen.stop, "\n\n"],
        "stream": True,
    }


async def test_configured_template_overrides_detection(
    make: MakeProvider, fake: FakeProvider
) -> None:
    await collect(make(OPENAI, fim_template="codestral").stream_fim(FIM))
    assert fake.requests[-1].body["prompt"] == f"[SUFFIX]{FIM.suffix}[PREFIX]{FIM.prefix}"


async def test_a_base_url_with_a_trailing_slash_works_too(
    make: MakeProvider, fake: FakeProvider
) -> None:
    await collect(make(OPENAI, base_url=f"{fake.base_url}/v1/").stream_fim(FIM))
    assert fake.requests[-1].path == "/v1/completions"


async def test_chat_request(make: MakeProvider, fake: FakeProvider) -> None:
    await collect(make(OPENAI).stream_chat(CHAT))
    request = fake.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.body == {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Explain E501."},
        ],
        "max_tokens": 100,
        "temperature": 0.3,
        "stream": True,
        "stop": ["END"],
    }


async def test_api_key_is_sent_as_bearer_when_configured(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = with_key
    assert await collect(make(OPENAI, api_key_env=KEY_ENV).stream_fim(FIM)) == "return a + b"
    assert fake.requests[-1].headers["authorization"] == f"Bearer {with_key}"


async def test_no_authorization_header_without_a_key(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.require_api_key = "sk-needed"
    with pytest.raises(AuthError, match="HTTP 401: Incorrect API key provided"):
        await collect(make(OPENAI).stream_fim(FIM))
    assert "authorization" not in fake.requests[-1].headers


async def test_an_unset_key_variable_sends_no_header(
    make: MakeProvider, fake: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    await collect(make(OPENAI, api_key_env=KEY_ENV).stream_fim(FIM))
    assert "authorization" not in fake.requests[-1].headers


async def test_a_wrong_key_is_an_auth_error_that_does_not_show_it(
    make: MakeProvider, fake: FakeProvider, with_key: str
) -> None:
    fake.require_api_key = "sk-the-right-one"
    provider = make(OPENAI, api_key_env=KEY_ENV)
    with pytest.raises(AuthError) as info:
        await collect(provider.stream_chat(CHAT))
    assert with_key not in str(info.value)
    probe = await provider.probe()
    assert not probe.ok
    assert probe.detail.startswith("HTTP 401")
    assert with_key not in probe.detail


async def test_probe_finds_the_model(make: MakeProvider, fake: FakeProvider) -> None:
    result = await make(OPENAI).probe()
    assert (result.ok, result.detail) == (True, f"ok: model {MODEL} available")
    assert fake.requests[-1].path == "/v1/models"


async def test_probe_of_a_one_model_server_under_another_name(
    make: MakeProvider, fake: FakeProvider
) -> None:
    fake.models = ["tiny.gguf"]
    result = await make(OPENAI).probe()
    assert result.ok
    assert result.detail == (
        f"ok: server answers, but model {MODEL} is not listed (has: tiny.gguf)"
    )


async def test_probe_of_a_server_listing_nothing(make: MakeProvider, fake: FakeProvider) -> None:
    fake.models = []
    assert not (await make(OPENAI).probe()).ok
