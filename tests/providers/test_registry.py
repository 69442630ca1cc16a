"""Settings -> providers: the class per kind, the order they are tried in, roles."""

from __future__ import annotations

import logging

import pytest

from crucible.config.settings import (
    ProviderKind,
    ProviderSettings,
    Role,
    Settings,
    default_base_url,
)
from crucible.providers.anthropic import AnthropicProvider
from crucible.providers.base import FimRequest
from crucible.providers.codestral import CodestralProvider
from crucible.providers.llamacpp import LlamaCppProvider
from crucible.providers.local import LocalProvider
from crucible.providers.ollama import OllamaProvider
from crucible.providers.openai import OpenAIProvider
from crucible.providers.registry import create_provider, ordered_for_role
from tests.fakes.provider import FakeProvider
from tests.providers.support import collect

CHAT_ONLY = (Role.CHAT,)
SETTINGS = Settings(
    providers=(
        ProviderSettings(name="remote", kind=ProviderKind.OPENAI, priority=1),
        ProviderSettings(name="local", kind=ProviderKind.OLLAMA, priority=0),
        ProviderSettings(name="llama", kind=ProviderKind.LLAMACPP, priority=1, roles=CHAT_ONLY),
        ProviderSettings(name="spare", kind=ProviderKind.OLLAMA, priority=0, roles=CHAT_ONLY),
    )
)


async def test_each_kind_gets_its_class() -> None:
    providers = [create_provider(s) for s in SETTINGS.providers]
    try:
        assert [type(p) for p in providers] == [
            OpenAIProvider,
            OllamaProvider,
            LlamaCppProvider,
            OllamaProvider,
        ]
        assert [p.name for p in providers] == ["remote", "local", "llama", "spare"]
    finally:
        for p in providers:
            await p.aclose()


@pytest.mark.parametrize(
    ("kind", "cls", "base_url"),
    [
        pytest.param(ProviderKind.OLLAMA, OllamaProvider, "http://127.0.0.1:11434", id="ollama"),
        pytest.param(ProviderKind.OPENAI, OpenAIProvider, "http://127.0.0.1:8000/v1", id="openai"),
        pytest.param(
            ProviderKind.LLAMACPP, LlamaCppProvider, "http://127.0.0.1:8080", id="llamacpp"
        ),
        pytest.param(
            ProviderKind.ANTHROPIC, AnthropicProvider, "https://api.anthropic.com", id="anthropic"
        ),
        pytest.param(
            ProviderKind.CODESTRAL,
            CodestralProvider,
            "https://codestral.mistral.ai/v1",
            id="codestral",
        ),
        # Its server's port is chosen at each launch; building it starts nothing.
        pytest.param(ProviderKind.LOCAL, LocalProvider, "http://127.0.0.1", id="local"),
    ],
)
async def test_every_kind_has_a_class_and_a_default_base_url(
    kind: ProviderKind, cls: type[object], base_url: str
) -> None:
    assert default_base_url(kind) == base_url
    provider = create_provider(ProviderSettings(name=str(kind), kind=kind, base_url=base_url))
    try:
        assert type(provider) is cls
    finally:
        await provider.aclose()


def test_the_table_above_covers_every_kind() -> None:
    assert {str(k) for k in ProviderKind} == {
        "ollama",
        "openai",
        "llamacpp",
        "anthropic",
        "codestral",
        "local",
    }


def test_ordered_for_role() -> None:
    chat = ordered_for_role(SETTINGS.providers, Role.CHAT)
    assert [s.name for s in chat] == ["local", "spare", "remote", "llama"]
    assert [s.name for s in ordered_for_role(SETTINGS.providers, Role.COMPLETION)] == [
        "local",
        "remote",
    ]


async def test_an_invalid_fim_template_falls_back_to_auto(
    fake: FakeProvider, caplog: pytest.LogCaptureFixture
) -> None:
    fake.models = ["bigcode/starcoder2-3b"]
    settings = ProviderSettings(
        name="vllm",
        kind=ProviderKind.OPENAI,
        base_url=f"{fake.base_url}/v1",
        model="bigcode/starcoder2-3b",
        fim_template="nope",
    )
    with caplog.at_level(logging.WARNING, logger="crucible.providers.registry"):
        provider = create_provider(settings)
    try:
        assert "provider vllm: unknown FIM template 'nope'" in caplog.text
        await collect(
            provider.stream_fim(FimRequest(prefix="a", suffix="b", language_id="", path=""))
        )
        assert fake.requests[-1].body["prompt"] == "<fim_prefix>a<fim_suffix>b<fim_middle>"
    finally:
        await provider.aclose()


def test_an_invalid_fim_template_is_refused_by_the_provider_itself() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        OpenAIProvider(ProviderSettings(kind=ProviderKind.OPENAI, fim_template="nope"))
