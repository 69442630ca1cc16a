"""A provider that authenticates its own way (``HttpProvider._headers``) is heard on every path.

``_headers`` is the documented override for a format whose auth is not ``Authorization:
Bearer`` (Anthropic's ``x-api-key``); every request of every kind must carry what it returns:
FIM, chat, each fallback (a model without fill-in-the-middle: Ollama's prefix-only generate,
llama.cpp's ``/completion``), the probe (a model listing, llama.cpp's health, Anthropic's
model) and a micro-batched FIM call.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from crucible.config.settings import ProviderKind
from crucible.providers.http_provider import HttpProvider
from tests.fakes.provider import FakeProvider
from tests.providers.support import CHAT, CLASSES, FIM, KINDS, collect, settings_for

HEADER, VALUE = "x-test-auth", "own-scheme token"


def own_header(kind: ProviderKind) -> type[HttpProvider]:
    """``kind``'s provider class, with one more header of its own on every request."""
    base = CLASSES[kind]
    assert isinstance(base, type) and issubclass(base, HttpProvider)

    def _headers(self: HttpProvider) -> dict[str, str]:
        return {**base._headers(self), HEADER: VALUE}

    return type(f"OwnHeader{base.__name__}", (base,), {"_headers": _headers})


@pytest.mark.parametrize("kind", KINDS)
async def test_every_request_carries_the_overridden_headers(
    kind: ProviderKind, fake: FakeProvider
) -> None:
    settings = settings_for(kind, fake.base_url)
    provider = own_header(kind)(settings)
    try:
        await collect(provider.stream_fim(FIM))
        await collect(provider.stream_chat(CHAT))
        assert (await provider.probe()).ok
    finally:
        await provider.aclose()
    assert len(fake.requests) == 3  # FIM, chat, probe
    assert [r.path for r in fake.requests if r.headers.get(HEADER) != VALUE] == []


@pytest.mark.parametrize("kind", [ProviderKind.OLLAMA, ProviderKind.LLAMACPP])
async def test_the_fallback_without_fim_carries_them_too(
    kind: ProviderKind, fake: FakeProvider
) -> None:
    fake.fim_supported = False
    provider = own_header(kind)(settings_for(kind, fake.base_url))
    try:
        assert await collect(provider.stream_fim(FIM)) == "return a + b"
    finally:
        await provider.aclose()
    fallback = {ProviderKind.OLLAMA: "/api/generate", ProviderKind.LLAMACPP: "/completion"}[kind]
    assert fake.requests[-1].path == fallback
    assert len(fake.requests) == 2  # the refused FIM, then the fallback
    assert [r.headers.get(HEADER) for r in fake.requests] == [VALUE, VALUE]


async def test_a_batched_call_carries_them_too(fake: FakeProvider) -> None:
    kind = ProviderKind.OPENAI
    settings = replace(settings_for(kind, fake.base_url), batch_window_ms=5)
    provider = own_header(kind)(settings)
    try:
        assert await collect(provider.stream_fim(FIM)) == "return a + b"
    finally:
        await provider.aclose()
    assert [(r.path, r.headers.get(HEADER)) for r in fake.requests] == [("/v1/completions", VALUE)]
